//! Every NATS subject kanade uses, built only from validated ids (DESIGN.md, Subjects). No other module formats a
//! subject string.

use crate::ids::{Action, Actor, ExecId, GroupName, InventoryKind, JobId, NoticeId, PcId};
use crate::wire::OutputStream;

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

/// `notifications.all.<id>` / `notifications.group.<g>.<id>` / `notifications.pc.<pc>.<id>`: a notification for
/// the users of `target`'s PCs (`kanade notify`), captured by stream `NOTIFICATIONS`.
pub fn notice(target: &Target, id: &NoticeId) -> String {
    match target {
        Target::All => format!("notifications.all.{id}"),
        Target::Group(group) => format!("notifications.group.{group}.{id}"),
        Target::Pc(pc) => format!("notifications.pc.{pc}.{id}"),
    }
}

/// The subscription filter for every notification addressed to `target`.
pub fn notices_for(target: &Target) -> String {
    match target {
        Target::All => "notifications.all.*".to_owned(),
        Target::Group(group) => format!("notifications.group.{group}.*"),
        Target::Pc(pc) => format!("notifications.pc.{pc}.*"),
    }
}

/// Everything stream `NOTIFICATIONS` captures.
pub const NOTICES_ALL: &str = "notifications.>";

/// The target a notification subject addresses, if it is one with valid tokens.
pub fn target_of_notice(subject: &str) -> Option<Target> {
    let tokens: Vec<&str> = subject.strip_prefix("notifications.")?.split('.').collect();
    match tokens.as_slice() {
        ["all", id] => NoticeId::new(*id).ok().map(|_| Target::All),
        ["group", group, id] => NoticeId::new(*id).ok().and(GroupName::new(*group).ok()).map(Target::Group),
        ["pc", pc, id] => NoticeId::new(*id).ok().and(PcId::new(*pc).ok()).map(Target::Pc),
        _ => None,
    }
}

/// `events.notice_ack.<pc>.<id>`: a PC's user acknowledged a notification, captured by stream `EVENTS`.
pub fn notice_ack(pc: &PcId, id: &NoticeId) -> String {
    format!("events.notice_ack.{pc}.{id}")
}

/// Every acknowledgement of notification `id`, whichever PC it came from.
pub fn notice_acks_of(id: &NoticeId) -> String {
    format!("events.notice_ack.*.{id}")
}

/// What an agent asks the backend for on its user's behalf (kanade-client's self-service catalogue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfService {
    /// `selfservice.<pc>.catalogue`: the jobs this PC's user may start.
    Catalogue,
    /// `selfservice.<pc>.run`: start one of them here.
    Run,
}

impl SelfService {
    fn token(self) -> &'static str {
        match self {
            SelfService::Catalogue => "catalogue",
            SelfService::Run => "run",
        }
    }
}

/// `selfservice.<pc>.<catalogue|run>`: core request/reply, agent -> backend (queue group). The broker lets an agent
/// publish only its own PC's, so the PC a request names is the one that sent it.
pub fn selfservice(pc: &PcId, what: SelfService) -> String {
    format!("selfservice.{pc}.{}", what.token())
}

/// Every self-service request, which the backends answer.
pub const SELFSERVICE_ALL: &str = "selfservice.*.*";

/// The PC and the question of a self-service subject, if it is one.
pub fn selfservice_of(subject: &str) -> Option<(PcId, SelfService)> {
    let (pc, what) = subject.strip_prefix("selfservice.")?.split_once('.')?;
    let what = [SelfService::Catalogue, SelfService::Run].into_iter().find(|w| w.token() == what)?;
    Some((PcId::new(pc).ok()?, what))
}

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

/// `events.consent.<pc>.<exec_id>`: where a run held for its user's consent stands, captured by stream `EVENTS`.
pub fn event_consent(pc: &PcId, exec: &ExecId) -> String {
    format!("events.consent.{pc}.{exec}")
}

/// Every `events.consent.<pc>.<exec_id>`: what the backend's consent projector reads of `EVENTS`.
pub const EVENTS_CONSENT_ALL: &str = "events.consent.>";

/// Every `events.started.<pc>.<exec_id>`: what the backend's run-started projector reads of `EVENTS`.
pub const EVENTS_STARTED_ALL: &str = "events.started.>";

/// `output.<pc>.<exec_id>`: core, live stdout/stderr chunks of a running job.
pub fn output(pc: &PcId, exec: &ExecId) -> String {
    format!("output.{pc}.{exec}")
}

/// `output.<pc>.<exec_id>.<stdout|stderr>.<n>`, captured by stream `OUTPUT`: chunk `n` (counted from 0) of a run's
/// whole output stream, stored there because it outgrew the result's inline part. Five tokens, so it is never the
/// live [`output`] subject (three), and an agent allowed only `output.<pc>.>` can write only its own outputs.
pub fn output_chunk(pc: &PcId, exec: &ExecId, stream: OutputStream, n: u32) -> String {
    format!("output.{pc}.{exec}.{stream}.{n}")
}

/// `output.<pc>.<exec_id>.<stdout|stderr>.*`: every chunk of one whole output stream.
pub fn output_chunks(pc: &PcId, exec: &ExecId, stream: OutputStream) -> String {
    format!("output.{pc}.{exec}.{stream}.*")
}

/// Every chunk of every whole output: what stream `OUTPUT` captures (never the three-token live subjects).
pub const OUTPUT_CHUNKS_ALL: &str = "output.*.*.*.*";

/// The chunk number that ends an [`output_chunk`] subject, if it is one (written as [`output_chunk`] writes it: no
/// sign, no leading zero, so no two subjects name the same chunk).
pub fn chunk_of_output(subject: &str) -> Option<u32> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.as_slice() {
        ["output", _, _, "stdout" | "stderr", n] => n.parse::<u32>().ok().filter(|parsed| parsed.to_string() == *n),
        _ => None,
    }
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

/// `enroll.request`: core request/reply, a new agent (bootstrap credential) -> backend
/// ([`crate::enroll::EnrollRequest`] -> [`crate::enroll::EnrollReply`]).
pub const ENROLL_REQUEST: &str = "enroll.request";

/// `enroll.renew.<pc>`: core request/reply, an enrolled agent -> backend ([`crate::enroll::RenewRequest`] ->
/// [`crate::enroll::EnrollReply`]). Only that PC's credential may publish it.
pub fn enroll_renew(pc: &PcId) -> String {
    format!("enroll.renew.{pc}")
}

/// Every renewal request: what the backend answers.
pub const ENROLL_RENEW_ALL: &str = "enroll.renew.*";

/// `agents.<pc>.renew`: core, backend -> agent: "your groups changed, renew now" (no body).
pub fn renew_now(pc: &PcId) -> String {
    format!("agents.{pc}.renew")
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

/// The target a command subject addresses (`commands.all.<job>`, `commands.group.<g>.<job>`,
/// `commands.pc.<pc>.<job>`), if it is one with valid tokens.
pub fn target_of_command(subject: &str) -> Option<Target> {
    let tokens: Vec<&str> = subject.strip_prefix("commands.")?.split('.').collect();
    match tokens.as_slice() {
        ["all", job] => JobId::new(*job).ok().map(|_| Target::All),
        ["group", group, job] => JobId::new(*job).ok().and(GroupName::new(*group).ok()).map(Target::Group),
        ["pc", pc, job] => JobId::new(*job).ok().and(PcId::new(*pc).ok()).map(Target::Pc),
        _ => None,
    }
}

/// The exec id that ends a kill subject.
pub fn exec_of_kill(subject: &str) -> Option<ExecId> {
    ExecId::new(subject.strip_prefix("kill.")?).ok()
}

/// The job a `kill.job.<job>` subject names.
pub fn job_of_kill(subject: &str) -> Option<JobId> {
    JobId::new(subject.strip_prefix("kill.job.")?).ok()
}

/// `$KV.<bucket>.<key>`: the subject one KV key's values are stored on. `key` is a key kanade builds from validated
/// ids (`agent_config`'s `global`, `groups.<g>`, `pcs.<pc>`).
pub fn kv_entry(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// `$JS.API.DIRECT.GET.<stream>`: direct get with the request in the body (a sequence, or batch direct get by
/// `next_by_subj`). The broker's permissions cannot see the body, so an agent may use this form only on streams
/// that are fleet-wide anyway (`EXEC`, the job-state buckets, the chunks of agent releases).
pub fn direct_get(stream: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}")
}

/// `$JS.API.DIRECT.GET.<stream>.<subject>`: the last message stored on `subject`, with no request body. The subject
/// is part of the API subject, so an agent's permissions can allow it for its own subjects only.
pub fn direct_get_last(stream: &str, subject: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}.{subject}")
}

/// `$O.<store>.M.<name>`: where object store `store` keeps the info (size, chunks, metadata) of object `name`, its
/// name encoded as async-nats and nats.go encode it (base64url with padding), so any name is one safe token.
pub fn object_meta(store: &str, name: &str) -> String {
    use base64::Engine as _;
    format!("$O.{store}.M.{}", base64::engine::general_purpose::URL_SAFE.encode(name))
}

/// `$O.<store>.C.<nuid>`: the chunks of one version of an object, in order. `None` when `nuid` (read from the
/// object's info, so from the broker) is not a plain token of letters and digits.
pub fn object_chunks(store: &str, nuid: &str) -> Option<String> {
    let plain = !nuid.is_empty() && nuid.len() <= 64 && nuid.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then(|| format!("$O.{store}.C.{nuid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    #[test]
    fn notice_subjects_name_their_target_and_read_back() {
        let id = NoticeId::new("0193a0b0-0000-7000-8000-000000000001").unwrap();
        let group = GroupName::new("office").unwrap();
        assert_eq!(notice(&Target::All, &id), format!("notifications.all.{id}"));
        assert_eq!(notice(&Target::Group(group.clone()), &id), format!("notifications.group.office.{id}"));
        assert_eq!(notices_for(&Target::Pc(pc())), "notifications.pc.pc-1.*");
        for target in [Target::All, Target::Group(group), Target::Pc(pc())] {
            assert_eq!(target_of_notice(&notice(&target, &id)), Some(target));
        }
        for bad in ["notifications.all", "notifications.pc.PC!.x", "notifications.group.g", "commands.all.x"] {
            assert_eq!(target_of_notice(bad), None, "{bad}");
        }
        assert_eq!(notice_ack(&pc(), &id), format!("events.notice_ack.pc-1.{id}"));
        assert_eq!(notice_acks_of(&id), format!("events.notice_ack.*.{id}"));
    }

    #[test]
    fn selfservice_subjects_name_the_pc_and_the_question() {
        assert_eq!(selfservice(&pc(), SelfService::Catalogue), "selfservice.pc-1.catalogue");
        assert_eq!(selfservice_of("selfservice.pc-1.run"), Some((pc(), SelfService::Run)));
        for bad in ["selfservice.pc-1", "selfservice.PC.run", "selfservice.pc-1.delete", "selfservice.pc-1.run.x"] {
            assert_eq!(selfservice_of(bad), None, "{bad}");
        }
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
        assert_eq!(event_consent(&pc(), &exec), "events.consent.pc-1.e1");
        assert_eq!(output(&pc(), &exec), "output.pc-1.e1");
        assert_eq!(heartbeat(&pc()), "heartbeat.pc-1");
        assert_eq!(ping(&pc()), "agents.pc-1.ping");
        assert_eq!(logs(&pc()), "agents.pc-1.logs");
        assert_eq!(obs(&pc()), "obs.pc-1");
        assert_eq!(perf_host(&pc()), "perf.host.pc-1");
        assert_eq!(perf_proc(&pc()), "perf.proc.pc-1");
        assert_eq!(backend_changes(), "backend.changes");
    }

    #[test]
    fn output_chunks_have_five_tokens_and_never_match_the_live_output() {
        let exec = ExecId::new("e1").unwrap();
        let chunk = output_chunk(&pc(), &exec, OutputStream::Stdout, 7);
        assert_eq!(chunk, "output.pc-1.e1.stdout.7");
        assert_eq!(output_chunk(&pc(), &exec, OutputStream::Stderr, 0), "output.pc-1.e1.stderr.0");
        assert_eq!(output_chunks(&pc(), &exec, OutputStream::Stdout), "output.pc-1.e1.stdout.*");
        assert_eq!(chunk_of_output(&chunk), Some(7));
        assert_eq!(chunk_of_output(&output_chunk(&pc(), &exec, OutputStream::Stderr, u32::MAX)), Some(u32::MAX));
        for not_a_chunk in [
            output(&pc(), &exec),
            "output.pc-1.e1.stdin.7".into(),
            "output.pc-1.e1.stdout.+7".into(),
            "output.pc-1.e1.stdout.07".into(),
            "output.pc-1.e1.stdout.4294967296".into(),
            "results.a.b.stdout.1".into(),
        ] {
            assert_eq!(chunk_of_output(&not_a_chunk), None, "{not_a_chunk}");
        }
        // What stream `OUTPUT` captures: every chunk, and not the live subject.
        let matches = |filter: &str, subject: &str| {
            let (filter, subject): (Vec<&str>, Vec<&str>) = (filter.split('.').collect(), subject.split('.').collect());
            filter.len() == subject.len() && filter.iter().zip(&subject).all(|(f, s)| *f == "*" || f == s)
        };
        assert!(matches(OUTPUT_CHUNKS_ALL, &chunk));
        assert!(matches(&output_chunks(&pc(), &exec, OutputStream::Stdout), &chunk));
        assert!(!matches(&output_chunks(&pc(), &exec, OutputStream::Stderr), &chunk));
        assert!(!matches(OUTPUT_CHUNKS_ALL, &output(&pc(), &exec)));
    }

    #[test]
    fn direct_get_and_object_store_subjects() {
        assert_eq!(kv_entry("agent_config", "groups.lab"), "$KV.agent_config.groups.lab");
        assert_eq!(direct_get("EXEC"), "$JS.API.DIRECT.GET.EXEC");
        assert_eq!(
            direct_get_last("KV_agent_config", &kv_entry("agent_config", "pcs.pc-1")),
            "$JS.API.DIRECT.GET.KV_agent_config.$KV.agent_config.pcs.pc-1"
        );
        let hardware = inventory(&pc(), &InventoryKind::new("hardware").unwrap());
        assert_eq!(direct_get_last("INVENTORY", &hardware), "$JS.API.DIRECT.GET.INVENTORY.inventory.pc-1.hardware");
        // The encoding async-nats 0.51 and nats.go use (base64url, padded): `kanade agent publish` stores it so.
        assert_eq!(
            object_meta("agent_releases", "0.99.0/linux-x86_64"),
            "$O.agent_releases.M.MC45OS4wL2xpbnV4LXg4Nl82NA=="
        );
        assert_eq!(object_meta("agent_releases", "a?>"), "$O.agent_releases.M.YT8-", "never a wildcard or a dot");
        assert_eq!(
            object_chunks("agent_releases", "Qx3kIhY2bG0a1pLmNoR7sT").as_deref(),
            Some("$O.agent_releases.C.Qx3kIhY2bG0a1pLmNoR7sT")
        );
        for bad in ["", "a.b", "*", ">", "a b", "ab\n", &"x".repeat(65)] {
            assert_eq!(object_chunks("agent_releases", bad), None, "{bad:?}");
        }
    }
}
