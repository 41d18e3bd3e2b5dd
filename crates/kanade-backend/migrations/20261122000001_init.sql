-- Written in the SQL that SQLite and PostgreSQL share, so one migration set serves both.
-- The read model: agents from heartbeats, results from the RESULTS stream. Only projectors write these tables.
-- Times are milliseconds since the Unix epoch (UTC), which sort and compare the same in SQLite and PostgreSQL.

CREATE TABLE agents (
    pc_id              TEXT PRIMARY KEY NOT NULL,
    hostname           TEXT NOT NULL,
    os                 TEXT NOT NULL,
    os_version         TEXT NOT NULL,
    arch               TEXT NOT NULL,
    agent_version      TEXT NOT NULL,
    groups_json        TEXT NOT NULL,
    uptime_secs        BIGINT NOT NULL,
    rss_bytes          BIGINT NOT NULL,
    cpu_percent        DOUBLE PRECISION NOT NULL,
    running            BIGINT NOT NULL,
    outbox_pending     BIGINT NOT NULL,
    malformed_messages BIGINT NOT NULL,
    first_seen_ms      BIGINT NOT NULL,
    last_seen_ms       BIGINT NOT NULL
);

CREATE TABLE results (
    result_id        TEXT PRIMARY KEY NOT NULL,
    exec_id          TEXT NOT NULL,
    job_id           TEXT NOT NULL,
    version          TEXT NOT NULL,
    pc_id            TEXT NOT NULL,
    status           TEXT NOT NULL,
    exit_code        BIGINT,
    stdout           TEXT NOT NULL,
    stderr           TEXT NOT NULL,
    stdout_truncated BIGINT NOT NULL, -- 0 or 1: sqlx's Any driver cannot read SQLite booleans
    stderr_truncated BIGINT NOT NULL,
    started_at_ms    BIGINT,
    finished_at_ms   BIGINT NOT NULL,
    reason           TEXT,
    stream_seq       BIGINT NOT NULL,
    recorded_at_ms   BIGINT NOT NULL
);

CREATE INDEX results_by_exec ON results (exec_id);
CREATE INDEX results_by_job ON results (job_id, finished_at_ms);
CREATE INDEX results_by_pc ON results (pc_id, finished_at_ms);
CREATE INDEX results_by_finished ON results (finished_at_ms);
