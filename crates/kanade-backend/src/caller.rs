//! Who is acting: the caller's identity as the HTTP layer established it, which the engine records and checks (the
//! two-person rule). Below both `api` and `engine`, so neither has to import the other for it.

use kanade_ops::OpsError;
use kanade_ops::audit::{Auditor, Source};
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};

/// Who is calling, as the auth layer established it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    /// True when a per-operator token proves the identity; false when it is only the client's claim.
    pub verified: bool,
    /// What the caller may do.
    pub role: Role,
    /// Which PCs the caller's actions and reads reach.
    pub scope: GroupScope,
}

impl Caller {
    /// A caller with every right: the bootstrap token, auth disabled, the backend's own schedules.
    pub fn admin(actor: Actor, verified: bool) -> Self {
        Caller { actor, verified, role: Role::Admin, scope: GroupScope::Fleet }
    }

    /// How the identity was established, as the audit trail records it.
    pub fn identity(&self) -> &'static str {
        if self.verified { "token" } else { "claimed" }
    }

    /// Records what this caller does, through the backend.
    pub fn auditor(&self, nats: &async_nats::Client) -> Auditor {
        auditor(nats, &self.actor)
    }
}

/// The backend's auditor for `actor`. The action is done either way; a failure to record it is logged.
pub fn auditor(nats: &async_nats::Client, actor: &Actor) -> Auditor {
    Auditor::new(nats.clone(), Source::Backend, actor.clone(), log_unaudited)
}

fn log_unaudited(action: &str, target: &str, err: &OpsError) {
    tracing::error!(error = %err, %action, %target, "action done but not audited");
}
