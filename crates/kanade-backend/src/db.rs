//! The read model in SQL: SQLite by default, PostgreSQL for larger fleets, through one `sqlx::Any` pool and SQL
//! both understand. Projectors call the `upsert_*` functions; the HTTP API only reads.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kanade_shared::api::{AgentRow, AuditRow, ResultRow, TargetRow};
use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, RunStarted};
use kanade_shared::{ExecId, JobId, PcId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

mod executions;
pub mod sqlite_file;

pub use executions::{
    ExecStatus, ExecutionFilter, ExecutionRow, NewExecution, NewWave, StatusFilter, TargetFilter, WaveRow, WaveState,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
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
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await.map_err(DbError::Open)?;
        MIGRATOR.run(&pool).await.map_err(DbError::Migrate)?;
        Ok(Self { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
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
        for (result, stream_seq) in rows {
            sqlx::query(
                "INSERT INTO results (result_id, exec_id, job_id, version, pc_id, status, exit_code, stdout, stderr,
                    stdout_truncated, stderr_truncated, started_at_ms, finished_at_ms, reason, stream_seq, recorded_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (result_id) DO NOTHING",
            )
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
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that runs began; the first record of a run stays (a redelivered event lands on the same row).
    pub async fn insert_started(&self, rows: &[(RunStarted, u64)]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for (started, _) in rows {
            sqlx::query(
                "INSERT INTO runs_started (exec_id, pc_id, job_id, started_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (exec_id, pc_id) DO NOTHING",
            )
            .bind(started.exec_id.as_str())
            .bind(started.pc_id.as_str())
            .bind(started.job_id.as_str())
            .bind(started.started_at.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records heartbeats (one per agent; the caller keeps the newest), stamped with the time they arrived here so
    /// that an agent's wrong clock cannot make it look online or offline.
    pub async fn upsert_agents(&self, rows: &[(Heartbeat, DateTime<Utc>)]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for (hb, seen) in rows {
            let groups: Vec<&str> = hb.groups.iter().map(|g| g.as_str()).collect();
            sqlx::query(
                "INSERT INTO agents (pc_id, hostname, os, os_version, arch, agent_version, groups_json, uptime_secs,
                    rss_bytes, cpu_percent, running, outbox_pending, malformed_messages, first_seen_ms, last_seen_ms,
                    outbox_bytes, outbox_full)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16)
                 ON CONFLICT (pc_id) DO UPDATE SET
                    hostname = excluded.hostname, os = excluded.os, os_version = excluded.os_version,
                    arch = excluded.arch, agent_version = excluded.agent_version, groups_json = excluded.groups_json,
                    uptime_secs = excluded.uptime_secs, rss_bytes = excluded.rss_bytes,
                    cpu_percent = excluded.cpu_percent, running = excluded.running,
                    outbox_pending = excluded.outbox_pending, malformed_messages = excluded.malformed_messages,
                    last_seen_ms = excluded.last_seen_ms, outbox_bytes = excluded.outbox_bytes,
                    outbox_full = excluded.outbox_full
                 WHERE excluded.last_seen_ms >= agents.last_seen_ms",
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRow>, DbError> {
        let rows =
            sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY pc_id")).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    pub async fn get_agent(&self, pc: &PcId) -> Result<Option<AgentRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE pc_id = $1"))
            .bind(pc.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Results matching `filter`, newest first.
    pub async fn list_results(&self, filter: &ResultFilter) -> Result<Vec<ResultRow>, DbError> {
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
        sql.push_str(&format!(" ORDER BY finished_at_ms DESC, result_id DESC LIMIT {}", filter.limit));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(result_from_row).collect()
    }

    /// Stores audit events idempotently by event id.
    pub async fn upsert_audit(&self, rows: &[(AuditEvent, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for (event, stream_seq) in rows {
            sqlx::query(
                "INSERT INTO audit (event_id, actor, action, target, details_json, source, at_ms, stream_seq, recorded_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit events matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, DbError> {
        let mut sql =
            "SELECT event_id, actor, action, target, details_json, source, at_ms FROM audit WHERE at_ms >= $1"
                .to_owned();
        let actor = filter.actor.as_ref().map(|a| a.as_str());
        let action = filter.action.as_ref().map(|a| a.as_str());
        let query_args = and_equals(&mut sql, 1, &[("actor", actor), ("action", action)]);
        sql.push_str(&format!(" ORDER BY at_ms DESC, event_id DESC LIMIT {}", filter.limit));
        let mut query = sqlx::query(&sql).bind(filter.since.timestamp_millis());
        for arg in query_args {
            query = query.bind(arg);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
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
            .collect()
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
        let targets = if targets_only {
            "AND EXISTS (SELECT 1 FROM execution_targets t WHERE t.exec_id = s.exec_id AND t.pc_id = s.pc_id)"
        } else {
            ""
        };
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM runs_started s WHERE s.exec_id = $1
                AND NOT EXISTS (SELECT 1 FROM results r WHERE r.exec_id = s.exec_id AND r.pc_id = s.pc_id) {targets}"
        ))
        .bind(exec.as_str())
        .fetch_one(&self.pool)
        .await?;
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

#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub actor: Option<kanade_shared::Actor>,
    pub action: Option<kanade_shared::Action>,
    pub since: DateTime<Utc>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ResultFilter {
    pub pc_id: Option<PcId>,
    pub exec_id: Option<ExecId>,
    pub job_id: Option<JobId>,
    pub status: Option<String>,
    pub limit: u32,
}

const AGENT_COLUMNS: &str = "pc_id, hostname, os, os_version, arch, agent_version, groups_json, uptime_secs, \
    rss_bytes, cpu_percent, running, outbox_pending, malformed_messages, first_seen_ms, last_seen_ms, outbox_bytes, \
    outbox_full";

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
}
