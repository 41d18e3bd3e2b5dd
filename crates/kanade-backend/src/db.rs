//! The read model in SQL: SQLite by default, PostgreSQL for larger fleets, through one `sqlx::Any` pool and SQL
//! both understand. Projectors call the `upsert_*` functions; the HTTP API only reads.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kanade_shared::access::GroupScope;
use kanade_shared::api::{AgentRow, AuditChainRow, AuditRow, ResultRow, TargetRow};
use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, RunHeld, RunStarted};
use kanade_shared::{ExecId, GroupName, JobId, PcId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::enrollment::CredentialStatus;

mod accounts;
mod enrollment;
mod executions;
mod facts;
mod inventory;
mod outputs;
mod perf;
mod schedules;
pub mod sqlite_file;
mod timeline;

pub use accounts::{ApiTokenRow, NewUser, SessionRow, Setup, TokenInsert, UserChange, UserRow};
pub use enrollment::{Changed, CredentialRow, ENROLLED_SHOWN, Enrolled, Issue, NewToken, TokenRow};
pub use executions::{
    ExecStatus, ExecutionFilter, ExecutionRow, NewExecution, NewWave, StatusFilter, TargetFilter, WaveRow, WaveState,
};
pub use outputs::StoredOutput;
pub use perf::{MAX_HISTORY_ROWS, StoredRollup};
pub use schedules::{FireRow, NewFire};

pub use facts::NewFacts;
pub use inventory::{
    CHANGE_RETENTION, ChangeFilter, HardwareFilter, InventoryData, NameMatch, NewInventory, SUMMARY_FIELDS,
    SoftwareFilter, name_key,
};
pub use timeline::{AgentCounts, EventFilter, NewAgentEvent, TIMELINE_RETENTION};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `VALUES` rows of a many-row statement: `rows` groups of `cols` parameters. SQLite gets anonymous `?`,
    /// bound by position: it resolves a numbered `$N` by scanning the statement's parameter list
    /// (`sqlite3_bind_parameter_name`), which made binding a 1,000-parameter statement quadratic (12% of the
    /// backend's CPU in a 10,000-agent fire, by perf). PostgreSQL gets `$1, $2, ...`.
    pub fn rows(self, rows: usize, cols: usize) -> String {
        let row = |r: usize| match self {
            Self::Sqlite => format!("({})", vec!["?"; cols].join(", ")),
            Self::Postgres => {
                format!("({})", (1..=cols).map(|c| format!("${}", r * cols + c)).collect::<Vec<_>>().join(", "))
            }
        };
        (0..rows).map(row).collect::<Vec<_>>().join(", ")
    }
}

/// Changes to executions' tallies, summed per (exec, wave, state) before they are written.
#[derive(Debug, Default)]
pub(crate) struct Tallies(std::collections::BTreeMap<(String, i64, String), i64>);

impl Tallies {
    pub(crate) fn add(&mut self, exec: &str, wave: i64, state: &str, n: i64) {
        *self.0.entry((exec.to_owned(), wave, state.to_owned())).or_default() += n;
    }
}

/// What resolving a fire's targets needs of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownAgent {
    pub pc_id: String,
    pub groups: Vec<String>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url `{0}`: use sqlite://... or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot open database")]
    Open(#[source] sqlx::Error),
    #[error(transparent)]
    SqliteFile(#[from] sqlite_file::SqliteFileError),
    #[error("cannot migrate database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    #[error("the database holds {what} `{value}`, which this backend cannot read")]
    Unreadable { what: &'static str, value: String },
}

/// The database when the config names none and sets no data dir: `backend.db` in the working directory.
pub const DEFAULT_URL: &str = "sqlite://backend.db";

/// The default database in a data dir: the SQLite file `backend.db` there, created when missing (as every sqlite
/// URL is: [`sqlite_file::prepare`]).
pub fn default_url(data_dir: &Path) -> String {
    // Percent-encoded as sqlx decodes it, so a folder with `?`, `#` or `%` in its name stays part of the path.
    const PATH: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#').add(b' ').add(b'"');
    let file = data_dir.join("backend.db");
    format!("sqlite://{}", percent_encoding::utf8_percent_encode(&file.to_string_lossy(), PATH))
}

/// Hides the password in a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        // A sqlite file named by the operator is created when missing, in a folder checked first.
        let url = match dialect {
            Dialect::Sqlite => sqlite_file::prepare(url)?,
            Dialect::Postgres => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match dialect {
            // One writer at a time is SQLite's nature; WAL lets readers go on while it writes.
            Dialect::Sqlite => options.max_connections(4).after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    // 32 MiB of page cache per connection instead of SQLite's 2 MB: at 10,000 agents the indexes
                    // a fire touches no longer fit in 2 MB, and every miss is a pread.
                    sqlx::query("PRAGMA cache_size = -32768").execute(&mut *conn).await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await.map_err(DbError::Open)?;
        MIGRATOR.run(&pool).await.map_err(DbError::Migrate)?;
        Ok(Self { pool, dialect })
    }

    /// A transaction that will write after it reads. SQLite's default `BEGIN` takes the write lock only at the first
    /// write, and a transaction that read first and then finds another writer cannot wait for it (the busy
    /// timeout does not apply to that upgrade): it fails at once with "database is locked". `BEGIN IMMEDIATE`
    /// takes the write lock up front, where the busy timeout waits. PostgreSQL's `BEGIN` has no such upgrade.
    pub(crate) async fn begin_read_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool itself, for tests that check the stored rows against a query of their own.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores results idempotently: the same result id always lands on the same row, and the first result stored
    /// for it stays. A run has one result; a second one with the same id is a re-publish of it, or an agent that
    /// lost its ledger's "finished" mark in a crash reporting the run `interrupted` after its real result went out.
    pub async fn insert_results(&self, rows: &[(ExecResult, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        // Many rows per statement (`Dialect::rows`): one statement per result made the projector hand 10,000
        // statements to SQLite's worker thread for a 10,000-agent fire (a thread wake-up each, measured with perf).
        // 16 parameters per row x 60 rows stays under SQLite's oldest limit of 999 bound parameters.
        for chunk in rows.chunks(60) {
            let sql = format!(
                "INSERT INTO results (result_id, exec_id, job_id, version, pc_id, status, exit_code, stdout, stderr,
                    stdout_truncated, stderr_truncated, started_at_ms, finished_at_ms, reason, stream_seq, recorded_at_ms)
                 VALUES {}
                 ON CONFLICT (result_id) DO NOTHING RETURNING result_id",
                self.dialect.rows(chunk.len(), 16)
            );
            let mut query = sqlx::query(&sql);
            for (result, stream_seq) in chunk {
                query = query
                    .bind(result.result_id.as_str())
                    .bind(result.exec_id.as_str())
                    .bind(result.job_id.as_str())
                    .bind(result.version.as_str())
                    .bind(result.pc_id.as_str())
                    .bind(result.status.as_str())
                    .bind(result.exit_code.map(i64::from))
                    .bind(strip_nul(&result.stdout))
                    .bind(strip_nul(&result.stderr))
                    .bind(i64::from(result.stdout_truncated))
                    .bind(i64::from(result.stderr_truncated))
                    .bind(result.started_at.map(|t| t.timestamp_millis()))
                    .bind(result.finished_at.timestamp_millis())
                    .bind(result.reason.as_ref().map(|r| r.as_str().to_owned()))
                    .bind(i64::try_from(*stream_seq).unwrap_or(i64::MAX))
                    .bind(now.timestamp_millis());
            }
            let mut stored: std::collections::HashSet<String> = query
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get("result_id"))
                .collect::<Result<_, _>>()?;
            // Where its whole outputs are belongs to the result stored first, like everything else of it; a
            // result id twice in one batch is stored once (taken out of `stored` the first time), and its outputs
            // with it.
            let mut answered = Vec::new();
            for (result, _) in chunk {
                if stored.remove(result.result_id.as_str()) {
                    Self::insert_outputs(&mut tx, result).await?;
                    answered.push(result);
                }
            }
            // The target each stored result answers takes its status, once (`status IS NULL`: the first stays),
            // and its execution's tally moves it from `pending` or `running` to that status.
            if !answered.is_empty() {
                let sql = format!(
                    "UPDATE execution_targets SET status = v.column3 FROM (VALUES {}) AS v
                     WHERE execution_targets.exec_id = v.column1 AND execution_targets.pc_id = v.column2
                        AND execution_targets.status IS NULL
                     RETURNING execution_targets.exec_id, execution_targets.wave, execution_targets.status,
                        execution_targets.started",
                    self.dialect.rows(answered.len(), 3)
                );
                let mut query = sqlx::query(&sql);
                for result in answered {
                    query =
                        query.bind(result.exec_id.as_str()).bind(result.pc_id.as_str()).bind(result.status.as_str());
                }
                let mut moves = Tallies::default();
                for row in query.fetch_all(&mut *tx).await? {
                    let (exec, wave, status, started): (String, i64, String, i64) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                    moves.add(&exec, wave, if started == 1 { "running" } else { "pending" }, -1);
                    moves.add(&exec, wave, &status, 1);
                }
                self.apply_tallies(&mut tx, moves).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records where runs held for their user's consent stand; a word later in the stream replaces an earlier one
    /// (a redelivered one changes nothing), whatever the PC's clock said.
    pub async fn upsert_held(&self, rows: &[(RunHeld, u64)]) -> Result<(), DbError> {
        // One row per run and PC, the newest word: one statement may not touch a row twice (PostgreSQL refuses).
        let mut newest: std::collections::BTreeMap<(&str, &str), (&RunHeld, u64)> = std::collections::BTreeMap::new();
        for (held, seq) in rows {
            let key = (held.exec_id.as_str(), held.pc_id.as_str());
            if newest.get(&key).is_none_or(|(_, kept)| *kept <= *seq) {
                newest.insert(key, (held, *seq));
            }
        }
        let newest: Vec<(&RunHeld, u64)> = newest.into_values().collect();
        let mut tx = self.pool.begin().await?;
        // 9 parameters x 100 rows a statement.
        for chunk in newest.chunks(100) {
            let sql = format!(
                "INSERT INTO runs_held (exec_id, pc_id, state, until_ms, deadline_ms, by_user, deferrals, at_ms, seq)
                 VALUES {}
                 ON CONFLICT (exec_id, pc_id) DO UPDATE SET state = excluded.state, until_ms = excluded.until_ms,
                    deadline_ms = excluded.deadline_ms, by_user = excluded.by_user, deferrals = excluded.deferrals,
                    at_ms = excluded.at_ms, seq = excluded.seq
                 WHERE runs_held.seq <= excluded.seq",
                self.dialect.rows(chunk.len(), 9)
            );
            let mut query = sqlx::query(&sql);
            for (held, seq) in chunk {
                query = query
                    .bind(held.exec_id.as_str())
                    .bind(held.pc_id.as_str())
                    .bind(held.state.as_str())
                    .bind(held.until.timestamp_millis())
                    .bind(held.deadline.timestamp_millis())
                    .bind(held.by.clone())
                    .bind(i64::from(held.deferrals))
                    .bind(held.at.timestamp_millis())
                    .bind(i64::try_from(*seq).unwrap_or(i64::MAX));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that runs began; the first record of a run stays (a redelivered event lands on the same row).
    pub async fn insert_started(&self, rows: &[(RunStarted, u64)]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        // Many rows per statement, as for results: 4 parameters x 200 rows.
        for chunk in rows.chunks(200) {
            let sql = format!(
                "INSERT INTO runs_started (exec_id, pc_id, job_id, started_at_ms) VALUES {}
                 ON CONFLICT (exec_id, pc_id) DO NOTHING",
                self.dialect.rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (started, _) in chunk {
                query = query
                    .bind(started.exec_id.as_str())
                    .bind(started.pc_id.as_str())
                    .bind(started.job_id.as_str())
                    .bind(started.started_at.timestamp_millis());
            }
            query.execute(&mut *tx).await?;
            // A target seen to begin is `running` until its result, unless the result came first.
            let sql = format!(
                "UPDATE execution_targets SET started = 1 FROM (VALUES {}) AS v
                 WHERE execution_targets.exec_id = v.column1 AND execution_targets.pc_id = v.column2
                    AND execution_targets.started = 0
                 RETURNING execution_targets.exec_id, execution_targets.wave, execution_targets.status",
                self.dialect.rows(chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (started, _) in chunk {
                query = query.bind(started.exec_id.as_str()).bind(started.pc_id.as_str());
            }
            let mut moves = Tallies::default();
            for row in query.fetch_all(&mut *tx).await? {
                let (exec, wave, status): (String, i64, Option<String>) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                if status.is_none() {
                    moves.add(&exec, wave, "pending", -1);
                    moves.add(&exec, wave, "running", 1);
                }
            }
            self.apply_tallies(&mut tx, moves).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds `moves` to the executions' tallies (`execution_tallies`), in `tx`.
    pub(crate) async fn apply_tallies(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        moves: Tallies,
    ) -> Result<(), DbError> {
        let moves: Vec<_> = moves.0.into_iter().filter(|(_, n)| *n != 0).collect();
        for chunk in moves.chunks(200) {
            let sql = format!(
                "INSERT INTO execution_tallies (exec_id, wave, state, n) VALUES {}
                 ON CONFLICT (exec_id, wave, state) DO UPDATE SET n = execution_tallies.n + excluded.n",
                self.dialect.rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for ((exec, wave, state), n) in chunk {
                query = query.bind(exec.as_str()).bind(*wave).bind(state.as_str()).bind(*n);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Records heartbeats (one per agent; the caller keeps the newest), stamped with the time they arrived here so
    /// that an agent's wrong clock cannot make it look online or offline. Returns the pc ids that had no row: new
    /// agents, and forgotten ones that came back.
    pub async fn upsert_agents(&self, rows: &[(Heartbeat, DateTime<Utc>)]) -> Result<Vec<String>, DbError> {
        let mut new = Vec::new();
        let mut tx = self.pool.begin().await?;
        for (hb, seen) in rows {
            let groups: Vec<&str> = hb.groups.iter().map(|g| g.as_str()).collect();
            let row = sqlx::query(
                "INSERT INTO agents (pc_id, hostname, os, os_version, arch, agent_version, groups_json, uptime_secs,
                    rss_bytes, cpu_percent, running, outbox_pending, malformed_messages, first_seen_ms, last_seen_ms,
                    outbox_bytes, outbox_full, host_cpu_centi, host_mem_centi)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16, $17, $18)
                 ON CONFLICT (pc_id) DO UPDATE SET
                    hostname = excluded.hostname, os = excluded.os, os_version = excluded.os_version,
                    arch = excluded.arch, agent_version = excluded.agent_version, groups_json = excluded.groups_json,
                    uptime_secs = excluded.uptime_secs, rss_bytes = excluded.rss_bytes,
                    cpu_percent = excluded.cpu_percent, running = excluded.running,
                    outbox_pending = excluded.outbox_pending, malformed_messages = excluded.malformed_messages,
                    last_seen_ms = excluded.last_seen_ms, outbox_bytes = excluded.outbox_bytes,
                    outbox_full = excluded.outbox_full, host_cpu_centi = excluded.host_cpu_centi,
                    host_mem_centi = excluded.host_mem_centi
                 WHERE excluded.last_seen_ms >= agents.last_seen_ms
                 RETURNING first_seen_ms, last_seen_ms",
            )
            .bind(hb.pc_id.as_str())
            .bind(strip_nul(&hb.hostname))
            .bind(strip_nul(&hb.os))
            .bind(strip_nul(&hb.os_version))
            .bind(strip_nul(&hb.arch))
            .bind(strip_nul(&hb.agent_version))
            .bind(serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()))
            .bind(clamp(hb.uptime_secs))
            .bind(clamp(hb.rss_bytes))
            .bind(f64::from(hb.cpu_percent))
            .bind(i64::from(hb.running))
            .bind(clamp(hb.outbox_pending))
            .bind(clamp(hb.malformed_messages))
            .bind(seen.timestamp_millis())
            .bind(clamp(hb.outbox_bytes))
            .bind(i64::from(hb.outbox_full))
            .bind(centi(hb.host_cpu_percent))
            .bind(centi(hb.host_mem_percent))
            .fetch_optional(&mut *tx)
            .await?;
            // Only an insert sets first_seen to this heartbeat's time; an update keeps the row's own.
            if let Some(row) = row
                && row.try_get::<i64, _>("first_seen_ms")? == seen.timestamp_millis()
                && row.try_get::<i64, _>("last_seen_ms")? == seen.timestamp_millis()
            {
                new.push(hb.pc_id.to_string());
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Every agent, by pc id: what the exec engine resolves targets against (a fire reaches the whole fleet).
    /// Every known agent as a fire resolves its targets: pc id, groups and when it was last seen. Three columns
    /// read by position: the whole rows (17 columns, each looked up by name) made planning a 10,000-agent exec
    /// take ~130 ms.
    ///
    /// An agent's groups are the ones scopes see ([`crate::scope::pc_groups`]): its active credential's, which are
    /// the only groups' commands the broker lets it read, else what its heartbeats report. The credentials in force
    /// are read apart and merged here: joining them into the agents' read doubled its time at 10,000 agents.
    pub async fn known_agents(&self) -> Result<Vec<KnownAgent>, DbError> {
        let held = sqlx::query(
            "SELECT pc_id, status, groups_json FROM agent_credentials WHERE status IN ('active', 'revoked')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut credentials: HashMap<String, (CredentialStatus, Vec<String>)> = HashMap::with_capacity(held.len());
        for row in &held {
            let status: String = row.try_get(1)?;
            let status = CredentialStatus::parse(&status)
                .ok_or(DbError::Unreadable { what: "credential status", value: status })?;
            let groups: String = row.try_get(2)?;
            credentials.insert(row.try_get(0)?, (status, serde_json::from_str(&groups).unwrap_or_default()));
        }
        let rows = sqlx::query("SELECT pc_id, groups_json, last_seen_ms FROM agents ORDER BY pc_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let pc_id: String = row.try_get(0)?;
                let reported: Vec<String> = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
                let groups = match credentials.get(&pc_id) {
                    // The common case, no credential in force: the reported groups as they are.
                    None => reported,
                    Some((status, held)) => crate::scope::pc_groups(Some((*status, held)), Some(&reported))
                        .into_iter()
                        .map(|g| g.to_string())
                        .collect(),
                };
                Ok(KnownAgent { pc_id, groups, last_seen: millis(row.try_get(2)?) })
            })
            .collect()
    }

    /// The groups each of `pcs` counts as in for scopes ([`crate::scope::pc_groups`]: an active credential's, else
    /// what its heartbeats report); a PC the backend knows nothing of is left out. Two reads per 500 PCs.
    pub async fn pc_groups(&self, pcs: &[PcId]) -> Result<HashMap<PcId, Vec<GroupName>>, DbError> {
        let mut out = HashMap::with_capacity(pcs.len());
        for chunk in pcs.chunks(500) {
            let marks = (1..=chunk.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
            let mut credentials: HashMap<String, (CredentialStatus, Vec<String>)> = HashMap::new();
            let sql = format!("SELECT pc_id, status, groups_json FROM agent_credentials WHERE pc_id IN ({marks})");
            let mut query = sqlx::query(&sql);
            for pc in chunk {
                query = query.bind(pc.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let status: String = row.try_get(1)?;
                let status = CredentialStatus::parse(&status)
                    .ok_or(DbError::Unreadable { what: "credential status", value: status })?;
                let groups: String = row.try_get(2)?;
                credentials.insert(row.try_get(0)?, (status, serde_json::from_str(&groups).unwrap_or_default()));
            }
            let mut reported: HashMap<String, Vec<String>> = HashMap::new();
            let sql = format!("SELECT pc_id, groups_json FROM agents WHERE pc_id IN ({marks})");
            let mut query = sqlx::query(&sql);
            for pc in chunk {
                query = query.bind(pc.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let groups: String = row.try_get(1)?;
                reported.insert(row.try_get(0)?, serde_json::from_str(&groups).unwrap_or_default());
            }
            for pc in chunk {
                let credential = credentials.get(pc.as_str()).map(|(status, groups)| (*status, groups.as_slice()));
                let heard = reported.get(pc.as_str()).map(Vec::as_slice);
                if credential.is_some() || heard.is_some() {
                    out.insert(pc.clone(), crate::scope::pc_groups(credential, heard));
                }
            }
        }
        Ok(out)
    }

    /// Whether `scope` reaches `pc` (the fleet reaches every PC, known or not, without a read).
    pub async fn pc_in_scope(&self, pc: &PcId, scope: &GroupScope) -> Result<bool, DbError> {
        if scope.is_fleet() {
            return Ok(true);
        }
        let groups = self.pc_groups(std::slice::from_ref(pc)).await?;
        Ok(scope.covers_pc(groups.get(pc).map(Vec::as_slice).unwrap_or_default()))
    }

    /// One page of the agents matching `filter` within `scope`, by pc id: a range scan of the primary key, the
    /// filters applied to the rows it passes.
    pub async fn list_agents(
        &self,
        filter: &AgentFilter,
        scope: &GroupScope,
    ) -> Result<Paged<AgentRow, (Option<i64>, String)>, DbError> {
        let mut sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let figure = filter.sort.figure();
        match (&filter.after, figure) {
            (None, _) => {}
            (Some((_, after)), None) => {
                binds.push(Bind::Text(after.to_string()));
                sql.push_str(&format!(" AND pc_id > ${}", binds.len()));
            }
            (Some((value, after)), Some(figure)) => {
                // Highest first, then pc id A to Z: the rows after (v, id) are those below v, or at v after id.
                binds.push(Bind::Int(value.unwrap_or(-1)));
                binds.push(Bind::Text(after.to_string()));
                let n = binds.len();
                sql.push_str(&format!(" AND ({figure} < ${} OR ({figure} = ${} AND pc_id > ${n}))", n - 1, n - 1));
            }
        }
        if let Some(status) = filter.status {
            sql.push_str(&format!(" AND {}", status_condition(status, &filter.liveness, &mut binds)));
        }
        for (column, value) in [("os", &filter.os), ("agent_version", &filter.version)] {
            if let Some(value) = value {
                binds.push(Bind::Text(value.clone()));
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        if let Some(group) = &filter.group {
            // `groups_json` is a JSON array of validated names, so `"<name>"` inside it is that group exactly.
            binds.push(Bind::Text(format!("%\"{}\"%", like_escape(group.as_str()))));
            sql.push_str(&format!(" AND groups_json LIKE ${} ESCAPE '\\'", binds.len()));
        }
        for word in &filter.words {
            binds.push(Bind::Text(format!("%{}%", like_escape(word))));
            let n = binds.len();
            let mut any: Vec<String> =
                ["pc_id", "hostname", "os", "os_version", "arch", "agent_version", "groups_json"]
                    .iter()
                    .map(|column| format!("LOWER({column}) LIKE ${n} ESCAPE '\\'"))
                    .collect();
            if let Some(status) = AgentStatus::parse(word) {
                any.push(status_condition(status, &filter.liveness, &mut binds));
            }
            sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        match figure {
            None => sql.push_str(&format!(" ORDER BY pc_id LIMIT {}", filter.limit + 1)),
            Some(figure) => sql.push_str(&format!(" ORDER BY {figure} DESC, pc_id LIMIT {}", filter.limit + 1)),
        }
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let rows: Vec<AgentRow> = rows.iter().map(agent_from_row).collect::<Result<_, _>>()?;
        let sort = filter.sort;
        Ok(Paged::of(rows, filter.limit, |a| {
            let value = match sort {
                AgentSort::PcId => None,
                AgentSort::Cpu => Some(a.host_cpu_percent.map_or(-1, |p| (p * 100.0).round() as i64)),
                AgentSort::Memory => Some(a.host_mem_percent.map_or(-1, |p| (p * 100.0).round() as i64)),
            };
            (value, a.pc_id.clone())
        }))
    }

    /// Forgets an agent: its row goes, so it no longer lists or counts as a target; its results and runs stay
    /// as history. A heartbeat from it afterwards makes it new again. False when there was no such agent.
    pub async fn delete_agent(&self, pc: &PcId) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM agents WHERE pc_id = $1").bind(pc.as_str()).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_agent(&self, pc: &PcId) -> Result<Option<AgentRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE pc_id = $1"))
            .bind(pc.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// One page of the results matching `filter` of the PCs in `scope`, newest first: (finished_at, result_id)
    /// descending.
    pub async fn list_results(
        &self,
        filter: &ResultFilter,
        scope: &GroupScope,
    ) -> Result<Paged<ResultRow, (i64, String)>, DbError> {
        let mut sql = format!("SELECT {RESULT_COLUMNS} FROM results WHERE 1 = 1");
        let binds = and_equals(
            &mut sql,
            0,
            &[
                ("pc_id", filter.pc_id.as_ref().map(PcId::as_str)),
                ("exec_id", filter.exec_id.as_ref().map(ExecId::as_str)),
                ("job_id", filter.job_id.as_ref().map(JobId::as_str)),
                ("status", filter.status.as_deref()),
            ],
        );
        let mut binds: Vec<Bind> = binds.into_iter().map(Bind::Text).collect();
        if let Some((finished, id)) = &filter.before {
            binds.push(Bind::Int(*finished));
            binds.push(Bind::Text(id.clone()));
            let n = binds.len();
            // Both dialects compare row values and make this a range on the (.., finished_at_ms, result_id)
            // indexes.
            sql.push_str(&format!(" AND (finished_at_ms, result_id) < (${}, ${n})", n - 1));
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" ORDER BY finished_at_ms DESC, result_id DESC LIMIT {}", filter.limit + 1));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let mut rows: Vec<ResultRow> = rows.iter().map(result_from_row).collect::<Result<_, _>>()?;
        self.attach_outputs(&mut rows).await?;
        Ok(Paged::of(rows, filter.limit, |r| (r.finished_at.timestamp_millis(), r.result_id.clone())))
    }

    /// Stores audit events idempotently by event id, with their place in the hash chain (`prev_hash`, `hash`; NULL
    /// for an event from before the chain). Text is stored as `kanade_shared::audit_chain` hashes it (a NUL becomes
    /// U+FFFD), so a row recomputes to its event's hash.
    pub async fn upsert_audit(&self, rows: &[(AuditEvent, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let hash = |text: &str| (!text.is_empty()).then(|| strip_nul(text));
        for (event, stream_seq) in rows {
            sqlx::query(
                "INSERT INTO audit (event_id, actor, action, target, details_json, source, at_ms, stream_seq, recorded_at_ms, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(strip_nul(&event.event_id))
            .bind(event.actor.as_str())
            .bind(event.action.as_str())
            .bind(strip_nul(&event.target))
            .bind(strip_nul(&event.details.to_string()))
            .bind(strip_nul(&event.source))
            .bind(event.at.timestamp_millis())
            .bind(i64::try_from(*stream_seq).unwrap_or(i64::MAX))
            .bind(now.timestamp_millis())
            .bind(hash(&event.prev_hash))
            .bind(hash(&event.hash))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One page of the audit trail in stream order, (stream_seq, event_id) ascending, every field as stored: what
    /// `kanade audit verify` recomputes the chain from.
    pub async fn list_audit_chain(
        &self,
        filter: &AuditChainFilter,
    ) -> Result<Paged<AuditChainRow, (i64, String)>, DbError> {
        let mut sql = "SELECT stream_seq, event_id, actor, action, target, details_json, source, at_ms, prev_hash, hash
             FROM audit WHERE stream_seq >= $1"
            .to_owned();
        let mut binds = vec![Bind::Int(filter.from_seq)];
        if let Some(since) = filter.since {
            binds.push(Bind::Int(since.timestamp_millis()));
            // The first event in stream order at or after `since`, and everything after it: the chain has no gaps
            // where clocks disagree.
            sql.push_str(&format!(
                " AND stream_seq >= (SELECT COALESCE(MIN(stream_seq), {}) FROM audit WHERE at_ms >= ${})",
                i64::MAX,
                binds.len()
            ));
        }
        if let Some((seq, id)) = &filter.after {
            binds.push(Bind::Int(*seq));
            binds.push(Bind::Text(id.clone()));
            let n = binds.len();
            sql.push_str(&format!(" AND (stream_seq, event_id) > (${}, ${n})", n - 1));
        }
        sql.push_str(&format!(" ORDER BY stream_seq, event_id LIMIT {}", filter.limit + 1));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let rows: Vec<AuditChainRow> = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("stream_seq")?;
                Ok(AuditChainRow {
                    stream_seq: u64::try_from(seq)
                        .map_err(|_| DbError::Unreadable { what: "audit stream sequence", value: seq.to_string() })?,
                    event_id: row.try_get("event_id")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    details_json: row.try_get("details_json")?,
                    source: row.try_get("source")?,
                    at_ms: row.try_get("at_ms")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok(Paged::of(rows, filter.limit, |r| (clamp(r.stream_seq), r.event_id.clone())))
    }

    /// One page of the audit events matching `filter`, newest first: (at, event_id) descending.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Paged<AuditRow, (i64, String)>, DbError> {
        let mut sql =
            "SELECT event_id, actor, action, target, details_json, source, at_ms FROM audit WHERE at_ms >= $1"
                .to_owned();
        let actor = filter.actor.as_ref().map(|a| a.as_str());
        let action = filter.action.as_ref().map(|a| a.as_str());
        let query_args = and_equals(&mut sql, 1, &[("actor", actor), ("action", action)]);
        let mut binds: Vec<Bind> = std::iter::once(Bind::Int(filter.since.timestamp_millis()))
            .chain(query_args.into_iter().map(Bind::Text))
            .collect();
        if let Some((at, id)) = &filter.before {
            binds.push(Bind::Int(*at));
            binds.push(Bind::Text(id.clone()));
            let n = binds.len();
            sql.push_str(&format!(" AND (at_ms, event_id) < (${}, ${n})", n - 1));
        }
        sql.push_str(&format!(" ORDER BY at_ms DESC, event_id DESC LIMIT {}", filter.limit + 1));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let rows: Vec<AuditRow> = rows
            .iter()
            .map(|row| {
                let details: String = row.try_get("details_json")?;
                Ok(AuditRow {
                    event_id: row.try_get("event_id")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    source: row.try_get("source")?,
                    at: millis(row.try_get("at_ms")?),
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok(Paged::of(rows, filter.limit, |a| (a.at.timestamp_millis(), a.event_id.clone())))
    }

    /// How many results an execution has, per status.
    pub async fn exec_status_counts(&self, exec: &ExecId) -> Result<Vec<(String, i64)>, DbError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM results WHERE exec_id = $1 GROUP BY status ORDER BY status")
                .bind(exec.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| Ok((row.try_get("status")?, row.try_get("n")?))).collect()
    }

    /// How many of an execution's runs have begun and have no result yet (from any agent, targeted or not).
    pub async fn exec_running_count(&self, exec: &ExecId, targets_only: bool) -> Result<i64, DbError> {
        let sql = if targets_only {
            // From the targets' own state (kept by the projectors), by index.
            "SELECT COUNT(*) AS n FROM execution_targets WHERE exec_id = $1 AND status IS NULL AND started = 1"
        } else {
            "SELECT COUNT(*) AS n FROM runs_started s WHERE s.exec_id = $1
                AND NOT EXISTS (SELECT 1 FROM results r WHERE r.exec_id = s.exec_id AND r.pc_id = s.pc_id)"
        };
        let row = sqlx::query(sql).bind(exec.as_str()).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// The job of a run that began, for an execution known only from its agents' events.
    pub async fn started_job(&self, exec: &ExecId) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT job_id FROM runs_started WHERE exec_id = $1 ORDER BY pc_id LIMIT 1")
            .bind(exec.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.try_get("job_id")).transpose().map_err(Into::into)
    }

    /// How many results are stored, for tests and benchmarks.
    pub async fn count_results(&self) -> Result<i64, DbError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM results").fetch_one(&self.pool).await?.try_get("n")?)
    }
}

/// Appends ` AND <column> = $n` for each condition that has a value, numbering the placeholders after the
/// `already` bound ones, and returns the values to bind in that order.
fn and_equals(sql: &mut String, already: usize, conditions: &[(&str, Option<&str>)]) -> Vec<String> {
    let mut values = Vec::new();
    for (column, value) in conditions {
        if let Some(value) = value {
            values.push((*value).to_owned());
            sql.push_str(&format!(" AND {column} = ${}", already + values.len()));
        }
    }
    values
}

/// The SQL form of a group scope over PCs (`crate::scope::pc_groups` and `GroupScope::covers_pc`):
/// `<column> IN (<the pc ids with an active credential in one of `groups`, or without a credential in force and
/// reporting one of them>)`, its LIKE patterns numbered from `$first`. Returns the condition and the patterns to bind
/// in that order. The subquery does not depend on the outer row, so both databases read it once per statement.
pub(crate) fn pcs_in(column: &str, groups: &BTreeSet<GroupName>, first: usize) -> (String, Vec<String>) {
    // A groups_json is a JSON array of validated names, so `"<name>"` inside it is that group exactly.
    let patterns: Vec<String> = groups.iter().map(|g| format!("%\"{}\"%", like_escape(g.as_str()))).collect();
    let any = |table: &str| {
        (first..first + patterns.len())
            .map(|n| format!("{table}.groups_json LIKE ${n} ESCAPE '\\'"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let sql = format!(
        "{column} IN (SELECT sc.pc_id FROM agent_credentials sc WHERE sc.status = 'active' AND ({}) \
         UNION SELECT sa.pc_id FROM agents sa WHERE ({}) AND NOT EXISTS \
         (SELECT 1 FROM agent_credentials sn WHERE sn.pc_id = sa.pc_id AND sn.status <> 'pending'))",
        any("sc"),
        any("sa")
    );
    (sql, patterns)
}

/// Appends ` AND <column> IN (...)` for a group scope ([`pcs_in`]), binding its patterns after `binds`; nothing
/// for the fleet.
fn and_in_scope(sql: &mut String, binds: &mut Vec<Bind>, column: &str, scope: &GroupScope) {
    if let Some(groups) = scope.groups() {
        let (condition, patterns) = pcs_in(column, groups, binds.len() + 1);
        binds.extend(patterns.into_iter().map(Bind::Text));
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
}

/// PostgreSQL refuses NUL in text; a script can print one. Keep everything else as it was.
fn strip_nul(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text.to_owned() }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Which part of the audit trail [`Db::list_audit_chain`] lists.
#[derive(Debug, Clone)]
pub struct AuditChainFilter {
    /// The first stream sequence.
    pub from_seq: i64,
    /// From the first event (in stream order) at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The page starts after this (stream_seq, event_id).
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub actor: Option<kanade_shared::Actor>,
    pub action: Option<kanade_shared::Action>,
    pub since: DateTime<Utc>,
    /// The page starts after (older than) this (at_ms, event_id).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ResultFilter {
    pub pc_id: Option<PcId>,
    pub exec_id: Option<ExecId>,
    pub job_id: Option<JobId>,
    pub status: Option<String>,
    /// The page starts after (older than) this (finished_at_ms, result_id).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// One page of a list: at most `limit` rows, and the sort key of the last one when more follow.
#[derive(Debug, Clone)]
pub struct Paged<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl<T, K> Paged<T, K> {
    /// From a query that asked for `limit + 1` rows: the extra row only says that another page follows.
    pub(crate) fn of(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        Self { items: rows, next }
    }
}

/// How an agent's status is told from its last heartbeat, in epoch milliseconds: `online` while it is at most
/// `offline_after` old, `stale` once it is more than `stale_after` old, `offline` in between.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub now_ms: i64,
    pub offline_after_ms: i64,
    pub stale_after_ms: i64,
}

impl Liveness {
    pub fn new(now: DateTime<Utc>, offline_after: Duration, stale_after: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self { now_ms: now.timestamp_millis(), offline_after_ms: ms(offline_after), stale_after_ms: ms(stale_after) }
    }

    /// The one rule; [`status_condition`] is its SQL form.
    pub fn status(&self, last_seen_ms: i64) -> AgentStatus {
        let age = self.now_ms.saturating_sub(last_seen_ms);
        if age <= self.offline_after_ms {
            AgentStatus::Online
        } else if age > self.stale_after_ms {
            AgentStatus::Stale
        } else {
            AgentStatus::Offline
        }
    }

    fn online_since(&self) -> i64 {
        self.now_ms.saturating_sub(self.offline_after_ms)
    }

    fn stale_before(&self) -> i64 {
        self.now_ms.saturating_sub(self.stale_after_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Online,
    Offline,
    Stale,
}

impl AgentStatus {
    pub const ALL: [Self; 3] = [Self::Online, Self::Offline, Self::Stale];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Stale => "stale",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// `last_seen_ms` within `status`, as [`Liveness::status`] decides it.
fn status_condition(status: AgentStatus, liveness: &Liveness, binds: &mut Vec<Bind>) -> String {
    match status {
        AgentStatus::Online => {
            binds.push(Bind::Int(liveness.online_since()));
            format!("last_seen_ms >= ${}", binds.len())
        }
        AgentStatus::Stale => {
            binds.push(Bind::Int(liveness.stale_before()));
            format!("last_seen_ms < ${}", binds.len())
        }
        AgentStatus::Offline => {
            binds.push(Bind::Int(liveness.online_since()));
            binds.push(Bind::Int(liveness.stale_before()));
            format!("(last_seen_ms < ${} AND last_seen_ms >= ${})", binds.len() - 1, binds.len())
        }
    }
}

/// Which agents a page of `GET /api/agents` lists.
#[derive(Debug, Clone)]
pub struct AgentFilter {
    pub liveness: Liveness,
    pub status: Option<AgentStatus>,
    pub group: Option<kanade_shared::GroupName>,
    pub os: Option<String>,
    pub version: Option<String>,
    /// Lower-case words, each of which must be in some field or name the status.
    pub words: Vec<String>,
    pub sort: AgentSort,
    /// The page starts after this key: (the sorted figure, for `cpu` and `memory`; the pc id).
    pub after: Option<(Option<i64>, PcId)>,
    pub limit: u32,
}

/// The order of `GET /api/agents`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentSort {
    /// By pc id, A to Z.
    #[default]
    PcId,
    /// The host's CPU in the latest heartbeat, highest first; agents without it last.
    Cpu,
    /// The host's memory in use, highest first.
    Memory,
}

impl AgentSort {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pc_id" => Some(Self::PcId),
            "cpu" => Some(Self::Cpu),
            "memory" => Some(Self::Memory),
            _ => None,
        }
    }

    /// The expression sorted on (highest first), for the figure sorts.
    fn figure(self) -> Option<&'static str> {
        match self {
            Self::PcId => None,
            Self::Cpu => Some("COALESCE(host_cpu_centi, -1)"),
            Self::Memory => Some("COALESCE(host_mem_centi, -1)"),
        }
    }
}

/// A percentage as the agents table keeps it: hundredths, -1 for none.
pub fn centi(percent: Option<f32>) -> Option<i64> {
    percent.filter(|p| p.is_finite()).map(|p| (f64::from(p.clamp(0.0, 100.0)) * 100.0).round() as i64)
}

/// A value to bind, in placeholder order.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    query
}

/// `text` with LIKE's wildcards (and the escape character itself) escaped by `\`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const AGENT_COLUMNS: &str = "pc_id, hostname, os, os_version, arch, agent_version, groups_json, uptime_secs, \
    rss_bytes, cpu_percent, running, outbox_pending, malformed_messages, first_seen_ms, last_seen_ms, outbox_bytes, \
    outbox_full, host_cpu_centi, host_mem_centi";

fn agent_from_row(row: &AnyRow) -> Result<AgentRow, DbError> {
    let groups_json: String = row.try_get("groups_json")?;
    Ok(AgentRow {
        pc_id: row.try_get("pc_id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        os_version: row.try_get("os_version")?,
        arch: row.try_get("arch")?,
        agent_version: row.try_get("agent_version")?,
        groups: serde_json::from_str(&groups_json).unwrap_or_default(),
        uptime_secs: row.try_get("uptime_secs")?,
        rss_bytes: row.try_get("rss_bytes")?,
        cpu_percent: row.try_get("cpu_percent")?,
        running: row.try_get("running")?,
        outbox_pending: row.try_get("outbox_pending")?,
        outbox_bytes: row.try_get("outbox_bytes")?,
        outbox_full: row.try_get::<i64, _>("outbox_full")? != 0,
        malformed_messages: row.try_get("malformed_messages")?,
        host_cpu_percent: row.try_get::<Option<i64>, _>("host_cpu_centi")?.map(|c| c as f64 / 100.0),
        host_mem_percent: row.try_get::<Option<i64>, _>("host_mem_centi")?.map(|c| c as f64 / 100.0),
        first_seen: millis(row.try_get("first_seen_ms")?),
        last_seen: millis(row.try_get("last_seen_ms")?),
    })
}

const RESULT_COLUMNS: &str = "result_id, exec_id, job_id, version, pc_id, status, exit_code, stdout, stderr, \
    stdout_truncated, stderr_truncated, started_at_ms, finished_at_ms, reason, recorded_at_ms";

fn result_from_row(row: &AnyRow) -> Result<ResultRow, DbError> {
    Ok(ResultRow {
        result_id: row.try_get("result_id")?,
        exec_id: row.try_get("exec_id")?,
        job_id: row.try_get("job_id")?,
        version: row.try_get("version")?,
        pc_id: row.try_get("pc_id")?,
        status: row.try_get("status")?,
        exit_code: row.try_get("exit_code")?,
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
        stdout_truncated: row.try_get::<i64, _>("stdout_truncated")? != 0,
        stderr_truncated: row.try_get::<i64, _>("stderr_truncated")? != 0,
        started_at: row.try_get::<Option<i64>, _>("started_at_ms")?.map(millis),
        finished_at: millis(row.try_get("finished_at_ms")?),
        reason: row.try_get("reason")?,
        recorded_at: millis(row.try_get("recorded_at_ms")?),
        stdout_full: None,
        stderr_full: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn a_scope_condition_numbers_its_patterns_after_the_binds_before_it_and_escapes_like() {
        let groups: BTreeSet<GroupName> = ["office", "lab_2"].iter().map(|g| GroupName::new(*g).unwrap()).collect();
        let (sql, patterns) = pcs_in("r.pc_id", &groups, 3);
        assert_eq!(patterns, ["%\"lab\\_2\"%", "%\"office\"%"], "`_` is literal, each name quoted whole");
        assert!(sql.starts_with("r.pc_id IN (SELECT sc.pc_id FROM agent_credentials sc"), "{sql}");
        assert!(sql.contains("sc.groups_json LIKE $3 ESCAPE '\\' OR sc.groups_json LIKE $4"), "{sql}");
        assert!(sql.contains("sa.groups_json LIKE $3 ESCAPE '\\' OR sa.groups_json LIKE $4"), "{sql}");
        assert!(!sql.contains("$5"), "{sql}");
        let (mut sql, mut binds) = ("SELECT 1 WHERE a = $1".to_owned(), vec![Bind::Int(1)]);
        and_in_scope(&mut sql, &mut binds, "pc_id", &GroupScope::Fleet);
        assert_eq!((sql.as_str(), binds.len()), ("SELECT 1 WHERE a = $1", 1), "the fleet: no condition");
        and_in_scope(&mut sql, &mut binds, "pc_id", &GroupScope::Groups(groups));
        assert_eq!(binds.len(), 3);
        assert!(sql.contains(" AND pc_id IN (") && sql.contains("LIKE $2") && sql.contains("LIKE $3"), "{sql}");
    }

    #[test]
    fn many_row_values_are_positional_on_sqlite_and_numbered_on_postgres() {
        assert_eq!(Dialect::Sqlite.rows(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(Dialect::Postgres.rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(Dialect::Postgres.rows(1, 1), "($1)");
    }
}
