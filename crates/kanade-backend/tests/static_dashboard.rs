//! The embedded web dashboard as a browser meets it: every client-side route gets `index.html` (or, in a backend
//! built without `web/dist`, the page saying how to build it) with its security headers, `/api` and `/health` keep
//! their JSON, HEAD works, and no path climbs out of the embedded files.

use std::path::PathBuf;

use kanade_testkit::{NatsServer, TestBackend, connect, init_logging};
use reqwest::Method;

mod support;

use support::http::{self, Reply, assert_error, get, request};

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `web/dist` as this test binary's backend was built from it.
fn dist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/dist")
}

fn assert_dashboard_page(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.raw);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8", "{what}");
    assert_eq!(reply.header("cache-control"), "no-cache", "{what}");
    assert_eq!(reply.header("content-security-policy"), CSP, "{what}");
    assert_eq!(reply.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(reply.header("referrer-policy"), "no-referrer", "{what}");
    match std::fs::read_to_string(dist().join("index.html")) {
        Ok(index) => assert_eq!(reply.raw, index, "{what}: the built index.html"),
        Err(_) => assert!(reply.raw.contains("<title>kanade dashboard not built</title>"), "{what}: {}", reply.raw),
    }
}

#[tokio::test]
async fn every_dashboard_route_gets_the_page_and_api_routes_keep_their_json() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    for path in ["/", "/agents", "/executions/0192-abc?tab=targets", "/jobs/x/y/z", "/health/extra", "/index.html"] {
        let reply = request(&base, Method::GET, path, &[], None).await;
        assert_dashboard_page(&reply, path);
    }
    let head = request(&base, Method::HEAD, "/executions/1", &[], None).await;
    assert_eq!((head.status, head.raw.as_str()), (200, ""), "HEAD answers like GET, without the body");
    assert_eq!(head.header("content-security-policy"), CSP);
    let post = request(&base, Method::POST, "/agents", &[], Some(("text/plain", b"x".to_vec()))).await;
    assert_eq!(post.status, 405);

    for path in ["/api", "/api/", "/api/nope", "/api/agents/pc-1/extra", "/api/index.html"] {
        assert_error(&get(&base, path).await, 404, "not_found", path);
    }
    let health = request(&base, Method::GET, "/health", &[], None).await;
    assert_eq!((health.status, health.body["status"].clone()), (200, serde_json::json!("ok")));
    assert_eq!(health.header("content-type"), "application/json");
    let unauthorized = request(&base, Method::GET, "/api/agents", &[], None).await;
    assert_error(&unauthorized, 401, "unauthorized", "the API still needs a token");
}

#[tokio::test]
async fn assets_are_immutable_and_no_path_climbs_out_of_the_embedded_files() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let missing = request(&base, Method::GET, "/assets/not-there-1234.js", &[], None).await;
    assert_eq!(missing.status, 404, "a missing asset is not the page: a browser would run HTML as a script");

    // When the dashboard is built, a real asset comes back with its type and a long cache life.
    let built_asset = std::fs::read_dir(dist().join("assets"))
        .ok()
        .and_then(|mut entries| entries.find_map(|e| e.ok()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned());
    assert!(built_asset.is_some(), "web/dist/assets is empty or missing: run `cargo xtask web`, then the test again");
    if let Some(name) = built_asset {
        let reply = request(&base, Method::GET, &format!("/assets/{name}"), &[], None).await;
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.header("cache-control"), "public, max-age=31536000, immutable");
        let expected = if name.ends_with(".js") {
            "text/javascript"
        } else if name.ends_with(".css") {
            "text/css"
        } else {
            ""
        };
        if !expected.is_empty() {
            assert!(reply.header("content-type").starts_with(expected), "{name}: {}", reply.header("content-type"));
        }
        let head = request(&base, Method::HEAD, &format!("/assets/{name}"), &[], None).await;
        assert_eq!((head.status, head.raw.len()), (200, 0));
    }

    // Sent byte for byte, so no client tidies the path first.
    for target in [
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/%2F%2Fetc%2Fpasswd",
        "/../../Cargo.toml",
        "/%2e%2e/%2e%2e/Cargo.toml",
        "/..%2f..%2fCargo.toml",
        "/assets/....//Cargo.toml",
    ] {
        let answer = http::raw(backend.addr, &format!("GET {target} HTTP/1.1")).await;
        let status_line = answer.lines().next().unwrap_or_default().to_owned();
        assert!(
            status_line.contains(" 404 ") || status_line.contains(" 200 ") || status_line.contains(" 400 "),
            "{target}: {status_line}"
        );
        for leaked in ["[workspace]", "[package]", "root:x:0:0"] {
            assert!(!answer.contains(leaked), "{target} leaked a file outside the dashboard: {answer}");
        }
        if status_line.contains(" 200 ") {
            assert!(answer.contains("text/html"), "{target}: only the dashboard page may come back: {answer}");
        }
    }
}
