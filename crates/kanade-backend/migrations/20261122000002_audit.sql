-- Every operator action, projected from the AUDIT stream.
CREATE TABLE audit (
    event_id       TEXT PRIMARY KEY NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    details_json   TEXT NOT NULL,
    source         TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    stream_seq     BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);

CREATE INDEX audit_by_at ON audit (at_ms);
CREATE INDEX audit_by_actor ON audit (actor, at_ms);
CREATE INDEX audit_by_action ON audit (action, at_ms);
