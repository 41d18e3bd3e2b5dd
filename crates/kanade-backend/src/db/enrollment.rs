//! Enrolment's state in SQL: the tokens operators create (`enroll_tokens`, only a hash of each secret), which PC
//! used which token (`enroll_token_uses`), each PC's credential (`agent_credentials`) and the revoked keys
//! (`revoked_agent_keys`). An enrolment or renewal reads its facts and records what `crate::enrollment` decides in
//! one transaction; every change of a credential's state is a compare-and-set on the state it expects, and a token's
//! use is taken with `uses_left > 0` in the same transaction that records it, so backends sharing one PostgreSQL
//! database never spend a use twice or enrol one PC twice at once.

use chrono::{DateTime, Utc};
use kanade_shared::enroll::{EnrollRequest, RenewRequest, Revoked, Token, TokenRefusal, TokenState};
use kanade_shared::{GroupName, PcId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Paged, strip_nul};
use crate::enrollment::{self, CredentialStatus, EnrolFacts, EnrolRefusal, Enrolment, Held, RenewRefusal, StoredToken};

/// PCs a token's view lists.
pub const ENROLLED_SHOWN: usize = 100;
/// The longest hostname or OS name kept from a request (the agent sends what its machine says).
const MAX_REPORTED_CHARS: usize = 255;

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub secret_hash: String,
    pub groups: Vec<GroupName>,
    pub uses: u32,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A stored token (never its secret's hash, which only an enrolment reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub groups: Vec<String>,
    pub uses: u32,
    pub uses_left: u32,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
    /// The PCs it enrolled, first first (up to [`ENROLLED_SHOWN`]).
    pub enrolled: Vec<String>,
}

/// A PC's credential as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub pc_id: String,
    pub public_key: String,
    pub groups: Vec<String>,
    pub status: CredentialStatus,
    pub token_id: String,
    pub hostname: String,
    pub os: String,
    pub requested_at_ms: i64,
    pub enrolled_at_ms: Option<i64>,
    pub issued_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A credential about to be issued: now, and when it expires (both epoch milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Issue {
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// What became of an enrolment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// Recorded (or recorded before) as active with the asking key: sign a credential with these groups.
    /// `first`: the token was used now.
    Issue { groups: Vec<GroupName>, first: bool },
    /// Waiting for approval. `first`: recorded (and the token used) now.
    Pending { first: bool },
    /// Nothing changed. `known`: the PC had asked before.
    Refused { refusal: EnrolRefusal, known: bool },
    /// Another enrolment of the same PC, or the token's last use, was recorded at the same moment: nothing
    /// changed; asking again is decided against what is stored now.
    Raced,
}

/// What became of an operator's change to a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Done: the row as it is now.
    Done(CredentialRow),
    /// Nothing to do: it was so already (a revocation of a revoked PC).
    Already(CredentialRow),
    /// Not possible in the state the row is in.
    Refused(CredentialRow),
    /// No PC with this id has asked to enrol.
    NotFound,
}

const TOKEN_COLUMNS: &str = "id, groups_json, uses, uses_left, expires_at_ms, created_at_ms, created_by, revoked_at_ms";

const CREDENTIAL_COLUMNS: &str = "pc_id, public_key, groups_json, status, token_id, hostname, os, requested_at_ms, \
    enrolled_at_ms, issued_at_ms, expires_at_ms, revoked_at_ms";

fn groups_json(groups: &[GroupName]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".to_owned())
}

fn groups_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Stored names that are no longer valid group names are left out (they cannot be a credential's tags).
fn valid_groups(names: &[String]) -> Vec<GroupName> {
    names.iter().filter_map(|name| GroupName::new(name.as_str()).ok()).collect()
}

fn count(row: &AnyRow, column: &str) -> Result<u32, DbError> {
    Ok(u32::try_from(row.try_get::<i64, _>(column)?.max(0)).unwrap_or(u32::MAX))
}

fn token_from_row(row: &AnyRow) -> Result<TokenRow, DbError> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        groups: groups_from(&row.try_get::<String, _>("groups_json")?),
        uses: count(row, "uses")?,
        uses_left: count(row, "uses_left")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        enrolled: Vec::new(),
    })
}

fn credential_from_row(row: &AnyRow) -> Result<CredentialRow, DbError> {
    let status: String = row.try_get("status")?;
    Ok(CredentialRow {
        pc_id: row.try_get("pc_id")?,
        public_key: row.try_get("public_key")?,
        groups: groups_from(&row.try_get::<String, _>("groups_json")?),
        status: CredentialStatus::parse(&status)
            .ok_or(DbError::Unreadable { what: "credential status", value: status })?,
        token_id: row.try_get("token_id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        requested_at_ms: row.try_get("requested_at_ms")?,
        enrolled_at_ms: row.try_get("enrolled_at_ms")?,
        issued_at_ms: row.try_get("issued_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

impl CredentialRow {
    /// What the decisions need of it.
    fn held(&self) -> Held {
        Held {
            status: self.status,
            public_key: self.public_key.clone(),
            token_id: self.token_id.clone(),
            groups: valid_groups(&self.groups),
        }
    }
}

/// What an agent reported about itself, bounded and without NUL (PostgreSQL refuses it in text).
fn reported(text: &str) -> String {
    strip_nul(&text.chars().take(MAX_REPORTED_CHARS).collect::<String>())
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Unix seconds, rounded up: a revocation at `ms` covers every credential issued within that second.
fn seconds_up(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

impl Db {
    /// Stores a new token; false if its id is taken (a new random id is in order then).
    pub async fn insert_enroll_token(&self, token: &NewToken) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            "INSERT INTO enroll_tokens (id, secret_hash, groups_json, uses, uses_left, expires_at_ms, created_at_ms,
                created_by)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(token.id.as_str())
        .bind(token.secret_hash.as_str())
        .bind(groups_json(&token.groups))
        .bind(i64::from(token.uses))
        .bind(token.expires_at.timestamp_millis())
        .bind(token.created_at.timestamp_millis())
        .bind(token.created_by.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    /// One token with the PCs it enrolled.
    pub async fn enroll_token(&self, id: &str) -> Result<Option<TokenRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM enroll_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut tokens = vec![token_from_row(&row)?];
        self.attach_enrolled(&mut tokens).await?;
        Ok(tokens.pop())
    }

    /// One page of the tokens, newest first: (created_at, id) descending, starting after `before`.
    pub async fn list_enroll_tokens(
        &self,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Paged<TokenRow, (i64, String)>, DbError> {
        let rows = match &before {
            Some((at, id)) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM enroll_tokens WHERE (created_at_ms, id) < ($1, $2)
                     ORDER BY created_at_ms DESC, id DESC LIMIT {}",
                    limit + 1
                ))
                .bind(*at)
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM enroll_tokens ORDER BY created_at_ms DESC, id DESC LIMIT {}",
                    limit + 1
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        let tokens: Vec<TokenRow> = rows.iter().map(token_from_row).collect::<Result<_, _>>()?;
        let mut page = Paged::of(tokens, limit, |t| (t.created_at_ms, t.id.clone()));
        self.attach_enrolled(&mut page.items).await?;
        Ok(page)
    }

    /// Fills in the PCs each token enrolled (one query for all of them).
    async fn attach_enrolled(&self, tokens: &mut [TokenRow]) -> Result<(), DbError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = (1..=tokens.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT token_id, pc_id FROM (
                SELECT token_id, pc_id, used_at_ms,
                    ROW_NUMBER() OVER (PARTITION BY token_id ORDER BY used_at_ms, pc_id) AS n
                FROM enroll_token_uses WHERE token_id IN ({})) u
             WHERE n <= {ENROLLED_SHOWN} ORDER BY token_id, used_at_ms, pc_id",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for token in tokens.iter() {
            query = query.bind(token.id.clone());
        }
        for row in query.fetch_all(&self.pool).await? {
            let token_id: String = row.try_get("token_id")?;
            let pc: String = row.try_get("pc_id")?;
            if let Some(token) = tokens.iter_mut().find(|t| t.id == token_id) {
                token.enrolled.push(pc);
            }
        }
        Ok(())
    }

    /// Revokes a token: it enrols nothing more (PCs it enrolled stay enrolled). `None` if there is no such token;
    /// else the token and whether it was revoked now.
    pub async fn revoke_enroll_token(&self, id: &str, now: DateTime<Utc>) -> Result<Option<(TokenRow, bool)>, DbError> {
        let done = sqlx::query("UPDATE enroll_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL")
            .bind(id)
            .bind(now.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(self.enroll_token(id).await?.map(|token| (token, done.rows_affected() > 0)))
    }

    /// Decides an enrolment request (`crate::enrollment::decide_enrolment`) on what is stored and records the
    /// decision, in one transaction: a first enrolment takes one of the token's uses, records that this token
    /// enrolled this PC, and records the PC as pending or as active with a credential issued at `issue`; asking
    /// again with the same key records the new issue only.
    pub async fn enrol(
        &self,
        request: &EnrollRequest,
        presented: &Token,
        approve: bool,
        issue: Issue,
    ) -> Result<Enrolled, DbError> {
        // The first rule, on a plain read: a guessed or unknown token never takes the write lock, so a flood of
        // them (the bootstrap credential is not a secret) cannot hold up the real ones.
        let hash = sqlx::query("SELECT secret_hash FROM enroll_tokens WHERE id = $1")
            .bind(presented.id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<String, _>(0))
            .transpose()?;
        if !hash.is_some_and(|hash| presented.matches(&hash)) {
            let known = self.agent_credential(&request.pc_id).await?.is_some();
            return Ok(Enrolled::Refused { refusal: TokenRefusal::Unknown.into(), known });
        }
        let mut tx = self.begin_read_write().await?;
        let pc = request.pc_id.as_str();
        let token = Self::stored_token(&mut tx, &presented.id, &request.pc_id).await?;
        let held = Self::credential_in(&mut tx, pc).await?;
        let key = request.public_key.as_str();
        let key_revoked = sqlx::query("SELECT 1 FROM revoked_agent_keys WHERE public_key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let key_elsewhere = sqlx::query("SELECT 1 FROM agent_credentials WHERE public_key = $1 AND pc_id <> $2")
            .bind(key)
            .bind(pc)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let held_now = held.as_ref().map(CredentialRow::held);
        let facts = EnrolFacts {
            request,
            presented,
            token: token.as_ref(),
            held: held_now.as_ref(),
            key_revoked,
            key_elsewhere,
            approve,
            now_ms: issue.now_ms,
        };
        let known = held.is_some();
        let outcome = match enrollment::decide_enrolment(&facts) {
            Enrolment::Refuse(refusal) => return Ok(Enrolled::Refused { refusal, known }),
            Enrolment::StillPending => return Ok(Enrolled::Pending { first: false }),
            Enrolment::IssueAgain => {
                if !Self::record_issue(&mut tx, pc, key, issue).await? {
                    return Ok(Enrolled::Raced);
                }
                let groups = held.as_ref().map(|h| valid_groups(&h.groups)).unwrap_or_default();
                Enrolled::Issue { groups, first: false }
            }
            Enrolment::Enrol { groups, pending, replaces } => {
                let token_id = presented.id.as_str();
                let used = sqlx::query(
                    "UPDATE enroll_tokens SET uses_left = uses_left - 1
                     WHERE id = $1 AND uses_left > 0 AND revoked_at_ms IS NULL AND expires_at_ms > $2",
                )
                .bind(token_id)
                .bind(issue.now_ms)
                .execute(&mut *tx)
                .await?;
                if used.rows_affected() == 0 {
                    // Its last use went to another PC since it was read.
                    return Ok(Enrolled::Refused { refusal: TokenRefusal::UsedUp.into(), known });
                }
                let recorded = sqlx::query(
                    "INSERT INTO enroll_token_uses (token_id, pc_id, used_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (token_id, pc_id) DO NOTHING RETURNING token_id",
                )
                .bind(token_id)
                .bind(pc)
                .bind(issue.now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                if recorded.is_none() {
                    return Ok(Enrolled::Raced);
                }
                let record = NewCredential { request, token_id, groups: &groups, pending, issue };
                if !Self::record_credential(&mut tx, &record, replaces.as_deref()).await? {
                    return Ok(Enrolled::Raced);
                }
                if pending { Enrolled::Pending { first: true } } else { Enrolled::Issue { groups, first: true } }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// The stored token `id` as the decision needs it, with whether it enrolled `pc` before.
    async fn stored_token(tx: &mut Tx, id: &str, pc: &PcId) -> Result<Option<StoredToken>, DbError> {
        let row = sqlx::query(
            "SELECT id, secret_hash, groups_json, uses_left, expires_at_ms, revoked_at_ms FROM enroll_tokens
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let used_by_pc = sqlx::query("SELECT 1 FROM enroll_token_uses WHERE token_id = $1 AND pc_id = $2")
            .bind(id)
            .bind(pc.as_str())
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        Ok(Some(StoredToken {
            id: row.try_get("id")?,
            secret_hash: row.try_get("secret_hash")?,
            groups: valid_groups(&groups_from(&row.try_get::<String, _>("groups_json")?)),
            state: TokenState {
                expires_at_ms: row.try_get("expires_at_ms")?,
                uses_left: count(&row, "uses_left")?,
                revoked: row.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some(),
                used_by: if used_by_pc { vec![pc.clone()] } else { Vec::new() },
            },
        }))
    }

    async fn credential_in(tx: &mut Tx, pc: &str) -> Result<Option<CredentialRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM agent_credentials WHERE pc_id = $1"))
            .bind(pc)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// Records a credential issued to the active `pc` with `key`; false if it is not active with that key (any
    /// more). The expiry kept is the latest of all issued, so a revocation outlasts every one of them.
    async fn record_issue(tx: &mut Tx, pc: &str, key: &str, issue: Issue) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE agent_credentials SET issued_at_ms = $3,
                expires_at_ms = CASE WHEN expires_at_ms IS NULL OR expires_at_ms < $4 THEN $4 ELSE expires_at_ms END
             WHERE pc_id = $1 AND public_key = $2 AND status = 'active'",
        )
        .bind(pc)
        .bind(key)
        .bind(issue.now_ms)
        .bind(issue.expires_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a PC's first enrolment, or a revoked PC's new one in place of its record (`replaces`: the revoked
    /// key); false if the record is not what the decision saw (another enrolment of it was recorded meanwhile).
    async fn record_credential(
        tx: &mut Tx,
        record: &NewCredential<'_>,
        replaces: Option<&str>,
    ) -> Result<bool, DbError> {
        let request = record.request;
        let (status, enrolled, issued, expires) = if record.pending {
            (CredentialStatus::Pending, None, None, None)
        } else {
            let issue = record.issue;
            (CredentialStatus::Active, Some(issue.now_ms), Some(issue.now_ms), Some(issue.expires_at_ms))
        };
        let sql = match replaces {
            None => {
                "INSERT INTO agent_credentials (pc_id, public_key, groups_json, status, token_id, hostname, os,
                    requested_at_ms, enrolled_at_ms, issued_at_ms, expires_at_ms, revoked_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)
                 ON CONFLICT (pc_id) DO NOTHING RETURNING pc_id"
            }
            Some(_) => {
                "UPDATE agent_credentials SET public_key = $2, groups_json = $3, status = $4, token_id = $5,
                    hostname = $6, os = $7, requested_at_ms = $8, enrolled_at_ms = $9, issued_at_ms = $10,
                    expires_at_ms = $11, revoked_at_ms = NULL
                 WHERE pc_id = $1 AND status = 'revoked' AND public_key = $12 RETURNING pc_id"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(request.pc_id.as_str())
            .bind(request.public_key.as_str())
            .bind(groups_json(record.groups))
            .bind(status.as_str())
            .bind(record.token_id)
            .bind(reported(&request.hostname))
            .bind(reported(&request.os))
            .bind(record.issue.now_ms)
            .bind(enrolled)
            .bind(issued)
            .bind(expires);
        if let Some(old) = replaces {
            query = query.bind(old);
        }
        Ok(query.fetch_optional(&mut **tx).await?.is_some())
    }

    /// Decides a renewal (`crate::enrollment::decide_renewal`) on the stored credential and records the new issue
    /// in one transaction. `Ok(Err(..))` is a refusal, with whether the PC had asked to enrol before.
    pub async fn renew(
        &self,
        subject_pc: &str,
        request: &RenewRequest,
        issue: Issue,
    ) -> Result<Result<Vec<GroupName>, (RenewRefusal, bool)>, DbError> {
        let mut tx = self.begin_read_write().await?;
        let pc = request.pc_id.as_str();
        let held = Self::credential_in(&mut tx, pc).await?;
        let known = held.is_some();
        let held = held.as_ref().map(CredentialRow::held);
        let groups = match enrollment::decide_renewal(subject_pc, request, held.as_ref()) {
            Ok(groups) => groups,
            Err(refusal) => return Ok(Err((refusal, known))),
        };
        if !Self::record_issue(&mut tx, pc, &request.public_key, issue).await? {
            return Ok(Err((RenewRefusal::Revoked, known)));
        }
        tx.commit().await?;
        Ok(Ok(groups))
    }

    /// One PC's credential.
    pub async fn agent_credential(&self, pc: &PcId) -> Result<Option<CredentialRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM agent_credentials WHERE pc_id = $1"))
            .bind(pc.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// One page of the credentials by pc id, after `after`, in `status` if given.
    pub async fn list_agent_credentials(
        &self,
        status: Option<CredentialStatus>,
        after: Option<&PcId>,
        limit: u32,
    ) -> Result<Paged<CredentialRow, String>, DbError> {
        let mut sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM agent_credentials WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(status) = status {
            binds.push(status.as_str().to_owned());
            sql.push_str(&format!(" AND status = ${}", binds.len()));
        }
        if let Some(after) = after {
            binds.push(after.to_string());
            sql.push_str(&format!(" AND pc_id > ${}", binds.len()));
        }
        sql.push_str(&format!(" ORDER BY pc_id LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows: Vec<CredentialRow> = rows.iter().map(credential_from_row).collect::<Result<_, _>>()?;
        Ok(Paged::of(rows, limit, |c| c.pc_id.clone()))
    }

    /// Approves a pending enrolment: the PC is active from now, and its next request is issued a credential.
    pub async fn approve_enrollment(&self, pc: &PcId, now: DateTime<Utc>) -> Result<Changed, DbError> {
        let row = sqlx::query(&format!(
            "UPDATE agent_credentials SET status = 'active', enrolled_at_ms = $2
             WHERE pc_id = $1 AND status = 'pending' RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(pc.as_str())
        .bind(now.timestamp_millis())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Changed::Done(credential_from_row(&row)?)),
            None => Ok(self.agent_credential(pc).await?.map_or(Changed::NotFound, Changed::Refused)),
        }
    }

    /// Revokes a PC's credential: it renews no more, and a credential issued to its key is listed in the account's
    /// revocations (as of now, or of its latest issue if a replica's clock put that later) until it expires.
    pub async fn revoke_agent_credential(&self, pc: &PcId, now: DateTime<Utc>) -> Result<Changed, DbError> {
        let mut tx = self.begin_read_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE agent_credentials SET status = 'revoked', revoked_at_ms = $2
             WHERE pc_id = $1 AND status <> 'revoked' RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(pc.as_str())
        .bind(now.timestamp_millis())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            return Ok(self.agent_credential(pc).await?.map_or(Changed::NotFound, Changed::Already));
        };
        let credential = credential_from_row(&row)?;
        if let Some(expires_at_ms) = credential.expires_at_ms {
            let revoked_at_ms =
                credential.issued_at_ms.map_or(now.timestamp_millis(), |i| i.max(now.timestamp_millis()));
            sqlx::query(
                "INSERT INTO revoked_agent_keys (public_key, pc_id, revoked_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (public_key) DO UPDATE SET pc_id = excluded.pc_id,
                    revoked_at_ms = excluded.revoked_at_ms, expires_at_ms = excluded.expires_at_ms",
            )
            .bind(credential.public_key.as_str())
            .bind(pc.as_str())
            .bind(revoked_at_ms)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Changed::Done(credential))
    }

    /// Sets the groups a pending or active PC's credential carries; a revoked one's is refused.
    pub async fn set_credential_groups(&self, pc: &PcId, groups: &[GroupName]) -> Result<Changed, DbError> {
        let row = sqlx::query(&format!(
            "UPDATE agent_credentials SET groups_json = $2 WHERE pc_id = $1 AND status <> 'revoked'
             RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(pc.as_str())
        .bind(groups_json(groups))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Changed::Done(credential_from_row(&row)?)),
            None => Ok(self.agent_credential(pc).await?.map_or(Changed::NotFound, Changed::Refused)),
        }
    }

    /// Every revoked key, in unix seconds, for the account's revocation list (`enroll::account_revocations` leaves
    /// out those whose credentials have expired).
    pub async fn revoked_agent_keys(&self) -> Result<Vec<Revoked>, DbError> {
        let rows = sqlx::query("SELECT public_key, revoked_at_ms, expires_at_ms FROM revoked_agent_keys")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Revoked {
                    public_key: row.try_get("public_key")?,
                    revoked_at: seconds_up(row.try_get("revoked_at_ms")?),
                    expires_at: seconds_up(row.try_get("expires_at_ms")?),
                })
            })
            .collect()
    }
}

/// A PC's record as a first enrolment writes it.
struct NewCredential<'a> {
    request: &'a EnrollRequest,
    token_id: &'a str,
    groups: &'a [GroupName],
    pending: bool,
    issue: Issue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_round_up_to_the_second_they_cover() {
        assert_eq!(seconds_up(1_000), 1);
        assert_eq!(seconds_up(1_001), 2);
        assert_eq!(seconds_up(0), 0);
        assert_eq!(seconds_up(-1), 0);
    }

    #[test]
    fn reported_text_is_bounded_and_without_nul() {
        assert_eq!(reported("a\0b"), "a\u{fffd}b");
        assert_eq!(reported(&"x".repeat(1000)).chars().count(), MAX_REPORTED_CHARS);
    }
}
