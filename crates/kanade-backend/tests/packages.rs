//! `GET|HEAD /api/app-packages/{name}/{version}` against a package really published into the object store:
//! whole bodies, HEAD, byte ranges as BITS asks for them, and the refusals.

use kanade_ops::objects::{self, Store};
// Published as an operator publishes it: with the CLI's `kanade app publish`.
use kanade::commands::objects::publish;
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, init_logging};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, RANGE};

#[tokio::test]
async fn packages_download_whole_in_ranges_and_by_head() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    // Larger than one object-store chunk (128 KiB), so ranges cross chunk boundaries.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pkg.bin");
    std::fs::write(&file, &body).unwrap();
    let store = objects::open(&client, Store::Apps).await.unwrap();
    let published = publish(&store, Store::Apps, "kanade-backend", "0.43.0", &file).await.unwrap();

    let http = reqwest::Client::new();
    let url = format!("{}/api/app-packages/kanade-backend/0.43.0", backend.url());
    let get = |range: Option<&'static str>| {
        let mut request = http.get(&url).bearer_auth(TEST_TOKEN);
        if let Some(range) = range {
            request = request.header(RANGE, range);
        }
        request.send()
    };

    let whole = get(None).await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[CONTENT_LENGTH], "300000");
    assert_eq!(whole.headers()[ACCEPT_RANGES], "bytes");
    assert_eq!(whole.headers()[ETAG], format!("\"{}\"", published.sha256).as_str());
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &body[..]);

    let head = http.head(&url).bearer_auth(TEST_TOKEN).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[CONTENT_LENGTH], "300000");
    assert!(head.bytes().await.unwrap().is_empty());

    for (range, start, end) in [
        ("bytes=0-99", 0usize, 99usize),
        ("bytes=131000-132000", 131_000, 132_000),
        ("bytes=299990-", 299_990, 299_999),
        ("bytes=-5", 299_995, 299_999),
    ] {
        let part = get(Some(range)).await.unwrap();
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(part.headers()[CONTENT_RANGE], format!("bytes {start}-{end}/300000").as_str(), "{range}");
        assert_eq!(part.bytes().await.unwrap().as_ref(), &body[start..=end], "{range}");
    }

    let unsatisfiable = get(Some("bytes=300000-")).await.unwrap();
    assert_eq!(unsatisfiable.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(unsatisfiable.headers()[CONTENT_RANGE], "bytes */300000");

    let (status, body) = backend.get("/api/app-packages/kanade-backend/9.9.9").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("package_not_found")));
    let (status, body) = backend.get("/api/app-packages/Bad.Name/1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_package")));
    let (status, _) = backend.get("/api/app-packages/kanade-backend/1%200").await;
    assert_eq!(status, 400);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
