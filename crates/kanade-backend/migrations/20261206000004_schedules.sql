-- Schedules (issue #17). The schedules themselves live in KV `schedules`; SQL keeps what the leader decided of
-- each occurrence, so a decision is made once whichever backend makes it, and survives a failover.

-- One row per decided occurrence: fired (with the execution it created, whose exec id is the occurrence id),
-- skipped because the previous fire was unfinished, missed (one row for a run of them), or failed. The occurrence
-- id is `<schedule>-<YYYYMMDD>t<HHMMSS>z`; a second decision of the same occurrence is a no-op.
CREATE TABLE schedule_fires (
    occurrence_id    TEXT PRIMARY KEY NOT NULL,
    schedule_id      TEXT NOT NULL,
    occurrence_at_ms BIGINT NOT NULL,
    -- fired | run_now | skipped_overlap | missed | failed
    outcome          TEXT NOT NULL,
    exec_id          TEXT,
    reason           TEXT,
    -- For `missed`: how many occurrences the row stands for.
    missed_count     BIGINT,
    decided_by       TEXT NOT NULL,
    decided_at_ms    BIGINT NOT NULL
);

CREATE INDEX schedule_fires_by_schedule ON schedule_fires (schedule_id, occurrence_at_ms);

-- Per schedule, the latest occurrence decided: the leader looks for due occurrences after it. Moved in the
-- transaction that records the decision, and only forward.
CREATE TABLE schedule_cursors (
    schedule_id   TEXT PRIMARY KEY NOT NULL,
    cursor_ms     BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- A once-per-PC execution stands until its schedule ends: a run may not start after this (each send's deadline
-- is at most this far).
ALTER TABLE executions ADD COLUMN ends_at_ms BIGINT;
