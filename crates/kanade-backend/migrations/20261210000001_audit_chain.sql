-- The audit trail's hash chain (kanade_shared::audit_chain): each event's link to the one before it in the AUDIT
-- stream and its own hash, as the event carried them (NULL for events written before the chain existed), so
-- `kanade audit verify` can recompute the chain from this table and compare it with the stream.
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;

-- The chain is read in stream order (GET /api/audit/chain).
CREATE INDEX audit_by_stream_seq ON audit (stream_seq, event_id);
