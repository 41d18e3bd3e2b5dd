//! The backend's HTTP API as the CLI uses it: bearer token, the operator's name, and the API's error shape turned
//! into a plain message.

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    token: Option<String>,
}

impl Backend {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot set up the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { http, streaming, base: cli.backend_url.trim_end_matches('/').to_owned(), token: cli.token.clone() })
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
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        success_or_refusal(response).await
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
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the backend at `{}`", self.base))?;
        let response = success_or_refusal(response).await?;
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
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .header(OPERATOR_HEADER, crate::audit::operator());
        if let Some(token) = &self.token {
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
            return Err(Refused { status, code, message }.into());
        }
        Ok(body)
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
