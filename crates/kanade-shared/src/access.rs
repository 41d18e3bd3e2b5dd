//! Who may do what: the four operator roles and the group scope an operator acts within. The backend's accounts
//! and routes and the trust list that agents check commands against all speak in these.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{GroupName, IdError};

/// An operator's role. Each includes the ones before it: an approver may do what an operator may, an admin what an
/// approver may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything it is scoped to.
    Viewer,
    /// Runs and kills jobs, publishes scripts and packages, within its groups.
    Operator,
    /// May also approve other operators' executions.
    Approver,
    /// Manages users, enrolment, agent releases and configuration; always fleet-wide.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("`{0}` is not a role: use viewer, operator, approver or admin")]
    UnknownRole(String),
    #[error("a group scope needs at least one group; leave the groups out for the whole fleet")]
    NoGroups,
    #[error("a group scope holds at most {MAX_SCOPE_GROUPS} groups, not {0}")]
    TooManyGroups(usize),
    #[error(transparent)]
    Group(#[from] IdError),
    #[error("an admin acts on the whole fleet; it cannot be limited to groups")]
    ScopedAdmin,
}

impl FromStr for Role {
    type Err = AccessError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == value).ok_or_else(|| AccessError::UnknownRole(short(value)))
    }
}

/// The most groups one scope names.
pub const MAX_SCOPE_GROUPS: usize = 64;

/// What an operator's actions may reach: the whole fleet, or the PCs of some groups. On the wire `"fleet"` or a
/// list of group names; never an empty list, so that "no groups" can never be read as "every group".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupScope {
    Fleet,
    Groups(BTreeSet<GroupName>),
}

impl GroupScope {
    /// The scope of `groups`: the fleet when there are none (as `--groups` left out means), else those groups.
    pub fn from_groups(groups: impl IntoIterator<Item = GroupName>) -> Result<Self, AccessError> {
        let groups: BTreeSet<GroupName> = groups.into_iter().collect();
        match groups.len() {
            0 => Ok(GroupScope::Fleet),
            n if n > MAX_SCOPE_GROUPS => Err(AccessError::TooManyGroups(n)),
            _ => Ok(GroupScope::Groups(groups)),
        }
    }

    /// Parses `--groups g,h` (empty: the fleet).
    pub fn parse_list(raw: &str) -> Result<Self, AccessError> {
        let groups = raw
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(GroupName::new)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_groups(groups)
    }

    pub fn is_fleet(&self) -> bool {
        matches!(self, GroupScope::Fleet)
    }

    /// Whether the scope reaches group `group` as a whole.
    pub fn covers_group(&self, group: &GroupName) -> bool {
        match self {
            GroupScope::Fleet => true,
            GroupScope::Groups(groups) => groups.contains(group),
        }
    }

    /// Whether the scope reaches a PC in `pc_groups`: the fleet reaches every PC, a group scope the PCs in at least
    /// one of its groups.
    pub fn covers_pc(&self, pc_groups: &[GroupName]) -> bool {
        match self {
            GroupScope::Fleet => true,
            GroupScope::Groups(groups) => pc_groups.iter().any(|g| groups.contains(g)),
        }
    }

    /// The groups of a group scope; `None` for the fleet.
    pub fn groups(&self) -> Option<&BTreeSet<GroupName>> {
        match self {
            GroupScope::Fleet => None,
            GroupScope::Groups(groups) => Some(groups),
        }
    }

    /// Checks that `role` may hold this scope: an admin is always fleet-wide.
    pub fn check_role(&self, role: Role) -> Result<(), AccessError> {
        if role == Role::Admin && !self.is_fleet() {
            return Err(AccessError::ScopedAdmin);
        }
        Ok(())
    }
}

impl fmt::Display for GroupScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupScope::Fleet => f.write_str("fleet"),
            GroupScope::Groups(groups) => {
                let names: Vec<&str> = groups.iter().map(GroupName::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Serialize for GroupScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GroupScope::Fleet => serializer.serialize_str("fleet"),
            GroupScope::Groups(groups) => groups.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GroupScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<GroupName>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Word(word) if word == "fleet" => Ok(GroupScope::Fleet),
            Raw::Word(word) => {
                Err(serde::de::Error::custom(format!("a scope is `fleet` or a list of groups, not `{}`", short(&word))))
            }
            Raw::List(groups) if groups.is_empty() => Err(serde::de::Error::custom(AccessError::NoGroups)),
            Raw::List(groups) => GroupScope::from_groups(groups).map_err(serde::de::Error::custom),
        }
    }
}

fn short(value: &str) -> String {
    crate::ids::shorten(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).unwrap()
    }

    #[test]
    fn roles_include_the_ones_before_them() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Approver.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Approver));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert_eq!("approver".parse::<Role>().unwrap(), Role::Approver);
        assert!("root".parse::<Role>().unwrap_err().to_string().contains("`root` is not a role"));
    }

    #[test]
    fn a_scope_reaches_the_pcs_of_its_groups_only() {
        let office = GroupScope::parse_list("office").unwrap();
        assert!(office.covers_pc(&[g("lab"), g("office")]));
        assert!(!office.covers_pc(&[g("lab")]));
        assert!(!office.covers_pc(&[]));
        assert!(office.covers_group(&g("office")));
        assert!(!office.covers_group(&g("lab")));
        assert!(GroupScope::Fleet.covers_pc(&[]));
        assert_eq!(GroupScope::parse_list(" , ").unwrap(), GroupScope::Fleet);
    }

    #[test]
    fn an_empty_list_on_the_wire_is_refused_rather_than_read_as_the_fleet() {
        assert!(serde_json::from_str::<GroupScope>("[]").is_err());
        assert!(serde_json::from_str::<GroupScope>("\"everything\"").is_err());
        assert!(serde_json::from_str::<GroupScope>("[\"Bad Name\"]").is_err());
        assert_eq!(serde_json::from_str::<GroupScope>("\"fleet\"").unwrap(), GroupScope::Fleet);
        let scope: GroupScope = serde_json::from_str("[\"office\",\"lab\"]").unwrap();
        assert_eq!(serde_json::to_string(&scope).unwrap(), "[\"lab\",\"office\"]");
        let many: Vec<String> = (0..=MAX_SCOPE_GROUPS).map(|i| format!("g{i}")).collect();
        assert!(serde_json::from_str::<GroupScope>(&serde_json::to_string(&many).unwrap()).is_err());
    }

    #[test]
    fn an_admin_is_never_limited_to_groups() {
        let office = GroupScope::parse_list("office").unwrap();
        assert_eq!(office.check_role(Role::Admin), Err(AccessError::ScopedAdmin));
        assert!(office.check_role(Role::Operator).is_ok());
        assert!(GroupScope::Fleet.check_role(Role::Admin).is_ok());
    }
}
