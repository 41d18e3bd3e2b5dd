//! Group scopes applied to what an operator fires and reads: which groups a PC counts as in, whether a scope covers
//! a fire's targets, which executions a scope shows, and what a refusal says. Pure: the engine, the API and the
//! scheduler ask these with what they read; `crate::db` holds their SQL form for lists (tested against these by
//! `tests/scopes.rs`).
//!
//! The rules:
//! - `all` needs the fleet scope.
//! - A group needs that group in the scope (a rollout's waves are groups named too).
//! - A PC needs to be in at least one of the scope's groups, as [`pc_groups`] decides its groups; a PC the backend
//!   does not know is in no group, so outside every group scope.
//! - A scoped caller reads the PCs in its groups, their results, and the executions that name one of its groups,
//!   fire at `all`, or target one of its PCs.

use kanade_shared::access::GroupScope;
use kanade_shared::manifest::Targets;
use kanade_shared::{GroupName, PcId};

use crate::enrollment::CredentialStatus;

/// How many PCs a refusal names; the rest are counted.
pub const NAMED_PCS: usize = 5;

/// What a refusal names as lying outside the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// `all`: the whole fleet.
    All,
    Group(GroupName),
    Pc(PcId),
}

/// Why a scope does not cover an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Some of the targets are outside the scope: the first of them, and how many more PCs.
    #[error("outside your scope ({scope}): {}", shown(outside, *more_pcs))]
    Targets { scope: GroupScope, outside: Vec<Outside>, more_pcs: usize },
    /// The action reaches every PC whatever it names (revoking a job), so only the fleet scope may take it.
    #[error("{action} reaches every PC; your scope is {scope}, not the fleet")]
    FleetOnly { action: &'static str, scope: GroupScope },
}

fn shown(outside: &[Outside], more_pcs: usize) -> String {
    let mut parts: Vec<String> = outside
        .iter()
        .map(|o| match o {
            Outside::All => "all (the whole fleet)".to_owned(),
            Outside::Group(group) => format!("group `{group}`"),
            Outside::Pc(pc) => format!("pc `{pc}`"),
        })
        .collect();
    if more_pcs > 0 {
        parts.push(format!("and {more_pcs} more pcs"));
    }
    parts.join(", ")
}

/// The groups a PC counts as in for scopes. An active credential's groups are the PC's: the broker lets the agent
/// read the commands of those groups only, and the agent takes them as its own. A revoked credential's PC is in no
/// group (it cannot connect; only the fleet scope reaches it). Without a credential in force (none, or one waiting
/// for approval: the agent still runs on a shared identity), the groups its heartbeats report are all anyone knows
/// and what it acts on. A PC with neither is unknown, in no group.
pub fn pc_groups(credential: Option<(CredentialStatus, &[String])>, reported: Option<&[String]>) -> Vec<GroupName> {
    let names = match credential {
        Some((CredentialStatus::Active, groups)) => groups,
        Some((CredentialStatus::Revoked, _)) => &[],
        Some((CredentialStatus::Pending, _)) | None => reported.unwrap_or_default(),
    };
    // A stored name that is no longer valid (a hand edit) names no group.
    names.iter().filter_map(|name| GroupName::new(name.as_str()).ok()).collect()
}

/// Whether `scope` covers firing at `targets`, with a rollout over `wave_groups`: `all` needs the fleet, each group
/// named (and each wave's) must be in the scope, each PC in one of its groups as `groups_of` knows it (`None`: a PC
/// the backend does not know). The refusal names what is outside, the first [`NAMED_PCS`] PCs of it.
pub fn check<'w, 'g>(
    scope: &GroupScope,
    targets: &Targets,
    wave_groups: impl IntoIterator<Item = &'w GroupName>,
    groups_of: impl Fn(&PcId) -> Option<&'g [GroupName]>,
) -> Result<(), ScopeError> {
    if scope.is_fleet() {
        return Ok(());
    }
    let mut outside = Vec::new();
    if targets.all {
        outside.push(Outside::All);
    }
    let waves: Vec<&GroupName> = wave_groups.into_iter().collect();
    for group in targets.groups.iter().chain(waves) {
        let named = outside.contains(&Outside::Group(group.clone()));
        if !scope.covers_group(group) && !named {
            outside.push(Outside::Group(group.clone()));
        }
    }
    let mut more_pcs = 0;
    let mut named_pcs = 0;
    for pc in &targets.pcs {
        if scope.covers_pc(groups_of(pc).unwrap_or_default()) {
            continue;
        }
        if named_pcs < NAMED_PCS {
            named_pcs += 1;
            outside.push(Outside::Pc(pc.clone()));
        } else {
            more_pcs += 1;
        }
    }
    if outside.is_empty() {
        return Ok(());
    }
    Err(ScopeError::Targets { scope: scope.clone(), outside, more_pcs })
}

/// An action that reaches every PC whatever it names: only the fleet scope may take it.
pub fn fleet_only(scope: &GroupScope, action: &'static str) -> Result<(), ScopeError> {
    if scope.is_fleet() { Ok(()) } else { Err(ScopeError::FleetOnly { action, scope: scope.clone() }) }
}

/// Whether a scoped caller sees an execution: it fired at `all` (every group), named one of the scope's groups (as
/// a target or a wave), or one of its targets is a PC in the scope (`targets_in_scope`). `crate::db`'s executions
/// list is this rule in SQL.
pub fn shows_execution(scope: &GroupScope, all: bool, named_groups: &[GroupName], targets_in_scope: bool) -> bool {
    scope.is_fleet() || all || named_groups.iter().any(|g| scope.covers_group(g)) || targets_in_scope
}

/// The groups an execution names, as stored with it for [`shows_execution`]: its targets' groups and its waves',
/// each once, sorted.
pub fn named_groups<'a>(targets: &'a Targets, wave_groups: impl IntoIterator<Item = &'a GroupName>) -> Vec<GroupName> {
    let mut groups: Vec<GroupName> = targets.groups.iter().chain(wave_groups).cloned().collect();
    groups.sort();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).unwrap()
    }

    fn pc(name: &str) -> PcId {
        PcId::new(name).unwrap()
    }

    fn targets(all: bool, groups: &[&str], pcs: &[&str]) -> Targets {
        Targets { all, groups: groups.iter().map(|n| g(n)).collect(), pcs: pcs.iter().map(|n| pc(n)).collect() }
    }

    fn office() -> GroupScope {
        GroupScope::parse_list("office").unwrap()
    }

    /// office-1 in office, lab-1 in lab, both-1 in both; anything else unknown.
    fn fleet_groups() -> HashMap<PcId, Vec<GroupName>> {
        HashMap::from([
            (pc("office-1"), vec![g("office")]),
            (pc("lab-1"), vec![g("lab")]),
            (pc("both-1"), vec![g("lab"), g("office")]),
        ])
    }

    fn check_with(scope: &GroupScope, t: &Targets, waves: &[GroupName]) -> Result<(), ScopeError> {
        let groups = fleet_groups();
        let groups = &groups;
        check(scope, t, waves, |p| groups.get(p).map(Vec::as_slice))
    }

    #[test]
    fn all_needs_the_fleet() {
        let err = check_with(&office(), &targets(true, &[], &[]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "outside your scope (office): all (the whole fleet)");
        assert!(check_with(&GroupScope::Fleet, &targets(true, &[], &[]), &[]).is_ok());
    }

    #[test]
    fn a_group_needs_that_group_in_scope_and_so_does_every_wave() {
        assert!(check_with(&office(), &targets(false, &["office"], &[]), &[]).is_ok());
        let err = check_with(&office(), &targets(false, &["office", "lab"], &[]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "outside your scope (office): group `lab`");
        // A wave over a group outside is refused even when the targets name only groups inside; a group both named
        // and a wave is named once.
        let err = check_with(&office(), &targets(false, &["office", "lab"], &[]), &[g("office"), g("lab")]);
        assert_eq!(err.unwrap_err().to_string(), "outside your scope (office): group `lab`");
        let two = GroupScope::parse_list("office,lab").unwrap();
        assert!(check_with(&two, &targets(false, &["office", "lab"], &[]), &[g("lab")]).is_ok());
    }

    #[test]
    fn a_pc_needs_one_of_its_groups_in_scope_and_an_unknown_pc_is_outside() {
        assert!(check_with(&office(), &targets(false, &[], &["office-1", "both-1"]), &[]).is_ok());
        let err = check_with(&office(), &targets(false, &[], &["office-1", "lab-1", "ghost"]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "outside your scope (office): pc `lab-1`, pc `ghost`");
        let ScopeError::Targets { outside, .. } = err else { panic!("targets") };
        assert_eq!(outside, [Outside::Pc(pc("lab-1")), Outside::Pc(pc("ghost"))]);
        // The fleet reaches even PCs nobody knows.
        assert!(check_with(&GroupScope::Fleet, &targets(false, &[], &["ghost"]), &[]).is_ok());
    }

    #[test]
    fn a_refusal_names_a_few_pcs_and_counts_the_rest() {
        let many: Vec<String> = (0..12).map(|i| format!("ghost-{i:02}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = check_with(&office(), &targets(true, &["lab"], &names), &[]).unwrap_err().to_string();
        assert!(err.starts_with("outside your scope (office): all (the whole fleet), group `lab`, pc `ghost-00`"));
        assert!(err.ends_with("pc `ghost-04`, and 7 more pcs"), "{err}");
    }

    #[test]
    fn nothing_named_is_nothing_outside() {
        assert!(check_with(&office(), &targets(false, &[], &[]), &[]).is_ok());
    }

    #[test]
    fn a_pc_s_groups_are_its_active_credential_s_else_what_it_reports() {
        let strings = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let (lab, office) = (strings(&["lab"]), strings(&["office"]));
        let active = Some((CredentialStatus::Active, lab.as_slice()));
        assert_eq!(pc_groups(active, Some(&office)), [g("lab")], "the credential wins over a heartbeat");
        assert_eq!(pc_groups(active, None), [g("lab")], "enrolled, not heard from yet");
        let revoked = Some((CredentialStatus::Revoked, lab.as_slice()));
        assert!(pc_groups(revoked, Some(&office)).is_empty(), "revoked: in no group");
        let pending = Some((CredentialStatus::Pending, lab.as_slice()));
        assert_eq!(pc_groups(pending, Some(&office)), [g("office")], "not in force yet: what it runs as");
        assert_eq!(pc_groups(None, Some(&office)), [g("office")]);
        assert!(pc_groups(None, None).is_empty(), "unknown");
        let odd = strings(&["office", "Not A Group"]);
        assert_eq!(pc_groups(None, Some(&odd)), [g("office")], "a name that is not a group names none");
    }

    #[test]
    fn a_job_wide_action_needs_the_fleet() {
        assert!(fleet_only(&GroupScope::Fleet, "revoking a job").is_ok());
        let err = fleet_only(&office(), "revoking a job").unwrap_err();
        assert_eq!(err.to_string(), "revoking a job reaches every PC; your scope is office, not the fleet");
    }

    #[test]
    fn a_scope_shows_the_executions_that_touch_it() {
        let office = office();
        assert!(shows_execution(&office, true, &[], false), "all reaches every group");
        assert!(shows_execution(&office, false, &[g("lab"), g("office")], false), "names office");
        assert!(shows_execution(&office, false, &[], true), "targets an office PC");
        assert!(!shows_execution(&office, false, &[g("lab")], false), "lab only");
        assert!(shows_execution(&GroupScope::Fleet, false, &[], false));
        let t = targets(false, &["lab", "office"], &["pc-1"]);
        assert_eq!(named_groups(&t, &[g("canary"), g("lab")]), [g("canary"), g("lab"), g("office")]);
    }
}
