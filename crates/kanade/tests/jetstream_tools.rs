//! `kanade jetstream kv ...` and `kanade jetstream object ...`, the real binary against a real nats-server: what
//! the runbooks type, kanade's own buckets guarded by `--yes`, every change audited, and hostile names and sizes.

use std::process::{Output, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use kanade_shared::wire::AuditEvent;
use kanade_testkit::{NatsServer, connect, eventually, init_logging};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(20);

fn kanade(nats_url: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_OPERATOR", "runbook-reader");
    cmd
}

async fn run(nats_url: &str, args: &[&str]) -> Output {
    kanade(nats_url).args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every audit event recorded so far, oldest first.
async fn audit_events(js: &jetstream::Context) -> Vec<AuditEvent> {
    let stream = js.get_stream("AUDIT").await.unwrap();
    let count = stream.get_info().await.unwrap().state.messages;
    let mut events = Vec::new();
    for seq in 1..=count {
        if let Ok(message) = stream.get_raw_message(seq).await {
            events.push(serde_json::from_slice(&message.payload).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn kv_tools_list_get_put_and_delete_and_guard_kanade_s_own_buckets() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let notes = js
        .create_key_value(jetstream::kv::Config { bucket: "notes".into(), max_value_size: 1024, ..Default::default() })
        .await
        .unwrap();

    // Buckets: every one, kanade's own marked.
    let buckets = run(&url, &["jetstream", "kv", "ls", "-o", "json"]).await;
    assert_eq!(buckets.status.code(), Some(0), "{}", text(&buckets.stderr));
    let buckets: serde_json::Value = serde_json::from_slice(&buckets.stdout).unwrap();
    let names: Vec<(&str, bool)> =
        buckets.as_array().unwrap().iter().map(|b| (b["name"].as_str().unwrap(), b["kanade"] == true)).collect();
    assert!(names.contains(&("notes", false)) && names.contains(&("agent_config", true)), "{names:?}");
    let table = run(&url, &["jetstream", "kv", "ls"]).await;
    assert!(text(&table.stdout).starts_with("BUCKET"), "{}", text(&table.stdout));

    // Put from an argument, a file and stdin; get raw and as JSON.
    let put = run(&url, &["jetstream", "kv", "put", "notes", "greeting", "hello"]).await;
    assert_eq!(put.status.code(), Some(0), "{}", text(&put.stderr));
    assert!(text(&put.stderr).contains("revision 1"), "{}", text(&put.stderr));
    let got = run(&url, &["jetstream", "kv", "get", "notes", "greeting"]).await;
    assert_eq!((got.status.code(), got.stdout.as_slice()), (Some(0), b"hello".as_slice()), "raw, no newline");

    let scratch = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    std::fs::write(scratch.path().join("blob"), &binary).unwrap();
    let from_file = scratch.path().join("blob");
    let put = run(&url, &["jetstream", "kv", "put", "notes", "blob/v1", "--file", from_file.to_str().unwrap()]).await;
    assert_eq!(put.status.code(), Some(0), "{}", text(&put.stderr));
    let got = run(&url, &["jetstream", "kv", "get", "notes", "blob/v1"]).await;
    assert_eq!(got.stdout, binary, "binary-safe both ways");
    let json = run(&url, &["jetstream", "kv", "get", "notes", "blob/v1", "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["value"], serde_json::Value::Null);
    assert_eq!(json["value_base64"].as_str().map(str::len), Some(344));
    assert_eq!(json["revision"], 2);
    assert!(json["created"].as_str().unwrap().starts_with("20"), "{json}");

    let mut piped = kanade(&url)
        .args(["jetstream", "kv", "put", "notes", "from.stdin", "--file", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    piped.stdin.take().unwrap().write_all(b"line one\nline two\n").await.unwrap();
    let piped = piped.wait_with_output().await.unwrap();
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert_eq!(notes.get("from.stdin").await.unwrap().unwrap(), "line one\nline two\n".as_bytes());
    let text_json = run(&url, &["jetstream", "kv", "get", "notes", "from.stdin", "-o", "json"]).await;
    let text_json: serde_json::Value = serde_json::from_slice(&text_json.stdout).unwrap();
    assert_eq!(text_json["value"], "line one\nline two\n");

    let keys = run(&url, &["jetstream", "kv", "ls", "notes"]).await;
    assert_eq!(text(&keys.stdout), "blob/v1\nfrom.stdin\ngreeting\n");

    // Delete; then the key is missing, which is an error (exit 1) naming it.
    let del = run(&url, &["jetstream", "kv", "del", "notes", "greeting"]).await;
    assert_eq!(del.status.code(), Some(0), "{}", text(&del.stderr));
    for args in [&["jetstream", "kv", "get", "notes", "greeting"][..], &["jetstream", "kv", "del", "notes", "greeting"]]
    {
        let missing = run(&url, args).await;
        assert_eq!(missing.status.code(), Some(1), "{args:?}");
        assert!(text(&missing.stderr).contains("bucket `notes` has no key `greeting`"), "{}", text(&missing.stderr));
    }
    let no_bucket = run(&url, &["jetstream", "kv", "ls", "nothere"]).await;
    assert_eq!(no_bucket.status.code(), Some(1));
    assert!(text(&no_bucket.stderr).contains("there is no KV bucket `nothere`"), "{}", text(&no_bucket.stderr));

    // Kanade's own bucket: refused without --yes (nothing written), done and audited with it.
    let refused = run(&url, &["jetstream", "kv", "put", "agent_config", "global", "{}"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("add --yes"), "{}", text(&refused.stderr));
    let refused_del = run(&url, &["jetstream", "kv", "del", "script_status", "patch"]).await;
    assert_eq!(refused_del.status.code(), Some(2));
    let config = js.get_key_value("agent_config").await.unwrap();
    assert_eq!(config.get("global").await.unwrap(), None, "a refused put writes nothing");
    let forced = run(&url, &["jetstream", "kv", "put", "agent_config", "global", "{}", "--yes"]).await;
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert_eq!(config.get("global").await.unwrap().unwrap(), "{}".as_bytes());
    let forced_del = run(&url, &["jetstream", "kv", "del", "agent_config", "global", "--yes"]).await;
    assert_eq!(forced_del.status.code(), Some(0), "{}", text(&forced_del.stderr));

    let events = eventually("six changes audited", PATIENCE, || async {
        let events = audit_events(&js).await;
        (events.len() == 6).then_some(events)
    })
    .await;
    let summary: Vec<(&str, &str, &str)> =
        events.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    let who = "runbook-reader";
    assert_eq!(
        summary,
        [
            (who, "kv_put", "notes/greeting"),
            (who, "kv_put", "notes/blob/v1"),
            (who, "kv_put", "notes/from.stdin"),
            (who, "kv_del", "notes/greeting"),
            (who, "kv_put", "agent_config/global"),
            (who, "kv_del", "agent_config/global"),
        ]
    );
    assert_eq!(
        (events[0].details["kanade"].as_bool(), events[4].details["kanade"].as_bool()),
        (Some(false), Some(true))
    );
    let all = audit_events(&js).await;
    assert!(all.iter().all(|e| e.source == "cli"));
}

#[tokio::test]
async fn kv_tools_refuse_hostile_names_and_oversized_values_with_clear_errors() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    js.create_key_value(jetstream::kv::Config { bucket: "notes".into(), max_value_size: 1024, ..Default::default() })
        .await
        .unwrap();

    for (args, says) in [
        (&["jetstream", "kv", "ls", "a b"][..], "`a b` is not a valid bucket or store name"),
        (&["jetstream", "kv", "ls", "KV.*"], "is not a valid bucket or store name"),
        (&["jetstream", "kv", "get", "notes", "a..b"], "`a..b` is not a valid key"),
        (&["jetstream", "kv", "get", "notes", "a.>"], "is not a valid key"),
        (&["jetstream", "kv", "get", "notes", "*"], "is not a valid key"),
        (&["jetstream", "kv", "get", "notes", "with space"], "is not a valid key"),
        (&["jetstream", "kv", "get", "notes", ".hidden"], "is not a valid key"),
        (&["jetstream", "kv", "put", "notes", "k"], "required arguments were not provided"),
        (&["jetstream", "kv", "put", "notes", "k", "v", "--file", "-"], "cannot be used with"),
    ] {
        let out = run(&url, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    let long_key = "k".repeat(2000);
    let out = run(&url, &["jetstream", "kv", "get", "notes", &long_key]).await;
    assert_eq!(out.status.code(), Some(2));

    // Over the bucket's own limit: refused before anything is sent, with both sizes.
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big");
    std::fs::write(&big, vec![b'x'; 2048]).unwrap();
    let out = run(&url, &["jetstream", "kv", "put", "notes", "big", "--file", big.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the value is 2048 bytes; bucket `notes` takes at most 1024"),
        "{}",
        text(&out.stderr)
    );
    // Over the server's max_payload (1 MiB) in a bucket without a limit of its own.
    js.create_key_value(jetstream::kv::Config { bucket: "open".into(), ..Default::default() }).await.unwrap();
    std::fs::write(&big, vec![b'x'; 2 * 1024 * 1024]).unwrap();
    let out = run(&url, &["jetstream", "kv", "put", "open", "big", "--file", big.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("takes at most 1048576"), "{}", text(&out.stderr));
    let missing_file = run(&url, &["jetstream", "kv", "put", "open", "k", "--file", "/nonexistent/file"]).await;
    assert_eq!(missing_file.status.code(), Some(1));
    assert!(text(&missing_file.stderr).contains("cannot open `/nonexistent/file`"));
    assert!(audit_events(&js).await.is_empty(), "nothing was changed, nothing audited");
}

#[tokio::test]
async fn object_tools_list_describe_stream_and_remove_objects() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let store = js
        .create_object_store(jetstream::object_store::Config { bucket: "files".into(), ..Default::default() })
        .await
        .unwrap();
    // Bigger than many chunks and than any one message: it must be streamed both ways.
    let big: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = hex(&Sha256::digest(&big));
    store.put("tools/big.bin", &mut big.as_slice()).await.unwrap();
    store.put("small.txt", &mut b"hello object\n".as_slice()).await.unwrap();

    let stores = run(&url, &["jetstream", "object", "ls", "-o", "json"]).await;
    let stores: serde_json::Value = serde_json::from_slice(&stores.stdout).unwrap();
    let names: Vec<&str> = stores.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"files") && names.contains(&"agent_releases"), "{names:?}");

    let listed = run(&url, &["jetstream", "object", "ls", "files", "-o", "json"]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "small.txt");
    assert_eq!(listed[1]["name"], "tools/big.bin");
    assert_eq!(listed[1]["size"], big.len());
    assert_eq!(listed[1]["sha256"], digest.as_str());
    assert!(listed[1]["modified"].is_string() && listed[1]["digest"].as_str().unwrap().starts_with("SHA-256="));
    let table = run(&url, &["jetstream", "object", "ls", "files"]).await;
    assert!(text(&table.stdout).contains(&digest), "{}", text(&table.stdout));

    let info = run(&url, &["jetstream", "object", "info", "files", "tools/big.bin"]).await;
    assert_eq!(info.status.code(), Some(0), "{}", text(&info.stderr));
    assert!(text(&info.stdout).contains(&format!("size      {}", big.len())), "{}", text(&info.stdout));

    // To stdout (piped) and to a file: the same bytes.
    let to_stdout = run(&url, &["jetstream", "object", "get", "files", "tools/big.bin"]).await;
    assert_eq!(to_stdout.status.code(), Some(0), "{}", text(&to_stdout.stderr));
    assert_eq!(hex(&Sha256::digest(&to_stdout.stdout)), digest);
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("big.bin");
    let to_file =
        run(&url, &["jetstream", "object", "get", "files", "tools/big.bin", "-O", target.to_str().unwrap()]).await;
    assert_eq!(to_file.status.code(), Some(0), "{}", text(&to_file.stderr));
    assert_eq!(hex(&Sha256::digest(std::fs::read(&target).unwrap())), digest);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 1, "no partial file left beside it");
    // Not to a terminal: `script` gives the CLI a pseudo-terminal as stdout.
    let on_terminal = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} jetstream object get files tools/big.bin", env!("CARGO_BIN_EXE_kanade")),
            "/dev/null",
        ])
        .env("KANADE_NATS_URL", &url)
        .envs(kanade_testkit::fleet().cli_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(on_terminal.status.code(), Some(2), "{}", text(&on_terminal.stdout));
    assert!(text(&on_terminal.stdout).contains("not writing it to a terminal"), "{}", text(&on_terminal.stdout));
    assert!(on_terminal.stdout.len() < 1024, "no object bytes on the terminal");
    // A reader that stops early (`| head -c`) is not an error.
    let mut head = kanade(&url)
        .args(["jetstream", "object", "get", "files", "tools/big.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = head.stdout.take().unwrap();
    let mut first = [0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first).await.unwrap();
    drop(stdout);
    let head = head.wait_with_output().await.unwrap();
    assert_eq!(head.status.code(), Some(0), "{}", text(&head.stderr));
    assert_eq!(first.as_slice(), &big[..16]);

    // Missing things: exit 1, named.
    for (args, says) in [
        (&["jetstream", "object", "info", "files", "nope"][..], "object store `files` has no object `nope`"),
        (&["jetstream", "object", "get", "files", "nope"], "object store `files` has no object `nope`"),
        (&["jetstream", "object", "ls", "nostore"], "there is no object store `nostore`"),
        (&["jetstream", "object", "rm", "files", "nope"], "object store `files` has no object `nope`"),
    ] {
        let out = run(&url, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    for bad in [
        &["jetstream", "object", "ls", "a b"][..],
        &["jetstream", "object", "info", "files", ""],
        &["jetstream", "object", "info", "files", "line\nbreak"],
    ] {
        let out = run(&url, bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is not a valid"), "{bad:?}: {}", text(&out.stderr));
    }

    // Remove: any store directly; kanade's own only with --yes.
    let rm = run(&url, &["jetstream", "object", "rm", "files", "small.txt", "-o", "json"]).await;
    assert_eq!(rm.status.code(), Some(0), "{}", text(&rm.stderr));
    let rm: serde_json::Value = serde_json::from_slice(&rm.stdout).unwrap();
    assert_eq!((rm["size"].as_u64(), rm["kanade"].as_bool()), (Some(13), Some(false)));
    let scripts = js.get_object_store("scripts").await.unwrap();
    scripts.put("echo/1.0", &mut b"echo hi".as_slice()).await.unwrap();
    let refused = run(&url, &["jetstream", "object", "rm", "scripts", "echo/1.0"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("`scripts` is one of kanade's own object stores"),
        "{}",
        text(&refused.stderr)
    );
    assert!(scripts.info("echo/1.0").await.is_ok(), "still there");
    let forced = run(&url, &["jetstream", "object", "rm", "scripts", "echo/1.0", "--yes"]).await;
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    let events = eventually("two removals audited", PATIENCE, || async {
        let events = audit_events(&js).await;
        (events.len() == 2).then_some(events)
    })
    .await;
    let targets: Vec<(&str, &str)> = events.iter().map(|e| (e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(targets, [("object_rm", "files/small.txt"), ("object_rm", "scripts/echo/1.0")]);
    let listed = run(&url, &["jetstream", "object", "ls", "files", "-o", "json"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
