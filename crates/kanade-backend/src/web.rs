//! The web dashboard, embedded in the binary: `web/dist` (the front-end's build output) is compiled in with
//! `rust-embed` — in debug builds too, so every build is self-contained — and served here.
//!
//! - `/assets/*`: the bundler's content-hashed files, cached for a year.
//! - Any other GET or HEAD path outside `/api` and `/health`: a file at the root of `web/dist` of that name
//!   (`favicon.svg`, ...), else `index.html`, so the dashboard's client-side routes load on a reload or a shared link.
//! - Built without `web/dist` (no Node.js at build time), every such path answers a short page saying how to build it.
//!
//! `build.rs` makes cargo rebuild this crate when `web/dist` changes, so a fresh `npm run build` is picked up.

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Dist;

/// Where the dashboard's files come from: the embedded build, or a test's own files.
pub trait Assets {
    /// The file at `path` (relative to the build's root, `/`-separated) and its content type.
    fn file(&self, path: &str) -> Option<(Cow<'static, [u8]>, String)>;
}

/// The files compiled into this binary.
pub struct Embedded;

impl Assets for Embedded {
    fn file(&self, path: &str) -> Option<(Cow<'static, [u8]>, String)> {
        Dist::get(path).map(|file| (file.data, file.metadata.mimetype().to_owned()))
    }
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";
const PAGE_CACHE: &str = "no-cache";

/// Shown in place of the dashboard by a backend built without `web/dist`.
pub const NOT_BUILT_PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>kanade dashboard not built</title></head>
<body>
<h1>kanade dashboard not built</h1>
<p>This kanade-backend was built without the web dashboard: <code>web/dist</code> did not exist when it was compiled.
The HTTP API under <code>/api</code> works as usual.</p>
<p>To build the dashboard into the backend:</p>
<ol>
<li>Install Node.js 20 or newer.</li>
<li>Run <code>cargo xtask web</code> in the kanade source tree (it runs <code>npm ci &amp;&amp; npm run build</code> in
<code>web/</code>).</li>
<li>Rebuild the backend (<code>cargo build --release -p kanade-backend</code>) and restart it.</li>
</ol>
</body>
</html>
";

/// The dashboard's routes; merged into the API router, whose `/api` and `/health` routes take precedence.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{*path}", get(asset)).fallback(page)
}

async fn asset(path: Result<Path<String>, axum::extract::rejection::PathRejection>) -> Response {
    match path {
        Ok(Path(path)) => serve_asset(&Embedded, &path),
        Err(_) => not_found(),
    }
}

async fn page(request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    serve_page(&Embedded, request.uri().path())
}

/// `/assets/<path>`: the embedded file, or 404. `path` is already percent-decoded, so anything that could climb out
/// of the folder (`..`, an empty or absolute segment, a backslash) is refused before the lookup.
pub fn serve_asset(assets: &impl Assets, path: &str) -> Response {
    if !is_plain_relative(path) {
        return not_found();
    }
    match assets.file(&format!("assets/{path}")) {
        Some((bytes, mime)) => file_response(bytes, &mime, ASSET_CACHE),
        None => not_found(),
    }
}

/// Any other path: a root file of that name (not `index.html` itself, which is what every route gets), else the
/// dashboard's `index.html`, else the "not built" page.
pub fn serve_page(assets: &impl Assets, uri_path: &str) -> Response {
    let name = uri_path.trim_start_matches('/');
    if !name.is_empty()
        && !name.contains('/')
        && name != "index.html"
        && is_plain_relative(name)
        && let Some((bytes, mime)) = assets.file(name)
    {
        return file_response(bytes, &mime, PAGE_CACHE);
    }
    index_response(assets.file("index.html").map(|(bytes, _)| bytes))
}

/// The answer to a dashboard route: `index.html` when the build has one, the "not built" page when it does not.
pub fn index_response(index: Option<Cow<'static, [u8]>>) -> Response {
    let body = index.unwrap_or(Cow::Borrowed(NOT_BUILT_PAGE.as_bytes()));
    html_headers(file_response(body, "text/html; charset=utf-8", PAGE_CACHE))
}

fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn file_response(bytes: Cow<'static, [u8]>, mime: &str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if mime.starts_with("text/html") { html_headers(response) } else { response }
}

fn html_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "not found\n").into_response();
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A build of the test's own making.
    struct Fake(BTreeMap<&'static str, &'static str>);

    impl Assets for Fake {
        fn file(&self, path: &str) -> Option<(Cow<'static, [u8]>, String)> {
            let mime = if path.ends_with(".html") { "text/html" } else { "text/javascript" };
            self.0.get(path).map(|body| (Cow::Borrowed(body.as_bytes()), mime.to_owned()))
        }
    }

    fn built() -> Fake {
        Fake(BTreeMap::from([
            ("index.html", "<html>dashboard</html>"),
            ("favicon.svg", "<svg/>"),
            ("assets/app-1234.js", "console.log(1)"),
        ]))
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_build_with_an_index_serves_it_for_every_route() {
        for path in ["/", "/executions/abc", "/deep/client/route?x=1", "/index.html"] {
            let response = serve_page(&built(), path);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header(&response, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
            assert_eq!(header(&response, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&response, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(body(response).await, "<html>dashboard</html>");
        }
        let icon = serve_page(&built(), "/favicon.svg");
        assert_eq!(body(icon).await, "<svg/>");
    }

    #[tokio::test]
    async fn a_build_without_an_index_explains_how_to_build_the_dashboard() {
        let empty = Fake(BTreeMap::new());
        for path in ["/", "/executions/abc"] {
            let response = serve_page(&empty, path);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(header(&response, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
            let text = body(response).await;
            assert!(text.contains("<title>kanade dashboard not built</title>"), "{text}");
            assert!(text.contains("cargo xtask web") && text.contains("Node.js 20"), "{text}");
        }
    }

    #[tokio::test]
    async fn assets_are_served_immutable_and_nothing_climbs_out_of_the_build() {
        let response = serve_asset(&built(), "app-1234.js");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert_eq!(header(&response, header::CONTENT_TYPE), "text/javascript");
        assert_eq!(serve_asset(&built(), "missing.js").status(), StatusCode::NOT_FOUND);
        for hostile in ["../index.html", "../../Cargo.toml", "./app-1234.js", "/etc/passwd", "a//b", "..\\x", ""] {
            assert_eq!(serve_asset(&built(), hostile).status(), StatusCode::NOT_FOUND, "{hostile}");
        }
        // A traversal through the page route lands on the dashboard, never on a file outside it.
        assert_eq!(body(serve_page(&built(), "/../Cargo.toml")).await, "<html>dashboard</html>");
    }
}
