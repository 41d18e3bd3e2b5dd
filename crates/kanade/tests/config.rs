//! The real `kanade config` commands against a real nats-server (and, for `effective`, a real agent): what each
//! scope stores, how the scopes merge for one agent, how bad input is refused without storing anything, and that
//! concurrent writers to one scope never lose each other's key.

use std::process::Output;
use std::time::Duration;

use kanade_shared::layered;
use kanade_shared::resources::KV_AGENT_CONFIG;
use kanade_testkit::{NatsServer, TestAgent, connect, init_logging};
use serde_json::{Value, json};
use tokio::process::Command;

mod common;
use common::{audited, failed, shown, text};

const PATIENCE: Duration = Duration::from_secs(30);

/// Every key, in the order `layered::KEYS` lists them and unknown-key messages name them.
const KNOWN_KEYS: &str = "target_version, target_version_jitter, heartbeat_interval, inventory_interval, inventory_jitter, perf_interval, host_perf_interval, max_local_concurrent";

fn kanade(nats_url: &str) -> Command {
    kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url)
}

async fn run(nats_url: &str, args: &[&str]) -> Output {
    let out = kanade(nats_url).args(args).output();
    tokio::time::timeout(PATIENCE, out).await.expect("kanade finished in time").expect("run kanade")
}

/// Runs `args`, insists it succeeded, and returns its stdout and stderr.
async fn ok(nats_url: &str, args: &[&str]) -> (String, String) {
    audited(&run(nats_url, args).await, &shown(args))
}

/// Runs `args` with `-o json`, insists it succeeded, and parses its stdout.
async fn ok_json(nats_url: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let (stdout, _) = ok(nats_url, &args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout}"))
}

/// Runs `args`, insists it failed with `code` and nothing on stdout, and returns its stderr.
async fn fails(nats_url: &str, args: &[&str], code: i32) -> String {
    failed(&run(nats_url, args).await, code, &shown(args))
}

/// Every stored layer, as `config list -o json` prints it.
async fn stored(nats_url: &str) -> Value {
    ok_json(nats_url, &["config", "list"]).await
}

#[tokio::test]
async fn set_get_unset_and_list_round_trip_at_every_scope() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;

    assert_eq!(stored(&url).await, json!({}), "a fresh bucket has no layers");
    let (table, _) = ok(&url, &["config", "list"]).await;
    assert_eq!(table.trim_end(), "SCOPE  KEY  VALUE", "an empty list is just the header");
    assert_eq!(ok_json(&url, &["config", "get", "--global"]).await, json!({}));

    // Global: durations are stored canonically, numbers as numbers; each set prints the layer as stored.
    let (table, note) = ok(&url, &["config", "set", "--global", "heartbeat_interval=90s"]).await;
    assert_eq!(note, "heartbeat_interval = 1m 30s at global\n");
    assert!(table.starts_with("KEY") && table.contains("heartbeat_interval  1m 30s"), "{table}");
    let layer = ok_json(&url, &["config", "set", "--global", "max_local_concurrent=8"]).await;
    assert_eq!(layer, json!({ "heartbeat_interval": "1m 30s", "max_local_concurrent": 8 }));
    let layer = ok_json(&url, &["config", "set", "--global", "inventory_interval = 120m "]).await;
    assert_eq!(layer["inventory_interval"], "2h", "spaces around KEY and VALUE are trimmed; 120m is 2h");
    assert_eq!(
        ok_json(&url, &["config", "get", "--global"]).await,
        json!({ "heartbeat_interval": "1m 30s", "inventory_interval": "2h", "max_local_concurrent": 8 })
    );
    assert_eq!(ok(&url, &["config", "get", "--global", "heartbeat_interval"]).await.0, "1m 30s\n");
    assert_eq!(ok_json(&url, &["config", "get", "--global", "max_local_concurrent"]).await, json!(8));
    let missing = fails(&url, &["config", "get", "--global", "target_version"], 1).await;
    assert!(missing.contains("`target_version` is not set at global"), "{missing}");

    // A group and a pc.
    let layer = ok_json(&url, &["config", "set", "--group", "wave1", "target_version=1.2.3"]).await;
    assert_eq!(layer, json!({ "target_version": "1.2.3" }));
    let (_, note) = ok(&url, &["config", "set", "--group", "wave1", "target_version_jitter=0s"]).await;
    assert_eq!(note, "target_version_jitter = 0s at group wave1\n");
    let (_, note) = ok(&url, &["config", "set", "--pc", "pc-1", "max_local_concurrent=2"]).await;
    assert_eq!(note, "max_local_concurrent = 2 at pc pc-1\n");
    assert_eq!(
        ok_json(&url, &["config", "get", "--group", "wave1"]).await,
        json!({ "target_version": "1.2.3", "target_version_jitter": "0s" })
    );
    assert_eq!(ok_json(&url, &["config", "get", "--pc", "pc-1"]).await, json!({ "max_local_concurrent": 2 }));
    assert_eq!(ok_json(&url, &["config", "get", "--group", "canary"]).await, json!({}), "untouched scope");
    assert_eq!(ok_json(&url, &["config", "get", "--pc", "pc-2"]).await, json!({}), "untouched scope");

    // Setting a key again replaces its value and keeps the others.
    let layer = ok_json(&url, &["config", "set", "--global", "max_local_concurrent=16"]).await;
    assert_eq!(
        layer,
        json!({ "heartbeat_interval": "1m 30s", "inventory_interval": "2h", "max_local_concurrent": 16 })
    );

    assert_eq!(
        stored(&url).await,
        json!({
            "global": { "heartbeat_interval": "1m 30s", "inventory_interval": "2h", "max_local_concurrent": 16 },
            "groups.wave1": { "target_version": "1.2.3", "target_version_jitter": "0s" },
            "pcs.pc-1": { "max_local_concurrent": 2 },
        })
    );
    let (table, _) = ok(&url, &["config", "list"]).await;
    let rows = cells(&table);
    assert_eq!(
        rows,
        vec![
            vec!["SCOPE", "KEY", "VALUE"],
            vec!["global", "heartbeat_interval", "1m 30s"],
            vec!["global", "inventory_interval", "2h"],
            vec!["global", "max_local_concurrent", "16"],
            vec!["group wave1", "target_version", "1.2.3"],
            vec!["group wave1", "target_version_jitter", "0s"],
            vec!["pc pc-1", "max_local_concurrent", "2"],
        ],
        "{table}"
    );

    // Unset removes one key; a scope left empty drops out of the list.
    let (_, note) = ok(&url, &["config", "unset", "--global", "heartbeat_interval"]).await;
    assert_eq!(note, "heartbeat_interval unset at global\n");
    let layer = ok_json(&url, &["config", "unset", "--pc", "pc-1", "max_local_concurrent"]).await;
    assert_eq!(layer, json!({}));
    let layer = ok_json(&url, &["config", "unset", "--group", "canary", "heartbeat_interval"]).await;
    assert_eq!(layer, json!({}), "unsetting what is not set is harmless");
    let not_set = fails(&url, &["config", "get", "--pc", "pc-1", "max_local_concurrent"], 1).await;
    assert!(not_set.contains("`max_local_concurrent` is not set at pc pc-1"), "{not_set}");
    assert_eq!(
        stored(&url).await,
        json!({
            "global": { "inventory_interval": "2h", "max_local_concurrent": 16 },
            "groups.wave1": { "target_version": "1.2.3", "target_version_jitter": "0s" },
        })
    );
}

#[tokio::test]
async fn effective_merges_global_groups_by_name_and_pc_and_reports_group_conflicts() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &["canary", "wave1"]).await;

    for (scope, assignment) in [
        (["--global"].as_slice(), "heartbeat_interval=30s"),
        (&["--global"], "max_local_concurrent=4"),
        (&["--global"], "target_version_jitter=10m"),
        (&["--group", "canary"], "heartbeat_interval=10s"),
        (&["--group", "canary"], "target_version=2.0"),
        (&["--group", "wave1"], "heartbeat_interval=20s"),
        (&["--group", "wave1"], "target_version_jitter=5m"),
        (&["--pc", "pc-1"], "max_local_concurrent=1"),
        // Neither is pc-1's: both must stay out of its result.
        (&["--group", "lab"], "inventory_interval=1h"),
        (&["--pc", "pc-2"], "heartbeat_interval=1s"),
    ] {
        let mut args = vec!["config", "set"];
        args.extend(scope);
        args.push(assignment);
        ok(&url, &args).await;
    }

    // No --groups: the agent is asked for its groups.
    let out = run(&url, &["config", "effective", "pc-1", "-o", "json"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "conflict: heartbeat_interval: group canary says \"10s\", group wave1 says \"20s\"; group wave1 wins\n"
    );
    let effective: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        effective,
        json!({
            "pc_id": "pc-1",
            "groups": ["canary", "wave1"],
            "values": {
                "heartbeat_interval": { "value": "20s", "from": "groups.wave1" },
                "max_local_concurrent": { "value": 1, "from": "pcs.pc-1" },
                "target_version": { "value": "2.0", "from": "groups.canary" },
                "target_version_jitter": { "value": "5m", "from": "groups.wave1" },
            },
            "conflicts": [
                "heartbeat_interval: group canary says \"10s\", group wave1 says \"20s\"; group wave1 wins"
            ],
        })
    );

    let (table, stderr) = ok(&url, &["config", "effective", "pc-1"]).await;
    assert!(stderr.starts_with("conflict: heartbeat_interval:"), "{stderr}");
    let rows = cells(&table);
    assert_eq!(
        rows,
        vec![
            vec!["KEY", "VALUE", "FROM"],
            vec!["target_version", "2.0", "group canary"],
            vec!["target_version_jitter", "5m", "group wave1"],
            vec!["heartbeat_interval", "20s", "group wave1"],
            vec!["inventory_interval", "-", "built-in default"],
            vec!["inventory_jitter", "-", "built-in default"],
            vec!["perf_interval", "-", "built-in default"],
            vec!["host_perf_interval", "-", "built-in default"],
            vec!["max_local_concurrent", "1", "pc pc-1"],
        ],
        "{table}"
    );

    // The pc's own value goes: its groups' and global's show through again.
    ok(&url, &["config", "unset", "--pc", "pc-1", "max_local_concurrent"]).await;
    ok(&url, &["config", "unset", "--group", "wave1", "target_version_jitter"]).await;
    let effective = ok_json(&url, &["config", "effective", "pc-1"]).await;
    assert_eq!(effective["values"]["max_local_concurrent"], json!({ "value": 4, "from": "global" }));
    assert_eq!(effective["values"]["target_version_jitter"], json!({ "value": "10m", "from": "global" }));

    // An agent nobody can ask: its groups must be named.
    let offline = fails(&url, &["config", "effective", "pc-9"], 1).await;
    assert!(offline.contains("cannot ask `pc-9` for its groups; name them with --groups"), "{offline}");
    assert!(offline.contains("no agent `pc-9` is connected"), "{offline}");
    // Named, in any order: they still apply sorted by name, so wave1 wins over canary.
    let out = run(&url, &["config", "effective", "pc-9", "--groups", "wave1,canary", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("conflict: heartbeat_interval: group canary says"));
    let effective: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(effective["pc_id"], "pc-9");
    assert_eq!(effective["groups"], json!(["wave1", "canary"]), "the groups as named");
    assert_eq!(effective["values"]["heartbeat_interval"], json!({ "value": "20s", "from": "groups.wave1" }));
    // --groups also overrides what a live agent would say.
    let (_, stderr) = ok(&url, &["config", "effective", "pc-1", "--groups", "lab", "-o", "json"]).await;
    assert_eq!(stderr, "", "one group cannot conflict with itself");
    let effective = ok_json(&url, &["config", "effective", "pc-1", "--groups", "lab"]).await;
    assert_eq!(
        effective["values"],
        json!({
            "heartbeat_interval": { "value": "30s", "from": "global" },
            "inventory_interval": { "value": "1h", "from": "groups.lab" },
            "max_local_concurrent": { "value": 4, "from": "global" },
            "target_version_jitter": { "value": "10m", "from": "global" },
        })
    );
    assert_eq!(effective["conflicts"], json!([]));
    let bad_group = fails(&url, &["config", "effective", "pc-1", "--groups", "lab,Bad Name"], 2).await;
    assert!(bad_group.contains("Bad Name"), "{bad_group}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_precise_message_and_stores_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    // One argument may hold at most 128 KiB on Linux.
    let huge = "9".repeat(100 * 1024);
    let huge_version = format!("target_version={huge}");
    let huge_key = format!("{}=1", "k".repeat(100 * 1024));
    let unknown = format!("unknown config key `hearbeat_interval` (known: {KNOWN_KEYS})");

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["set", "--global", "hearbeat_interval=30s"], 1, &unknown),
        (vec!["unset", "--global", "hearbeat_interval"], 1, &unknown),
        (vec!["get", "--global", "hearbeat_interval"], 1, &unknown),
        (vec!["set", "--global", "heartbeat_interval=0s"], 1, "heartbeat_interval: `0s` is outside 1s to 1h"),
        (vec!["set", "--global", "heartbeat_interval=2h"], 1, "heartbeat_interval: `2h` is outside 1s to 1h"),
        (vec!["set", "--global", "heartbeat_interval=soon"], 1, "heartbeat_interval: `soon` is not a duration"),
        (vec!["set", "--global", "heartbeat_interval="], 1, "heartbeat_interval: `` is not a duration"),
        (vec!["set", "--global", "inventory_interval=30s"], 1, "inventory_interval: `30s` is outside 1m to 7days"),
        (vec!["set", "--global", "target_version_jitter=8d"], 1, "target_version_jitter: `8d` is outside 0s to 7days"),
        (
            vec!["set", "--global", "max_local_concurrent=65"],
            1,
            "max_local_concurrent: `65` is not a whole number from 1 to 64",
        ),
        (
            vec!["set", "--global", "max_local_concurrent=0"],
            1,
            "max_local_concurrent: `0` is not a whole number from 1 to 64",
        ),
        (
            vec!["set", "--global", "max_local_concurrent=abc"],
            1,
            "max_local_concurrent: `abc` is not a whole number from 1 to 64",
        ),
        (
            vec!["set", "--global", "max_local_concurrent=-1"],
            1,
            "max_local_concurrent: `-1` is not a whole number from 1 to 64",
        ),
        (vec!["set", "--global", "target_version=../x"], 1, "target_version: version `../x` must be 1-64 characters"),
        (vec!["set", "--global", "target_version="], 1, "target_version: version `` must be 1-64 characters"),
        (vec!["set", "--global", "heartbeat_interval"], 1, "expected KEY=VALUE, got `heartbeat_interval`"),
        (vec!["set", "--global", "=5"], 1, "expected KEY=VALUE, got `=5`"),
        (vec!["set", "--global", " =5"], 1, "expected KEY=VALUE, got ` =5`"),
        (vec!["set", "heartbeat_interval=30s"], 2, "the following required arguments were not provided"),
        (vec!["get"], 2, "the following required arguments were not provided"),
        (vec!["set", "--global", "--pc", "pc-1", "heartbeat_interval=30s"], 2, "cannot be used with"),
        (vec!["unset", "--group", "lab", "--global", "heartbeat_interval"], 2, "cannot be used with"),
        (vec!["set", "--group", "Bad Name", "heartbeat_interval=30s"], 2, "invalid value 'Bad Name' for '--group"),
        (vec!["set", "--pc", "PC-1", "heartbeat_interval=30s"], 2, "invalid value 'PC-1' for '--pc"),
        (vec!["set", "--pc", "", "heartbeat_interval=30s"], 2, "invalid value '' for '--pc"),
        (vec!["set", "--global"], 2, "the following required arguments were not provided"),
        (vec!["effective", "Bad.PC"], 2, "invalid value 'Bad.PC'"),
        (vec!["set", "--global", &huge_version], 1, "target_version: version `99999"),
        (vec!["set", "--global", &huge_key], 1, "unknown config key `kkkk"),
    ];
    for (args, code, expected) in &cases {
        let mut full = vec!["config"];
        full.extend(args);
        let stderr = fails(&url, &full, *code).await;
        let shown: Vec<String> = args.iter().map(|a| a.chars().take(40).collect()).collect();
        assert!(stderr.contains(expected), "{shown:?}: expected {expected:?} in {}", short(&stderr));
        // The operator sees the problem, not a 100 KB echo of what they typed.
        assert!(stderr.len() < 2048, "{shown:?}: {} bytes on stderr: {}", stderr.len(), short(&stderr));
    }
    assert_eq!(stored(&url).await, json!({}), "no bad input reached the bucket");

    // A value is checked before anything connects: the broker being away does not hide the real problem.
    let offline = fails("nats://127.0.0.1:1", &["config", "set", "--global", "heartbeat_interval=0s"], 1).await;
    assert!(offline.contains("is outside 1s to 1h") && !offline.contains("cannot connect"), "{offline}");
}

/// Regression: a duration or count value is echoed back whole in its error, so a pasted 100 KB string comes back
/// as 100 KB of stderr (version values and unknown keys are cut to 80 and 64 characters).
#[tokio::test]
async fn an_oversized_value_is_named_not_echoed_back_in_full() {
    // Refused before anything connects, so no server is needed.
    let url = "nats://127.0.0.1:1";
    let huge = "9".repeat(100 * 1024);
    for assignment in [format!("heartbeat_interval={huge}s"), format!("max_local_concurrent={huge}")] {
        let key = assignment.split('=').next().unwrap().to_owned();
        let stderr = fails(url, &["config", "set", "--global", &assignment], 1).await;
        assert!(stderr.starts_with(&format!("error: {key}: `99999")), "{}", short(&stderr));
        assert!(stderr.len() < 2048, "{key}: {} bytes on stderr: {}", stderr.len(), short(&stderr));
    }
}

/// The first 300 characters of `s`, for assertion messages.
fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

#[tokio::test]
async fn a_layer_that_is_not_json_is_reported_not_a_panic_and_other_scopes_still_work() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_, js) = connect(&url).await;
    let kv = js.get_key_value(KV_AGENT_CONFIG).await.unwrap();
    kv.put("global", "not json".into()).await.unwrap();
    kv.put("groups.lab", "[1,2]".into()).await.unwrap();

    let get = fails(&url, &["config", "get", "--global"], 1).await;
    assert!(get.contains("`global` in `agent_config` is not a JSON object"), "{get}");
    let get = fails(&url, &["config", "get", "--group", "lab", "-o", "json"], 1).await;
    assert!(get.contains("`groups.lab` in `agent_config` is not a JSON object"), "{get}");
    let get = fails(&url, &["config", "get", "--global", "heartbeat_interval"], 1).await;
    assert!(get.contains("`global` in `agent_config` is not a JSON object"), "{get}");

    let layer = ok_json(&url, &["config", "set", "--pc", "pc-1", "max_local_concurrent=3"]).await;
    assert_eq!(layer, json!({ "max_local_concurrent": 3 }));
    assert_eq!(ok_json(&url, &["config", "get", "--pc", "pc-1"]).await, json!({ "max_local_concurrent": 3 }));
    let layer = ok_json(&url, &["config", "set", "--group", "wave1", "heartbeat_interval=5s"]).await;
    assert_eq!(layer, json!({ "heartbeat_interval": "5s" }));

    // Writing to the bad layer says how to clear it; the other scopes still list.
    let set = fails(&url, &["config", "set", "--global", "heartbeat_interval=30s"], 1).await;
    assert!(set.contains("clear it with `kanade config reset --global`"), "{set}");
    let listed = ok_json(&url, &["config", "list"]).await;
    assert_eq!(listed["pcs.pc-1"], json!({ "max_local_concurrent": 3 }), "{listed}");
    // `config reset` removes it, and the scope works again; deleting it in the bucket does the same for groups.
    let (_, note) = ok(&url, &["config", "reset", "--global"]).await;
    assert!(note.contains("global has no settings now"), "{note}");
    kv.delete("groups.lab").await.unwrap();
    assert_eq!(ok_json(&url, &["config", "get", "--global"]).await, json!({}));
    let layer = ok_json(&url, &["config", "set", "--global", "heartbeat_interval=30s"]).await;
    assert_eq!(layer, json!({ "heartbeat_interval": "30s" }));
}

#[tokio::test]
async fn concurrent_sets_on_one_scope_all_land() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;

    // Two writers of each key of one scope, each writer with a value nobody else writes.
    let assignments: Vec<(&str, String)> = (0..2 * layered::KEYS.len())
        .map(|i| {
            let key = layered::KEYS[i % layered::KEYS.len()].name;
            let raw = match key {
                "target_version" => format!("1.0.{i}"),
                "target_version_jitter" => format!("{i}m"),
                "heartbeat_interval" => format!("{}s", i + 1),
                "inventory_interval" => format!("{i}h"),
                "inventory_jitter" => format!("{i}m"),
                "perf_interval" => format!("{}s", i + 1),
                "host_perf_interval" => format!("{}s", 10 + i),
                "max_local_concurrent" => format!("{}", i + 1),
                other => panic!("a new key `{other}` needs a value here"),
            };
            (key, raw)
        })
        .collect();
    let writers = assignments.iter().map(|(key, raw)| {
        let assignment = format!("{key}={raw}");
        let url = url.clone();
        async move { ok_json(&url, &["config", "set", "--global", &assignment]).await }
    });
    let printed: Vec<Value> = futures::future::join_all(writers).await;

    // Each writer printed the layer it stored. A compare-and-set store writes one layer after another, each the
    // one before plus that writer's key, so the printed layers must form one such chain from nothing to what is
    // stored at the end. A lost write breaks every chain.
    let assigned: Vec<(&str, Value)> =
        assignments.iter().map(|(key, raw)| (*key, layered::parse(key, raw).unwrap())).collect();
    let final_layer = ok_json(&url, &["config", "get", "--global"]).await;
    let mut used = vec![false; assigned.len()];
    assert!(
        chain_exists(&json!({}), &final_layer, &printed, &assigned, &mut used),
        "the printed layers are not one chain of writes ending in {final_layer}; a write was lost: {printed:#?}"
    );
    let keys: Vec<&str> = final_layer.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), layered::KEYS.len(), "every key is set: {final_layer}");
}

/// Whether the unused `printed` layers can follow `from` one after another, each the one before plus its own
/// writer's `assigned` key, ending in `last`. (Writers of the same key make a greedy walk unreliable: one layer can
/// follow two others.)
fn chain_exists(from: &Value, last: &Value, printed: &[Value], assigned: &[(&str, Value)], used: &mut [bool]) -> bool {
    if used.iter().all(|u| *u) {
        return from == last;
    }
    for i in 0..printed.len() {
        let mut next = from.clone();
        next[assigned[i].0] = assigned[i].1.clone();
        if !used[i] && printed[i] == next {
            used[i] = true;
            if chain_exists(&printed[i], last, printed, assigned, used) {
                return true;
            }
            used[i] = false;
        }
    }
    false
}

/// A table the CLI printed, as rows of cells (columns are two or more spaces apart).
fn cells(table: &str) -> Vec<Vec<&str>> {
    table.lines().map(|line| line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect()
}
