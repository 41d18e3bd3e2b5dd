//! The fleet's NATS identities (DESIGN.md, Identity): the operator and its accounts, the users each component
//! connects as, and the files they travel in. Pure: keys come in as nkeys and JWTs go out as strings; writing
//! them to disk is `kanade-ops`'s, issuing agents' is the backend's.
//!
//! The shape, as `kanade security init` creates it:
//! - the **operator** (offline) and an **operator signing key** that signs account JWTs (the backend holds it, to
//!   push revocations);
//! - the **system account** with one user that may push account updates to the broker;
//! - the **fleet account** `KANADE`, which holds every stream, with two signing keys: the **agent key**, scoped to
//!   the agent template (whatever it signs can only be an agent), and the **user key**, which issues the
//!   backend's, the CLI's, the bootstrap and the simulator credentials.

pub mod creds;
pub mod jwt;
pub mod permissions;

use std::collections::BTreeMap;

use jwt::{Account, AccountLimits, Claims, Operator, SigningKey, User, UserLimits, UserScope};
use nkeys::KeyPair;

use crate::ids::{GroupName, PcId};

/// The fleet account's name.
pub const FLEET_ACCOUNT: &str = "KANADE";
/// The system account's name.
pub const SYSTEM_ACCOUNT: &str = "SYS";
/// The role of the agents' scoped signing key.
pub const AGENT_ROLE: &str = "agent";
/// The tag name that carries an agent's groups (`group:<g>`).
pub const GROUP_TAG: &str = "group";

/// The most groups one agent credential carries. The broker reads a client's JWT within its CONNECT line, which
/// nats-server bounds at 4 KiB (`max_control_line`); each group is a tag of up to 70 bytes in the JWT, base64 on
/// top. A test checks the worst case fits with room to spare.
pub const MAX_AGENT_GROUPS: usize = 16;

/// The tags of an agent in `groups`.
pub fn group_tags(groups: &[GroupName]) -> Vec<String> {
    groups.iter().map(|g| format!("{GROUP_TAG}:{g}")).collect()
}

/// The groups an agent's tags name (tags that are not valid group names are ignored).
pub fn groups_of(tags: &[String]) -> Vec<GroupName> {
    tags.iter()
        .filter_map(|tag| tag.strip_prefix(GROUP_TAG)?.strip_prefix(':'))
        .filter_map(|name| GroupName::new(name).ok())
        .collect()
}

/// The operator JWT: self-signed, naming the system account and the operator signing key.
pub fn operator_claims(operator: &str, operator_signing: &str, system_account: &str, iat: i64) -> Claims<Operator> {
    Claims::new(
        operator.to_owned(),
        "kanade",
        iat,
        None,
        Operator::new(vec![operator_signing.to_owned()], system_account.to_owned()),
    )
}

/// The system account: no JetStream, its own key signs its one user.
pub fn system_account_claims(system_account: &str, iat: i64) -> Claims<Account> {
    Claims::new(system_account.to_owned(), SYSTEM_ACCOUNT, iat, None, Account::new(AccountLimits::system(), vec![]))
}

/// The public half of the fleet account: what any holder of the operator signing key needs to issue a new version
/// of it (with more revocations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAccount {
    pub account: String,
    pub agent_signing: String,
    pub user_signing: String,
}

impl FleetAccount {
    /// The fleet account JWT's claims, with `revocations` (user key -> unix seconds).
    pub fn claims(&self, revocations: BTreeMap<String, i64>, iat: i64) -> Claims<Account> {
        let agent = UserScope::new(
            self.agent_signing.clone(),
            AGENT_ROLE,
            permissions::agent_template(),
            "agents: each may act only as the PC its JWT names",
        );
        let mut account = Account::new(
            AccountLimits::unlimited(),
            vec![SigningKey::Scoped(Box::new(agent)), SigningKey::Plain(self.user_signing.clone())],
        );
        account.revocations = revocations;
        Claims::new(self.account.clone(), FLEET_ACCOUNT, iat, None, account)
    }
}

/// An agent's user claims: the PC id as its name, its groups as tags, no permissions of its own (the agent key's
/// scope supplies them).
pub fn agent_claims(
    fleet: &FleetAccount,
    agent_key: &str,
    pc: &PcId,
    groups: &[GroupName],
    iat: i64,
    exp: i64,
) -> Claims<User> {
    Claims::new(
        agent_key.to_owned(),
        pc.as_str(),
        iat,
        Some(exp),
        User::scoped(fleet.account.clone(), group_tags(groups)),
    )
}

/// A user with permissions of its own, issued by the user signing key of `fleet` (or, for the system account's
/// user, by the account key itself: `issuer_account` empty).
pub fn user_claims(
    user_key: &str,
    name: &str,
    limits: UserLimits,
    issuer_account: &str,
    iat: i64,
    exp: Option<i64>,
) -> Claims<User> {
    Claims::new(user_key.to_owned(), name, iat, exp, User::with_limits(limits, issuer_account.to_owned()))
}

/// A fresh user key and its `.creds` text for `claims` built around its public key.
pub fn issue_creds(
    signer: &KeyPair,
    claims: impl FnOnce(&str) -> Claims<User>,
) -> Result<(KeyPair, String), jwt::JwtError> {
    let user = KeyPair::new_user();
    let token = jwt::encode(&claims(&user.public_key()), signer)?;
    let seed = user.seed().map_err(jwt::JwtError::Sign)?;
    Ok((user.clone(), creds::format(&token, &seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_tags_round_trip_and_foreign_tags_are_ignored() {
        let groups = vec![GroupName::new("office").unwrap(), GroupName::new("lab-2").unwrap()];
        let mut tags = group_tags(&groups);
        assert_eq!(tags, ["group:office", "group:lab-2"]);
        tags.push("site:tokyo".to_owned());
        tags.push("group:Not Valid".to_owned());
        assert_eq!(groups_of(&tags), groups);
    }

    #[test]
    fn the_fleet_account_scopes_the_agent_key_and_keeps_revocations() {
        let fleet = FleetAccount {
            account: KeyPair::new_account().public_key(),
            agent_signing: KeyPair::new_account().public_key(),
            user_signing: KeyPair::new_account().public_key(),
        };
        let revoked = KeyPair::new_user().public_key();
        let claims = fleet.claims([(revoked.clone(), 1_700_000_000)].into(), 1_700_000_001);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["nats"]["signing_keys"][0]["kind"], "user_scope");
        assert_eq!(json["nats"]["signing_keys"][0]["key"], fleet.agent_signing.as_str());
        assert_eq!(json["nats"]["signing_keys"][1], fleet.user_signing.as_str());
        assert_eq!(json["nats"]["revocations"][&revoked], 1_700_000_000);
        assert_eq!(json["nats"]["limits"]["disk_storage"], -1, "JetStream on");
    }

    #[test]
    fn the_largest_agent_credential_fits_in_the_brokers_control_line() {
        let account = KeyPair::new_account();
        let fleet = FleetAccount {
            account: account.public_key(),
            agent_signing: account.public_key(),
            user_signing: account.public_key(),
        };
        let pc = PcId::new("p".repeat(64)).unwrap();
        let groups: Vec<GroupName> =
            (0..MAX_AGENT_GROUPS).map(|i| GroupName::new(format!("{i:02}{}", "g".repeat(62))).unwrap()).collect();
        let user = KeyPair::new_user();
        let claims = agent_claims(&fleet, &user.public_key(), &pc, &groups, 1_700_000_000, 1_800_000_000);
        let token = jwt::encode(&claims, &account).unwrap();
        // CONNECT {"jwt":"...","sig":"<86>","name":"kanade-agent <pc>","lang":"rust","version":"0.51.0",...}
        let connect_line = token.len() + 86 + 64 + 400;
        assert!(connect_line < 3_600, "a CONNECT of about {connect_line} bytes leaves too little of 4096");
    }

    #[test]
    fn an_agent_jwt_names_its_pc_and_groups_and_expires() {
        let fleet = FleetAccount {
            account: KeyPair::new_account().public_key(),
            agent_signing: KeyPair::new_account().public_key(),
            user_signing: KeyPair::new_account().public_key(),
        };
        let pc = PcId::new("pc-1").unwrap();
        let claims = agent_claims(&fleet, "UKEY", &pc, &[GroupName::new("office").unwrap()], 100, 200);
        assert_eq!((claims.name.as_str(), claims.exp), ("pc-1", Some(200)));
        assert_eq!(claims.nats.tags, ["group:office"]);
        assert_eq!(claims.nats.issuer_account, fleet.account);
        assert!(claims.nats.limits.is_none());
    }
}
