//! `kanade trust sync`'s decision, with no I/O: the next trust list from the backend's operator accounts (each
//! with its role, group scope, state and registered public key), the list held, and the names the backend's audit
//! says were removed. An account is the authority for its name: an enabled one with a registered key has that key
//! trusted with its role and scope, and no other key of its name; a disabled or removed one has none. A name that
//! is not (and never was) an account — `backend`, a key added by hand with `trust add` — is left as it is. Nothing
//! is ever deleted: a key the accounts no longer vouch for is marked revoked.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use kanade_ops::security::BACKEND_KEY_NAME;
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::api::UserView;
use kanade_shared::authority::{PublicKey, TrustList, TrustedKey};
use serde::Serialize;

use super::ChangeError;

/// A key trusted (added) with a role and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trusted {
    pub name: Actor,
    pub key: PublicKey,
    pub role: Role,
    pub scope: GroupScope,
}

/// A key kept, with its role or scope changed to its account's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updated {
    pub name: Actor,
    pub key: PublicKey,
    pub role: Role,
    pub scope: GroupScope,
    pub was_role: Role,
    pub was_scope: GroupScope,
}

/// Why a key is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Its account is disabled.
    AccountDisabled,
    /// Its account was removed (the backend's audit says so).
    AccountRemoved,
    /// Its account registered another key (a rotation, or a lost key replaced).
    KeyReplaced,
    /// Its account has no key registered (cleared, or never registered when this key was added by hand).
    NoKeyRegistered,
}

impl std::fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RevokeReason::AccountDisabled => "the account is disabled",
            RevokeReason::AccountRemoved => "the account was removed",
            RevokeReason::KeyReplaced => "the account registered another key",
            RevokeReason::NoKeyRegistered => "the account has no key registered",
        })
    }
}

/// A key marked revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revoked {
    pub name: Actor,
    pub key: PublicKey,
    pub reason: RevokeReason,
}

/// An account whose key is not taken into the list, and why: the rest of the sync goes ahead without it (its other
/// keys are still revoked), so one account in a state the list cannot hold never holds up a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The account's name as the backend gave it.
    pub name: String,
    /// Its registered key as the backend gave it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub reason: String,
}

/// What a sync changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<Trusted>,
    pub updated: Vec<Updated>,
    pub revoked: Vec<Revoked>,
    pub skipped: Vec<Skipped>,
}

impl Changes {
    /// Whether the list changes at all (skips change nothing).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.revoked.is_empty()
    }
}

/// The changes, and the next version when there are any (`None`: nothing to change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub changes: Changes,
    pub next: Option<TrustList>,
}

/// One account as the sync reads it.
enum Account {
    /// Not synced; its listed keys are left as they are. The reason is reported.
    Skip(Skipped),
    Disabled,
    Enabled {
        key: Option<PublicKey>,
        role: Role,
        scope: GroupScope,
    },
}

/// The keys of `name` in `list` that are not revoked.
fn unrevoked<'a>(list: &'a TrustList, name: &'a Actor) -> impl Iterator<Item = &'a TrustedKey> + 'a {
    list.keys.iter().filter(move |k| k.name == *name && !k.revoked)
}

fn skip(view: &UserView, reason: impl Into<String>) -> Account {
    Account::Skip(Skipped { name: view.name.clone(), key: view.signing_key.clone(), reason: reason.into() })
}

fn account(view: &UserView) -> Account {
    if view.name == BACKEND_KEY_NAME {
        return skip(view, format!("`{BACKEND_KEY_NAME}` names the backend's own key, which is never an account's"));
    }
    if view.disabled {
        return Account::Disabled;
    }
    let key = match view.signing_key.as_deref().map(str::parse::<PublicKey>).transpose() {
        Ok(key) => key,
        Err(err) => return skip(view, format!("its registered key cannot be read: {err}")),
    };
    if let Err(err) = view.scope.check_role(view.role) {
        return skip(view, format!("{} on `{}`: {err}", view.role, view.scope));
    }
    Account::Enabled { key, role: view.role, scope: view.scope.clone() }
}

/// The next trust list from `users` (every account the backend has) and `removed` (names the backend's audit says
/// were removed; an account of the same name made again since counts as an account). `root` is the trust root's
/// public key, which signs lists and is never trusted for commands.
///
/// The rules, name by name:
/// - an enabled account with a registered key: that key trusted under the account's name with its role and scope
///   (added, or its role and scope replaced), and every other unrevoked key of the name revoked;
/// - an enabled account with no key registered, a disabled account, a removed name that is not an account again:
///   every unrevoked key of the name revoked;
/// - any other name (`backend`, keys added by hand under names that never were accounts): left as it is.
///
/// An account's key is skipped (reported, not trusted) when it cannot be: revoked already (a revoked key is never
/// trusted again), listed under another name, registered by another enabled account too, the root's own key, or a
/// role the scope cannot have. An account named `backend` is skipped whole.
pub fn plan(
    current: &TrustList,
    users: &[UserView],
    removed: &BTreeSet<Actor>,
    root: &PublicKey,
    now: DateTime<Utc>,
) -> Result<Plan, ChangeError> {
    let mut changes = Changes::default();
    // Accounts by name; a name the backend gave that is not a name cannot be in the list, and is reported.
    let mut accounts: BTreeMap<Actor, Account> = BTreeMap::new();
    for view in users {
        match Actor::new(view.name.as_str()) {
            Ok(name) => {
                accounts.insert(name, account(view));
            }
            Err(err) => {
                changes.skipped.push(Skipped {
                    name: view.name.clone(),
                    key: view.signing_key.clone(),
                    reason: format!("not a name: {err}"),
                });
            }
        }
    }
    // A key two enabled accounts registered is nobody's to trust: which of them would sign with it?
    let mut claims: HashMap<PublicKey, usize> = HashMap::new();
    for account in accounts.values() {
        if let Account::Enabled { key: Some(key), .. } = account {
            *claims.entry(*key).or_default() += 1;
        }
    }

    let revoke_all = |changes: &mut Changes, name: &Actor, reason: RevokeReason| {
        for k in unrevoked(current, name) {
            changes.revoked.push(Revoked { name: name.clone(), key: k.key, reason });
        }
    };
    for (name, account) in &accounts {
        match account {
            Account::Skip(skipped) => changes.skipped.push(skipped.clone()),
            Account::Disabled => revoke_all(&mut changes, name, RevokeReason::AccountDisabled),
            Account::Enabled { key: None, .. } => revoke_all(&mut changes, name, RevokeReason::NoKeyRegistered),
            Account::Enabled { key: Some(key), role, scope } => {
                for k in unrevoked(current, name).filter(|k| k.key != *key) {
                    changes.revoked.push(Revoked { name: name.clone(), key: k.key, reason: RevokeReason::KeyReplaced });
                }
                let skipped = |reason: String| Skipped { name: name.to_string(), key: Some(key.to_string()), reason };
                if key == root {
                    changes
                        .skipped
                        .push(skipped("it is the trust root's own key, which signs trust lists only".into()));
                    continue;
                }
                if claims.get(key).copied().unwrap_or(0) > 1 {
                    changes.skipped.push(skipped("another enabled account registered the same key".into()));
                    continue;
                }
                match current.find(key) {
                    Some(listed) if listed.revoked => changes.skipped.push(skipped(
                        "the key is revoked, and a revoked key is never trusted again: register a new one (`kanade \
                         key create`, `kanade user key`)"
                            .into(),
                    )),
                    Some(listed) if listed.name != *name => changes.skipped.push(skipped(format!(
                        "the key is trusted as `{}`: a key keeps its name (revoke it, register a new key)",
                        listed.name
                    ))),
                    Some(listed) if listed.role == *role && listed.scope == *scope => {}
                    Some(listed) => changes.updated.push(Updated {
                        name: name.clone(),
                        key: *key,
                        role: *role,
                        scope: scope.clone(),
                        was_role: listed.role,
                        was_scope: listed.scope.clone(),
                    }),
                    None => {
                        changes.added.push(Trusted { name: name.clone(), key: *key, role: *role, scope: scope.clone() })
                    }
                }
            }
        }
    }
    // Removed accounts: names in the list that the audit says were accounts, and are not any more.
    let listed_names: BTreeSet<&Actor> = current.keys.iter().map(|k| &k.name).collect();
    for name in listed_names {
        if removed.contains(name) && !accounts.contains_key(name) && name.as_str() != BACKEND_KEY_NAME {
            revoke_all(&mut changes, name, RevokeReason::AccountRemoved);
        }
    }

    if changes.is_empty() {
        return Ok(Plan { changes, next: None });
    }
    let next = current.next(now, |keys| {
        for revoked in &changes.revoked {
            if let Some(k) = keys.iter_mut().find(|k| k.key == revoked.key) {
                k.revoked = true;
            }
        }
        for updated in &changes.updated {
            if let Some(k) = keys.iter_mut().find(|k| k.key == updated.key) {
                k.role = updated.role;
                k.scope = updated.scope.clone();
            }
        }
        for added in &changes.added {
            keys.push(TrustedKey::new(added.name.clone(), added.key, added.role, added.scope.clone(), now));
        }
    })?;
    Ok(Plan { changes, next: Some(next) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::authority::SigningKey;

    fn name(n: &str) -> Actor {
        Actor::new(n).unwrap()
    }

    fn key() -> PublicKey {
        SigningKey::generate().public_key()
    }

    fn groups(list: &str) -> GroupScope {
        GroupScope::parse_list(list).unwrap()
    }

    fn user(n: &str, role: Role, scope: GroupScope, key: Option<PublicKey>) -> UserView {
        UserView {
            name: n.to_owned(),
            role,
            scope,
            disabled: false,
            totp: false,
            signing_key: key.map(|k| k.to_string()),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            created_by: "root".into(),
        }
    }

    fn listed(n: &str, key: PublicKey, role: Role, scope: GroupScope) -> TrustedKey {
        TrustedKey::new(name(n), key, role, scope, Utc::now())
    }

    /// Version 3 holding the backend's key, and `tester`'s added by hand.
    fn held(extra: Vec<TrustedKey>) -> (TrustList, PublicKey, PublicKey) {
        let (backend, tester) = (key(), key());
        let mut keys = vec![
            listed("backend", backend, Role::Operator, GroupScope::Fleet),
            listed("tester", tester, Role::Admin, GroupScope::Fleet),
        ];
        keys.extend(extra);
        (TrustList { version: 3, issued_at: Utc::now(), keys }, backend, tester)
    }

    fn none() -> BTreeSet<Actor> {
        BTreeSet::new()
    }

    /// The list `plan` makes, which must exist.
    fn next(plan: &Plan) -> &TrustList {
        plan.next.as_ref().expect("a next version")
    }

    #[test]
    fn accounts_with_keys_are_trusted_with_their_role_and_scope_and_other_names_are_left_alone() {
        let (current, backend, tester) = held(vec![]);
        let (alice, bob) = (key(), key());
        let users = [
            user("alice", Role::Operator, groups("lab"), Some(alice)),
            user("bob", Role::Admin, GroupScope::Fleet, Some(bob)),
            user("carol", Role::Operator, GroupScope::Fleet, None),
        ];
        let plan = plan(&current, &users, &none(), &key(), Utc::now()).unwrap();
        assert_eq!(
            plan.changes.added,
            vec![
                Trusted { name: name("alice"), key: alice, role: Role::Operator, scope: groups("lab") },
                Trusted { name: name("bob"), key: bob, role: Role::Admin, scope: GroupScope::Fleet },
            ]
        );
        assert!(plan.changes.updated.is_empty() && plan.changes.revoked.is_empty() && plan.changes.skipped.is_empty());
        let list = next(&plan);
        assert_eq!(list.version, 4);
        assert_eq!(list.keys.len(), 4);
        assert_eq!(list.find(&backend), current.find(&backend), "the backend's key untouched");
        assert_eq!(list.find(&tester), current.find(&tester), "a key added by hand untouched");
        assert_eq!(list.find(&alice).unwrap().scope, groups("lab"));

        // The same accounts again: nothing to change.
        let again = super::plan(list, &users, &none(), &key(), Utc::now()).unwrap();
        assert_eq!(again, Plan { changes: Changes::default(), next: None });
    }

    #[test]
    fn a_new_role_or_scope_updates_the_key_and_keeps_when_it_was_added() {
        let alice = key();
        let added_at = Utc::now() - chrono::Duration::days(3);
        let mut entry = listed("alice", alice, Role::Operator, groups("lab"));
        entry.added_at = added_at;
        let (current, ..) = held(vec![entry]);
        let users = [user("alice", Role::Approver, groups("lab,office"), Some(alice))];
        let plan = plan(&current, &users, &none(), &key(), Utc::now()).unwrap();
        assert_eq!(
            plan.changes.updated,
            vec![Updated {
                name: name("alice"),
                key: alice,
                role: Role::Approver,
                scope: groups("lab,office"),
                was_role: Role::Operator,
                was_scope: groups("lab"),
            }]
        );
        let entry = next(&plan).find(&alice).unwrap();
        assert_eq!((entry.role, &entry.scope, entry.added_at), (Role::Approver, &groups("lab,office"), added_at));
    }

    #[test]
    fn disabled_removed_and_keyless_accounts_lose_every_key_and_a_replaced_key_loses_the_old_one() {
        let (dana, erin, old, new, frank, gone) = (key(), key(), key(), key(), key(), key());
        let (current, backend, tester) = held(vec![
            listed("dana", dana, Role::Operator, GroupScope::Fleet),
            listed("erin", erin, Role::Operator, GroupScope::Fleet),
            listed("gus", old, Role::Operator, GroupScope::Fleet),
            listed("frank", frank, Role::Viewer, GroupScope::Fleet),
            listed("zed", gone, Role::Operator, GroupScope::Fleet),
        ]);
        let mut dana_view = user("dana", Role::Operator, GroupScope::Fleet, Some(dana));
        dana_view.disabled = true;
        let users = [
            dana_view,
            user("erin", Role::Operator, GroupScope::Fleet, None),
            user("gus", Role::Operator, GroupScope::Fleet, Some(new)),
            user("frank", Role::Viewer, GroupScope::Fleet, Some(frank)),
        ];
        // `zed` was removed; `tester` never was an account, and `frank` was removed once but is an account again.
        let removed: BTreeSet<Actor> = [name("zed"), name("frank")].into();
        let plan = plan(&current, &users, &removed, &key(), Utc::now()).unwrap();
        let revoked: Vec<(&str, PublicKey, RevokeReason)> =
            plan.changes.revoked.iter().map(|r| (r.name.as_str(), r.key, r.reason)).collect();
        assert_eq!(
            revoked,
            vec![
                ("dana", dana, RevokeReason::AccountDisabled),
                ("erin", erin, RevokeReason::NoKeyRegistered),
                ("gus", old, RevokeReason::KeyReplaced),
                ("zed", gone, RevokeReason::AccountRemoved),
            ]
        );
        assert_eq!(
            plan.changes.added,
            vec![Trusted { name: name("gus"), key: new, role: Role::Operator, scope: GroupScope::Fleet }]
        );
        let list = next(&plan);
        assert_eq!(list.keys.len(), current.keys.len() + 1, "nothing is deleted");
        for k in [dana, erin, old, gone] {
            assert!(list.find(&k).unwrap().revoked, "{k}");
        }
        for k in [backend, tester, frank, new] {
            assert!(!list.find(&k).unwrap().revoked, "{k}");
        }

        // Re-enabled, dana's old key stays revoked: reported, never trusted again; the list does not change.
        let users = [user("dana", Role::Operator, GroupScope::Fleet, Some(dana))];
        let again = super::plan(list, &users, &none(), &key(), Utc::now()).unwrap();
        assert_eq!(again.next, None);
        assert_eq!(again.changes.skipped.len(), 1);
        assert!(again.changes.skipped[0].reason.contains("never trusted again"), "{:?}", again.changes.skipped);
    }

    #[test]
    fn keys_that_cannot_be_trusted_are_skipped_and_the_rest_goes_ahead() {
        let (root, shared, hand, mine, listed_revoked) = (key(), key(), key(), key(), key());
        let mut revoked_entry = listed("ivy", listed_revoked, Role::Operator, GroupScope::Fleet);
        revoked_entry.revoked = true;
        let (current, backend, _) = held(vec![listed("robot", hand, Role::Operator, GroupScope::Fleet), revoked_entry]);
        let mut bad_key = user("hank", Role::Operator, GroupScope::Fleet, None);
        bad_key.signing_key = Some("ed25519:garbage".into());
        let users = [
            user("amy", Role::Operator, GroupScope::Fleet, Some(root)),
            user("ben", Role::Operator, GroupScope::Fleet, Some(shared)),
            user("cat", Role::Operator, GroupScope::Fleet, Some(shared)),
            user("dan", Role::Operator, GroupScope::Fleet, Some(hand)),
            user("ivy", Role::Operator, GroupScope::Fleet, Some(listed_revoked)),
            user("backend", Role::Admin, GroupScope::Fleet, Some(mine)),
            user("eve", Role::Admin, groups("lab"), Some(mine)),
            bad_key,
            user("joe", Role::Operator, GroupScope::Fleet, Some(mine)),
        ];
        let plan = plan(&current, &users, &none(), &root, Utc::now()).unwrap();
        let skipped: Vec<&str> = plan.changes.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, vec!["amy", "backend", "ben", "cat", "dan", "eve", "hank", "ivy"]);
        let reasons = |who: &str| plan.changes.skipped.iter().find(|s| s.name == who).unwrap().reason.clone();
        assert!(reasons("amy").contains("trust root"));
        assert!(reasons("ben").contains("same key"));
        assert!(reasons("dan").contains("trusted as `robot`"));
        assert!(reasons("eve").contains("whole fleet"), "{}", reasons("eve"));
        assert!(reasons("hank").contains("cannot be read"));
        assert!(reasons("backend").contains("backend's own key"));
        // Only joe's key goes in; the backend's entry is not touched by an account named `backend`.
        assert_eq!(plan.changes.added.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), vec!["joe"]);
        assert!(plan.changes.revoked.is_empty());
        assert_eq!(next(&plan).find(&backend), current.find(&backend));
    }

    #[test]
    fn an_unreadable_account_leaves_its_keys_alone_even_if_its_name_was_once_removed() {
        let k = key();
        let (current, ..) = held(vec![listed("hank", k, Role::Operator, GroupScope::Fleet)]);
        let mut view = user("hank", Role::Operator, GroupScope::Fleet, None);
        view.signing_key = Some("not a key".into());
        let plan = plan(&current, &[view], &[name("hank")].into(), &key(), Utc::now()).unwrap();
        assert_eq!(plan.next, None);
        assert_eq!(plan.changes.skipped.len(), 1);
    }

    #[test]
    fn a_removed_backend_name_is_never_revoked() {
        let (current, backend, _) = held(vec![]);
        let plan = plan(&current, &[], &[name("backend")].into(), &key(), Utc::now()).unwrap();
        assert_eq!(plan.next, None, "the backend's key {backend} stays trusted");
    }
}
