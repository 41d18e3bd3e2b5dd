//! Jobs' facts in SQL (`job_facts`, `job_fact_sources`): written by the job-facts projector, one PC's rows of one
//! job replaced by those of a newer successful result; read by `GET /api/inventory?app=<job>`.

use chrono::{DateTime, Utc};
use kanade_shared::access::GroupScope;
use kanade_shared::api::JobFactRow;
use sqlx::Row;

use super::{Bind, Db, DbError, and_in_scope, bind_all, millis, strip_nul};
use crate::facts::FactRow;

/// What one successful result of an inventory job says about its PC.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFacts {
    pub job_id: String,
    pub pc_id: String,
    pub result_id: String,
    pub finished_at: DateTime<Utc>,
    /// The rows, or why the output gave none.
    pub facts: Result<Vec<FactRow>, String>,
}

impl Db {
    /// Stores each result's facts unless a newer result of the same job and PC is already stored: the rows are
    /// replaced; an output that was not the promised JSON records its error and leaves the rows before it.
    pub async fn store_facts(&self, rows: &[(NewFacts, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.begin_read_write().await?;
        for (facts, _) in rows {
            let finished = facts.finished_at.timestamp_millis();
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT finished_at_ms FROM job_fact_sources WHERE job_id = $1 AND pc_id = $2")
                    .bind(facts.job_id.as_str())
                    .bind(facts.pc_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if stored.is_some_and(|stored| stored > finished) {
                continue;
            }
            let (count, error) = match &facts.facts {
                Ok(rows) => {
                    sqlx::query("DELETE FROM job_facts WHERE job_id = $1 AND pc_id = $2")
                        .bind(facts.job_id.as_str())
                        .bind(facts.pc_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let cells: Vec<(i64, &String, &String)> = rows
                        .iter()
                        .enumerate()
                        .flat_map(|(n, row)| row.iter().map(move |(field, value)| (n as i64, field, value)))
                        .collect();
                    // 5 parameters x 190 rows.
                    for chunk in cells.chunks(190) {
                        let sql = format!(
                            "INSERT INTO job_facts (job_id, pc_id, row_n, field, value) VALUES {}
                             ON CONFLICT (job_id, pc_id, row_n, field) DO NOTHING",
                            self.dialect.rows(chunk.len(), 5)
                        );
                        let mut query = sqlx::query(&sql);
                        for (n, field, value) in chunk {
                            query = query
                                .bind(facts.job_id.as_str())
                                .bind(facts.pc_id.as_str())
                                .bind(*n)
                                .bind(field.as_str())
                                .bind(value.as_str());
                        }
                        query.execute(&mut *tx).await?;
                    }
                    (rows.len() as i64, None)
                }
                Err(why) => {
                    let kept: i64 = sqlx::query_scalar(
                        "SELECT COUNT(DISTINCT row_n) FROM job_facts WHERE job_id = $1 AND pc_id = $2",
                    )
                    .bind(facts.job_id.as_str())
                    .bind(facts.pc_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    (kept, Some(strip_nul(why)))
                }
            };
            sqlx::query(
                "INSERT INTO job_fact_sources (job_id, pc_id, result_id, finished_at_ms, fact_rows, error,
                    recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (job_id, pc_id) DO UPDATE SET result_id = excluded.result_id,
                    finished_at_ms = excluded.finished_at_ms, fact_rows = excluded.fact_rows, error = excluded.error,
                    recorded_at_ms = excluded.recorded_at_ms",
            )
            .bind(facts.job_id.as_str())
            .bind(facts.pc_id.as_str())
            .bind(facts.result_id.as_str())
            .bind(finished)
            .bind(count)
            .bind(error)
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One page of a job's facts by PC, of the PCs in `scope`: each PC's rows (a PC whose last output was not the
    /// promised JSON shows its error, with the rows it had before), `limit` PCs at most.
    pub async fn job_facts(
        &self,
        job: &str,
        after: Option<&str>,
        limit: usize,
        scope: &GroupScope,
    ) -> Result<super::Paged<JobFactRow, String>, DbError> {
        let mut binds = vec![Bind::Text(job.to_owned())];
        let mut sql =
            "SELECT pc_id, result_id, finished_at_ms, error FROM job_fact_sources WHERE job_id = $1".to_owned();
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
            sql.push_str(" AND pc_id > $2");
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" ORDER BY pc_id LIMIT {}", limit + 1));
        let sources = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let page = super::Paged::of(sources, limit as u32, |row| row.try_get::<String, _>(0).unwrap_or_default());
        let mut items = Vec::new();
        for source in &page.items {
            let pc: String = source.try_get(0)?;
            let cells = sqlx::query(
                "SELECT row_n, field, value FROM job_facts WHERE job_id = $1 AND pc_id = $2 ORDER BY row_n, field",
            )
            .bind(job)
            .bind(pc.as_str())
            .fetch_all(&self.pool)
            .await?;
            let mut rows: Vec<FactRow> = Vec::new();
            for cell in &cells {
                let n = usize::try_from(cell.try_get::<i64, _>(0)?).unwrap_or_default();
                if rows.len() <= n {
                    rows.resize_with(n + 1, FactRow::new);
                }
                rows[n].insert(cell.try_get(1)?, cell.try_get(2)?);
            }
            items.push(JobFactRow {
                pc_id: pc,
                result_id: source.try_get(1)?,
                at: millis(source.try_get(2)?),
                error: source.try_get(3)?,
                rows,
            });
        }
        Ok(super::Paged { items, next: page.next })
    }

    /// How many PCs in `scope` have each value of `field` in `job`'s facts, most first (at most 1,000 values).
    pub async fn fact_counts(&self, job: &str, field: &str, scope: &GroupScope) -> Result<Vec<(String, i64)>, DbError> {
        let mut sql =
            "SELECT value, COUNT(DISTINCT pc_id) AS pcs FROM job_facts WHERE job_id = $1 AND field = $2".to_owned();
        let mut binds = vec![Bind::Text(job.to_owned()), Bind::Text(field.to_owned())];
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(" GROUP BY value ORDER BY pcs DESC, value LIMIT 1000");
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}
