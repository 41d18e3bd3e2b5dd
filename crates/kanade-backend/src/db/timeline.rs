//! The agents' timelines (`agent_events`, projected from `OBS`), and the counts `/metrics` reads at scrape time.

use chrono::{DateTime, Utc};
use kanade_shared::access::GroupScope;
use kanade_shared::api::AgentEventRow;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, clamp, millis, strip_nul};

/// How long a timeline entry is kept, by the backend's clock. The `OBS` stream keeps 30 days of events for a
/// replay; the table keeps longer, and this bounds it (at 10,000 agents each starting daily, ~0.9 M rows).
pub const TIMELINE_RETENTION: chrono::Duration = chrono::Duration::days(90);

/// A timeline entry as the projector decoded it, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgentEvent {
    /// The agent's id for the event; `None` (an older agent, or an id unfit to keep) keys it by its stream sequence.
    pub event_id: Option<String>,
    pub pc_id: String,
    pub kind: String,
    pub at: DateTime<Utc>,
    /// Already capped by the projector.
    pub details_json: String,
}

impl NewAgentEvent {
    /// The key the row is stored under: the event's own id, or one made from where it sits in `OBS` (a
    /// redelivery has the same sequence, so it lands on the same row).
    pub fn key(&self, stream_seq: u64) -> String {
        self.event_id.clone().unwrap_or_else(|| format!("seq-{stream_seq}"))
    }
}

/// Which entries to list, newest first.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub pc_id: Option<String>,
    pub kind: Option<String>,
    /// Inclusive, epoch milliseconds.
    pub since_ms: i64,
    /// Exclusive, epoch milliseconds.
    pub until_ms: i64,
    /// Only entries after this one in the listing's order (the cursor's position): `(at_ms, event_id)`.
    pub after: Option<(i64, String)>,
    /// Only each agent's newest matching entry.
    pub distinct_pc: bool,
    pub limit: u32,
}

/// How many agents are online (heard from within the offline threshold), offline, and stale (not heard from for
/// longer than the stale threshold; not counted as offline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounts {
    pub online: i64,
    pub offline: i64,
    pub stale: i64,
}

/// A statement whose placeholders are numbered in the order they appear, as both SQLite and PostgreSQL bind them.
#[derive(Default)]
struct Statement {
    sql: String,
    binds: Vec<Bind>,
}

enum Bind {
    Int(i64),
    Text(String),
}

impl Statement {
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        let n = self.binds.len();
        self.sql.push_str(&format!("${n}"));
        self
    }

    /// ` AND <column> IN (<the PCs `scope` reaches>)` (`super::pcs_in`); nothing for the fleet.
    fn within(&mut self, column: &str, scope: &GroupScope) -> &mut Self {
        if let Some(groups) = scope.groups() {
            let (condition, patterns) = super::pcs_in(column, groups, self.binds.len() + 1);
            self.sql.push_str(&format!(" AND {condition}"));
            self.binds.extend(patterns.into_iter().map(Bind::Text));
        }
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut query = sqlx::query(&self.sql);
        for bind in &self.binds {
            query = match bind {
                Bind::Int(value) => query.bind(*value),
                Bind::Text(value) => query.bind(value.as_str()),
            };
        }
        query
    }
}

/// Appends the filter's conditions on table alias `t` (everything but the cursor and `distinct`).
fn conditions(statement: &mut Statement, t: &str, filter: &EventFilter) {
    statement.push(&format!(" AND {t}.at_ms >= ")).bind(Bind::Int(filter.since_ms));
    statement.push(&format!(" AND {t}.at_ms < ")).bind(Bind::Int(filter.until_ms));
    if let Some(pc) = &filter.pc_id {
        statement.push(&format!(" AND {t}.pc_id = ")).bind(Bind::Text(pc.clone()));
    }
    if let Some(kind) = &filter.kind {
        statement.push(&format!(" AND {t}.kind = ")).bind(Bind::Text(kind.clone()));
    }
}

impl Db {
    /// Stores timeline entries idempotently by key (the first stored stays), each at the agent's time but never
    /// later than `now` (a clock far ahead would otherwise pin an entry to the top for good); then drops what is
    /// older than [`TIMELINE_RETENTION`].
    pub async fn insert_agent_events(&self, rows: &[(NewAgentEvent, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for (event, stream_seq) in rows {
            sqlx::query(
                "INSERT INTO agent_events (event_id, pc_id, kind, at_ms, details_json, stream_seq, recorded_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(strip_nul(&event.key(*stream_seq)))
            .bind(event.pc_id.as_str())
            .bind(strip_nul(&event.kind))
            .bind(event.at.min(now).timestamp_millis())
            .bind(strip_nul(&event.details_json))
            .bind(clamp(*stream_seq))
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM agent_events WHERE recorded_at_ms < $1")
            .bind((now - TIMELINE_RETENTION).timestamp_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Timeline entries matching `filter` of the PCs in `scope`, newest first, at most `limit + 1` (one more tells the
    /// caller that a next page exists).
    pub async fn list_agent_events(
        &self,
        filter: &EventFilter,
        scope: &GroupScope,
    ) -> Result<Vec<AgentEventRow>, DbError> {
        let mut statement = Statement::default();
        statement.push(
            "SELECT e.event_id, e.pc_id, e.kind, e.at_ms, e.details_json, e.recorded_at_ms FROM agent_events e \
             WHERE 1 = 1",
        );
        conditions(&mut statement, "e", filter);
        if filter.distinct_pc {
            // The agent's newest matching entry is the one no other matching entry of that agent comes after.
            statement.push(" AND NOT EXISTS (SELECT 1 FROM agent_events n WHERE n.pc_id = e.pc_id");
            conditions(&mut statement, "n", filter);
            statement.push(" AND (n.at_ms > e.at_ms OR (n.at_ms = e.at_ms AND n.event_id > e.event_id)))");
        }
        if let Some((at_ms, event_id)) = &filter.after {
            statement.push(" AND (e.at_ms < ").bind(Bind::Int(*at_ms));
            statement.push(" OR (e.at_ms = ").bind(Bind::Int(*at_ms));
            statement.push(" AND e.event_id < ").bind(Bind::Text(event_id.clone())).push("))");
        }
        statement.within("e.pc_id", scope);
        statement.push(&format!(" ORDER BY e.at_ms DESC, e.event_id DESC LIMIT {}", u64::from(filter.limit) + 1));
        let rows = statement.query().fetch_all(&self.pool).await?;
        rows.iter().map(agent_event_from_row).collect()
    }

    /// How many agents are online, offline and stale at `now`: one counting scan of `agents`, cheap at
    /// 10,000 rows (no per-agent series).
    pub async fn count_agents(
        &self,
        now: DateTime<Utc>,
        offline_after: std::time::Duration,
        stale_after: std::time::Duration,
    ) -> Result<AgentCounts, DbError> {
        let ago = |d: std::time::Duration| {
            now.timestamp_millis().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let row = sqlx::query(
            "SELECT COUNT(CASE WHEN last_seen_ms >= $1 THEN 1 END) AS online,
                    COUNT(CASE WHEN last_seen_ms < $2 AND last_seen_ms >= $3 THEN 1 END) AS offline,
                    COUNT(CASE WHEN last_seen_ms < $4 THEN 1 END) AS stale
             FROM agents",
        )
        .bind(ago(offline_after))
        .bind(ago(offline_after))
        .bind(ago(stale_after))
        .bind(ago(stale_after))
        .fetch_one(&self.pool)
        .await?;
        Ok(AgentCounts {
            online: row.try_get("online")?,
            offline: row.try_get("offline")?,
            stale: row.try_get("stale")?,
        })
    }

    /// How many executions are in each stored status.
    pub async fn count_executions_by_status(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM executions GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("status")?, row.try_get("n")?))).collect()
    }
}

fn agent_event_from_row(row: &AnyRow) -> Result<AgentEventRow, DbError> {
    let details: String = row.try_get("details_json")?;
    Ok(AgentEventRow {
        event_id: row.try_get("event_id")?,
        pc_id: row.try_get("pc_id")?,
        kind: row.try_get("kind")?,
        at: millis(row.try_get("at_ms")?),
        recorded_at: millis(row.try_get("recorded_at_ms")?),
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    })
}
