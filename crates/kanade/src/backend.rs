//! The backend's HTTP API as the CLI uses it: bearer token, the operator's name, and the API's error shape turned
//! into a plain message.

use anyhow::Context as _;
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
        Ok(Self { http, base: cli.backend_url.trim_end_matches('/').to_owned(), token: cli.token.clone() })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        self.send(Method::GET, path, query, None::<&()>).await
    }

    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<serde_json::Value> {
        self.send(Method::POST, path, &[], Some(body)).await
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
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
            let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
            return Err(Refused { status, code, message }.into());
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

fn typed<T: DeserializeOwned>(path: &str, body: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(body).with_context(|| format!("the backend's answer to `{path}` is not what this CLI reads"))
}
