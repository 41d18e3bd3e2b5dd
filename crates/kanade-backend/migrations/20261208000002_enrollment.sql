-- Enrolment (issue #18): every agent its own NATS identity. The backend keeps the tokens operators create, which
-- PC used which token, each PC's credential as issued, and the keys it revoked; the agents keep their keys.

-- Enrolment tokens: `kanade_enroll_<id>_<secret>`. Only a SHA-256 of the secret is kept. `uses_left` is taken one
-- at a time, in the transaction that records the use, guarded by `uses_left > 0`, so replicas sharing one database
-- never spend a use twice.
CREATE TABLE enroll_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_hash   TEXT NOT NULL,
    groups_json   TEXT NOT NULL, -- ["office", ...]; empty: each PC gets the groups its config asks for
    uses          BIGINT NOT NULL,
    uses_left     BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE INDEX enroll_tokens_by_created ON enroll_tokens (created_at_ms, id);

-- Which PCs each token enrolled: a token enrols a PC once (enrolling a revoked PC again needs a new token).
CREATE TABLE enroll_token_uses (
    token_id   TEXT NOT NULL,
    pc_id      TEXT NOT NULL,
    used_at_ms BIGINT NOT NULL,
    PRIMARY KEY (token_id, pc_id)
);

-- One row per PC that asked: its key, the groups its credential carries, and what was issued last (the expiry of
-- the latest credential, never moved back, bounds how long a revocation has to stay in the account JWT).
CREATE TABLE agent_credentials (
    pc_id           TEXT PRIMARY KEY NOT NULL,
    public_key      TEXT NOT NULL,
    groups_json     TEXT NOT NULL,
    -- pending | active | revoked
    status          TEXT NOT NULL,
    token_id        TEXT NOT NULL,
    hostname        TEXT NOT NULL,
    os              TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    enrolled_at_ms  BIGINT,
    issued_at_ms    BIGINT,
    expires_at_ms   BIGINT,
    revoked_at_ms   BIGINT
);

CREATE INDEX agent_credentials_by_status ON agent_credentials (status, pc_id);
CREATE INDEX agent_credentials_by_key ON agent_credentials (public_key);

-- Keys whose credentials were revoked: the fleet account JWT lists each until its last credential has expired.
CREATE TABLE revoked_agent_keys (
    public_key    TEXT PRIMARY KEY NOT NULL,
    pc_id         TEXT NOT NULL,
    revoked_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
