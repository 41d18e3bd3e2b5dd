//! The HTTP API at its edges: who may call it, and what it answers to bad, hostile and oversized input.

use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, eventually, init_logging};
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use serde_json::Value;

/// A backend over its own nats-server, and a raw HTTP client that sends exactly the headers a test asks for.
struct Api {
    _nats: NatsServer,
    backend: TestBackend,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
    raw: String,
}

impl Api {
    async fn start() -> Self {
        init_logging();
        let nats = NatsServer::start();
        connect(&nats.url()).await;
        let backend = TestBackend::start(&nats.url()).await;
        Self { _nats: nats, backend, http: reqwest::Client::new() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, authorization: Option<&str>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.backend.url()));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = response.text().await.expect("response body");
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply { status, headers, body, raw }
    }

    async fn get(&self, path: &str, authorization: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, authorization).await
    }

    async fn get_authorized(&self, path: &str) -> Reply {
        self.get(path, Some(&format!("Bearer {TEST_TOKEN}"))).await
    }
}

/// Asserts the one error shape every API error has: `{"error": {"code", "message"}}` and nothing else.
fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: status (body: {})", reply.raw);
    let object = reply.body.as_object().unwrap_or_else(|| panic!("{what}: body is not a JSON object: {}", reply.raw));
    assert_eq!(object.keys().collect::<Vec<_>>(), ["error"], "{what}: top-level keys of {}", reply.raw);
    let error = object["error"].as_object().unwrap_or_else(|| panic!("{what}: `error` is not an object"));
    let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{what}: keys of `error` in {}", reply.raw);
    assert_eq!(error["code"], code, "{what}: code in {}", reply.raw);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: empty message in {}", reply.raw);
    // A hostile input must not come back whole: messages quote at most a short prefix of it.
    assert!(message.len() < 1024, "{what}: message of {} bytes echoes the input", message.len());
    let content_type = reply.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"), "{what}: content type");
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let api = Api::start().await;
    let reply = api.get("/health", None).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["database"], "ok");
    assert_eq!(reply.body["version"], env!("CARGO_PKG_VERSION"));
    let nats = eventually("health reports NATS connected", Duration::from_secs(10), || async {
        let reply = api.get("/health", None).await;
        (reply.body["nats"] == "connected").then_some(reply.body["nats"].clone())
    })
    .await;
    assert_eq!(nats, "connected");
}

#[tokio::test]
async fn api_routes_refuse_a_missing_or_wrong_token_with_401() {
    let api = Api::start().await;
    let almost = &TEST_TOKEN[..TEST_TOKEN.len() - 1];
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong token", Some("Bearer not-the-token-at-all-0000".into())),
        ("token missing its last character", Some(format!("Bearer {almost}"))),
        ("token with an extra character", Some(format!("Bearer {TEST_TOKEN}x"))),
        ("empty bearer", Some("Bearer ".into())),
        ("token without the scheme", Some(TEST_TOKEN.into())),
        ("basic scheme", Some(format!("Basic {TEST_TOKEN}"))),
    ];
    for path in ["/api/agents", "/api/agents/pc-1", "/api/results", "/api/results?limit=1"] {
        for (what, authorization) in &cases {
            let reply = api.get(path, authorization.as_deref()).await;
            assert_error(&reply, 401, "unauthorized", &format!("{path} with {what}"));
            assert_eq!(
                reply.headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{path} with {what}: WWW-Authenticate"
            );
        }
    }
}

#[tokio::test]
async fn api_routes_open_with_the_right_token() {
    let api = Api::start().await;
    for path in ["/api/agents", "/api/results"] {
        let reply = api.get_authorized(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.raw);
        assert_eq!(
            reply.body,
            serde_json::json!({ "items": [], "next": null }),
            "{path}: a fresh backend has nothing to show"
        );
    }
}

#[tokio::test]
async fn unknown_api_routes_are_404_not_found() {
    let api = Api::start().await;
    for path in ["/api", "/api/", "/api/nope", "/api/agents/pc-1/extra", "/api/results/x", "/api/agents/"] {
        let reply = api.get_authorized(path).await;
        assert_error(&reply, 404, "not_found", path);
    }
}

#[tokio::test]
async fn malformed_pc_ids_are_400_invalid_pc_id() {
    let api = Api::start().await;
    let long_valid_chars = "a".repeat(10 * 1024);
    let long_invalid_chars = "A".repeat(10 * 1024);
    let cases = [
        "UPPER",
        "a.b",
        "a*b",
        "a%3Eb",         // `>`: a subject wildcard
        "a%20b",         // a space
        "a%2Fb",         // an encoded `/`
        "a%00b",         // NUL
        "%C3%A9",        // `é`: valid UTF-8, not an allowed character
        "%ff%fe",        // not UTF-8 at all
        &"x".repeat(65), // one over the length limit
        &long_valid_chars,
        &long_invalid_chars,
    ];
    for pc in cases {
        let reply = api.get_authorized(&format!("/api/agents/{pc}")).await;
        assert_error(&reply, 400, "invalid_pc_id", &format!("pc id `{}`", &pc[..pc.len().min(40)]));
    }
}

#[tokio::test]
async fn an_agent_that_never_reported_is_404_agent_not_found() {
    let api = Api::start().await;
    for pc in ["pc-1", &"a".repeat(64), "_", "-"] {
        let reply = api.get_authorized(&format!("/api/agents/{pc}")).await;
        assert_error(&reply, 404, "agent_not_found", &format!("pc id `{pc}`"));
        assert!(reply.body["error"]["message"].as_str().unwrap_or_default().contains(pc), "{}", reply.raw);
    }
}

#[tokio::test]
async fn bad_result_queries_are_400_invalid_query() {
    let api = Api::start().await;
    let long = "a".repeat(10 * 1024);
    let cases = [
        "status=bogus".to_owned(),
        "status=unknown".to_owned(),
        "status=OK".to_owned(),
        format!("status={long}"),
        "limit=0".to_owned(),
        "limit=1001".to_owned(),
        "limit=100000".to_owned(),
        "limit=99999999999999999999".to_owned(),
        "limit=-1".to_owned(),
        "limit=abc".to_owned(),
        "limit=1.5".to_owned(),
        "limit=".to_owned(),
        "limit=1&limit=2".to_owned(),
        "unknown=1".to_owned(),
        "pc_id=pc-1&bogus=".to_owned(),
        "exec_id=a.b".to_owned(),
        "exec_id=UPPER".to_owned(),
        "exec_id=%3E".to_owned(),
        format!("exec_id={long}"),
        "pc_id=a.b".to_owned(),
        "pc_id=%ff".to_owned(),
        format!("pc_id={long}"),
        "job_id=a%20b".to_owned(),
        format!("job_id={}", "j".repeat(65)),
    ];
    for query in &cases {
        let reply = api.get_authorized(&format!("/api/results?{query}")).await;
        assert_error(&reply, 400, "invalid_query", &format!("query `{}`", &query[..query.len().min(60)]));
    }
}

#[tokio::test]
async fn result_queries_at_the_limits_are_accepted() {
    let api = Api::start().await;
    let id64 = "a".repeat(64);
    let cases = [
        "limit=1".to_owned(),
        "limit=1000".to_owned(),
        // An empty filter is no filter, as an HTML form sends it.
        "status=&pc_id=&exec_id=&job_id=".to_owned(),
        "status=ok".to_owned(),
        "status=skipped&limit=5".to_owned(),
        format!("pc_id={id64}&exec_id={id64}&job_id={id64}"),
    ];
    for query in &cases {
        let reply = api.get_authorized(&format!("/api/results?{query}")).await;
        assert_eq!(reply.status, 200, "query `{query}`: {}", reply.raw);
        assert_eq!(reply.body, serde_json::json!({ "items": [], "next": null }), "query `{query}`");
    }
}

#[tokio::test]
async fn wrong_methods_on_api_routes_get_the_error_shape() {
    let api = Api::start().await;
    for path in ["/api/agents", "/api/agents/pc-1", "/api/results"] {
        for method in [reqwest::Method::POST, reqwest::Method::DELETE, reqwest::Method::PUT] {
            if path == "/api/agents/pc-1" && method == reqwest::Method::DELETE {
                continue; // forgets the agent: `tests/lists.rs`
            }
            let reply = api.send(method.clone(), path, Some(&format!("Bearer {TEST_TOKEN}"))).await;
            assert_error(&reply, 405, "method_not_allowed", &format!("{method} {path}"));
            let allow = reply.headers.get(reqwest::header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(allow.contains("GET"), "{method} {path}: Allow header `{allow}`");
        }
    }
}

#[tokio::test]
async fn execution_ids_are_validated_and_an_unknown_one_is_not_found() {
    let api = Api::start().await;
    for exec in ["UPPER", "a.b", "%ff", &"x".repeat(65), &"y".repeat(10 * 1024)] {
        let reply = api.get_authorized(&format!("/api/executions/{exec}")).await;
        assert_error(&reply, 400, "invalid_exec_id", &format!("exec id `{}`", &exec[..exec.len().min(40)]));
    }
    let reply = api.get_authorized("/api/executions/never-fired").await;
    assert_error(&reply, 404, "execution_not_found", "an exec id nobody fired");
    let reply = api.get("/api/executions/never-fired", None).await;
    assert_error(&reply, 401, "unauthorized", "no token");
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_is_the_committed_one() {
    let api = Api::start().await;
    let reply = api.get("/api/openapi.json", None).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.headers["content-type"], "application/json");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/openapi.json")).unwrap();
    assert_eq!(reply.raw, committed);
    // Every documented route but the public ones refuses a caller without a token.
    for (path, item) in reply.body["paths"].as_object().unwrap() {
        if path == "/health" || path == "/api/openapi.json" || item.get("get").is_none() || path.contains('{') {
            continue;
        }
        let refused = api.get(path, None).await;
        assert_error(&refused, 401, "unauthorized", path);
    }
}
