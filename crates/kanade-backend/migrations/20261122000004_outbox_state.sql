-- How full each agent's outbox is (heartbeat fields `outbox_bytes`, `outbox_full`).
ALTER TABLE agents ADD COLUMN outbox_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN outbox_full BIGINT NOT NULL DEFAULT 0; -- 0 or 1
