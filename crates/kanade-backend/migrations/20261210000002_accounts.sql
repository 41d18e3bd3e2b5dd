-- Operator accounts (issue #19): users with a role and a group scope, their sign-in sessions, their long-lived API
-- tokens, the backend's own settings (the key that signs session tokens) and the one-time setup tokens that create
-- the first admin. No secret is stored as it was given: passwords as Argon2id PHC strings, every token as the
-- SHA-256 of its secret. Types both SQLite and PostgreSQL read through sqlx's Any driver: TEXT, BIGINT, and
-- booleans as BIGINT 0 or 1.

CREATE TABLE users (
    name            TEXT PRIMARY KEY NOT NULL, -- an actor id: lowercase [a-z0-9_-], 1-64
    role            TEXT NOT NULL,             -- viewer | operator | approver | admin
    scope_json      TEXT NOT NULL,             -- "fleet" or ["group", ...] (kanade_shared::access::GroupScope)
    password_hash   TEXT NOT NULL,             -- Argon2id, PHC string
    totp_secret     TEXT,                      -- base32; none: no second factor
    totp_last_step  BIGINT,                    -- the newest TOTP time step used: a code is never taken twice
    disabled        BIGINT NOT NULL DEFAULT 0, -- 0 or 1
    signing_key     TEXT,                      -- the operator's registered Ed25519 public key, `ed25519:...`
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    created_by      TEXT NOT NULL
);

-- One row per sign-in: the refresh token's hash (replaced at every refresh) and when the session ends. A session
-- token (JWT) names its row; every request checks the row and its user, so a logout, a disabled or removed user
-- and a password change end it at once.
CREATE TABLE user_sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    user_name       TEXT NOT NULL,
    refresh_hash    TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    refreshed_at_ms BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    revoked_at_ms   BIGINT
);

CREATE INDEX user_sessions_by_user ON user_sessions (user_name);

-- Long-lived tokens for automation, `kanade_api_<id>_<secret>`: a role at most the owner's, the owner's scope.
CREATE TABLE api_tokens (
    id              TEXT PRIMARY KEY NOT NULL,
    secret_hash     TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    revoked_at_ms   BIGINT
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_name, created_at_ms);

-- The backend's own settings, shared by replicas: `jwt_secret` (base64 of 32 random bytes, written once by the
-- first backend to start; the config may name its own instead).
CREATE TABLE backend_settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Setup tokens printed by a backend that starts with no user: each may create the first admin, once; all are
-- deleted when one does.
CREATE TABLE setup_tokens (
    secret_hash   TEXT PRIMARY KEY NOT NULL,
    created_at_ms BIGINT NOT NULL
);
