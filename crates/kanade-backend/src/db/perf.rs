//! Performance rollups (`perf_rollups`, projected from stream `PERF`): stored idempotently by (pc, window start),
//! read back by time range for the history view, and swept after the backend's `perf_retention`.

use chrono::{DateTime, Utc};
use kanade_shared::perf::{PerfRollup, ProcSummary, Stat};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, clamp, millis};

/// Rows one multi-row insert carries: 19 values each, well within either database's limit on placeholders.
const INSERT_CHUNK: usize = 40;
/// The most rollups one history read returns: a week of one PC at one a minute is 10,080.
pub const MAX_HISTORY_ROWS: u32 = 50_000;

const COLUMNS: &str = "pc_id, start_ms, end_ms, samples, cpu_avg, cpu_max, mem_used_avg, mem_used_max, mem_total, \
    disk_read_avg, disk_read_max, disk_write_avg, disk_write_max, net_rx_avg, net_rx_max, net_tx_avg, net_tx_max, \
    top_cpu, top_memory";

/// One stored rollup, as the history reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRollup {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub samples: u32,
    pub cpu_percent: Stat,
    pub mem_used_bytes: Stat,
    pub mem_total_bytes: u64,
    pub disk_read_bytes_per_sec: Stat,
    pub disk_write_bytes_per_sec: Stat,
    pub net_rx_bytes_per_sec: Stat,
    pub net_tx_bytes_per_sec: Stat,
    pub top_cpu: Vec<ProcSummary>,
    pub top_memory: Vec<ProcSummary>,
}

fn stat(row: &AnyRow, avg: &str, max: &str) -> Result<Stat, DbError> {
    Ok(Stat { avg: row.try_get(avg)?, max: row.try_get(max)? })
}

fn processes(row: &AnyRow, column: &str) -> Result<Vec<ProcSummary>, DbError> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

fn from_row(row: &AnyRow) -> Result<StoredRollup, DbError> {
    Ok(StoredRollup {
        start: millis(row.try_get("start_ms")?),
        end: millis(row.try_get("end_ms")?),
        samples: u32::try_from(row.try_get::<i64, _>("samples")?).unwrap_or(0),
        cpu_percent: stat(row, "cpu_avg", "cpu_max")?,
        mem_used_bytes: stat(row, "mem_used_avg", "mem_used_max")?,
        mem_total_bytes: u64::try_from(row.try_get::<i64, _>("mem_total")?).unwrap_or(0),
        disk_read_bytes_per_sec: stat(row, "disk_read_avg", "disk_read_max")?,
        disk_write_bytes_per_sec: stat(row, "disk_write_avg", "disk_write_max")?,
        net_rx_bytes_per_sec: stat(row, "net_rx_avg", "net_rx_max")?,
        net_tx_bytes_per_sec: stat(row, "net_tx_avg", "net_tx_max")?,
        top_cpu: processes(row, "top_cpu")?,
        top_memory: processes(row, "top_memory")?,
    })
}

/// Text the process lists are stored as: names already cleaned of control characters by `PerfRollup::bound`.
fn json(list: &[ProcSummary]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// Stores rollups (already bounded), the first stored per (pc, window start) staying: a rollup the agent sent
    /// twice, or the broker delivered twice, lands on the same row. A window is dated by the agent's clock but
    /// never after `now`, so a clock far ahead cannot keep a row past its retention.
    pub async fn insert_perf_rollups(&self, rows: &[(PerfRollup, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|n| {
                    let first = n * 19 + 1;
                    let list: Vec<String> = (first..first + 19).map(|p| format!("${p}")).collect();
                    format!("({})", list.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO perf_rollups ({COLUMNS}) VALUES {} ON CONFLICT (pc_id, start_ms) DO NOTHING",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (rollup, _) in chunk {
                let start = rollup.start.min(now).timestamp_millis();
                query = query
                    .bind(rollup.pc_id.as_str())
                    .bind(start)
                    .bind(rollup.end.min(now).timestamp_millis().max(start))
                    .bind(i64::from(rollup.samples))
                    .bind(rollup.cpu_percent.avg)
                    .bind(rollup.cpu_percent.max)
                    .bind(rollup.mem_used_bytes.avg)
                    .bind(rollup.mem_used_bytes.max)
                    .bind(clamp(rollup.mem_total_bytes))
                    .bind(rollup.disk_read_bytes_per_sec.avg)
                    .bind(rollup.disk_read_bytes_per_sec.max)
                    .bind(rollup.disk_write_bytes_per_sec.avg)
                    .bind(rollup.disk_write_bytes_per_sec.max)
                    .bind(rollup.net_rx_bytes_per_sec.avg)
                    .bind(rollup.net_rx_bytes_per_sec.max)
                    .bind(rollup.net_tx_bytes_per_sec.avg)
                    .bind(rollup.net_tx_bytes_per_sec.max)
                    .bind(json(&rollup.top_cpu))
                    .bind(json(&rollup.top_memory));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One PC's rollups whose window starts in `[since, until)`, oldest first, at most [`MAX_HISTORY_ROWS`].
    pub async fn perf_rollups(
        &self,
        pc_id: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<StoredRollup>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM perf_rollups WHERE pc_id = $1 AND start_ms >= $2 AND start_ms < $3
             ORDER BY start_ms LIMIT {MAX_HISTORY_ROWS}"
        ))
        .bind(pc_id)
        .bind(since.timestamp_millis())
        .bind(until.timestamp_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes the rollups whose window started before `before`; returns how many.
    pub async fn prune_perf_rollups(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM perf_rollups WHERE start_ms < $1")
            .bind(before.timestamp_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
