-- Where a result's whole output stream is kept when it outgrew the inline part (`results.stdout` / `stderr`): the
-- object `<result_id>/<stream>` in the `result_output` store. One row per (result, stream) that has one, written
-- only by the results projector in the same transaction as its result, and only for the result stored first.
CREATE TABLE result_outputs (
    result_id   TEXT NOT NULL,
    stream      TEXT NOT NULL,          -- stdout | stderr
    object      TEXT,                   -- NULL when there is no object to serve (see `unavailable`)
    size_bytes  BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    capped      INTEGER NOT NULL,       -- 0/1: the stream went on past the agent's output_max_bytes
    unavailable TEXT,                   -- why only the inline part exists, if so
    PRIMARY KEY (result_id, stream)
);
