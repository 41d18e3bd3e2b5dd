//! Where results' whole output streams are kept (`result_outputs`): projected from a result's `stdout_full` /
//! `stderr_full` in the same transaction as the result, read to annotate result rows and to serve
//! `GET /api/results/{result_id}/output`.
//!
//! An agent says where its output is, and the backend does not take its word for it: an object name other than the
//! result's own `<result_id>/<stream>` (an agent pointing at another run's output) or a malformed hash is stored as
//! "unavailable", with no object to serve.

use kanade_shared::ResultId;
use kanade_shared::api::{FullOutputInfo, ResultRow};
use kanade_shared::resources::result_output_object;
use kanade_shared::wire::{ExecResult, FullOutput, OutputStream};
use sqlx::Row;

use super::{Db, DbError, strip_nul};

/// The most of an agent's "unavailable" reason that is kept.
const MAX_REASON_CHARS: usize = 500;

/// One row of `result_outputs`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub stream: OutputStream,
    /// `None`: nothing to serve beyond the inline part.
    pub object: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub capped: bool,
    pub unavailable: Option<String>,
    /// Messages of stream `OUTPUT` holding it; 0 for an object in `result_output` (an older agent's).
    pub chunks: u32,
}

/// What a result says about its whole outputs, checked against its own id (pure; the projector's half).
pub fn records(result: &ExecResult) -> Vec<OutputRecord> {
    let streams = [(OutputStream::Stdout, &result.stdout_full), (OutputStream::Stderr, &result.stderr_full)];
    streams.into_iter().filter_map(|(stream, full)| Some(record(&result.result_id, stream, full.as_ref()?))).collect()
}

fn record(result: &ResultId, stream: OutputStream, full: &FullOutput) -> OutputRecord {
    let own = result_output_object(result, stream);
    let short = |text: &str| strip_nul(&text.chars().take(MAX_REASON_CHARS).collect::<String>());
    let hash_ok =
        full.sha256.len() == 64 && full.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let size = i64::try_from(full.size);
    let refused = if full.object != own {
        Some(format!("the agent named object `{}`, not this result's own `{own}`", short(&full.object)))
    } else if !hash_ok {
        Some("the agent's sha256 for the output is malformed".to_owned())
    } else if size.is_err() {
        Some("the agent's size for the output is out of range".to_owned())
    } else {
        None
    };
    if let Some(why) = &refused {
        tracing::warn!(result_id = %result, %stream, reason = %why, "full output refused");
    }
    let unavailable = refused.clone().or_else(|| full.unavailable.as_deref().map(short));
    OutputRecord {
        stream,
        object: unavailable.is_none().then_some(own),
        size: size.unwrap_or(0),
        sha256: if hash_ok { full.sha256.clone() } else { String::new() },
        capped: full.capped,
        unavailable,
        chunks: full.chunks,
    }
}

impl Db {
    /// Stores `result`'s output records; called in the transaction that stored the result itself.
    pub(super) async fn insert_outputs(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        result: &ExecResult,
    ) -> Result<(), DbError> {
        for record in records(result) {
            sqlx::query(
                "INSERT INTO result_outputs (result_id, stream, object, size_bytes, sha256, capped, unavailable, chunks)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (result_id, stream) DO NOTHING",
            )
            .bind(result.result_id.as_str())
            .bind(record.stream.as_str())
            .bind(record.object)
            .bind(record.size)
            .bind(record.sha256)
            .bind(i64::from(record.capped))
            .bind(record.unavailable)
            .bind(i64::from(record.chunks))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Fills in `stdout_full` / `stderr_full` of `rows` (one query for all of them).
    pub(super) async fn attach_outputs(&self, rows: &mut [ResultRow]) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = (1..=rows.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT result_id, stream, size_bytes, sha256, capped, unavailable FROM result_outputs
             WHERE result_id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in rows.iter() {
            query = query.bind(row.result_id.clone());
        }
        for found in query.fetch_all(&self.pool).await? {
            let result_id: String = found.try_get("result_id")?;
            let stream: String = found.try_get("stream")?;
            let info = info_from(&found)?;
            for row in rows.iter_mut().filter(|r| r.result_id == result_id) {
                match stream.as_str() {
                    "stdout" => row.stdout_full = Some(info.clone()),
                    "stderr" => row.stderr_full = Some(info.clone()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// One result's output `stream`: its inline text, whether that was cut, and where the whole is kept (if it
    /// outgrew the inline part). `None` when no such result is stored.
    pub async fn result_output(
        &self,
        result: &ResultId,
        stream: OutputStream,
    ) -> Result<Option<StoredOutput>, DbError> {
        let column = match stream {
            OutputStream::Stdout => "r.stdout AS text, r.stdout_truncated AS truncated",
            OutputStream::Stderr => "r.stderr AS text, r.stderr_truncated AS truncated",
        };
        let sql = format!(
            "SELECT {column}, o.object, o.size_bytes, o.sha256, o.capped, o.unavailable, o.chunks
             FROM results r LEFT JOIN result_outputs o ON o.result_id = r.result_id AND o.stream = $2
             WHERE r.result_id = $1"
        );
        let Some(row) =
            sqlx::query(&sql).bind(result.as_str()).bind(stream.as_str()).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let object: Option<String> = row.try_get("object")?;
        let has_record = row.try_get::<Option<i64>, _>("size_bytes")?.is_some();
        Ok(Some(StoredOutput {
            inline: row.try_get("text")?,
            inline_cut: row.try_get::<i64, _>("truncated")? != 0,
            full: if has_record { Some(info_from(&row)?) } else { None },
            object,
            chunks: u32::try_from(row.try_get::<Option<i64>, _>("chunks")?.unwrap_or(0)).unwrap_or(0),
        }))
    }
}

fn info_from(row: &sqlx::any::AnyRow) -> Result<FullOutputInfo, DbError> {
    Ok(FullOutputInfo {
        size: u64::try_from(row.try_get::<i64, _>("size_bytes")?).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        capped: row.try_get::<i64, _>("capped")? != 0,
        unavailable: row.try_get("unavailable")?,
    })
}

/// What the read model holds about one output stream of one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutput {
    /// The result's own text for this stream.
    pub inline: String,
    /// `inline` is the beginning of a longer stream.
    pub inline_cut: bool,
    /// Where the whole is kept, when it outgrew `inline`.
    pub full: Option<FullOutputInfo>,
    /// The output to serve; `None` when there is none (then `full.unavailable` says why, if `full` is set).
    pub object: Option<String>,
    /// The messages of stream `OUTPUT` that hold it, or 0: it is the object `object` in `result_output`.
    pub chunks: u32,
}

#[cfg(test)]
mod tests {
    use kanade_shared::wire::{Command, ResultStatus, Shell};
    use kanade_shared::{ExecId, JobId, PcId};

    use super::*;

    fn result_with(stdout: Option<FullOutput>) -> ExecResult {
        let exec = ExecId::generate();
        let command = Command {
            job_id: JobId::adhoc(&exec),
            exec_id: exec,
            version: String::new(),
            shell: Shell::Sh,
            script: String::new(),
            timeout: std::time::Duration::from_secs(1),
            issued_at: chrono::Utc::now(),
            deadline: None,
            jitter: None,
            run_as: Default::default(),
            cwd: None,
            consent: None,
        };
        let mut result =
            ExecResult::not_started(&command, &PcId::new("pc-1").unwrap(), ResultStatus::Ok, None, chrono::Utc::now());
        result.stdout_full = stdout;
        result
    }

    fn full(object: &str) -> FullOutput {
        FullOutput {
            object: object.into(),
            size: 10,
            sha256: "ab".repeat(32),
            capped: true,
            unavailable: None,
            chunks: 1,
        }
    }

    #[test]
    fn a_result_pointing_at_its_own_object_is_taken_as_it_says() {
        let mut result = result_with(None);
        result.stdout_full = Some(full(&result_output_object(&result.result_id, OutputStream::Stdout)));
        let records = records(&result);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].object, Some(format!("{}/stdout", result.result_id)));
        assert_eq!((records[0].size, records[0].capped, records[0].unavailable.clone()), (10, true, None));
    }

    #[test]
    fn an_object_outside_the_results_own_id_is_refused() {
        let other = result_with(None);
        let mut result = result_with(None);
        for name in [
            result_output_object(&other.result_id, OutputStream::Stdout),
            // Its own stderr object named as its stdout.
            result_output_object(&result.result_id, OutputStream::Stderr),
            "../../agent_releases/1.0/linux-x86_64".into(),
            format!("{}/stdout\0", result.result_id),
        ] {
            result.stdout_full = Some(full(&name));
            let record = &records(&result)[0];
            assert_eq!(record.object, None, "{name}");
            assert!(record.unavailable.as_deref().unwrap().contains("not this result's own"), "{record:?}");
        }
    }

    #[test]
    fn malformed_hashes_and_sizes_and_huge_reasons_are_contained() {
        let mut result = result_with(None);
        let own = result_output_object(&result.result_id, OutputStream::Stdout);
        let mut bad = full(&own);
        bad.sha256 = "ZZ".repeat(32);
        result.stdout_full = Some(bad);
        assert_eq!(records(&result)[0].object, None);
        let mut huge = full(&own);
        huge.size = u64::MAX;
        result.stdout_full = Some(huge);
        assert_eq!((records(&result)[0].object.clone(), records(&result)[0].size), (None, 0));
        let mut lost = full(&own);
        lost.unavailable = Some("x".repeat(100_000));
        result.stdout_full = Some(lost);
        let record = &records(&result)[0];
        assert_eq!((record.object.clone(), record.unavailable.as_ref().unwrap().len()), (None, MAX_REASON_CHARS));
    }
}
