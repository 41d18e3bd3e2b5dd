//! Operator accounts for the tests that sign in: a backend whose setup token the test keeps, the first admin made
//! with it, users added and signed in through the real API, and requests with any bearer token.

use std::sync::{Arc, Mutex};

use kanade_testkit::{NatsServer, TestBackend, connect, init_logging};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The password every test user gets (long enough for the rule).
pub const PASSWORD: &str = "correct horse battery staple";

/// A backend (SQLite, or `database_url`) over its own broker, and the setup token it printed.
pub struct Accounts {
    pub nats: NatsServer,
    pub backend: TestBackend,
    pub setup_token: Option<String>,
}

impl Accounts {
    pub async fn start(database_url: Option<String>) -> Self {
        init_logging();
        let nats = NatsServer::start();
        connect(&nats.url()).await;
        let (backend, setup_token) = start_backend(&nats.url(), database_url).await;
        Self { nats, backend, setup_token }
    }

    pub fn url(&self) -> String {
        self.backend.url()
    }

    /// Makes the first admin `name` with the setup token; returns its session token.
    pub async fn first_admin(&self, name: &str) -> String {
        let token = self.setup_token.clone().expect("a setup token: the database had no user");
        let body = json!({ "setup_token": token, "name": name, "password": PASSWORD });
        let reply = call(&self.url(), Method::POST, "/api/setup", None, Some(body)).await;
        assert_eq!(reply.status, 201, "setup: {}", reply.body);
        login(&self.url(), name, PASSWORD).await
    }
}

/// A backend over `nats_url` and the setup token it printed (none if its database has users).
pub async fn start_backend(nats_url: &str, database_url: Option<String>) -> (TestBackend, Option<String>) {
    let slot = Arc::new(Mutex::new(None));
    let seen = slot.clone();
    let backend = TestBackend::start_tuned(
        nats_url,
        tempfile::tempdir().expect("temp dir"),
        database_url,
        |c| c,
        move |b| {
            *seen.lock().unwrap() = b.setup_token().map(str::to_owned);
            b
        },
    )
    .await;
    let token = slot.lock().unwrap().clone();
    (backend, token)
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// Any request: `bearer` as `Authorization: Bearer`, `body` as JSON.
pub async fn call(base: &str, method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> Reply {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), headers }
}

/// Signs `name` in; returns the whole answer (which must be a 200).
pub async fn sign_in(base: &str, name: &str, password: &str) -> Value {
    let reply = call(base, Method::POST, "/api/login", None, Some(json!({ "name": name, "password": password }))).await;
    assert_eq!(reply.status, 200, "login {name}: {}", reply.body);
    reply.body
}

/// Signs `name` in; returns its session token.
pub async fn login(base: &str, name: &str, password: &str) -> String {
    sign_in(base, name, password).await["access_token"].as_str().expect("a session token").to_owned()
}

/// `admin` adds user `name` with `role` (and `groups`), password [`PASSWORD`].
pub async fn add_user(base: &str, admin: &str, name: &str, role: &str, groups: &[&str]) {
    let body = json!({ "name": name, "role": role, "groups": groups, "password": PASSWORD });
    let reply = call(base, Method::POST, "/api/users", Some(admin), Some(body)).await;
    assert_eq!(reply.status, 201, "add {name}: {}", reply.body);
}
