//! The connection options of the backend and the CLI: TLS pinned to the fleet's CA unless the config says
//! `insecure`, and the `.creds` file read at every (re)connect, so a credential replaced on disk is used at the
//! next reconnect without a restart.

use std::path::{Path, PathBuf};

use async_nats::{AuthError, ConnectOptions};
use kanade_shared::config::NatsConfig;
use kanade_shared::security::creds;

/// Options for `nats`: TLS required with only `nats.ca` trusted, the credential from `nats.creds`, the token if
/// one is set. `name` is shown by the broker (`connz`).
pub fn options(nats: &NatsConfig, name: &str) -> ConnectOptions {
    let mut options = match &nats.creds {
        Some(path) => with_creds_file(path.clone()),
        None => ConnectOptions::new(),
    };
    options = options.name(name);
    if let Some(ca) = &nats.ca {
        // Only this CA: async-nats loads the system's roots only when none is given.
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    options
}

/// Options that authenticate with the `.creds` file at `path`, read again at every connect.
fn with_creds_file(path: PathBuf) -> ConnectOptions {
    ConnectOptions::with_auth_callback(move |nonce| {
        let path = path.clone();
        async move { answer_from_file(&path, &nonce).await }
    })
}

async fn answer_from_file(path: &Path, nonce: &[u8]) -> Result<async_nats::Auth, AuthError> {
    let (jwt, signature) = creds::answer_file(path, nonce).map_err(AuthError::new)?;
    let mut auth = async_nats::Auth::new();
    auth.jwt = Some(jwt);
    auth.signature = Some(signature);
    Ok(auth)
}
