-- Executions the backend creates and drives: what was fired at whom, by whom, who approved it, and each rollout
-- wave's state. Written by the exec engine only; results stay in `results` and are joined by (exec_id, pc_id).

CREATE TABLE executions (
    exec_id        TEXT PRIMARY KEY NOT NULL,
    job_id         TEXT NOT NULL,
    version        TEXT NOT NULL,
    -- pending_approval | rejected | starting | rolling_out | running | halted | superseded
    status         TEXT NOT NULL,
    status_reason  TEXT,
    targets_json   TEXT NOT NULL,   -- {"all", "groups", "pcs"} as fired
    command_json   TEXT NOT NULL,   -- the command every target gets; issued_at and deadline are set at each send
    deadline_ms    BIGINT,          -- how long after a send a run may still start
    target_count   BIGINT NOT NULL, -- known agents the target set matched when the execution was created
    requested_by   TEXT NOT NULL,
    decided_by     TEXT,
    decided_at_ms  BIGINT,
    created_at_ms  BIGINT NOT NULL,
    started_at_ms  BIGINT,
    updated_at_ms  BIGINT NOT NULL
);

CREATE INDEX executions_by_created ON executions (created_at_ms);
CREATE INDEX executions_by_job ON executions (job_id, created_at_ms);
CREATE INDEX executions_by_status ON executions (status);

-- The known agents an execution targets, each in the wave that reaches it first (0 without waves).
CREATE TABLE execution_targets (
    exec_id TEXT NOT NULL,
    pc_id   TEXT NOT NULL,
    wave    BIGINT NOT NULL,
    PRIMARY KEY (exec_id, pc_id)
);

CREATE TABLE execution_waves (
    exec_id         TEXT NOT NULL,
    wave            BIGINT NOT NULL,   -- 1-based, in rollout order
    group_name      TEXT NOT NULL,
    delay_ms        BIGINT NOT NULL,   -- after the previous wave was sent (the first: after the start)
    max_failure_pct DOUBLE PRECISION NOT NULL,
    state           TEXT NOT NULL,     -- pending | sending | sent
    fired_at_ms     BIGINT,
    PRIMARY KEY (exec_id, wave)
);
