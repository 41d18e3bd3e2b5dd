//! The backend's HTTP API as the CLI uses it: bearer token, the operator's name, and the API's error shape turned
//! into a plain message.
//!
//! The bearer token is, in order: `--token` (`KANADE_AUTH_TOKEN`: an API token, or the static token), else the
//! session `kanade login` stored (`session.json` in the operator's config folder, owner-only) when it was made with
//! this same backend URL — its session token refreshed when it has expired or is about to — else none.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Cli;

/// The header that names the operator (believed by the backend only with a shared token; a per-operator token
/// proves who is calling).
pub const OPERATOR_HEADER: &str = "x-kanade-operator";

/// The backend said no: its status, its stable error `code` (empty when it gave none) and its message. Commands
/// that give one refusal an exit code of its own find it with `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("the backend refused ({status}): {message}")]
pub struct Refused {
    pub status: reqwest::StatusCode,
    pub code: String,
    pub message: String,
}

pub struct Backend {
    http: reqwest::Client,
    /// For event streams, which last as long as someone watches: no overall timeout (the reader detects a stall).
    streaming: reqwest::Client,
    base: String,
    auth: Auth,
}

/// Where a request's bearer token comes from.
enum Auth {
    /// Nothing to send (a backend with auth disabled needs nothing); `other` names the backend a stored session is
    /// for, when there is one for another URL, for the message of a refusal.
    None { other: Option<String> },
    /// `--token` / `KANADE_AUTH_TOKEN`.
    Token(String),
    /// The session `kanade login` stored, refreshed as needed.
    Session { path: PathBuf, session: tokio::sync::Mutex<StoredSession> },
}

/// The file `kanade login` keeps its session in, in the operator's config folder.
pub const SESSION_FILE: &str = "session.json";

/// A session as `kanade login` stores it: the backend it is for, and its tokens. Written owner-only.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSession {
    pub backend_url: String,
    pub user: String,
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("backend_url", &self.backend_url)
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A session token this close to its expiry is refreshed before it is used.
const REFRESH_AHEAD: chrono::Duration = chrono::Duration::seconds(30);

impl StoredSession {
    /// What `POST /api/login` or `/api/refresh` answered, for `backend_url`.
    pub fn from_tokens(backend_url: &str, tokens: &kanade_shared::api::SessionTokens) -> anyhow::Result<Self> {
        Ok(Self {
            backend_url: normalise(backend_url),
            user: tokens.user.clone(),
            access_token: tokens.access_token.clone(),
            expires_at: tokens.expires_at,
            refresh_token: tokens.refresh_token.clone().context("the backend's answer has no refresh token")?,
            refresh_expires_at: tokens.refresh_expires_at,
        })
    }
}

/// Where the session is kept: `session.json` in [`kanade_ops::signing::user_config_dir`].
pub fn session_path() -> anyhow::Result<PathBuf> {
    kanade_ops::signing::user_config_dir()
        .map(|dir| dir.join(SESSION_FILE))
        .context("no config folder to keep the session in: set KANADE_CONFIG_DIR")
}

/// The stored session, if there is one; an unreadable file is reported, not taken.
pub fn read_session(path: &Path) -> anyhow::Result<Option<StoredSession>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("`{}` is not a session `kanade login` wrote: sign in again", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Writes the session, owner-only, creating the folder (owner-only) when missing.
pub fn write_session(path: &Path, session: &StoredSession) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        kanade_ops::security::private_dir(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(session)?;
    kanade_ops::security::write_file(path, &bytes, true)?;
    Ok(())
}

/// A backend URL as sessions are matched by: without a trailing slash.
fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

impl Backend {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let base = normalise(&cli.backend_url);
        let auth = match cli.token.clone().filter(|t| !t.is_empty()) {
            Some(token) => Auth::Token(token),
            None => {
                let path = session_path().ok();
                match path.as_deref().map(read_session).transpose()?.flatten() {
                    // A session goes to the backend that made it, never to another.
                    Some(session) if session.backend_url == base => {
                        Auth::Session { path: path.unwrap_or_default(), session: tokio::sync::Mutex::new(session) }
                    }
                    Some(session) => Auth::None { other: Some(session.backend_url) },
                    None => Auth::None { other: None },
                }
            }
        };
        Self::with(base, auth)
    }

    /// The backend at `url`, with no credential: for signing in and out.
    pub fn anonymous(url: &str) -> anyhow::Result<Self> {
        Self::with(normalise(url), Auth::None { other: None })
    }

    fn with(base: String, auth: Auth) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot set up the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { http, streaming, base, auth })
    }

    /// The bearer token to send, if any: a stored session's is refreshed first when it has expired or is about to
    /// (`force`: refreshed whatever its expiry says).
    async fn bearer(&self, force: bool) -> anyhow::Result<Option<String>> {
        match &self.auth {
            Auth::None { .. } => Ok(None),
            Auth::Token(token) => Ok(Some(token.clone())),
            Auth::Session { path, session } => {
                let mut session = session.lock().await;
                if force || session.expires_at - REFRESH_AHEAD <= Utc::now() {
                    *session = self.refresh(&session).await?;
                    write_session(path, &session)?;
                }
                Ok(Some(session.access_token.clone()))
            }
        }
    }

    /// Trades the session's refresh token for a new session token (and refresh token).
    async fn refresh(&self, session: &StoredSession) -> anyhow::Result<StoredSession> {
        let body = kanade_shared::api::SessionRefreshBody { refresh_token: Some(session.refresh_token.clone()) };
        let response = self
            .http
            .post(format!("{}/api/refresh", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "your session as `{}` at `{}` has ended (signed out, revoked or expired): sign in again with `kanade \
                 login`",
                session.user,
                self.base
            );
        }
        let response = success_or_refusal(response).await?;
        let tokens: kanade_shared::api::SessionTokens =
            response.json().await.context("the backend's answer to a refresh is not what this CLI reads")?;
        StoredSession::from_tokens(&self.base, &tokens)
    }

    /// A refusal of this caller's credentials, with what to do about it.
    fn explain(&self, mut refused: Refused) -> Refused {
        if refused.status == reqwest::StatusCode::UNAUTHORIZED {
            let hint = match &self.auth {
                Auth::None { other: Some(other) } => format!(
                    "; you are signed in to `{other}`, not `{}`: pass --backend-url {other}, or `kanade login` here",
                    self.base
                ),
                Auth::None { other: None } => "; sign in with `kanade login`, or pass --token".to_owned(),
                Auth::Session { .. } if !refused.message.contains("sign in again") => {
                    "; sign in again with `kanade login`".to_owned()
                }
                Auth::Session { .. } => " (`kanade login`)".to_owned(),
                Auth::Token(_) => String::new(),
            };
            refused.message.push_str(&hint);
        }
        refused
    }

    /// The backend's URL, as messages name it.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        self.send(Method::GET, path, query, None::<&()>).await
    }

    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        self.send(Method::DELETE, path, query, None::<&()>).await
    }

    /// One page of a list (`--limit`, from `--cursor`), or every page (`--all`), following each page's `next`.
    pub async fn list(&self, path: &str, query: &[(&str, String)], paging: &PageArgs) -> anyhow::Result<Listed> {
        let mut listed = Listed { items: Vec::new(), next: paging.cursor.clone() };
        let limit = if paging.all { kanade_shared::api::MAX_PAGE_LIMIT } else { paging.limit };
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut page_query = query.to_vec();
            page_query.push(("limit", limit.to_string()));
            page_query.extend(listed.next.clone().map(|c| ("cursor", c)));
            let page = self.get(path, &page_query).await?;
            let Some(items) = page["items"].as_array() else {
                bail!("the backend's answer to `{path}` is not a page of a list");
            };
            listed.items.extend(items.iter().cloned());
            listed.next = page["next"].as_str().map(str::to_owned);
            match &listed.next {
                Some(next) if paging.all => {
                    // A backend that hands out the same cursor twice would page forever.
                    if !seen.insert(next.clone()) {
                        bail!("the backend handed out the same cursor twice for `{path}`");
                    }
                }
                _ => return Ok(listed),
            }
        }
    }

    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<serde_json::Value> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn put<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<serde_json::Value> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    /// Any method with a JSON body (`PATCH`, ...).
    pub async fn send_json<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(method, path, &[], Some(body)).await
    }

    /// `get`, read as one of the API's response types (`kanade_shared::api`).
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        typed(path, self.get(path, query).await?)
    }

    /// `post`, read as one of the API's response types (`kanade_shared::api`).
    pub async fn post_as<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        typed(path, self.post(path, body).await?)
    }

    /// A GET whose body is not JSON (a run's whole output): the response once its status is a success, for the
    /// caller to stream. Allowed longer than a JSON call, since the body can be large.
    pub async fn get_raw(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .timeout(std::time::Duration::from_secs(600))
            .header(OPERATOR_HEADER, crate::audit::operator());
        if let Some(token) = self.bearer(false).await? {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        success_or_refusal(response).await.map_err(|err| self.explained(err))
    }

    fn explained(&self, err: anyhow::Error) -> anyhow::Error {
        match err.downcast::<Refused>() {
            Ok(refused) => self.explain(refused).into(),
            Err(err) => err,
        }
    }

    /// A GET of server-sent events (`text/event-stream`): the response once its status is a success and it is an
    /// event stream, for the caller to read chunk by chunk for as long as it likes.
    pub async fn open_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .streaming
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .header(OPERATOR_HEADER, crate::audit::operator());
        if let Some(token) = self.bearer(false).await? {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        let response = success_or_refusal(response).await.map_err(|err| self.explained(err))?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            bail!("the backend's answer to `{path}` is not an event stream (it is `{content_type}`)");
        }
        Ok(response)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> anyhow::Result<serde_json::Value> {
        match self.send_once(method.clone(), path, query, body, false).await {
            // The session token expired on the way (a clock off by more than the margin): once more, refreshed.
            Err(err)
                if matches!(self.auth, Auth::Session { .. })
                    && err.downcast_ref::<Refused>().is_some_and(|r| r.code == "token_expired") =>
            {
                self.send_once(method, path, query, body, true).await
            }
            other => other,
        }
    }

    async fn send_once<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        refresh: bool,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .header(OPERATOR_HEADER, crate::audit::operator());
        if let Some(token) = self.bearer(refresh).await? {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        let status = response.status();
        let text = response.text().await.context("cannot read the backend's answer")?;
        let body: serde_json::Value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the backend answered {status} with something that is not JSON"))?
        };
        if !status.is_success() {
            // Read by field, not as `ErrorBody`: a newer backend's error code must not hide its message.
            let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
            let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
            return Err(self.explain(Refused { status, code, message }).into());
        }
        Ok(body)
    }

    /// Ends the session of `refresh_token` (`POST /api/logout`).
    pub async fn logout(&self, refresh_token: &str) -> anyhow::Result<()> {
        let body = kanade_shared::api::SessionRefreshBody { refresh_token: Some(refresh_token.to_owned()) };
        let response = self
            .http
            .post(format!("{}/api/logout", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        success_or_refusal(response).await.map(drop)
    }

    /// A request without any credential (signing in), read as one of the API's types.
    pub async fn post_public<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        let response = success_or_refusal(response).await?;
        response.json().await.with_context(|| format!("the backend's answer to `{path}` is not what this CLI reads"))
    }
}

/// How a list command pages: `--limit N` rows from the start (or from `--cursor`), or `--all` of them.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// Rows to show (1-1000): one page from the start, or from --cursor.
    #[arg(long, default_value_t = kanade_shared::api::DEFAULT_PAGE_LIMIT, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Every row, page after page (1000 a request).
    #[arg(long, conflicts_with_all = ["limit", "cursor"])]
    pub all: bool,
    /// Go on where an earlier page ended: the `next` it printed.
    #[arg(long, value_parser = cursor_arg)]
    pub cursor: Option<String>,
}

fn cursor_arg(raw: &str) -> Result<String, String> {
    if raw.len() > kanade_shared::api::MAX_CURSOR_LEN
        || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("not a cursor: pass the `next` of an earlier page as it was printed".into());
    }
    Ok(raw.to_owned())
}

/// The rows a list command read, and where the list goes on (`None`: at its end).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub items: Vec<serde_json::Value>,
    pub next: Option<String>,
}

impl Listed {
    /// `-o json`: `{"items", "next"}`, the API's page shape. Table (or CSV): a row per item, then on stderr how to
    /// go on.
    pub fn print(
        &self,
        format: crate::output::Format,
        header: &[&str],
        row: impl Fn(&serde_json::Value) -> Vec<String>,
    ) -> anyhow::Result<()> {
        self.print_rows(format, header, self.items.iter().map(row).collect())
    }

    /// [`Listed::print`] with the table's rows already made.
    pub fn print_rows(
        &self,
        format: crate::output::Format,
        header: &[&str],
        rows: Vec<Vec<String>>,
    ) -> anyhow::Result<()> {
        match format {
            crate::output::Format::Json => crate::output::json(self)?,
            crate::output::Format::Table | crate::output::Format::Csv => {
                if format == crate::output::Format::Csv {
                    crate::output::csv(header, &rows)?;
                } else {
                    crate::output::table(header, &rows);
                }
                if let Some(next) = &self.next {
                    crate::output::note(&format!("{} shown; more follow: --all, or --cursor {next}", rows.len()));
                }
            }
        }
        Ok(())
    }
}

/// A field of a row as text: strings as they are, numbers and booleans printed, null and absent empty.
pub fn field(row: &serde_json::Value, key: &str) -> String {
    match &row[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The response if its status is a success; otherwise the backend's refusal, read from the API's error shape.
async fn success_or_refusal(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    Err(Refused { status, code, message }.into())
}

fn typed<T: DeserializeOwned>(path: &str, body: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(body).with_context(|| format!("the backend's answer to `{path}` is not what this CLI reads"))
}
