//! Every operator action the CLI performs is recorded on `audit.<actor>.<action>` in stream `AUDIT`, after the
//! action succeeded. The actor is `KANADE_OPERATOR`, else the OS account name, normalised to an id.

use kanade_ops::OpsError;
use kanade_ops::audit::{Auditor, Source};
use kanade_shared::Actor;

use crate::output;

/// Who is acting: `KANADE_OPERATOR`, else the account this process runs as (from the OS, so a service or a
/// container without `USER` is still named), else the login variables, and `unknown` only when nothing names one.
pub fn operator() -> String {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    from_env("KANADE_OPERATOR")
        .or_else(|| whoami::username().ok().filter(|name| !name.trim().is_empty()))
        .or_else(|| ["USER", "USERNAME", "LOGNAME"].into_iter().find_map(from_env))
        .unwrap_or_else(|| "unknown".into())
}

/// The operator's auditor. A failure to record does not undo the action; it is reported on stderr, since an
/// unaudited action is something an operator must know about.
pub fn auditor(client: &async_nats::Client) -> Auditor {
    Auditor::new(client.clone(), Source::Cli, Actor::from_login(&operator()), warn_unaudited)
}

fn warn_unaudited(action: &str, target: &str, err: &OpsError) {
    output::note(&format!("warning: `{action}` on `{target}` was done but could not be audited: {err}"));
}

/// Records `action` on `target` (see [`auditor`]).
pub async fn record(client: &async_nats::Client, action: &str, target: &str, details: serde_json::Value) {
    auditor(client).record(action, target, details).await;
}
