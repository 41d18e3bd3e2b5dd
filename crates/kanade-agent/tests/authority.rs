//! Signed commands against real agents and a real nats-server (issue #19): an agent runs, kills and revokes only
//! what a key in the root-signed trust list may send it, whoever else can publish on the broker.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::authority::{SignedTrustList, SigningKey, TrustedKey};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Reason, ResultStatus};
use kanade_shared::{Actor, GroupName, JobId, PcId};
use kanade_testkit::fleet::{ResultWatch, command, publish, publish_signed};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, fleet, init_logging};

const PATIENCE: Duration = Duration::from_secs(20);

fn pc(name: &str) -> Target {
    Target::Pc(PcId::new(name).unwrap())
}

fn group(name: &str) -> Target {
    Target::Group(GroupName::new(name).unwrap())
}

/// Replaces the trust list with the next version, `change` applied, signed by the fleet's root.
async fn change_trust(client: &async_nats::Client, change: impl FnOnce(&mut Vec<TrustedKey>)) -> u64 {
    let root = fleet().root_key();
    let list = kanade_ops::signing::current_trust(client, &root.public_key()).await.unwrap().expect("a trust list");
    let next = list.next(Utc::now(), change).unwrap();
    let signed = SignedTrustList::sign(&next, &root).unwrap();
    kanade_ops::signing::push_trust(client, &signed, &root.public_key()).await.unwrap()
}

fn trusted(name: &str, key: &SigningKey, role: Role, scope: GroupScope) -> TrustedKey {
    TrustedKey::new(Actor::new(name).unwrap(), key.public_key(), role, scope, Utc::now())
}

/// How many messages `pc_name` has refused, as its heartbeat says.
async fn refused_count(client: &async_nats::Client, pc_name: &str) -> u64 {
    let (heartbeat, _) =
        kanade_ops::agents::ping(client, &PcId::new(pc_name).unwrap(), Duration::from_secs(2)).await.unwrap();
    heartbeat.refused_messages
}

#[tokio::test]
async fn a_command_without_a_registered_key_is_refused_by_every_agent() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let _a = TestAgent::start(&nats.url(), "pc-a", &["office"]).await;
    let _b = TestAgent::start(&nats.url(), "pc-b", &["lab"]).await;
    let mut results = ResultWatch::new(&client).await;

    // Published straight onto the broker by a credential that may publish (the backend's), unsigned...
    let unsigned = command("echo should-not-run");
    publish_signed(&js, &Target::All, &unsigned, None).await;
    let got = results.all_for(&unsigned.exec_id, 2, PATIENCE).await;
    for result in got.values() {
        assert_eq!(result.status, ResultStatus::Skipped);
        assert_eq!(result.reason, Some(Reason::BadSignature));
        assert!(result.stdout.is_empty());
        assert!(result.stderr.contains("not signed"), "{}", result.stderr);
    }

    // ...and signed by a key nobody registered.
    let stranger = SigningKey::generate();
    let forged = command("echo should-not-run");
    publish_signed(&js, &Target::All, &forged, Some(&stranger)).await;
    let got = results.all_for(&forged.exec_id, 2, PATIENCE).await;
    assert_eq!(got.len(), 2);
    for result in got.values() {
        assert_eq!((result.status, result.reason.clone()), (ResultStatus::Skipped, Some(Reason::NotAuthorised)));
        assert!(result.stderr.contains("is not in the trust list"), "{}", result.stderr);
    }

    // A valid signature copied onto other bytes.
    let real = command("echo real");
    let mut altered = real.clone();
    altered.script = "echo altered".into();
    let body = serde_json::to_vec(&real).unwrap();
    let subject_name = subject::command(&pc("pc-a"), &real.job_id);
    let headers = kanade_ops::signing::signed_headers(fleet().signer(), &subject_name, &body, Duration::from_secs(600));
    js.send_publish(
        subject_name,
        PublishMessage::build().payload(serde_json::to_vec(&altered).unwrap().into()).headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let result = results.next_for(&altered.exec_id, PATIENCE).await;
    assert_eq!(result.reason, Some(Reason::BadSignature));
    assert!(result.stdout.is_empty());

    // Counted by each agent, and a signed command still runs everywhere.
    assert!(refused_count(&client, "pc-a").await >= 3);
    assert!(refused_count(&client, "pc-b").await >= 2);
    let signed = command("echo ok");
    publish(&js, &Target::All, &signed).await;
    for result in results.all_for(&signed.exec_id, 2, PATIENCE).await.values() {
        assert_eq!(result.status, ResultStatus::Ok);
    }
}

#[tokio::test]
async fn an_operator_scoped_to_office_is_refused_by_a_pc_outside_office() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let _office = TestAgent::start(&nats.url(), "pc-office", &["office"]).await;
    let _lab = TestAgent::start(&nats.url(), "pc-lab", &["lab"]).await;
    let mut results = ResultWatch::new(&client).await;
    let clerk = SigningKey::generate();
    let viewer = SigningKey::generate();
    change_trust(&client, |keys| {
        keys.push(trusted("clerk", &clerk, Role::Operator, GroupScope::parse_list("office").unwrap()));
        keys.push(trusted("watcher", &viewer, Role::Viewer, GroupScope::Fleet));
    })
    .await;

    let to_office = command("echo office");
    publish_signed(&js, &pc("pc-office"), &to_office, Some(&clerk)).await;
    assert_eq!(results.next_for(&to_office.exec_id, PATIENCE).await.status, ResultStatus::Ok);
    let to_group = command("echo group");
    publish_signed(&js, &group("office"), &to_group, Some(&clerk)).await;
    assert_eq!(results.next_for(&to_group.exec_id, PATIENCE).await.status, ResultStatus::Ok);

    let to_lab = command("echo lab");
    publish_signed(&js, &pc("pc-lab"), &to_lab, Some(&clerk)).await;
    let refused = results.next_for(&to_lab.exec_id, PATIENCE).await;
    assert_eq!((refused.status, refused.reason), (ResultStatus::Skipped, Some(Reason::NotAuthorised)));
    assert!(refused.stderr.contains("does not cover this PC"), "{}", refused.stderr);

    // `--all` needs a fleet-wide key: refused by the office PC too.
    let to_all = command("echo all");
    publish_signed(&js, &Target::All, &to_all, Some(&clerk)).await;
    for result in results.all_for(&to_all.exec_id, 2, PATIENCE).await.values() {
        assert_eq!(result.reason, Some(Reason::NotAuthorised), "{}", result.pc_id);
    }
    // A viewer's key signs nothing an agent obeys.
    let by_viewer = command("echo viewer");
    publish_signed(&js, &pc("pc-office"), &by_viewer, Some(&viewer)).await;
    let refused = results.next_for(&by_viewer.exec_id, PATIENCE).await;
    assert!(refused.stderr.contains("is viewer"), "{}", refused.stderr);
}

#[tokio::test]
async fn a_replayed_command_or_kill_is_refused() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("runs");
    let _agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;

    // One signed message, stored twice under different message ids (so the broker keeps both), and once more on
    // another agent's subject.
    let once = command(&format!("echo run >> {}", marker.display()));
    let body = serde_json::to_vec(&once).unwrap();
    let subject_name = subject::command(&pc("pc-1"), &once.job_id);
    let headers = kanade_ops::signing::signed_headers(fleet().signer(), &subject_name, &body, Duration::from_secs(600));
    for copy in ["first", "replay"] {
        js.send_publish(
            subject_name.clone(),
            PublishMessage::build().payload(body.clone().into()).headers(headers.clone()).message_id(copy),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    assert_eq!(results.next_for(&once.exec_id, PATIENCE).await.status, ResultStatus::Ok);
    // A later command, once it has a result, shows the agent went past the replay without running it again.
    let after = command("true");
    publish(&js, &pc("pc-1"), &after).await;
    results.next_for(&after.exec_id, PATIENCE).await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n", "ran once");
    assert_eq!(results.seen_for(&once.exec_id), 1);

    // A kill is obeyed once: replayed, it does not stop the next run of the job.
    let job = JobId::new("long").unwrap();
    let mut first = command("sleep 30");
    first.job_id = job.clone();
    publish(&js, &pc("pc-1"), &first).await;
    wait_running(&client, 1).await;
    let kill_subject = subject::kill_job(&job);
    let kill_headers =
        kanade_ops::signing::signed_headers(fleet().signer(), &kill_subject, b"", Duration::from_secs(60));
    client.publish_with_headers(kill_subject.clone(), kill_headers.clone(), bytes::Bytes::new()).await.unwrap();
    assert_eq!(results.next_for(&first.exec_id, PATIENCE).await.status, ResultStatus::Killed);
    let mut second = command("sleep 2; echo survived");
    second.job_id = job.clone();
    publish(&js, &pc("pc-1"), &second).await;
    wait_running(&client, 1).await;
    client.publish_with_headers(kill_subject, kill_headers, bytes::Bytes::new()).await.unwrap();
    let survived = results.next_for(&second.exec_id, PATIENCE).await;
    assert_eq!((survived.status, survived.stdout.as_str()), (ResultStatus::Ok, "survived\n"));
}

async fn wait_running(client: &async_nats::Client, n: u32) {
    let pc = PcId::new("pc-1").unwrap();
    eventually(&format!("pc-1 holds {n} run(s)"), PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move {
            let (hb, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_secs(2)).await.ok()?;
            (hb.running == n).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn forged_kills_and_revokes_stop_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let _agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;

    let slow = command("sleep 2; echo done");
    publish(&js, &pc("pc-1"), &slow).await;
    wait_running(&client, 1).await;
    let stranger = SigningKey::generate();
    client.publish(subject::kill(&slow.exec_id), bytes::Bytes::new()).await.unwrap();
    let acks = kanade_ops::control::kill(&client, &stranger, &slow.exec_id, Duration::from_millis(500)).await.unwrap();
    assert!(acks.is_empty(), "no agent confirms a forged kill: {acks:?}");
    let result = results.next_for(&slow.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.stdout.as_str()), (ResultStatus::Ok, "done\n"), "not killed");

    // A forged REVOKED, unsigned and signed by a stranger: the job still runs.
    let job = JobId::new("patch").unwrap();
    async_nats::jetstream::new(client.clone())
        .get_key_value("script_status")
        .await
        .unwrap()
        .put("patch", "REVOKED".into())
        .await
        .unwrap();
    kanade_ops::control::set_revoked(&client, &stranger, &job, true).await.unwrap();
    let mut patch = command("echo patched");
    patch.job_id = job.clone();
    publish(&js, &pc("pc-1"), &patch).await;
    assert_eq!(results.next_for(&patch.exec_id, PATIENCE).await.status, ResultStatus::Ok);

    // Signed by the operator, the revoke holds.
    kanade_ops::control::set_revoked(&client, fleet().signer(), &job, true).await.unwrap();
    let mut revoked = command("echo nope");
    revoked.job_id = job;
    let mut tries = 0;
    let result = loop {
        // The live change may trail the command by a moment; a fresh exec each time.
        let mut attempt = revoked.clone();
        attempt.exec_id = kanade_shared::ExecId::generate();
        publish(&js, &pc("pc-1"), &attempt).await;
        let result = results.next_for(&attempt.exec_id, PATIENCE).await;
        tries += 1;
        if result.reason == Some(Reason::Revoked) || tries == 5 {
            break result;
        }
    };
    assert_eq!(result.reason, Some(Reason::Revoked));
    assert!(refused_count(&client, "pc-1").await >= 3, "the forged kill and revokes are counted");
}

#[tokio::test]
async fn a_trust_list_not_signed_by_the_root_is_ignored_and_rotation_has_no_gap() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let _agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;
    let run = |key: SigningKey| {
        let (js, command) = (js.clone(), command("echo hi"));
        async move {
            publish_signed(&js, &pc("pc-1"), &command, Some(&key)).await;
            command.exec_id
        }
    };

    // A list naming a stranger, signed by the stranger, put straight into KV: ignored.
    let stranger = SigningKey::generate();
    let list = kanade_shared::authority::TrustList {
        version: 99,
        issued_at: Utc::now(),
        keys: vec![trusted("mallory", &stranger, Role::Admin, GroupScope::Fleet)],
    };
    let forged = SignedTrustList::sign(&list, &stranger).unwrap();
    async_nats::jetstream::new(client.clone())
        .get_key_value("trust_list")
        .await
        .unwrap()
        .put("current", forged.encode().into())
        .await
        .unwrap();
    let exec = run(SigningKey::from_pem(&stranger.to_pem()).unwrap()).await;
    assert_eq!(results.next_for(&exec, PATIENCE).await.reason, Some(Reason::NotAuthorised));

    // Rotation: alice's first key, then both, then only the second; every command of a valid key runs.
    let (key1, key2) = (SigningKey::generate(), SigningKey::generate());
    let copy = |k: &SigningKey| SigningKey::from_pem(&k.to_pem()).unwrap();
    let alice = |key: &SigningKey| trusted("alice", key, Role::Operator, GroupScope::Fleet);
    // The forged list sits in KV: the root-signed change is pushed over it.
    change_trust_over(&client, vec![alice(&key1)]).await;
    let exec = run(copy(&key1)).await;
    assert_eq!(results.next_for(&exec, PATIENCE).await.status, ResultStatus::Ok);
    change_trust(&client, |keys| keys.push(alice(&key2))).await;
    for key in [&key1, &key2] {
        let exec = run(copy(key)).await;
        assert_eq!(results.next_for(&exec, PATIENCE).await.status, ResultStatus::Ok);
    }
    let old = key1.public_key();
    change_trust(&client, |keys| keys.iter_mut().filter(|k| k.key == old).for_each(|k| k.revoked = true)).await;
    let exec = run(copy(&key2)).await;
    assert_eq!(results.next_for(&exec, PATIENCE).await.status, ResultStatus::Ok);
    let exec = run(copy(&key1)).await;
    let refused = results.next_for(&exec, PATIENCE).await;
    assert_eq!(refused.reason, Some(Reason::NotAuthorised));
    assert!(refused.stderr.contains("revoked"), "{}", refused.stderr);
}

/// Pushes the fleet's own list with `extra` added, over whatever (unopenable) list KV holds now.
async fn change_trust_over(client: &async_nats::Client, extra: Vec<TrustedKey>) {
    let root = fleet().root_key();
    let first = std::fs::read(fleet().file(kanade_ops::security::TRUST_LIST)).unwrap();
    let list = SignedTrustList::decode(&first).unwrap().open(&root.public_key()).unwrap();
    let next = kanade_shared::authority::TrustList {
        version: 100,
        ..list.next(Utc::now(), |keys| keys.extend(extra)).unwrap()
    };
    let signed = SignedTrustList::sign(&next, &root).unwrap();
    kanade_ops::signing::push_trust(client, &signed, &root.public_key()).await.unwrap();
}
