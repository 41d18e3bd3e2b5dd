-- Where a whole output stream is kept (issue #18): agents now publish it as `chunks` messages on stream `OUTPUT`
-- (`output.<pc>.<exec_id>.<stream>.<n>`, n = 0..chunks, subjects the broker can scope to each agent); 0 is an older
-- agent's object `<result_id>/<stream>` in the `result_output` store, as every row before this migration.
ALTER TABLE result_outputs ADD COLUMN chunks BIGINT NOT NULL DEFAULT 0;
