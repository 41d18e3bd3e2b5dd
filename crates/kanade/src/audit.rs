//! Every operator action the CLI performs is recorded on `audit.<actor>.<action>` in stream `AUDIT`, after the
//! action succeeded. The actor is `KANADE_OPERATOR`, else the login name, normalised to an id.

use kanade_ops::OpsError;
use kanade_ops::audit::{Auditor, Source};
use kanade_shared::Actor;

use crate::output;

/// Who is acting: `KANADE_OPERATOR`, else the login name.
pub fn operator() -> String {
    ["KANADE_OPERATOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
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
