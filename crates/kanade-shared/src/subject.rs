//! Every NATS subject kanade uses, built only from validated ids (DESIGN.md, Subjects). No other module formats a
//! subject string.

use crate::ids::{Action, Actor, ExecId, GroupName, InventoryKind, JobId, PcId};

/// Where a command is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Group(GroupName),
    Pc(PcId),
}

/// `commands.all.<job>` / `commands.group.<g>.<job>` / `commands.pc.<pc>.<job>`, captured by stream `EXEC`.
pub fn command(target: &Target, job: &JobId) -> String {
    match target {
        Target::All => format!("commands.all.{job}"),
        Target::Group(group) => format!("commands.group.{group}.{job}"),
        Target::Pc(pc) => format!("commands.pc.{pc}.{job}"),
    }
}

/// The subscription filter for every command addressed to `target`, whatever the job.
pub fn commands_for(target: &Target) -> String {
    match target {
        Target::All => "commands.all.*".to_owned(),
        Target::Group(group) => format!("commands.group.{group}.*"),
        Target::Pc(pc) => format!("commands.pc.{pc}.*"),
    }
}

/// Everything stream `EXEC` captures.
pub const COMMANDS_ALL: &str = "commands.>";

/// `kill.<exec_id>`: core, operator -> agents.
pub fn kill(exec: &ExecId) -> String {
    format!("kill.{exec}")
}

/// Every kill request; agents subscribe once rather than once per run.
pub const KILL_ALL: &str = "kill.*";

/// `kill.job.<job>`: kill every execution of `job`. Three tokens, so it never matches [`KILL_ALL`].
pub fn kill_job(job: &JobId) -> String {
    format!("kill.job.{job}")
}

/// Every kill-by-job request.
pub const KILL_JOB_ALL: &str = "kill.job.*";

/// `results.<pc>.<exec_id>`, captured by stream `RESULTS`.
pub fn result(pc: &PcId, exec: &ExecId) -> String {
    format!("results.{pc}.{exec}")
}

pub const RESULTS_ALL: &str = "results.>";

/// `events.started.<pc>.<exec_id>`, captured by stream `EVENTS`.
pub fn event_started(pc: &PcId, exec: &ExecId) -> String {
    format!("events.started.{pc}.{exec}")
}

pub const EVENTS_ALL: &str = "events.>";

/// Every `events.started.<pc>.<exec_id>`: what the backend's run-started projector reads of `EVENTS`.
pub const EVENTS_STARTED_ALL: &str = "events.started.>";

/// `output.<pc>.<exec_id>`: core, live stdout/stderr chunks of a running job.
pub fn output(pc: &PcId, exec: &ExecId) -> String {
    format!("output.{pc}.{exec}")
}

/// `heartbeat.<pc>`: core, agent -> backend.
pub fn heartbeat(pc: &PcId) -> String {
    format!("heartbeat.{pc}")
}

pub const HEARTBEATS_ALL: &str = "heartbeat.*";

/// `agents.<pc>.ping`: core request/reply, answered with a fresh heartbeat.
pub fn ping(pc: &PcId) -> String {
    format!("agents.{pc}.ping")
}

/// `agents.<pc>.logs`: core request/reply, answered with the tail of the agent's own log file
/// ([`crate::wire::LogsRequest`] -> [`crate::wire::LogsReply`]).
pub fn logs(pc: &PcId) -> String {
    format!("agents.{pc}.logs")
}

/// `inventory.<pc>.<kind>`, captured by stream `INVENTORY` (latest per subject).
pub fn inventory(pc: &PcId, kind: &InventoryKind) -> String {
    format!("inventory.{pc}.{kind}")
}

pub const INVENTORY_ALL: &str = "inventory.>";

/// `inventory.<pc>.>`: every kind of one agent's inventory (what the agent asks the broker still holds).
pub fn inventory_of(pc: &PcId) -> String {
    format!("inventory.{pc}.>")
}

/// `agents.<pc>.inventory`: core request/reply, asking the agent to report its inventory now
/// ([`crate::inventory::RefreshRequest`] -> [`crate::inventory::RefreshAck`]).
pub fn inventory_refresh(pc: &PcId) -> String {
    format!("agents.{pc}.inventory")
}

/// `perf.host.<pc>`: core, agent -> live viewers, only while a viewer holds a lease ([`crate::perf::HostSample`]).
pub fn perf_host(pc: &PcId) -> String {
    format!("perf.host.{pc}")
}

/// `perf.proc.<pc>`: core, agent -> live viewers, only while a viewer holds a lease ([`crate::perf::ProcSample`]).
pub fn perf_proc(pc: &PcId) -> String {
    format!("perf.proc.{pc}")
}

/// `perf.rollup.<pc>`, captured by stream `PERF`: the agent's summary of every `host_perf_interval`
/// ([`crate::perf::PerfRollup`]).
pub fn perf_rollup(pc: &PcId) -> String {
    format!("perf.rollup.{pc}")
}

/// Every `perf.rollup.<pc>`: what stream `PERF` captures.
pub const PERF_ROLLUPS_ALL: &str = "perf.rollup.*";

/// `agents.<pc>.perf`: core request/reply, a viewer asking for (renewing, giving up) a live stream
/// ([`crate::perf::LeaseRequest`] -> [`crate::perf::LeaseReply`]).
pub fn perf_lease(pc: &PcId) -> String {
    format!("agents.{pc}.perf")
}

/// `obs.<pc>`, captured by stream `OBS`.
pub fn obs(pc: &PcId) -> String {
    format!("obs.{pc}")
}

pub const OBS_ALL: &str = "obs.>";

/// `audit.<actor>.<action>`, captured by stream `AUDIT`.
pub fn audit(actor: &Actor, action: &Action) -> String {
    format!("audit.{actor}.{action}")
}

pub const AUDIT_ALL: &str = "audit.>";

/// `backend.changes`: core, backend -> every backend replica. A small note that something in the read model or the
/// catalogue changed ([`crate::wire::Change`]), so each replica can tell its live dashboard clients to refetch.
/// Not a queue group: every replica must hear every change.
pub fn backend_changes() -> String {
    "backend.changes".to_owned()
}

/// Every change to a KV bucket, as the server publishes it (`$KV.<bucket>.>`).
pub fn kv_changes(bucket: &str) -> String {
    format!("$KV.{bucket}.>")
}

/// The key a KV change subject is about.
pub fn kv_key<'a>(bucket: &str, subject: &'a str) -> Option<&'a str> {
    subject.strip_prefix("$KV.")?.strip_prefix(bucket)?.strip_prefix('.')
}

/// The job id that ends a command subject (`commands.<...>.<job>`), if it is one.
pub fn job_of_command(subject: &str) -> Option<JobId> {
    if !subject.starts_with("commands.") {
        return None;
    }
    JobId::new(subject.rsplit('.').next()?).ok()
}

/// The exec id that ends a kill subject.
pub fn exec_of_kill(subject: &str) -> Option<ExecId> {
    ExecId::new(subject.strip_prefix("kill.")?).ok()
}

/// The job a `kill.job.<job>` subject names.
pub fn job_of_kill(subject: &str) -> Option<JobId> {
    JobId::new(subject.strip_prefix("kill.job.")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    #[test]
    fn command_subjects_match_design() {
        let job = JobId::new("echo").unwrap();
        let group = GroupName::new("canary").unwrap();
        assert_eq!(command(&Target::All, &job), "commands.all.echo");
        assert_eq!(command(&Target::Group(group.clone()), &job), "commands.group.canary.echo");
        assert_eq!(command(&Target::Pc(pc()), &job), "commands.pc.pc-1.echo");
        assert_eq!(commands_for(&Target::Group(group)), "commands.group.canary.*");
        assert_eq!(job_of_command("commands.pc.pc-1.echo"), Some(job));
        assert_eq!(job_of_command("results.pc-1.x"), None);
    }

    #[test]
    fn kv_subjects() {
        assert_eq!(kv_changes("script_status"), "$KV.script_status.>");
        assert_eq!(kv_key("script_status", "$KV.script_status.job-1"), Some("job-1"));
        assert_eq!(kv_key("script_status", "$KV.script_statusx.job-1"), None);
    }

    #[test]
    fn other_subjects_match_design() {
        let exec = ExecId::new("e1").unwrap();
        assert_eq!(kill(&exec), "kill.e1");
        assert_eq!(exec_of_kill("kill.e1"), Some(exec.clone()));
        assert_eq!(exec_of_kill("kill.E1"), None);
        assert_eq!(kill_job(&JobId::new("j1").unwrap()), "kill.job.j1");
        assert_eq!(job_of_kill("kill.job.j1"), Some(JobId::new("j1").unwrap()));
        assert_eq!(job_of_kill("kill.e1"), None);
        assert_eq!(result(&pc(), &exec), "results.pc-1.e1");
        assert_eq!(event_started(&pc(), &exec), "events.started.pc-1.e1");
        assert_eq!(output(&pc(), &exec), "output.pc-1.e1");
        assert_eq!(heartbeat(&pc()), "heartbeat.pc-1");
        assert_eq!(ping(&pc()), "agents.pc-1.ping");
        assert_eq!(logs(&pc()), "agents.pc-1.logs");
        assert_eq!(obs(&pc()), "obs.pc-1");
        assert_eq!(perf_host(&pc()), "perf.host.pc-1");
        assert_eq!(perf_proc(&pc()), "perf.proc.pc-1");
        assert_eq!(backend_changes(), "backend.changes");
    }
}
