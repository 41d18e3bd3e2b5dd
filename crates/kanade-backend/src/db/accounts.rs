//! Operator accounts in SQL: users (`users`), their sign-in sessions (`user_sessions`, the refresh token as a hash),
//! their API tokens (`api_tokens`, the secret as a hash), the backend's settings (`backend_settings`: the key that
//! signs session tokens) and the setup tokens that create the first admin (`setup_tokens`). Changes that must not
//! race — the first admin, the last admin, a refresh, a user's token count — are decided inside one transaction
//! (`BEGIN IMMEDIATE` on SQLite; row locks on PostgreSQL), so replicas sharing a database agree.

use kanade_shared::access::{GroupScope, Role};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Dialect, Paged};
use crate::accounts;

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub scope: GroupScope,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
    pub disabled: bool,
    pub signing_key: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl UserRow {
    /// An enabled admin: one of those who can still manage users.
    pub fn is_enabled_admin(&self) -> bool {
        self.role == Role::Admin && !self.disabled
    }
}

/// A user to store.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub scope: GroupScope,
    pub password_hash: String,
    pub created_by: String,
    pub now_ms: i64,
}

/// A sign-in session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_name: String,
    pub refresh_hash: String,
    pub created_at_ms: i64,
    pub refreshed_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// An API token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub secret_hash: String,
    pub user_name: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// What became of a change to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Done: the user as it is now (for a removal, as it was).
    Done(UserRow),
    NotFound,
    /// Refused: it would leave no enabled admin.
    LastAdmin,
}

/// What became of a setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    Created(UserRow),
    /// The token is not a live setup token, or a user exists already.
    Refused,
}

/// What became of a new API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenInsert {
    Done,
    /// Its owner has [`accounts::MAX_API_TOKENS_PER_USER`] live tokens.
    TooMany,
    /// Its id is taken (draw another).
    Taken,
    /// Its owner no longer exists (removed while the token was made).
    NoUser,
}

const USER_COLUMNS: &str = "name, role, scope_json, password_hash, totp_secret, totp_last_step, disabled, signing_key, \
    created_at_ms, updated_at_ms, created_by";
const SESSION_COLUMNS: &str =
    "id, user_name, refresh_hash, created_at_ms, refreshed_at_ms, expires_at_ms, revoked_at_ms";
const TOKEN_COLUMNS: &str =
    "id, secret_hash, user_name, name, role, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms";

/// The settings key of the session-signing secret.
const JWT_SECRET_KEY: &str = "jwt_secret";

fn role_from(row: &AnyRow, column: &str) -> Result<Role, DbError> {
    let raw: String = row.try_get(column)?;
    raw.parse().map_err(|_| DbError::Unreadable { what: "role", value: raw })
}

fn user_from_row(row: &AnyRow) -> Result<UserRow, DbError> {
    let scope: String = row.try_get("scope_json")?;
    Ok(UserRow {
        name: row.try_get("name")?,
        role: role_from(row, "role")?,
        scope: serde_json::from_str(&scope).map_err(|_| DbError::Unreadable { what: "group scope", value: scope })?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        signing_key: row.try_get("signing_key")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        created_by: row.try_get("created_by")?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<SessionRow, DbError> {
    Ok(SessionRow {
        id: row.try_get("id")?,
        user_name: row.try_get("user_name")?,
        refresh_hash: row.try_get("refresh_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        refreshed_at_ms: row.try_get("refreshed_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<ApiTokenRow, DbError> {
    Ok(ApiTokenRow {
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        user_name: row.try_get("user_name")?,
        name: row.try_get("name")?,
        role: role_from(row, "role")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

fn scope_json(scope: &GroupScope) -> String {
    serde_json::to_string(scope).unwrap_or_else(|_| "\"fleet\"".to_owned())
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Db {
    // ---- Users ----------------------------------------------------------------------------------------------------

    pub async fn count_users(&self) -> Result<i64, DbError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
    }

    /// Stores a new user; false if the name is taken.
    pub async fn insert_user(&self, user: &NewUser) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = Self::insert_user_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn insert_user_in(tx: &mut Tx, user: &NewUser) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            "INSERT INTO users (name, role, scope_json, password_hash, disabled, created_at_ms, updated_at_ms,
                created_by)
             VALUES ($1, $2, $3, $4, 0, $5, $5, $6)
             ON CONFLICT (name) DO NOTHING RETURNING name",
        )
        .bind(user.name.as_str())
        .bind(user.role.as_str())
        .bind(scope_json(&user.scope))
        .bind(user.password_hash.as_str())
        .bind(user.now_ms)
        .bind(user.created_by.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(inserted.is_some())
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// One page of the users by name, after `after`.
    pub async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<Paged<UserRow, String>, DbError> {
        let rows =
            sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name > $1 ORDER BY name LIMIT {}", limit + 1))
                .bind(after.unwrap_or(""))
                .fetch_all(&self.pool)
                .await?;
        let users: Vec<UserRow> = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
        Ok(Paged::of(users, limit, |u| u.name.clone()))
    }

    /// Makes the first admin with a setup token whose secret hashes to `setup_hash`, in one transaction: the token
    /// must be stored and no user may exist; every setup token is spent by it. Two backends doing this at once with
    /// two tokens make one admin: the second finds its token deleted by the first.
    pub async fn create_first_admin(&self, setup_hash: &str, user: &NewUser) -> Result<Setup, DbError> {
        let mut tx = self.begin_read_write().await?;
        let spent = sqlx::query("DELETE FROM setup_tokens RETURNING secret_hash").fetch_all(&mut *tx).await?;
        let ours = spent.iter().any(|row| row.try_get::<String, _>("secret_hash").is_ok_and(|h| h == setup_hash));
        let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&mut *tx).await?.try_get("n")?;
        if !ours || users > 0 {
            // Spent or not, a token that did not make the admin stays as it was.
            tx.rollback().await?;
            return Ok(Setup::Refused);
        }
        if !Self::insert_user_in(&mut tx, user).await? {
            tx.rollback().await?;
            return Ok(Setup::Refused);
        }
        tx.commit().await?;
        Ok(self.user(&user.name).await?.map_or(Setup::Refused, Setup::Created))
    }

    /// Locks the enabled admins' rows (PostgreSQL; SQLite's write lock covers everything) and counts them, so two
    /// changes at once cannot each think the other admin stays.
    async fn enabled_admins(&self, tx: &mut Tx) -> Result<u64, DbError> {
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT name FROM users WHERE role = 'admin' AND disabled = 0",
            Dialect::Postgres => "SELECT name FROM users WHERE role = 'admin' AND disabled = 0 FOR UPDATE",
        };
        Ok(sqlx::query(sql).fetch_all(&mut **tx).await?.len() as u64)
    }

    async fn user_in(tx: &mut Tx, name: &str) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Changes a user's role, scope or state (what is `None` stays); a disabled user's sessions end. Refused when it
    /// would leave no enabled admin.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        scope: Option<&GroupScope>,
        disabled: Option<bool>,
        now_ms: i64,
    ) -> Result<UserChange, DbError> {
        let mut tx = self.begin_read_write().await?;
        let admins = self.enabled_admins(&mut tx).await?;
        let Some(current) = Self::user_in(&mut tx, name).await? else { return Ok(UserChange::NotFound) };
        let after = UserRow {
            role: role.unwrap_or(current.role),
            scope: scope.cloned().unwrap_or_else(|| current.scope.clone()),
            disabled: disabled.unwrap_or(current.disabled),
            ..current.clone()
        };
        if accounts::removes_last_admin(admins, current.is_enabled_admin(), after.is_enabled_admin()) {
            return Ok(UserChange::LastAdmin);
        }
        sqlx::query("UPDATE users SET role = $2, scope_json = $3, disabled = $4, updated_at_ms = $5 WHERE name = $1")
            .bind(name)
            .bind(after.role.as_str())
            .bind(scope_json(&after.scope))
            .bind(i64::from(after.disabled))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if after.disabled && !current.disabled {
            Self::end_sessions(&mut tx, name, None, now_ms).await?;
        }
        tx.commit().await?;
        Ok(self.user(name).await?.map_or(UserChange::NotFound, UserChange::Done))
    }

    /// Removes a user with its sessions and API tokens. Refused when it is the last enabled admin.
    pub async fn delete_user(&self, name: &str) -> Result<UserChange, DbError> {
        let mut tx = self.begin_read_write().await?;
        let admins = self.enabled_admins(&mut tx).await?;
        let Some(current) = Self::user_in(&mut tx, name).await? else { return Ok(UserChange::NotFound) };
        if accounts::removes_last_admin(admins, current.is_enabled_admin(), false) {
            return Ok(UserChange::LastAdmin);
        }
        for sql in [
            "DELETE FROM user_sessions WHERE user_name = $1",
            "DELETE FROM api_tokens WHERE user_name = $1",
            "DELETE FROM users WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(UserChange::Done(current))
    }

    /// Sets a user's password hash and ends its sessions (but `keep`, the one that changed it); without `keep` (an
    /// admin's reset) its API tokens are revoked too. False if no such user.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_read_write().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $2, updated_at_ms = $3 WHERE name = $1")
            .bind(name)
            .bind(password_hash)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        Self::end_sessions(&mut tx, name, keep, now_ms).await?;
        if keep.is_none() {
            // An admin's reset answers a compromised account: the API tokens a stolen session made end with it.
            sqlx::query("UPDATE api_tokens SET revoked_at_ms = $2 WHERE user_name = $1 AND revoked_at_ms IS NULL")
                .bind(name)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn end_sessions(tx: &mut Tx, name: &str, keep: Option<&str>, now_ms: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE user_sessions SET revoked_at_ms = $2
             WHERE user_name = $1 AND revoked_at_ms IS NULL AND id <> $3",
        )
        .bind(name)
        .bind(now_ms)
        .bind(keep.unwrap_or(""))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Sets (or with `None` clears) a user's TOTP secret; false if no such user.
    pub async fn set_totp(&self, name: &str, secret: Option<&str>, now_ms: i64) -> Result<bool, DbError> {
        let done =
            sqlx::query("UPDATE users SET totp_secret = $2, totp_last_step = NULL, updated_at_ms = $3 WHERE name = $1")
                .bind(name)
                .bind(secret)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that the TOTP code of `step` was used; false if it, or a later one, was used already (a replay).
    pub async fn use_totp_step(&self, name: &str, step: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $2 WHERE name = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(name)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets (or with `None` clears) a user's registered signing key; false if no such user.
    pub async fn set_signing_key(&self, name: &str, key: Option<&str>, now_ms: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE users SET signing_key = $2, updated_at_ms = $3 WHERE name = $1")
            .bind(name)
            .bind(key)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- Settings and setup tokens --------------------------------------------------------------------------------

    /// The session-signing secret: the stored one, or `candidate` stored now if there is none. The first backend to
    /// start on a database writes it; every other reads the same.
    pub async fn jwt_secret_or(&self, candidate: &str) -> Result<String, DbError> {
        sqlx::query("INSERT INTO backend_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(JWT_SECRET_KEY)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM backend_settings WHERE key = $1")
            .bind(JWT_SECRET_KEY)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Stores a setup token's hash.
    pub async fn add_setup_token(&self, secret_hash: &str, now_ms: i64) -> Result<(), DbError> {
        sqlx::query("INSERT INTO setup_tokens (secret_hash, created_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(secret_hash)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a setup token with this hash is stored (read before the work of a setup is done).
    pub async fn setup_token_known(&self, secret_hash: &str) -> Result<bool, DbError> {
        Ok(sqlx::query("SELECT 1 FROM setup_tokens WHERE secret_hash = $1")
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Deletes every setup token (once users exist, none is any use).
    pub async fn clear_setup_tokens(&self) -> Result<u64, DbError> {
        Ok(sqlx::query("DELETE FROM setup_tokens").execute(&self.pool).await?.rows_affected())
    }

    // ---- Sessions -------------------------------------------------------------------------------------------------

    /// Stores a new session if its user still exists (a session left behind for a removed user would serve whoever
    /// is later created with that name); false if not.
    pub async fn insert_session(&self, session: &SessionRow) -> Result<bool, DbError> {
        let done = sqlx::query(&format!(
            "INSERT INTO user_sessions ({SESSION_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM users WHERE name = $2)"
        ))
        .bind(session.id.as_str())
        .bind(session.user_name.as_str())
        .bind(session.refresh_hash.as_str())
        .bind(session.created_at_ms)
        .bind(session.refreshed_at_ms)
        .bind(session.expires_at_ms)
        .bind(session.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A session with its user (none if either is gone): what every request with a session token checks.
    pub async fn session_with_user(&self, id: &str) -> Result<Option<(SessionRow, UserRow)>, DbError> {
        let session = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(session) = session.as_ref().map(session_from_row).transpose()? else { return Ok(None) };
        Ok(self.user(&session.user_name).await?.map(|user| (session, user)))
    }

    /// Replaces a live session's refresh hash `old` by `new` (compare-and-set: of two refreshes with the same token,
    /// one wins); false if the session is gone, revoked, expired or the token is not its newest.
    pub async fn rotate_refresh(&self, id: &str, old: &str, new: &str, now_ms: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE user_sessions SET refresh_hash = $3, refreshed_at_ms = $4
             WHERE id = $1 AND refresh_hash = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $4",
        )
        .bind(id)
        .bind(old)
        .bind(new)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a session; false if it had ended already or never was.
    pub async fn revoke_session(&self, id: &str, now_ms: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE user_sessions SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes sessions that ended more than a day before `now_ms` (they matter to nobody any more).
    pub async fn prune_sessions(&self, now_ms: i64) -> Result<u64, DbError> {
        let before = now_ms - 24 * 3600 * 1000;
        let done = sqlx::query(
            "DELETE FROM user_sessions WHERE expires_at_ms < $1 OR (revoked_at_ms IS NOT NULL AND revoked_at_ms < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    // ---- API tokens -----------------------------------------------------------------------------------------------

    /// Stores a new API token, unless its owner has too many live ones already.
    pub async fn insert_api_token(&self, token: &ApiTokenRow, now_ms: i64) -> Result<TokenInsert, DbError> {
        let mut tx = self.begin_read_write().await?;
        // The owner's row is locked first (PostgreSQL), so two creations at once count each other.
        let lock = match self.dialect {
            Dialect::Sqlite => "SELECT name FROM users WHERE name = $1",
            Dialect::Postgres => "SELECT name FROM users WHERE name = $1 FOR UPDATE",
        };
        if sqlx::query(lock).bind(token.user_name.as_str()).fetch_optional(&mut *tx).await?.is_none() {
            // A token for a removed user would serve whoever is later created with that name.
            return Ok(TokenInsert::NoUser);
        }
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE user_name = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2",
        )
        .bind(token.user_name.as_str())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live >= accounts::MAX_API_TOKENS_PER_USER as i64 {
            return Ok(TokenInsert::TooMany);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)
             ON CONFLICT (id) DO NOTHING RETURNING id"
        ))
        .bind(token.id.as_str())
        .bind(token.secret_hash.as_str())
        .bind(token.user_name.as_str())
        .bind(token.name.as_str())
        .bind(token.role.as_str())
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Ok(TokenInsert::Taken);
        }
        tx.commit().await?;
        Ok(TokenInsert::Done)
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// An API token with its owner (none if either is gone): what every request with an API token checks.
    pub async fn api_token_with_user(&self, id: &str) -> Result<Option<(ApiTokenRow, UserRow)>, DbError> {
        let Some(token) = self.api_token(id).await? else { return Ok(None) };
        Ok(self.user(&token.user_name).await?.map(|user| (token, user)))
    }

    /// Records that a token was used at `now_ms`.
    pub async fn touch_api_token(&self, id: &str, now_ms: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE api_tokens SET last_used_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One page of API tokens (of `user`, or everyone's), newest first: (created_at, id) descending, before `before`.
    pub async fn list_api_tokens(
        &self,
        user: Option<&str>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Paged<ApiTokenRow, (i64, String)>, DbError> {
        let mut sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ($1 = '' OR user_name = $1)");
        if before.is_some() {
            sql.push_str(" AND (created_at_ms, id) < ($2, $3)");
        }
        sql.push_str(&format!(" ORDER BY created_at_ms DESC, id DESC LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql).bind(user.unwrap_or(""));
        if let Some((at, id)) = &before {
            query = query.bind(*at).bind(id.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let tokens: Vec<ApiTokenRow> = rows.iter().map(token_from_row).collect::<Result<_, _>>()?;
        Ok(Paged::of(tokens, limit, |t| (t.created_at_ms, t.id.clone())))
    }

    /// Revokes an API token (of `user` only, when given); `None` if there is no such token, else the token and
    /// whether it was revoked now.
    pub async fn revoke_api_token(
        &self,
        id: &str,
        user: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<(ApiTokenRow, bool)>, DbError> {
        let Some(token) = self.api_token(id).await? else { return Ok(None) };
        if user.is_some_and(|user| user != token.user_name) {
            return Ok(None);
        }
        let done = sqlx::query("UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(self.api_token(id).await?.map(|token| (token, done.rows_affected() > 0)))
    }
}
