-- Runs that began, projected from `events.started.<pc>.<exec_id>` (stream EVENTS): a target with a row here and no
-- result yet is running; with neither it is pending. Written only by the events projector, idempotently.
CREATE TABLE runs_started (
    exec_id       TEXT NOT NULL,
    pc_id         TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL, -- the agent's clock
    PRIMARY KEY (exec_id, pc_id)
);
