-- Each target's state on its own row (issue #14): the status of its first stored result, and whether its run was
-- seen to begin, written by the projectors in the transaction that stores the result or the start. An execution's
-- view and the rollout engine count them with one index-only scan of the execution's targets, instead of joining
-- every target with `results` and `runs_started` on every poll (48 ms for 10,000 targets on SQLite, measured).
ALTER TABLE execution_targets ADD COLUMN status TEXT;
ALTER TABLE execution_targets ADD COLUMN started BIGINT NOT NULL DEFAULT 0;

UPDATE execution_targets SET status = (
    SELECT r.status FROM results r
    WHERE r.exec_id = execution_targets.exec_id AND r.pc_id = execution_targets.pc_id
    ORDER BY r.stream_seq LIMIT 1
);
UPDATE execution_targets SET started = 1 WHERE EXISTS (
    SELECT 1 FROM runs_started s WHERE s.exec_id = execution_targets.exec_id AND s.pc_id = execution_targets.pc_id
);

CREATE INDEX execution_targets_state ON execution_targets (exec_id, status, wave, started);

-- An execution's results by status, from the index alone.
CREATE INDEX results_by_exec_pc_status ON results (exec_id, pc_id, status);
DROP INDEX results_by_exec_pc;
