//! What each kind of fleet identity may publish and subscribe to, as the broker enforces it (DESIGN.md, Identity).
//!
//! An agent's permissions are the template of the agents' scoped signing key: `{{name()}}` is the PC id (the user
//! JWT's name) and `{{tag(group)}}` each of its groups (its `group:<g>` tags), so a credential the backend issues
//! can hold no other shape, and stays small (the broker reads it from one 4 KiB protocol line). The subject
//! patterns here mirror the builders in [`crate::subject`]; a test checks every subject an agent uses against them.

use super::jwt::{Permission, ResponsePermission, UserLimits};
use crate::resources::{
    KV_AGENT_CONFIG, KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS, KV_TRUST, OBJ_AGENT_RELEASES, STREAM_EXEC, STREAM_INVENTORY,
    STREAM_NOTIFICATIONS,
};

/// The template placeholder for the PC id.
pub const NAME: &str = "{{name()}}";
/// The template placeholder for each of the PC's groups.
pub const GROUP: &str = "{{tag(group)}}";

/// At most this many subscriptions per agent connection: an agent holds about twenty; a stolen credential cannot
/// make the broker track millions.
pub const AGENT_MAX_SUBSCRIPTIONS: i64 = 1_000;

/// Replies an agent may send to one request it received (one per run a kill by job stopped here).
pub const AGENT_MAX_REPLIES: i64 = 1_000;

/// The inbox prefix of an agent (`_INBOX_<pc>`): replies to its requests come only there, and no other client
/// may read it (`_INBOX.>` would show every client's replies).
pub fn agent_inbox_prefix(pc: &str) -> String {
    format!("_INBOX_{pc}")
}

/// The shared inbox prefix of clients asking to enrol. A reply there holds only the issued JWT, which is useless
/// without the private key that never left the asking agent.
pub const ENROLL_INBOX_PREFIX: &str = "_INBOX_ENROLL";

/// The fleet simulator's inbox prefix.
pub const SIMULATOR_INBOX_PREFIX: &str = "_INBOX_SIMULATOR";

/// The agents' scoped template.
pub fn agent_template() -> UserLimits {
    agent_limits(NAME, GROUP, &agent_inbox_prefix(NAME))
}

/// The subject the trust list is stored on.
fn trust_entry() -> String {
    crate::subject::kv_entry(KV_TRUST, crate::resources::TRUST_KEY)
}

/// An agent's permissions, with `pc` and `group` in place (a template's placeholders, a real PC's, or `*`).
pub fn agent_limits(pc: &str, group: &str, inbox: &str) -> UserLimits {
    let direct = |stream: &str| format!("$JS.API.DIRECT.GET.{stream}");
    let kv = |bucket: &str| format!("$KV.{bucket}");
    let config_keys = [
        format!("{}.global", kv(KV_AGENT_CONFIG)),
        format!("{}.groups.{group}", kv(KV_AGENT_CONFIG)),
        format!("{}.pcs.{pc}", kv(KV_AGENT_CONFIG)),
    ];
    let mut publish = vec![
        format!("results.{pc}.>"),
        format!("events.*.{pc}.>"),
        format!("output.{pc}.>"),
        format!("heartbeat.{pc}"),
        format!("inventory.{pc}.>"),
        format!("perf.*.{pc}"),
        format!("obs.{pc}"),
        format!("enroll.renew.{pc}"),
        // Its user's self-service requests, answered by a backend.
        format!("selfservice.{pc}.*"),
        // Its own inbox, which only it reads: a request to itself is a round trip that proves the broker has seen
        // everything sent before it.
        format!("{inbox}.>"),
        // Catch-up reads EXEC by filter in the request body (batch direct get), which the broker cannot see: an
        // agent can read any command still held, never write one. The KV buckets of job state are fleet-wide.
        direct(STREAM_EXEC),
        // Notifications it missed while away, read back the same way.
        direct(STREAM_NOTIFICATIONS),
        direct(&format!("KV_{KV_SCRIPT_CURRENT}")),
        direct(&format!("KV_{KV_SCRIPT_STATUS}")),
        // The trust list, read back on connect: one key, by subject.
        format!("{}.{}", direct(&format!("KV_{KV_TRUST}")), trust_entry()),
        // Its own inventory's latest per kind, by subject.
        format!("{}.inventory.{pc}.>", direct(STREAM_INVENTORY)),
        // Releases: the metadata by subject, the chunks by batch direct get.
        direct(&format!("OBJ_{OBJ_AGENT_RELEASES}")),
        format!("{}.>", direct(&format!("OBJ_{OBJ_AGENT_RELEASES}"))),
    ];
    publish.extend(config_keys.iter().map(|key| format!("{}.{key}", direct(&format!("KV_{KV_AGENT_CONFIG}")))));
    let mut subscribe = vec![
        "commands.all.>".to_owned(),
        format!("commands.group.{group}.>"),
        format!("commands.pc.{pc}.>"),
        "notifications.all.>".to_owned(),
        format!("notifications.group.{group}.>"),
        format!("notifications.pc.{pc}.>"),
        "kill.>".to_owned(),
        format!("agents.{pc}.>"),
        format!("{}.>", kv(KV_SCRIPT_CURRENT)),
        format!("{}.>", kv(KV_SCRIPT_STATUS)),
        trust_entry(),
        format!("{inbox}.>"),
    ];
    subscribe.extend(config_keys);
    UserLimits {
        publish: Permission::allow(publish),
        subscribe: Permission::allow(subscribe),
        // Answers to pings, kills, log and perf requests, to the requester's inbox and nowhere else. A kill by job
        // is answered once per run it stopped on this PC, so a request may get several.
        resp: Some(ResponsePermission { max: AGENT_MAX_REPLIES, ttl: 0 }),
        subs: AGENT_MAX_SUBSCRIPTIONS,
        data: -1,
        payload: -1,
    }
}

/// The fleet simulator's credential: the agent's permissions with `*` for the PC and the group. NATS wildcards
/// match whole subject tokens, so "the simulator's own PCs" (an id prefix) cannot be said; this covers every PC's
/// agent subjects and nothing an operator or the backend does.
pub fn simulator_limits(inbox: &str) -> UserLimits {
    let mut limits = agent_limits("*", "*", inbox);
    limits.subs = -1;
    limits
}

/// A client that may only ask to enrol and read the answer.
pub fn bootstrap_limits() -> UserLimits {
    UserLimits {
        publish: Permission::allow(["enroll.request"]),
        subscribe: Permission::allow([format!("{ENROLL_INBOX_PREFIX}.>")]),
        resp: None,
        subs: 10,
        data: -1,
        payload: 16 * 1024,
    }
}

/// The backend's and the CLI's: everything in the fleet account.
pub fn full_access() -> UserLimits {
    UserLimits {
        publish: Permission::allow([">"]),
        subscribe: Permission::allow([">"]),
        resp: None,
        subs: -1,
        data: -1,
        payload: -1,
    }
}

/// Whether `subject` (no wildcards) is covered by `pattern` (`*` one token, `>` one or more at the end).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(s)) if literal == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether a subscription filter `filter` (which may hold wildcards) lies entirely within `pattern`.
pub fn filter_within(pattern: &str, filter: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    for token in pattern.split('.') {
        match (token, filter_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(f)) if f != ">" => {}
            (literal, Some(f)) if literal == f => {}
            _ => return false,
        }
    }
    filter_tokens.next().is_none()
}

/// Whether `limits` lets its holder publish `subject`.
pub fn may_publish(limits: &UserLimits, subject: &str) -> bool {
    limits.publish.allow.iter().any(|p| subject_matches(p, subject))
        && !limits.publish.deny.iter().any(|p| subject_matches(p, subject))
}

/// Whether `limits` lets its holder subscribe to `filter`.
pub fn may_subscribe(limits: &UserLimits, filter: &str) -> bool {
    limits.subscribe.allow.iter().any(|p| filter_within(p, filter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ExecId, GroupName, InventoryKind, JobId, PcId};
    use crate::subject::{self, Target};

    fn pc1() -> UserLimits {
        agent_limits("pc-1", "office", &agent_inbox_prefix("pc-1"))
    }

    #[test]
    fn an_agent_may_publish_every_subject_it_uses_for_itself_and_none_for_another_pc() {
        let limits = pc1();
        let exec = ExecId::new("e1").unwrap();
        let kind = InventoryKind::new("hardware").unwrap();
        let own = |pc: &str| {
            let pc = PcId::new(pc).unwrap();
            vec![
                subject::result(&pc, &exec),
                subject::event_started(&pc, &exec),
                subject::event_consent(&pc, &exec),
                subject::output(&pc, &exec),
                subject::output_chunk(&pc, &exec, crate::wire::OutputStream::Stdout, 3),
                subject::heartbeat(&pc),
                subject::inventory(&pc, &kind),
                subject::perf_host(&pc),
                subject::perf_proc(&pc),
                subject::perf_rollup(&pc),
                subject::obs(&pc),
            ]
        };
        for subject in own("pc-1") {
            assert!(may_publish(&limits, &subject), "{subject}");
        }
        // The trust list is read back by subject, the one key only.
        assert!(may_publish(&limits, "$JS.API.DIRECT.GET.KV_trust_list.$KV.trust_list.current"));
        for subject in own("pc-2") {
            assert!(!may_publish(&limits, &subject), "{subject}");
        }
    }

    #[test]
    fn an_agent_may_not_publish_what_operators_and_the_backend_do() {
        let limits = pc1();
        let job = JobId::new("echo").unwrap();
        for subject in [
            subject::command(&Target::All, &job),
            subject::command(&Target::Pc(PcId::new("pc-1").unwrap()), &job),
            subject::command(&Target::Group(GroupName::new("office").unwrap()), &job),
            subject::kill(&ExecId::new("e1").unwrap()),
            subject::backend_changes(),
            "$KV.script_status.echo".to_owned(),
            "$KV.agent_config.pcs.pc-1".to_owned(),
            "$JS.API.CONSUMER.CREATE.RESULTS".to_owned(),
            "$JS.API.STREAM.PURGE.EXEC".to_owned(),
            "$JS.API.DIRECT.GET.KV_agent_config.$KV.agent_config.pcs.pc-2".to_owned(),
            "$JS.API.DIRECT.GET.INVENTORY.inventory.pc-2.hardware".to_owned(),
            "_INBOX.abc".to_owned(),
            "audit.alice.fire".to_owned(),
            "$KV.trust_list.current".to_owned(),
            "$JS.API.DIRECT.GET.KV_trust_list".to_owned(),
        ] {
            assert!(!may_publish(&limits, &subject), "{subject}");
        }
    }

    #[test]
    fn an_agent_may_subscribe_to_what_is_addressed_to_it_only() {
        let limits = pc1();
        let pc = PcId::new("pc-1").unwrap();
        for filter in [
            subject::commands_for(&Target::All),
            subject::commands_for(&Target::Pc(pc.clone())),
            subject::commands_for(&Target::Group(GroupName::new("office").unwrap())),
            subject::KILL_ALL.to_owned(),
            subject::KILL_JOB_ALL.to_owned(),
            subject::ping(&pc),
            subject::logs(&pc),
            subject::perf_lease(&pc),
            subject::inventory_refresh(&pc),
            subject::kv_changes(KV_SCRIPT_CURRENT),
            "$KV.agent_config.pcs.pc-1".to_owned(),
            "$KV.trust_list.current".to_owned(),
            "_INBOX_pc-1.abc.*".to_owned(),
        ] {
            assert!(may_subscribe(&limits, &filter), "{filter}");
        }
        for filter in [
            "results.>",
            ">",
            "commands.>",
            "commands.pc.pc-2.>",
            "commands.pc.*.echo",
            "commands.group.lab.>",
            "agents.pc-2.ping",
            "_INBOX.>",
            "_INBOX_pc-2.>",
            "heartbeat.*",
            "$KV.agent_config.>",
            "$KV.agent_config.pcs.pc-2",
            "$KV.trust_list.>",
        ] {
            assert!(!may_subscribe(&limits, filter), "{filter}");
        }
    }

    #[test]
    fn the_template_names_its_placeholders_only_where_the_pc_or_group_goes() {
        let template = agent_template();
        let all: Vec<&String> = template.publish.allow.iter().chain(&template.subscribe.allow).collect();
        assert!(all.iter().any(|s| s.contains(NAME)) && all.iter().any(|s| s.contains(GROUP)));
        let rendered = agent_limits("pc-1", "office", &agent_inbox_prefix("pc-1"));
        let substituted: Vec<String> = all.iter().map(|s| s.replace(NAME, "pc-1").replace(GROUP, "office")).collect();
        let expected: Vec<&String> = rendered.publish.allow.iter().chain(&rendered.subscribe.allow).collect();
        assert_eq!(substituted.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_agent_template_fits_the_brokers_limits() {
        // The template lives in the account JWT; the user JWT carries only name and tags. Even so, keep the
        // rendered list far from the server's 4096-subject template expansion limit.
        let template = agent_template();
        assert!(template.publish.allow.len() + template.subscribe.allow.len() < 64);
    }

    #[test]
    fn bootstrap_may_only_ask_to_enrol() {
        let limits = bootstrap_limits();
        assert!(may_publish(&limits, "enroll.request"));
        assert!(may_subscribe(&limits, "_INBOX_ENROLL.x.*"));
        for subject in ["enroll.renew.pc-1", "results.pc-1.e1", "heartbeat.pc-1", "commands.all.x", "$JS.API.INFO"] {
            assert!(!may_publish(&limits, subject), "{subject}");
        }
        assert!(!may_subscribe(&limits, "commands.all.*"));
    }

    #[test]
    fn subject_matching_follows_nats_token_rules() {
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.c.d"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(!subject_matches("a.b", "a.bc"));
        assert!(filter_within("a.>", "a.*.c"));
        assert!(!filter_within("a.*", "a.>"));
        assert!(!filter_within("a.b.*", "a.*.*"));
    }
}
