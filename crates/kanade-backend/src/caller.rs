//! Who is acting: the caller's identity as the HTTP layer established it, which the engine records and checks (the
//! two-person rule). Below both `api` and `engine`, so neither has to import the other for it.

use kanade_shared::Actor;

/// Who is calling, as the auth layer established it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    /// True when a per-operator token proves the identity; false when it is only the client's claim.
    pub verified: bool,
}

impl Caller {
    /// How the identity was established, as the audit trail records it.
    pub fn identity(&self) -> &'static str {
        if self.verified { "token" } else { "claimed" }
    }
}
