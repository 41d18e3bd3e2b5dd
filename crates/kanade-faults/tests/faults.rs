//! The fault-injection suite: a two-wave rollout to real agent processes and simulated agents through a real
//! backend process over a real nats-server (configured as docs/RELIABILITY.md asks), with one fault injected in
//! the middle of each. Every test ends by counting every target's result in the backend's database and every run
//! the agents made: lost = 0 and duplicated = 0.
//!
//! Run it alone with `cargo xtask faults`; the counts go to docs/RELIABILITY.md.

use std::time::Duration;

use kanade_faults::{Agent, Backend, Fleet, PATIENCE, Tally, manifest};
use kanade_testkit::{NatsServer, connect, eventually, init_logging};

const SIMULATED: u32 = 60;

/// The system under test: a durable broker, the backend, three real agents (one per wave group plus one more in
/// the first) and a simulated fleet split over the same two groups.
/// Fields drop in order: the agents stop while the broker is still there.
struct System {
    fleet: Fleet,
    agents: Vec<Agent>,
    backend: Backend,
    nats: NatsServer,
}

impl System {
    async fn start() -> Self {
        init_logging();
        let nats = NatsServer::start_durable();
        let url = nats.url();
        let _ = connect(&url).await;
        let backend = Backend::start(&url).await;
        let agents = vec![
            Agent::start(&url, "real-1", "wave-a"),
            Agent::start(&url, "real-2", "wave-a"),
            Agent::start(&url, "real-3", "wave-b"),
        ];
        let fleet = Fleet::start(&url, "sim-", SIMULATED, "wave-a:50%,wave-b:rest", "2s").await;
        backend.wait_for_agents(agents.len() + SIMULATED as usize).await;
        Self { fleet, agents, backend, nats }
    }

    fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.agents.iter().map(|a| a.pc.clone()).collect();
        targets.extend(self.fleet.pcs().iter().cloned());
        targets
    }

    fn runs(&self, pc: &str, exec: &str) -> usize {
        match self.agents.iter().find(|a| a.pc == pc) {
            Some(agent) => agent.runs(exec),
            None => self.fleet.runs(pc, exec),
        }
    }

    /// A rollout over both groups, the second wave `delay` after the first; each run takes 2 s.
    async fn roll_out(&self, job: &str, delay: &str) -> String {
        self.backend.deploy(&manifest(job, 2, &[("wave-a", "0s"), ("wave-b", delay)])).await
    }

    /// Waits for every result, then counts; asserts nothing was lost or run twice.
    async fn settle(&self, fault: &str, exec: &str) -> Tally {
        let view = self.backend.wait_until_answered(exec, PATIENCE).await;
        let targets = self.targets();
        assert_eq!(view["target_count"], targets.len(), "{view}");
        let tally = Tally::count(&self.backend.database(), exec, &targets, |pc| self.runs(pc, exec)).await;
        tally.report(fault);
        assert_eq!((tally.lost, tally.duplicated), (0, 0), "{fault}: {tally:?}");
        tally
    }

    /// Waits until `n` results of `exec` are in the database (the rollout is under way).
    async fn results_reach(&self, exec: &str, n: u64) {
        eventually(&format!("{n} results of {exec}"), PATIENCE, || async {
            let view = self.backend.execution(exec).await?;
            (view["results"].as_u64()? >= n).then_some(())
        })
        .await;
    }
}

/// The broker SIGKILLed once the rollout is under way and started again on the same store `down` later.
async fn broker_outage(job: &str, down: Duration, fault: &str) {
    let mut system = System::start().await;
    let exec = system.roll_out(job, "3s").await;
    system.results_reach(&exec, 5).await;
    system.nats.kill();
    tokio::time::sleep(down).await;
    system.nats.start_again();
    let tally = system.settle(fault, &exec).await;
    assert_eq!(tally.statuses.get("ok"), Some(&tally.targets), "{tally:?}");
}

#[tokio::test]
async fn broker_sigkilled_and_restarted_mid_rollout() {
    broker_outage("nats-kill", Duration::from_millis(500), "nats-server SIGKILL and restart mid-rollout").await;
}

#[tokio::test]
async fn broker_down_longer_than_the_reconnect_backoff() {
    // The agents' reconnect backoff tops out at 5-7.5 s.
    let fault = "nats-server down 12 s (longer than the reconnect backoff)";
    broker_outage("nats-down", Duration::from_secs(12), fault).await;
}

#[tokio::test]
async fn backend_sigkilled_during_projection_and_restarted() {
    let mut system = System::start().await;
    let exec = system.roll_out("backend-kill", "3s").await;
    system.results_reach(&exec, 5).await;
    system.backend.kill();
    // Results keep arriving in RESULTS while the backend is gone; the second wave is due while it is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    system.backend.start_again().await;
    let tally = system.settle("kanade-backend SIGKILL during projection, restarted", &exec).await;
    assert_eq!(tally.statuses.get("ok"), Some(&tally.targets), "{tally:?}");
}

#[tokio::test]
async fn agent_sigkilled_while_its_script_runs() {
    let mut system = System::start().await;
    let exec = system.roll_out("agent-kill", "3s").await;
    let victim = &mut system.agents[0];
    eventually("real-1's script started", PATIENCE, || async { (victim.runs(&exec) == 1).then_some(()) }).await;
    victim.kill();
    victim.start_again();
    let tally = system.settle("an agent SIGKILLed while its script runs, restarted", &exec).await;
    assert_eq!(tally.statuses.get("failed/interrupted"), Some(&1), "{tally:?}");
    assert_eq!(tally.statuses.get("ok"), Some(&(tally.targets - 1)), "{tally:?}");
}

/// The seed's "update the broker over the broker": a job whose script stops nats-server, swaps its binary and
/// starts it again. The job's own result (kept in the agent's outbox while the broker is away) arrives, and the
/// fleet works on the new broker.
#[tokio::test]
async fn a_job_updates_the_broker_it_came_through() {
    let mut system = System::start().await;
    let bin_dir = tempfile::tempdir().unwrap();
    let (running, next) = (bin_dir.path().join("nats-server"), bin_dir.path().join("nats-server-next"));
    std::fs::copy(system.nats.binary(), &running).unwrap();
    std::fs::copy(system.nats.binary(), &next).unwrap();
    system.nats.use_binary(running.clone());
    system.nats.restart();
    system.backend.wait_for_agents(system.targets().len()).await;

    let script = format!(
        "set -e\n\
         pid=$(cat '{pid}')\n\
         kill -TERM \"$pid\"\n\
         while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done\n\
         cp '{next}' '{running}.new'\n\
         mv '{running}.new' '{running}'\n\
         setsid -f '{running}' -c '{config}' </dev/null >/dev/null 2>&1\n\
         for i in $(seq 100); do\n\
         \x20 new=$(cat '{pid}' 2>/dev/null || true)\n\
         \x20 if [ -n \"$new\" ] && [ \"$new\" != \"$pid\" ] && kill -0 \"$new\" 2>/dev/null; then break; fi\n\
         \x20 sleep 0.1\n\
         done\n\
         echo \"broker updated: pid $pid -> $new\"\n",
        pid = system.nats.pid_file().display(),
        next = next.display(),
        running = running.display(),
        config = system.nats.config_file().display(),
    );
    let indented: String = script.lines().map(|l| format!("    {l}\n")).collect();
    let manifest = format!(
        "id: update-broker\nversion: \"1\"\ntarget:\n  pcs: [real-1]\nexecute:\n  shell: sh\n  script: |\n{indented}  \
         timeout: 2m\n"
    );
    let old_pid = std::fs::read_to_string(system.nats.pid_file()).unwrap();
    let exec = system.backend.deploy(&manifest).await;
    let view = system.backend.wait_until_answered(&exec, kanade_faults::PATIENCE).await;
    assert_eq!(view["by_status"]["ok"], 1, "{view}");
    let new_pid = std::fs::read_to_string(system.nats.pid_file()).unwrap();
    assert_ne!(old_pid.trim(), new_pid.trim(), "a new nats-server process runs");
    let tally = Tally::count(&system.backend.database(), &exec, &["real-1".to_owned()], |_| 1).await;
    tally.report("a job stops, swaps and restarts the nats-server it came through");
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{tally:?}");

    // And the whole fleet, on the new broker.
    let exec = system.roll_out("after-update", "1s").await;
    system.settle("a rollout after the broker update", &exec).await;
}

/// Asked to stop with its broker gone, the backend stops (it does not wait for a reconnect that may never come).
#[tokio::test]
async fn the_backend_stops_when_asked_with_the_broker_gone() {
    init_logging();
    let mut nats = NatsServer::start();
    let _ = connect(&nats.url()).await;
    let mut backend = Backend::start(&nats.url()).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = backend.stop(Duration::from_secs(40)).await;
    assert!(status.is_some_and(|s| s.success()), "the backend did not stop cleanly within 40 s: {status:?}");
}

/// The same for the fleet simulator: every agent in it stops.
#[tokio::test]
async fn simulated_agents_stop_when_asked_with_the_broker_gone() {
    init_logging();
    let mut nats = NatsServer::start();
    let _ = connect(&nats.url()).await;
    let mut fleet = Fleet::start(&nats.url(), "gone-", 20, "", "1s").await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = fleet.stop(Duration::from_secs(40)).await;
    assert!(status.is_some_and(|s| s.success()), "the simulator did not stop cleanly within 40 s: {status:?}");
}
