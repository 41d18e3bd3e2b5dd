-- Lists page by keyset (issue #13): each list's page is `WHERE (<sort key>) < (<cursor>) ORDER BY <sort key>
-- LIMIT n`, so each needs an index that ends in its whole sort key, with the unique tiebreak, after the columns
-- it filters on by equality. These replace the indexes that ended in the time alone.

-- Results, newest first: (finished_at_ms, result_id); by exec, job or pc.
CREATE INDEX results_page ON results (finished_at_ms, result_id);
CREATE INDEX results_page_by_exec ON results (exec_id, finished_at_ms, result_id);
CREATE INDEX results_page_by_job ON results (job_id, finished_at_ms, result_id);
CREATE INDEX results_page_by_pc ON results (pc_id, finished_at_ms, result_id);
-- An execution's targets join their result by (exec_id, pc_id): one probe per target, not a scan of the
-- execution's results per target.
CREATE INDEX results_by_exec_pc ON results (exec_id, pc_id);
DROP INDEX results_by_exec;
DROP INDEX results_by_job;
DROP INDEX results_by_pc;
DROP INDEX results_by_finished;

-- Audit, newest first: (at_ms, event_id); by actor or action.
CREATE INDEX audit_page ON audit (at_ms, event_id);
CREATE INDEX audit_page_by_actor ON audit (actor, at_ms, event_id);
CREATE INDEX audit_page_by_action ON audit (action, at_ms, event_id);
DROP INDEX audit_by_at;
DROP INDEX audit_by_actor;
DROP INDEX audit_by_action;

-- Executions, newest first: (created_at_ms, exec_id); by job.
CREATE INDEX executions_page ON executions (created_at_ms, exec_id);
CREATE INDEX executions_page_by_job ON executions (job_id, created_at_ms, exec_id);
DROP INDEX executions_by_created;
DROP INDEX executions_by_job;

-- Agents page by their primary key (pc_id); execution targets by theirs (exec_id, pc_id). Nothing to add.
