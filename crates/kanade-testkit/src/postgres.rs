//! A throwaway PostgreSQL database per test, dropped (with whoever is still connected to it) when the test ends,
//! also on panic. The server is `KANADE_TEST_POSTGRES_URL` (an admin URL), else the local one CI and these machines
//! run: `postgres://postgres@127.0.0.1:5432/test`.

use std::time::Duration;

use sqlx::Connection as _;

/// The admin connection when `KANADE_TEST_POSTGRES_URL` names none.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The database's own URL, for a backend's `database_url`.
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url =
            std::env::var("KANADE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
        let shown = kanade_backend::db::redact_url(&admin_url);
        let connecting = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&admin_url));
        let mut admin = match connecting.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => panic!(
                "PostgreSQL at `{shown}` is unreachable ({err}); these tests need it: start it or set \
                 KANADE_TEST_POSTGRES_URL to an admin URL"
            ),
            Err(_) => {
                panic!("PostgreSQL at `{shown}` did not answer within 10 s; start it or set KANADE_TEST_POSTGRES_URL")
            }
        };
        let name = format!("kanade_t_{}", kanade_shared::ExecId::generate().as_str().replace('-', ""));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("cannot create database `{name}` on `{shown}`: {err}"));
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(&admin_url).expect("the admin URL is a URL");
        url.set_path(&name);
        Self { admin_url, name, url: url.to_string() }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself; a thread with its own can.
        let dropped = std::thread::spawn(move || -> Result<(), sqlx::Error> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop the test database");
        }
    }
}
