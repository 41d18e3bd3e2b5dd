//! HTTP helpers for the dashboard-facing tests: a backend with internal knobs turned (request timeout, stream
//! limit), requests with any headers and body, server-sent events read off a response, and raw requests that no
//! client normalises.

use std::net::SocketAddr;
use std::time::Duration;

use kanade_testkit::TEST_TOKEN;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A backend started with [`kanade_backend::Bound`]'s test knobs; stopped on drop.
pub struct Knobbed {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

impl Knobbed {
    pub async fn start(nats_url: &str, tune: impl FnOnce(kanade_backend::Bound) -> kanade_backend::Bound) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = kanade_testkit::backend_config(nats_url, data_dir.path(), None);
        let bound = kanade_backend::Backend::bind(config).await.expect("backend binds");
        let bound = tune(
            bound.with_signing_key(&kanade_testkit::fleet().backend_signer_file()).expect("the backend's signing key"),
        );
        let addr = bound.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bound.serve(shutdown.clone()));
        Self { addr, shutdown, task: Some(task), _data_dir: data_dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the backend and waits for it; fails if it does not stop within `patience`.
    pub async fn stop_within(mut self, patience: Duration) {
        self.shutdown.cancel();
        let task = self.task.take().expect("task");
        tokio::time::timeout(patience, task)
            .await
            .expect("the backend stops in time")
            .expect("backend task panicked")
            .expect("backend failed");
    }
}

impl Drop for Knobbed {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// Any request against `base`: `body` is sent as is with `content_type` when given.
pub async fn request(
    base: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let raw = response.text().await.expect("response body");
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Reply { status, headers, body, raw }
}

/// A POST with the shared test token and a JSON body.
pub async fn post_json(base: &str, path: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {TEST_TOKEN}");
    let bytes = serde_json::to_vec(body).expect("JSON");
    request(base, reqwest::Method::POST, path, &[("authorization", &bearer)], Some(("application/json", bytes))).await
}

/// A GET with the shared test token.
pub async fn get(base: &str, path: &str) -> Reply {
    let bearer = format!("Bearer {TEST_TOKEN}");
    request(base, reqwest::Method::GET, path, &[("authorization", &bearer)], None).await
}

/// Asserts the one error shape every API error has: `{"error": {"code", "message"}}`, as JSON, and nothing else.
pub fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: status (body: {})", reply.raw);
    let object = reply.body.as_object().unwrap_or_else(|| panic!("{what}: body is not a JSON object: {}", reply.raw));
    assert_eq!(object.keys().collect::<Vec<_>>(), ["error"], "{what}: top-level keys of {}", reply.raw);
    let mut keys: Vec<_> = object["error"].as_object().expect("error object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{what}: keys of `error` in {}", reply.raw);
    assert_eq!(object["error"]["code"], code, "{what}: code in {}", reply.raw);
    assert!(object["error"]["message"].as_str().is_some_and(|m| !m.is_empty() && m.len() < 1024), "{what}");
    assert_eq!(reply.header("content-type"), "application/json", "{what}: content type");
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|err| panic!("event data is not JSON ({err}): {}", self.data))
    }
}

/// An open event stream; comments (keep-alives) are counted, not returned.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    pub comments: usize,
}

impl SseStream {
    /// Opens `path` with the shared token; panics unless the answer is a 200 event stream.
    pub async fn open(base: &str, path: &str) -> Self {
        let response = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if status != 200 {
            panic!("{path}: {status} {}", response.text().await.unwrap_or_default());
        }
        assert_eq!(content_type, "text/event-stream", "{path}");
        Self { response, buffer: String::new(), comments: 0 }
    }

    /// The next event within `patience`; `None` if the stream ended.
    pub async fn next(&mut self, patience: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data, mut comment) = (String::new(), Vec::new(), false);
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
                    } else if line.starts_with(':') {
                        comment = true;
                    }
                }
                if event.is_empty() && data.is_empty() {
                    self.comments += usize::from(comment);
                    continue;
                }
                return Some(SseEvent { event, data: data.join("\n") });
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => panic!("no event within {patience:?}; buffered: {:?}", self.buffer),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    /// Events until one satisfies `wanted`, within `patience` overall.
    pub async fn until(&mut self, patience: Duration, what: &str, wanted: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "gave up after {patience:?} waiting for: {what}");
            match tokio::time::timeout(left, self.next(left)).await {
                Ok(Some(event)) if wanted(&event) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended while waiting for: {what}"),
                Err(_) => panic!("gave up after {patience:?} waiting for: {what}"),
            }
        }
    }
}

/// Sends `request_line` and headers over a bare TCP connection (no URL normalisation) and returns the whole answer.
pub async fn raw(addr: SocketAddr, request_line: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{request_line}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}
