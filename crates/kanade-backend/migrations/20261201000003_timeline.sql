-- Each agent's timeline, projected from `obs.<pc>` (stream OBS): its starts, self-update outcomes, outbox filling
-- and draining. Written only by the timeline projector, idempotently by event id (the agent's, or `seq-<n>` for an
-- event from an agent older than event ids); rows older than the backend's retention are deleted by it.
CREATE TABLE agent_events (
    event_id       TEXT PRIMARY KEY NOT NULL,
    pc_id          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    at_ms          BIGINT NOT NULL, -- the agent's clock, never later than recorded_at_ms
    details_json   TEXT NOT NULL,   -- capped; a larger one is replaced by a note saying so
    stream_seq     BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL  -- the backend's clock
);

-- One agent's timeline, newest first.
CREATE INDEX agent_events_by_pc ON agent_events (pc_id, at_ms, event_id);
-- "Which agents rolled back this week": one kind over a time range.
CREATE INDEX agent_events_by_kind ON agent_events (kind, at_ms, event_id);
-- The whole fleet newest first, and retention.
CREATE INDEX agent_events_by_at ON agent_events (at_ms, event_id);
CREATE INDEX agent_events_by_recorded ON agent_events (recorded_at_ms);
