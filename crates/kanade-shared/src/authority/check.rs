//! The agent's check before it obeys a signed message: `authorise(...) -> Result<&TrustedKey, Refusal>`. Pure:
//! the agent reads the headers and holds the trust list; this decides.
//!
//! A message passes when it is signed, the signature verifies over its subject and payload, it is within its
//! validity (with [`CLOCK_SKEW`] of slack, and no longer than its kind allows), the signer is in the trust list
//! and not revoked, its role is at least operator, and its group scope covers this PC and the subject the message
//! came on. Whether its id was seen before is the caller's: for commands the run ledger, for kills a set of recent
//! ids, for job-state values the newest signing time per key.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::keys::PublicKey;
use super::signature::{Signature, SignatureError};
use super::trust::{TrustList, TrustedKey};
use crate::access::Role;
use crate::ids::{Actor, GroupName, PcId};
use crate::subject::{self, Target};
use crate::wire::Reason;

/// How far a signer's clock and an agent's may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// [`CLOCK_SKEW`] as a chrono duration.
pub fn skew() -> chrono::Duration {
    chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default()
}

/// What a signed message asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// A command on `commands.{all,group,pc}.…`: run a script.
    Command,
    /// `kill.<exec>` or `kill.job.<job>`: stop runs.
    Kill,
    /// A value of `script_current` / `script_status`: which version may run, whether a job is revoked.
    JobState,
    /// A notification on `notifications.{all,group,pc}.…`: text shown to the PC's user.
    Notice,
}

/// The longest a command's signature may be valid: `EXEC` keeps a command 30 days, and the run ledger remembers an
/// exec for 45, so a command can never outlive the record that keeps it from running twice.
pub const MAX_COMMAND_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest a kill's signature may be valid: it acts at once or not at all.
pub const MAX_KILL_LIFETIME: Duration = Duration::from_secs(10 * 60);

impl Act {
    /// The role a signer needs.
    pub fn needs(self) -> Role {
        Role::Operator
    }

    /// The longest validity a signature for this act may claim; `None` for job state, which stands until replaced.
    pub fn max_lifetime(self) -> Option<Duration> {
        match self {
            Act::Command => Some(MAX_COMMAND_LIFETIME),
            Act::Kill => Some(MAX_KILL_LIFETIME),
            Act::JobState => None,
            Act::Notice => Some(crate::wire::MAX_NOTICE_TTL),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Act::Command => "command",
            Act::Kill => "kill",
            Act::JobState => "job state",
            Act::Notice => "notification",
        }
    }
}

/// The agent the check is for.
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    pub pc: &'a PcId,
    pub groups: &'a [GroupName],
}

/// Why a message was not obeyed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {0} is not signed")]
    Unsigned(&'static str),
    #[error("the signature cannot be read: {0}")]
    Unreadable(SignatureError),
    #[error("the signature by `{0}` does not verify for this subject and payload")]
    BadSignature(PublicKey),
    #[error("the signature expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the signature is valid only from {0}")]
    NotYetValid(DateTime<Utc>),
    #[error("the signature claims {claimed:?} of validity; a {act} may claim at most {limit:?}")]
    TooLong { act: &'static str, claimed: Duration, limit: Duration },
    #[error("this agent holds no trust list yet")]
    NoTrustList,
    #[error("`{0}` is not in the trust list")]
    UnknownKey(PublicKey),
    #[error("the key of `{0}` is revoked")]
    Revoked(Actor),
    #[error("`{name}` is {role}; a {act} needs {needed}")]
    Role { name: Actor, role: Role, needed: Role, act: &'static str },
    #[error("`{name}`'s scope ({scope}) does not cover this PC on `{subject}`")]
    OutOfScope { name: Actor, scope: String, subject: String },
}

impl Refusal {
    /// The reason a refused command's result carries: `bad_signature` when the message is not a valid signature
    /// of anyone's, `not_authorised` when it is one by a key that may not do this here.
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::Unsigned(_)
            | Refusal::Unreadable(_)
            | Refusal::BadSignature(_)
            | Refusal::Expired(_)
            | Refusal::NotYetValid(_)
            | Refusal::TooLong { .. } => Reason::BadSignature,
            Refusal::NoTrustList
            | Refusal::UnknownKey(_)
            | Refusal::Revoked(_)
            | Refusal::Role { .. }
            | Refusal::OutOfScope { .. } => Reason::NotAuthorised,
        }
    }

    /// A stable label for counting refusals.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unsigned(_) => "unsigned",
            Refusal::Unreadable(_) | Refusal::BadSignature(_) => "bad_signature",
            Refusal::Expired(_) | Refusal::NotYetValid(_) | Refusal::TooLong { .. } => "expired",
            Refusal::NoTrustList => "no_trust_list",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::Revoked(_) => "revoked_key",
            Refusal::Role { .. } => "role",
            Refusal::OutOfScope { .. } => "out_of_scope",
        }
    }

    /// Whether a newer trust list could change the answer (the agent reads the list again before refusing).
    pub fn may_be_stale(&self) -> bool {
        matches!(
            self,
            Refusal::NoTrustList | Refusal::UnknownKey(_) | Refusal::Role { .. } | Refusal::OutOfScope { .. }
        )
    }
}

/// A message an agent may obey: the trusted key that signed it and the signature itself (its id, validity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval<'t> {
    pub key: &'t TrustedKey,
    pub signature: Signature,
}

/// Decides whether `agent` obeys the message `act` on `subject` with `payload`, signed as `signature` says (as
/// [`Signature::from_headers`] read it), holding `trust`, at `now`. Who signed it and how, or why not.
pub fn authorise<'t>(
    act: Act,
    subject_name: &str,
    payload: &[u8],
    signature: Result<Option<Signature>, SignatureError>,
    agent: Agent<'_>,
    trust: Option<&'t TrustList>,
    now: DateTime<Utc>,
) -> Result<Approval<'t>, Refusal> {
    let signature = signature.map_err(Refusal::Unreadable)?.ok_or(Refusal::Unsigned(act.as_str()))?;
    if !signature.verifies(subject_name, payload) {
        return Err(Refusal::BadSignature(signature.signer));
    }
    let skew = skew();
    if now > signature.expires_at + skew {
        return Err(Refusal::Expired(signature.expires_at));
    }
    if signature.issued_at > now + skew {
        return Err(Refusal::NotYetValid(signature.issued_at));
    }
    if let Some(limit) = act.max_lifetime() {
        let claimed = (signature.expires_at - signature.issued_at).to_std().unwrap_or_default();
        if claimed > limit {
            return Err(Refusal::TooLong { act: act.as_str(), claimed, limit });
        }
    }
    let trust = trust.ok_or(Refusal::NoTrustList)?;
    let entry = trust.find(&signature.signer).ok_or(Refusal::UnknownKey(signature.signer))?;
    if entry.revoked {
        return Err(Refusal::Revoked(entry.name.clone()));
    }
    if !entry.role.allows(act.needs()) {
        return Err(Refusal::Role {
            name: entry.name.clone(),
            role: entry.role,
            needed: act.needs(),
            act: act.as_str(),
        });
    }
    if !covers(entry, act, subject_name, agent) {
        return Err(Refusal::OutOfScope {
            name: entry.name.clone(),
            scope: entry.scope.to_string(),
            subject: crate::ids::shorten(subject_name),
        });
    }
    Ok(Approval { key: entry, signature })
}

/// Whether `entry`'s scope covers `agent` for a message on `subject_name`. A command (or a notification) to the
/// fleet needs a fleet-wide key, one to a group a key scoped to that group (and the PC must be in it), one to a PC a key whose
/// groups include one of the PC's. Kills and job state act on this PC only, so they need the PC in scope.
fn covers(entry: &TrustedKey, act: Act, subject_name: &str, agent: Agent<'_>) -> bool {
    let scope = &entry.scope;
    match act {
        Act::Command => match subject::target_of_command(subject_name) {
            Some(Target::All) => scope.is_fleet(),
            Some(Target::Group(group)) => agent.groups.contains(&group) && scope.covers_group(&group),
            Some(Target::Pc(pc)) => pc == *agent.pc && scope.covers_pc(agent.groups),
            None => false,
        },
        Act::Notice => match subject::target_of_notice(subject_name) {
            Some(Target::All) => scope.is_fleet(),
            Some(Target::Group(group)) => agent.groups.contains(&group) && scope.covers_group(&group),
            Some(Target::Pc(pc)) => pc == *agent.pc && scope.covers_pc(agent.groups),
            None => false,
        },
        Act::Kill | Act::JobState => scope.covers_pc(agent.groups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::GroupScope;
    use crate::authority::keys::SigningKey;

    struct Fleet {
        root_list: TrustList,
        operator: SigningKey,
        office: SigningKey,
        viewer: SigningKey,
        revoked: SigningKey,
    }

    fn fleet() -> Fleet {
        let operator = SigningKey::generate();
        let office = SigningKey::generate();
        let viewer = SigningKey::generate();
        let revoked = SigningKey::generate();
        let entry = |name: &str, key: &SigningKey, role, scope, revoked| TrustedKey {
            name: Actor::new(name).unwrap(),
            key: key.public_key(),
            role,
            scope,
            revoked,
            added_at: Utc::now(),
        };
        let root_list = TrustList::first(
            vec![
                entry("ops", &operator, Role::Operator, GroupScope::Fleet, false),
                entry("clerk", &office, Role::Operator, GroupScope::parse_list("office").unwrap(), false),
                entry("watcher", &viewer, Role::Viewer, GroupScope::Fleet, false),
                entry("gone", &revoked, Role::Admin, GroupScope::Fleet, true),
            ],
            Utc::now(),
        );
        Fleet { root_list, operator, office, viewer, revoked }
    }

    fn pc(name: &str) -> PcId {
        PcId::new(name).unwrap()
    }

    fn groups(names: &[&str]) -> Vec<GroupName> {
        names.iter().map(|g| GroupName::new(*g).unwrap()).collect()
    }

    fn check(
        fleet: &Fleet,
        act: Act,
        key: &SigningKey,
        subject_name: &str,
        agent_pc: &str,
        agent_groups: &[&str],
    ) -> Result<String, Refusal> {
        let now = Utc::now();
        let signature = Signature::sign(key, subject_name, b"{}", now, Duration::from_secs(60));
        let (pc, groups) = (pc(agent_pc), groups(agent_groups));
        authorise(
            act,
            subject_name,
            b"{}",
            Ok(Some(signature)),
            Agent { pc: &pc, groups: &groups },
            Some(&fleet.root_list),
            now,
        )
        .map(|approval| approval.key.name.to_string())
    }

    #[test]
    fn a_fleet_operator_may_command_any_target() {
        let f = fleet();
        assert_eq!(check(&f, Act::Command, &f.operator, "commands.all.patch", "pc1", &[]).unwrap(), "ops");
        assert!(check(&f, Act::Command, &f.operator, "commands.group.lab.patch", "pc1", &["lab"]).is_ok());
        assert!(check(&f, Act::Command, &f.operator, "commands.pc.pc1.patch", "pc1", &[]).is_ok());
        assert!(check(&f, Act::Kill, &f.operator, "kill.x", "pc1", &[]).is_ok());
    }

    #[test]
    fn an_operator_scoped_to_office_reaches_office_pcs_only() {
        let f = fleet();
        let out = |r: Result<String, Refusal>| matches!(r, Err(Refusal::OutOfScope { .. }));
        assert!(check(&f, Act::Command, &f.office, "commands.group.office.patch", "pc1", &["office"]).is_ok());
        assert!(check(&f, Act::Command, &f.office, "commands.pc.pc1.patch", "pc1", &["lab", "office"]).is_ok());
        assert!(out(check(&f, Act::Command, &f.office, "commands.all.patch", "pc1", &["office"])), "not --all");
        assert!(out(check(&f, Act::Command, &f.office, "commands.pc.pc2.patch", "pc2", &["lab"])), "pc outside");
        assert!(out(check(&f, Act::Command, &f.office, "commands.group.lab.patch", "pc2", &["lab"])), "other group");
        // Addressed to a group the PC is not in (it should never have received it), or to another PC.
        assert!(out(check(&f, Act::Command, &f.office, "commands.group.office.patch", "pc2", &["lab"])));
        assert!(out(check(&f, Act::Command, &f.operator, "commands.pc.pc9.patch", "pc1", &[])));
        assert!(out(check(&f, Act::Kill, &f.office, "kill.x", "pc2", &["lab"])), "a kill outside its scope");
        assert!(out(check(&f, Act::JobState, &f.office, "$KV.script_status.patch", "pc2", &["lab"])));
        assert!(check(&f, Act::JobState, &f.office, "$KV.script_status.patch", "pc1", &["office"]).is_ok());
        // Notifications reach as far as commands do: the office key may tell office PCs' users, not the fleet's.
        let id = "0193a0b0-0000-7000-8000-000000000001";
        let notice = |target: &str| format!("notifications.{target}.{id}");
        assert!(check(&f, Act::Notice, &f.office, &notice("group.office"), "pc1", &["office"]).is_ok());
        assert!(check(&f, Act::Notice, &f.office, &notice("pc.pc1"), "pc1", &["office"]).is_ok());
        assert!(out(check(&f, Act::Notice, &f.office, &notice("all"), "pc1", &["office"])), "not --all");
        assert!(out(check(&f, Act::Notice, &f.office, &notice("pc.pc2"), "pc2", &["lab"])), "pc outside");
        assert!(out(check(&f, Act::Notice, &f.office, "notifications.all", "pc1", &["office"])), "no id");
        assert!(check(&f, Act::Notice, &f.operator, &notice("all"), "pc1", &[]).is_ok());
    }

    #[test]
    fn unknown_revoked_and_viewer_keys_are_not_authorised() {
        let f = fleet();
        let stranger = SigningKey::generate();
        let refused = check(&f, Act::Command, &stranger, "commands.all.patch", "pc1", &[]).unwrap_err();
        assert!(matches!(refused, Refusal::UnknownKey(_)));
        assert_eq!(refused.reason(), Reason::NotAuthorised);
        assert!(refused.may_be_stale());
        let revoked = check(&f, Act::Command, &f.revoked, "commands.all.patch", "pc1", &[]).unwrap_err();
        assert_eq!(revoked.to_string(), "the key of `gone` is revoked");
        assert!(!revoked.may_be_stale());
        let viewer = check(&f, Act::Kill, &f.viewer, "kill.x", "pc1", &[]).unwrap_err();
        assert_eq!(viewer.to_string(), "`watcher` is viewer; a kill needs operator");
    }

    #[test]
    fn unsigned_forged_and_moved_messages_are_bad_signatures() {
        let f = fleet();
        let (pc1, none) = (pc("pc1"), groups(&[]));
        let agent = Agent { pc: &pc1, groups: &none };
        let now = Utc::now();
        let decide = |subject_name: &str, payload: &[u8], signature| {
            authorise(Act::Command, subject_name, payload, signature, agent, Some(&f.root_list), now)
        };
        let unsigned = decide("commands.all.patch", b"{}", Ok(None)).unwrap_err();
        assert_eq!(unsigned, Refusal::Unsigned("command"));
        assert_eq!(unsigned.reason(), Reason::BadSignature);
        let signed = Signature::sign(&f.operator, "commands.pc.pc9.patch", b"{}", now, Duration::from_secs(60));
        assert!(matches!(decide("commands.all.patch", b"{}", Ok(Some(signed.clone()))), Err(Refusal::BadSignature(_))));
        assert!(matches!(
            decide("commands.pc.pc9.patch", b"{\"x\":1}", Ok(Some(signed))),
            Err(Refusal::BadSignature(_))
        ));
        let unreadable = decide("commands.all.patch", b"{}", Err(SignatureError::Missing("Kanade-Signature")));
        assert!(matches!(unreadable, Err(Refusal::Unreadable(_))));
    }

    #[test]
    fn validity_is_checked_with_slack_for_clocks_and_a_limit_per_act() {
        let f = fleet();
        let (pc1, none) = (pc("pc1"), groups(&[]));
        let agent = Agent { pc: &pc1, groups: &none };
        let at = |act, issued: DateTime<Utc>, lifetime: Duration, now| {
            let signature = Signature::sign(&f.operator, "kill.x", b"", issued, lifetime);
            authorise(act, "kill.x", b"", Ok(Some(signature)), agent, Some(&f.root_list), now)
        };
        let now = Utc::now();
        let minute = Duration::from_secs(60);
        let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap();
        assert!(at(Act::Kill, ago(minute * 3), minute, now).is_ok(), "expired 2 min ago: within the skew");
        assert!(matches!(at(Act::Kill, ago(minute * 10), minute, now), Err(Refusal::Expired(_))));
        assert!(matches!(
            at(Act::Kill, now + chrono::Duration::minutes(30), minute, now),
            Err(Refusal::NotYetValid(_))
        ));
        assert!(matches!(at(Act::Kill, now, Duration::from_secs(3600), now), Err(Refusal::TooLong { .. })));
        assert!(
            at(Act::JobState, ago(Duration::from_secs(400 * 86400)), Duration::from_secs(36500 * 86400), now).is_ok()
        );
        assert!(matches!(at(Act::Command, now, MAX_COMMAND_LIFETIME + minute, now), Err(Refusal::TooLong { .. })));
        let none = Signature::sign(&f.operator, "kill.x", b"", now, minute);
        assert_eq!(authorise(Act::Kill, "kill.x", b"", Ok(Some(none)), agent, None, now), Err(Refusal::NoTrustList));
    }
}
