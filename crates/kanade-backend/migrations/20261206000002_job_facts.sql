-- Facts from jobs with an `inventory:` block: the fields of the JSON their script printed, per PC (and per row,
-- when it printed an array), projected from RESULTS by the job-facts projector only.
CREATE TABLE job_facts (
    job_id TEXT NOT NULL,
    pc_id  TEXT NOT NULL,
    row_n  BIGINT NOT NULL,
    field  TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (job_id, pc_id, row_n, field)
);
-- A field counted across the fleet by value.
CREATE INDEX job_facts_by_value ON job_facts (job_id, field, value, pc_id);

-- Where each PC's facts of a job came from: the newest successful result, and whether its stdout was the JSON the
-- job promised (`error` says why not; the facts of the result before stay).
CREATE TABLE job_fact_sources (
    job_id         TEXT NOT NULL,
    pc_id          TEXT NOT NULL,
    result_id      TEXT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    fact_rows      BIGINT NOT NULL,
    error          TEXT,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (job_id, pc_id)
);
