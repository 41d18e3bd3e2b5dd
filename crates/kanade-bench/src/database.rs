//! The database a benchmark's backend stores into (SQLite in the run's temp dir, or a fresh database on a local
//! PostgreSQL), and how the benchmark reads its counts and sizes from the outside.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::Connection as _;

/// The database a run stores into, and how to read its counts and size.
pub enum Store {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String, url: String },
}

impl Store {
    /// The database of a run of `bench` (`inventory`, `perf`): a file in `work`, or a fresh database on the
    /// PostgreSQL at `postgres` (dropped again by [`Store::drop_database`]).
    pub async fn create(kind: &str, work: &Path, postgres: &str, bench: &str) -> anyhow::Result<Self> {
        match kind {
            "sqlite" => Ok(Self::Sqlite(work.join("backend.db"))),
            "postgres" => {
                let name = format!("kanade_bench_{bench}_{}", std::process::id());
                let mut admin = sqlx::PgConnection::connect(postgres)
                    .await
                    .with_context(|| format!("PostgreSQL at `{postgres}`"))?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
                let mut url = reqwest::Url::parse(postgres)?;
                url.set_path(&name);
                Ok(Self::Postgres { admin: postgres.to_owned(), name, url: url.to_string() })
            }
            other => bail!("database `{other}` is not `sqlite` or `postgres`"),
        }
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres { url, .. } => Some(url),
        }
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Sqlite(path) => {
                let url = format!("sqlite://{}?mode=ro", path.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await?;
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
                conn.close().await?;
                n
            }
            Self::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await?;
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
                conn.close().await?;
                n
            }
        })
    }

    /// The database's size on disk, in bytes (SQLite: the file and its WAL).
    pub async fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(path) => {
                let wal = path.with_extension("db-wal");
                Ok([path.as_path(), wal.as_path()]
                    .iter()
                    .filter_map(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum())
            }
            Self::Postgres { .. } => {
                Ok(u64::try_from(self.count("SELECT pg_database_size(current_database())").await?).unwrap_or_default())
            }
        }
    }

    /// What `table` and its indexes take, in bytes: SQLite's pages of them (its `dbstat` table), PostgreSQL's
    /// `pg_total_relation_size`. `None` where SQLite was built without `dbstat`.
    pub async fn table_bytes(&self, table: &str) -> anyhow::Result<Option<u64>> {
        let sql = match self {
            Self::Sqlite(_) => format!(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = '{table}' \
                 OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = '{table}' AND type = 'index')"
            ),
            Self::Postgres { .. } => format!("SELECT pg_total_relation_size('{table}')"),
        };
        Ok(self.count(&sql).await.ok().and_then(|n| u64::try_from(n).ok()))
    }

    /// The whole database's size as its pages say, WAL included and free pages left out (SQLite), or
    /// `pg_database_size` (PostgreSQL): what the files will be once checkpointed.
    pub async fn used_bytes(&self) -> anyhow::Result<u64> {
        let n = match self {
            Self::Sqlite(_) => {
                self.count(
                    "SELECT (p.page_count - f.freelist_count) * s.page_size \
                     FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
                )
                .await?
            }
            Self::Postgres { .. } => self.count("SELECT pg_database_size(current_database())").await?,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    pub async fn drop_database(&self) {
        if let Self::Postgres { admin, name, .. } = self
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
        }
    }
}

/// Waits until `sql` counts at least `target`, or `patience` passes.
pub async fn until_count(store: &Store, sql: &str, target: i64, patience: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let n = store.count(sql).await.unwrap_or(0);
        if n >= target {
            return Ok(started.elapsed());
        }
        if started.elapsed() > patience {
            bail!("`{sql}` counted {n} of {target} after {} s", patience.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
