//! What the leader decided of each schedule's occurrences (`schedule_fires`), where it stopped looking
//! (`schedule_cursors`), and the reads the scheduler and the API make of them. A decision is a row keyed by the
//! occurrence id, so deciding an occurrence twice (a retry, a crash mid-fire, a failover) is a no-op; the cursor
//! moves in the same transaction and only forward.

use chrono::{DateTime, Utc};
use kanade_shared::ExecId;
use kanade_shared::access::GroupScope;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Tallies, millis};

/// A decision about one occurrence (or, for `missed`, a run of them), as the scheduler records it.
#[derive(Debug, Clone)]
pub struct NewFire {
    pub occurrence_id: ExecId,
    pub schedule_id: String,
    pub occurrence_at: DateTime<Utc>,
    /// `fired`, `run_now`, `skipped_overlap`, `missed` or `failed`.
    pub outcome: &'static str,
    /// The execution it created (the occurrence id, for a fire).
    pub exec_id: Option<ExecId>,
    pub reason: Option<String>,
    pub missed_count: Option<i64>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// Move the schedule's cursor to this time (a run now does not: it is not one of the schedule's occurrences).
    pub cursor: Option<DateTime<Utc>>,
}

/// A stored decision, with what its execution shows now.
#[derive(Debug, Clone, PartialEq)]
pub struct FireRow {
    pub occurrence_id: String,
    pub schedule_id: String,
    pub occurrence_at: DateTime<Utc>,
    pub outcome: String,
    pub exec_id: Option<String>,
    pub reason: Option<String>,
    pub missed_count: Option<i64>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// The execution's stored status, if it has one.
    pub exec_status: Option<String>,
    pub target_count: Option<i64>,
    /// Whether some target of its execution has not answered.
    pub unanswered: bool,
}

const FIRE_COLUMNS: &str = "f.occurrence_id, f.schedule_id, f.occurrence_at_ms, f.outcome, f.exec_id, f.reason, \
    f.missed_count, f.decided_by, f.decided_at_ms, e.status AS exec_status, e.target_count, \
    CASE WHEN EXISTS (SELECT 1 FROM execution_targets t WHERE t.exec_id = f.exec_id AND t.status IS NULL) \
    THEN 1 ELSE 0 END AS unanswered";

fn fire_from_row(row: &AnyRow) -> Result<FireRow, DbError> {
    Ok(FireRow {
        occurrence_id: row.try_get("occurrence_id")?,
        schedule_id: row.try_get("schedule_id")?,
        occurrence_at: millis(row.try_get("occurrence_at_ms")?),
        outcome: row.try_get("outcome")?,
        exec_id: row.try_get("exec_id")?,
        reason: row.try_get("reason")?,
        missed_count: row.try_get("missed_count")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: millis(row.try_get("decided_at_ms")?),
        exec_status: row.try_get("exec_status")?,
        target_count: row.try_get("target_count")?,
        unanswered: row.try_get::<i64, _>("unanswered")? != 0,
    })
}

impl Db {
    /// Records a decision that creates no execution (a skip, a miss, a failure) and moves the cursor; false when the
    /// occurrence was decided before (nothing changes then).
    pub async fn record_decision(&self, fire: &NewFire) -> Result<bool, DbError> {
        let mut tx = self.begin_read_write().await?;
        let recorded = Self::insert_fire(&mut tx, fire).await?;
        if recorded {
            Self::move_cursor(&mut tx, fire).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Inserts `fire` in `tx`; false if its occurrence has a row already.
    pub(crate) async fn insert_fire(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        fire: &NewFire,
    ) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            "INSERT INTO schedule_fires (occurrence_id, schedule_id, occurrence_at_ms, outcome, exec_id, reason,
                missed_count, decided_by, decided_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (occurrence_id) DO NOTHING RETURNING occurrence_id",
        )
        .bind(fire.occurrence_id.as_str())
        .bind(fire.schedule_id.as_str())
        .bind(fire.occurrence_at.timestamp_millis())
        .bind(fire.outcome)
        .bind(fire.exec_id.as_ref().map(|e| e.as_str().to_owned()))
        .bind(fire.reason.clone())
        .bind(fire.missed_count)
        .bind(fire.decided_by.as_str())
        .bind(fire.decided_at.timestamp_millis())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(inserted.is_some())
    }

    /// Inserts the decision of a fire whose execution was just created, in `tx`. An earlier `failed` decision of the
    /// same occurrence (the job was missing or revoked then; a once-per-PC schedule tries again) gives way to it.
    pub(crate) async fn insert_fire_over_failure(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        fire: &NewFire,
    ) -> Result<(), DbError> {
        if Self::insert_fire(tx, fire).await? {
            return Ok(());
        }
        sqlx::query(
            "UPDATE schedule_fires SET outcome = $2, exec_id = $3, reason = $4, decided_by = $5, decided_at_ms = $6
             WHERE occurrence_id = $1 AND outcome = 'failed'",
        )
        .bind(fire.occurrence_id.as_str())
        .bind(fire.outcome)
        .bind(fire.exec_id.as_ref().map(|e| e.as_str().to_owned()))
        .bind(fire.reason.clone())
        .bind(fire.decided_by.as_str())
        .bind(fire.decided_at.timestamp_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Moves the schedule's cursor forward to the fire's, in `tx`; never back.
    pub(crate) async fn move_cursor(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        fire: &NewFire,
    ) -> Result<(), DbError> {
        let Some(cursor) = fire.cursor else { return Ok(()) };
        Self::cursor_to(tx, &fire.schedule_id, cursor, fire.decided_at).await
    }

    async fn cursor_to(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        schedule: &str,
        cursor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO schedule_cursors (schedule_id, cursor_ms, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (schedule_id) DO UPDATE SET cursor_ms = excluded.cursor_ms, updated_at_ms = excluded.updated_at_ms
             WHERE schedule_cursors.cursor_ms < excluded.cursor_ms",
        )
        .bind(schedule)
        .bind(cursor.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The latest occurrence decided of `schedule`; none before its first decision.
    pub async fn schedule_cursor(&self, schedule: &str) -> Result<Option<DateTime<Utc>>, DbError> {
        let row = sqlx::query("SELECT cursor_ms FROM schedule_cursors WHERE schedule_id = $1")
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<i64, _>(0).map(millis)).transpose().map_err(DbError::from)
    }

    /// Forgets where `schedule` stopped (it was deleted; one created again with its id starts afresh). Its
    /// decisions stay, for the record.
    pub async fn forget_schedule_cursor(&self, schedule: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM schedule_cursors WHERE schedule_id = $1").bind(schedule).execute(&self.pool).await?;
        Ok(())
    }

    /// Records the scope `schedule` fires with from now on (its creator's, or whoever changed it last).
    pub async fn set_schedule_scope(
        &self,
        schedule: &str,
        scope: &GroupScope,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(scope).unwrap_or_else(|_| "\"fleet\"".to_owned());
        sqlx::query(
            "INSERT INTO schedule_scopes (schedule_id, scope_json, set_by, set_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (schedule_id) DO UPDATE SET scope_json = excluded.scope_json, set_by = excluded.set_by,
                set_at_ms = excluded.set_at_ms",
        )
        .bind(schedule)
        .bind(json)
        .bind(by)
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The scope `schedule` fires with; `None` when none was recorded (made before scopes, or straight into KV with
    /// the CLI's fleet-wide credential: the fleet). One that cannot be read is an error, never the fleet.
    pub async fn schedule_scope(&self, schedule: &str) -> Result<Option<GroupScope>, DbError> {
        let json: Option<String> = sqlx::query_scalar("SELECT scope_json FROM schedule_scopes WHERE schedule_id = $1")
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|_| DbError::Unreadable { what: "schedule scope", value: json })
        })
        .transpose()
    }

    /// Forgets a deleted schedule's scope.
    pub async fn forget_schedule_scope(&self, schedule: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM schedule_scopes WHERE schedule_id = $1").bind(schedule).execute(&self.pool).await?;
        Ok(())
    }

    /// `schedule`'s most recent decisions, newest first.
    pub async fn schedule_fires(&self, schedule: &str, limit: u32) -> Result<Vec<FireRow>, DbError> {
        let sql = format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires f LEFT JOIN executions e ON e.exec_id = f.exec_id
             WHERE f.schedule_id = $1 ORDER BY f.occurrence_at_ms DESC, f.occurrence_id DESC LIMIT {limit}"
        );
        let rows = sqlx::query(&sql).bind(schedule).fetch_all(&self.pool).await?;
        rows.iter().map(fire_from_row).collect()
    }

    /// Every schedule's most recent decision (one each), for the list.
    pub async fn latest_fires(&self) -> Result<Vec<FireRow>, DbError> {
        let sql = format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires f LEFT JOIN executions e ON e.exec_id = f.exec_id
             WHERE f.occurrence_id = (SELECT g.occurrence_id FROM schedule_fires g WHERE g.schedule_id = f.schedule_id
                ORDER BY g.occurrence_at_ms DESC, g.occurrence_id DESC LIMIT 1)"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(fire_from_row).collect()
    }

    /// The execution `schedule` fired last (by a fire or a run now), if any.
    pub async fn last_fired_execution(&self, schedule: &str) -> Result<Option<ExecId>, DbError> {
        let row = sqlx::query(
            "SELECT exec_id FROM schedule_fires WHERE schedule_id = $1 AND exec_id IS NOT NULL
             ORDER BY occurrence_at_ms DESC, occurrence_id DESC LIMIT 1",
        )
        .bind(schedule)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let raw: String = row.try_get(0)?;
        ExecId::new(raw.clone()).map(Some).map_err(|_| DbError::Unreadable { what: "exec id", value: raw })
    }

    /// The execution a once-per-version schedule fired for `version` of its job, if it has.
    pub async fn fired_version(&self, schedule: &str, version: &str) -> Result<Option<ExecId>, DbError> {
        let row = sqlx::query(
            "SELECT f.exec_id FROM schedule_fires f JOIN executions e ON e.exec_id = f.exec_id
             WHERE f.schedule_id = $1 AND e.version = $2 ORDER BY f.occurrence_at_ms LIMIT 1",
        )
        .bind(schedule)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let raw: String = row.try_get(0)?;
        ExecId::new(raw.clone()).map(Some).map_err(|_| DbError::Unreadable { what: "exec id", value: raw })
    }

    /// How many of `exec`'s targets have not answered and still may: begun (a run is going), or not begun on an
    /// agent heard from since `online_since` (it will pick the command up). An agent that is away does not hold
    /// the schedule's next fire back; it catches up when it returns.
    pub async fn reachable_unanswered(
        &self,
        exec: &ExecId,
        online_since: DateTime<Utc>,
    ) -> Result<(i64, i64), DbError> {
        let row = sqlx::query(
            "SELECT
                COALESCE(SUM(CASE WHEN t.started = 1 THEN 1 ELSE 0 END), 0) AS running,
                COALESCE(SUM(CASE WHEN t.started = 0 AND a.last_seen_ms >= $2 THEN 1 ELSE 0 END), 0) AS waiting
             FROM execution_targets t LEFT JOIN agents a ON a.pc_id = t.pc_id
             WHERE t.exec_id = $1 AND t.status IS NULL",
        )
        .bind(exec.as_str())
        .bind(online_since.timestamp_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("running")?, row.try_get("waiting")?))
    }

    /// Adds targets to a standing (once-per-PC) execution: the known agents that came into its targets since it
    /// was created. Each starts `pending`, or at once in the state the projectors already recorded for it (a PC
    /// that ran the command before its row existed). Returns how many were added.
    pub async fn add_targets(&self, exec: &ExecId, targets: &[(String, i64)]) -> Result<u64, DbError> {
        if targets.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_read_write().await?;
        let mut added = 0u64;
        let mut pending = Tallies::default();
        for chunk in targets.chunks(300) {
            let sql = format!(
                "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES {}
                 ON CONFLICT (exec_id, pc_id) DO NOTHING RETURNING wave",
                self.dialect.rows(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (pc, wave) in chunk {
                query = query.bind(exec.as_str()).bind(pc.as_str()).bind(*wave);
            }
            for row in query.fetch_all(&mut *tx).await? {
                pending.add(exec.as_str(), row.try_get(0)?, "pending", 1);
                added += 1;
            }
        }
        self.apply_tallies(&mut tx, pending).await?;
        sqlx::query("UPDATE executions SET target_count = target_count + $2 WHERE exec_id = $1")
            .bind(exec.as_str())
            .bind(i64::try_from(added).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        Self::catch_up_targets(&mut tx, self, exec).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Brings `exec`'s unanswered targets up to what the projectors stored: a start or a result recorded while the
    /// target had no row (a PC that ran a standing command before the leader added it), or, on PostgreSQL, one
    /// committed while its row was being added. Cheap: it reads the execution's unanswered targets only.
    pub async fn repair_targets(&self, exec: &ExecId) -> Result<(), DbError> {
        let mut tx = self.begin_read_write().await?;
        Self::catch_up_targets(&mut tx, self, exec).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn catch_up_targets(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        db: &Db,
        exec: &ExecId,
    ) -> Result<(), DbError> {
        let mut moves = Tallies::default();
        let started = sqlx::query(
            "UPDATE execution_targets SET started = 1
             WHERE exec_id = $1 AND started = 0 AND status IS NULL
                AND EXISTS (SELECT 1 FROM runs_started s WHERE s.exec_id = $1 AND s.pc_id = execution_targets.pc_id)
             RETURNING wave",
        )
        .bind(exec.as_str())
        .fetch_all(&mut **tx)
        .await?;
        for row in started {
            let wave: i64 = row.try_get(0)?;
            moves.add(exec.as_str(), wave, "pending", -1);
            moves.add(exec.as_str(), wave, "running", 1);
        }
        let answered = sqlx::query(
            "UPDATE execution_targets SET status = (
                SELECT r.status FROM results r WHERE r.exec_id = $1 AND r.pc_id = execution_targets.pc_id
                ORDER BY r.stream_seq LIMIT 1)
             WHERE exec_id = $1 AND status IS NULL
                AND EXISTS (SELECT 1 FROM results r WHERE r.exec_id = $1 AND r.pc_id = execution_targets.pc_id)
             RETURNING wave, status, started",
        )
        .bind(exec.as_str())
        .fetch_all(&mut **tx)
        .await?;
        for row in answered {
            let (wave, status, started): (i64, String, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            moves.add(exec.as_str(), wave, if started == 1 { "running" } else { "pending" }, -1);
            moves.add(exec.as_str(), wave, &status, 1);
        }
        db.apply_tallies(tx, moves).await
    }

    /// The pc ids `exec` targets.
    pub async fn target_pcs(&self, exec: &ExecId) -> Result<std::collections::HashSet<String>, DbError> {
        let rows = sqlx::query("SELECT pc_id FROM execution_targets WHERE exec_id = $1")
            .bind(exec.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(DbError::from)).collect()
    }

    /// Gives a standing execution a new version's command (a once-per-PC schedule follows its job's versions):
    /// PCs that ran it do not run it again, the rest run the new one.
    pub async fn restate_command(
        &self,
        exec: &ExecId,
        version: &str,
        command_json: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE executions SET version = $2, command_json = $3, updated_at_ms = $4 WHERE exec_id = $1 AND version <> $2",
        )
        .bind(exec.as_str())
        .bind(version)
        .bind(command_json)
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
