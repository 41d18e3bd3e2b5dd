//! Two backends on one PostgreSQL database under the leader lease (issue 17): only the backend holding it sends a
//! rollout's later waves and fires schedules, and every backend serves the API. The leader is SIGKILLed between a
//! rollout's waves and between a schedule's occurrences, and cut off from the broker by a proxy while it stays up;
//! each time the other backend takes over within the lease's TTL, and the test counts every target's result and
//! every run (lost 0, duplicated 0) and every occurrence (each one fired exactly once, none skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kanade_faults::{
    Agent, Backend, BackendOptions, Fire, Fleet, PATIENCE, Tally, TestDatabase, executions_of, manifest,
    schedule_fires, untargeted_manifest,
};
use kanade_testkit::{NatsServer, Proxy, connect, eventually, init_logging};

/// The lease's time to live (`kanade_shared::resources::LEADER_TTL`): a leader that stops renewing loses the lease
/// this long after its last renewal at most.
const LEADER_TTL: Duration = Duration::from_secs(15);
/// How long a takeover may take: the TTL, a follower's next try (every 1 s), and slack for the broker's expiry
/// timer and a loaded machine.
const TAKEOVER: Duration = Duration::from_secs(15 + 5);
/// The backends' instance ids, in the order they start: `a` starts first and leads.
const INSTANCES: [&str; 2] = ["a", "b"];

/// How backend `a` reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Direct,
    /// Through a [`Proxy`] the test can cut.
    Proxied,
}

/// A durable broker, one PostgreSQL database, backends `a` and `b` on it, three real agents (groups `wave-a`,
/// `wave-a`, `wave-b`) and a simulated fleet over the same groups.
/// Fields drop in order: agents first, then the backends, then the database they use, the broker last.
struct System {
    fleet: Option<Fleet>,
    agents: Vec<Agent>,
    backends: Vec<Backend>,
    proxy: Option<Proxy>,
    database: TestDatabase,
    /// Kept for its drop: the broker stops last.
    _nats: NatsServer,
}

impl System {
    /// Starts everything; `a` first, and `b` only once `a` leads, so the test knows who leads.
    async fn start(simulated: u32, link: Link) -> Self {
        init_logging();
        let nats = NatsServer::start_durable();
        let url = nats.url();
        let _ = connect(&url).await;
        let database = TestDatabase::create().await;
        let proxy = (link == Link::Proxied).then(|| Proxy::start(SocketAddr::from(([127, 0, 0, 1], nats.port()))));
        let a_nats = proxy.as_ref().map_or(url.clone(), |p| p.url("nats"));
        let a = Backend::start_with(&a_nats, options(&database, INSTANCES[0])).await;
        eventually("backend a leads", PATIENCE, || async { a.is_leading().await.then_some(()) }).await;
        let b = Backend::start_with(&url, options(&database, INSTANCES[1])).await;
        let agents = vec![
            Agent::start(&url, "real-1", "wave-a"),
            Agent::start(&url, "real-2", "wave-a"),
            Agent::start(&url, "real-3", "wave-b"),
        ];
        let fleet = match simulated {
            0 => None,
            n => Some(Fleet::start(&url, "sim-", n, "wave-a:50%,wave-b:rest", "1s").await),
        };
        a.wait_for_agents(agents.len() + simulated as usize).await;
        let system = Self { fleet, agents, backends: vec![a, b], proxy, database, _nats: nats };
        let leader = system.leader().await;
        assert_eq!(leader, 0, "backend a leads once b is up too");
        system
    }

    fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.agents.iter().map(|a| a.pc.clone()).collect();
        targets.extend(self.fleet.iter().flat_map(|f| f.pcs().iter().cloned()));
        targets
    }

    fn runs(&self, pc: &str, exec: &str) -> usize {
        match self.agents.iter().find(|a| a.pc == pc) {
            Some(agent) => agent.runs(exec),
            None => self.fleet.as_ref().map_or(0, |f| f.runs(pc, exec)),
        }
    }

    /// The index of the backend that leads: exactly one says so.
    async fn leader(&self) -> usize {
        eventually("exactly one backend leads", PATIENCE, || async {
            let mut leading = Vec::new();
            for (i, backend) in self.backends.iter().enumerate() {
                if backend.is_leading().await {
                    leading.push(i);
                }
            }
            (leading.len() == 1).then(|| leading[0])
        })
        .await
    }

    /// Waits until backend `next` leads, at most [`TAKEOVER`] after `since`; returns how long it took from `since`.
    async fn takeover(&self, next: usize, since: Instant) -> Duration {
        let backend = &self.backends[next];
        eventually(&format!("backend {} takes over", INSTANCES[next]), TAKEOVER, || async {
            backend.is_leading().await.then_some(())
        })
        .await;
        let took = since.elapsed();
        assert!(took <= TAKEOVER, "backend {} took {took:?} to take over", INSTANCES[next]);
        took
    }

    /// Waits until `schedule` has `n` occurrences fired by backend `by` (read from the database).
    async fn fired_by(&self, schedule: &str, by: usize, n: usize) {
        eventually(&format!("{n} occurrences of {schedule} fired by {}", INSTANCES[by]), PATIENCE, || async {
            let fires = schedule_fires(&self.database.url, schedule).await;
            let count = fires.iter().filter(|f| f.decided_by.as_deref() == Some(INSTANCES[by])).count();
            (count >= n).then_some(())
        })
        .await;
    }

    /// Waits until every target of each of `execs` answered (asking backend `via`), then counts them all together.
    async fn settle(&self, via: usize, execs: &[String]) -> Tally {
        let targets = self.targets();
        let mut total = Tally::default();
        for exec in execs {
            let view = self.backends[via].wait_until_answered(exec, PATIENCE).await;
            assert_eq!(view["target_count"], targets.len(), "{view}");
            total += Tally::count_in(&self.database.url, exec, &targets, |pc| self.runs(pc, exec)).await;
        }
        total
    }
}

fn options(database: &TestDatabase, instance: &str) -> BackendOptions {
    BackendOptions { database_url: Some(database.url.clone()), instance: Some(instance.to_owned()) }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("a time in ms fits an i64")
}

/// A schedule firing `job` at every agent on `cron`, each occurrence even if the last one still runs.
fn schedule(id: &str, job: &str, cron: &str) -> String {
    format!("id: {id}\njob: {job}\ncron: \"{cron}\"\ntarget: {{all: true}}\noverlap: allow\n")
}

/// Checks that `fires` decide each occurrence once and fired it, every `every` from the first to the last with none
/// missing; returns the executions they created, in occurrence order.
fn one_execution_per_occurrence(fires: &[Fire], every: Duration) -> Vec<String> {
    assert!(!fires.is_empty(), "no fires");
    let mut fires = fires.to_vec();
    fires.sort_by_key(|f| f.occurrence_at_ms);
    let ids: BTreeSet<&str> = fires.iter().map(|f| f.occurrence_id.as_str()).collect();
    assert_eq!(ids.len(), fires.len(), "an occurrence was decided twice: {fires:#?}");
    for fire in &fires {
        // Each is less than a minute late at worst, so a missed one is a fault, not the misfire rule.
        assert_eq!(fire.outcome, "fired", "an occurrence was not fired: {fire:?}");
    }
    let every_ms = i64::try_from(every.as_millis()).expect("a short period");
    for pair in fires.windows(2) {
        assert_eq!(
            pair[1].occurrence_at_ms - pair[0].occurrence_at_ms,
            every_ms,
            "occurrences are not every {every:?} without a gap: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    fires
        .iter()
        .map(|f| f.exec_id.clone().unwrap_or_else(|| panic!("a fired occurrence names its execution: {f:?}")))
        .collect()
}

/// The leader SIGKILLed after a rollout's first wave answered and before its second wave is due: the other
/// backend takes the lease and sends the second wave.
#[tokio::test]
async fn leader_sigkilled_mid_rollout_the_other_sends_the_second_wave() {
    let mut system = System::start(60, Link::Direct).await;
    // Each run takes 2 s; the second wave is due 6 s after the first was sent, so the first results come in
    // well before it.
    let job = manifest("leader-kill", 2, &[("wave-a", "0s"), ("wave-b", "6s")]);
    let exec = system.backends[0].deploy(&job).await;
    eventually(&format!("the first results of {exec}"), PATIENCE, || async {
        let view = system.backends[0].execution(&exec).await?;
        (view["results"].as_u64()? >= 1).then_some(())
    })
    .await;

    let leader = system.leader().await;
    let other = 1 - leader;
    system.backends[leader].kill();
    let killed = Instant::now();
    let view = system.backends[other].execution(&exec).await.expect("the other backend serves the execution");
    assert_ne!(
        view["waves"][1]["state"], "sent",
        "the second wave went out before the leader was killed, so this tested no takeover: {view}"
    );
    let took = system.takeover(other, killed).await;

    let view = system.backends[other].wait_until_answered(&exec, PATIENCE).await;
    assert_eq!(view["waves"][1]["state"], "sent", "{view}");
    let tally = system.settle(other, std::slice::from_ref(&exec)).await;
    let fault = format!(
        "leader backend {} SIGKILLed between a rollout's waves, {} took over in {:.1} s",
        INSTANCES[leader],
        INSTANCES[other],
        took.as_secs_f64()
    );
    tally.report(&fault);
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{fault}: {tally:?}");
    assert_eq!(tally.statuses.get("ok"), Some(&tally.targets), "{tally:?}");
}

/// The leader SIGKILLed in the middle of a schedule's fire (the instant its execution is committed) while it fires
/// every 5 s: the other backend takes over, sends what the killed fire had not, fires every occurrence that fell
/// due while nobody led (late, not skipped), and no occurrence is fired twice or runs twice anywhere.
#[tokio::test]
async fn leader_sigkilled_mid_schedule_fires_no_occurrence_lost_or_doubled() {
    const EVERY: Duration = Duration::from_secs(5);
    let mut system = System::start(20, Link::Direct).await;
    system.backends[0].create_job(&untargeted_manifest("fault-tick", 1)).await;
    system.backends[0].create_schedule(&schedule("tick", "fault-tick", "*/5 * * * * *")).await;

    let leader = system.leader().await;
    let other = 1 - leader;
    system.fired_by("tick", leader, 3).await;
    // Killed in the middle of a fire: the moment the next occurrence's execution is committed (with its decision),
    // before or while its command is sent (the engine sends right after the commit).
    let (fired_before, left) = {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&system.database.url)
            .await
            .expect("connect to the test database");
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM executions WHERE job_id = 'fault-tick'")
                .fetch_one(&pool)
                .await
                .expect("count executions")
        };
        let before = count().await;
        let deadline = Instant::now() + PATIENCE;
        while count().await == before {
            assert!(Instant::now() < deadline, "no fire to kill the leader in");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        system.backends[leader].kill();
        let status: String = sqlx::query_scalar(
            "SELECT status FROM executions WHERE job_id = 'fault-tick' ORDER BY created_at_ms DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .expect("the fire's execution");
        pool.close().await;
        (before, status)
    };
    let killed = Instant::now();
    let took = system.takeover(other, killed).await;
    system.fired_by("tick", other, 3).await;

    // Read right after a fire (fired_by polls for one), so the next occurrence is seconds away; read again after
    // the delete, and both readings kept, in case deleting a schedule forgets its fires.
    let mut fires: BTreeMap<String, Fire> = BTreeMap::new();
    let before = schedule_fires(&system.database.url, "tick").await;
    assert_eq!(system.backends[other].delete("/api/schedules/tick").await, 204, "delete the schedule");
    let after = schedule_fires(&system.database.url, "tick").await;
    fires.extend(before.into_iter().chain(after).map(|f| (f.occurrence_id.clone(), f)));
    let fires: Vec<Fire> = fires.into_values().collect();
    let execs = one_execution_per_occurrence(&fires, EVERY);

    let mut stored = executions_of(&system.database.url, "fault-tick").await;
    let mut fired = execs.clone();
    fired.sort();
    stored.sort();
    assert_eq!(stored, fired, "the executions of the job are exactly the fired occurrences'");
    let late: Vec<&Fire> = fires
        .iter()
        .filter(|f| f.decided_by.as_deref() == Some(INSTANCES[other]))
        .filter(|f| f.decided_at_ms - f.occurrence_at_ms >= 5_000)
        .collect();
    assert!(!late.is_empty(), "no occurrence fell due while nobody led, so this tested no catch-up: {fires:#?}");

    let tally = system.settle(other, &execs).await;
    let fault = format!(
        "leader backend {} SIGKILLed in fire {} (its execution left `{}`), {} took over in {:.1} s and fired {} late; {} \
         occurrences",
        INSTANCES[leader],
        fired_before + 1,
        left,
        INSTANCES[other],
        took.as_secs_f64(),
        late.len(),
        execs.len()
    );
    tally.report(&fault);
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{fault}: {tally:?}");
    assert_eq!(tally.statuses.get("ok"), Some(&tally.targets), "{tally:?}");
}

/// Backend `a` leads through a proxy to the broker; the proxy is cut. `a` stays up and serving but stops deciding
/// before `b` starts, `b` takes over within the TTL and fires what fell due meanwhile, and once the proxy is
/// restored `a` reconnects as a follower.
#[tokio::test]
async fn a_leader_cut_off_from_the_broker_stops_deciding() {
    const EVERY: Duration = Duration::from_secs(2);
    let system = System::start(0, Link::Proxied).await;
    let (a, b) = (&system.backends[0], &system.backends[1]);
    a.create_job(&untargeted_manifest("fault-cut", 1)).await;
    a.create_schedule(&schedule("cut", "fault-cut", "*/2 * * * * *")).await;
    system.fired_by("cut", 0, 3).await;

    let proxy = system.proxy.as_ref().expect("a's proxy");
    let cut_at_ms = now_ms();
    proxy.cut();
    let took = system.takeover(1, Instant::now()).await;
    let health = a.health().await.expect("a still serves HTTP while cut off from the broker");
    assert_eq!(health["instance"], "a", "{health}");
    assert_eq!(health["leading"], false, "a still says it leads while b does: {health}");
    system.fired_by("cut", 1, 3).await;

    proxy.restore();
    eventually("a reconnects to the broker as a follower of b", PATIENCE, || async {
        let health = a.health().await?;
        (health["nats"] == "connected" && health["leader"] == "b" && health["leading"] == false).then_some(())
    })
    .await;
    // Lets time pass for b's renewals (every 3 s) and a's tries to take the lease (every 1 s) with a connected.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!a.is_leading().await && b.is_leading().await, "b does not keep the lease: {:?}", a.health().await);
    // Read before the delete, in case deleting a schedule forgets its fires; a fire between the two is not counted.
    let fires = schedule_fires(&system.database.url, "cut").await;
    assert_eq!(b.delete("/api/schedules/cut").await, 204, "delete the schedule");
    let by =
        |instance: &str| -> Vec<&Fire> { fires.iter().filter(|f| f.decided_by.as_deref() == Some(instance)).collect() };
    let (by_a, by_b) = (by("a"), by("b"));
    assert_eq!(by_a.len() + by_b.len(), fires.len(), "fires decided by neither backend: {fires:#?}");
    let last_by_a = by_a.iter().map(|f| f.decided_at_ms).max().expect("a fired before the cut");
    let first_by_b = by_b.iter().map(|f| f.decided_at_ms).min().expect("b fired after the cut");
    assert!(last_by_a < first_by_b, "a decided after b began to: {fires:#?}");
    assert!(first_by_b >= cut_at_ms, "b decided before the cut, while a led: {fires:#?}");
    let ttl_ms = i64::try_from(LEADER_TTL.as_millis()).expect("a short TTL");
    assert!(last_by_a < cut_at_ms + ttl_ms, "a decided more than the lease's TTL after it was cut off: {fires:#?}");
    let execs = one_execution_per_occurrence(&fires, EVERY);

    let tally = system.settle(1, &execs).await;
    let fault = format!(
        "leader backend a cut off from the broker (alive), b took over in {:.1} s; {} occurrences, {} by a, {} by b",
        took.as_secs_f64(),
        execs.len(),
        by_a.len(),
        by_b.len()
    );
    tally.report(&fault);
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{fault}: {tally:?}");
    assert_eq!(tally.statuses.get("ok"), Some(&tally.targets), "{tally:?}");
}
