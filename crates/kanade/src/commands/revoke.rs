//! `kanade revoke <job>` / `kanade unrevoke <job>`: stop-the-bleed through the `script_status` KV bucket. Every
//! agent mirrors it and checks it before a run starts and again after any jitter or queue wait, so a revoked job's
//! not-yet-started runs stop everywhere — straight over NATS, with the backend down too.

use std::process::ExitCode;

use anyhow::Context as _;
use kanade_shared::JobId;
use kanade_shared::resources::KV_SCRIPT_STATUS;

use crate::output;
use crate::{Cli, connect};

/// The values of `script_status`.
pub const REVOKED: &str = "REVOKED";
pub const ACTIVE: &str = "ACTIVE";

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The job to stop (or to allow again).
    pub job: JobId,
}

/// Sets `job`'s status; `revoked` true stops its runs that have not started.
pub async fn set_status(client: &async_nats::Client, job: &JobId, revoked: bool) -> anyhow::Result<()> {
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value(KV_SCRIPT_STATUS)
        .await
        .with_context(|| format!("KV bucket `{KV_SCRIPT_STATUS}` is missing: run `kanade jetstream setup`"))?;
    let value = if revoked { REVOKED } else { ACTIVE };
    kv.put(job.as_str(), value.into()).await.with_context(|| format!("cannot set `{job}` to {value}"))?;
    Ok(())
}

pub async fn run(cli: &Cli, args: &RevokeArgs, revoked: bool) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    set_status(&client, &args.job, revoked).await?;
    crate::audit::record(
        &client,
        if revoked { "revoke" } else { "unrevoke" },
        args.job.as_str(),
        serde_json::Value::Null,
    )
    .await;
    output::note(&if revoked {
        format!("revoked `{}`: runs that have not started are skipped on every agent", args.job)
    } else {
        format!("`{}` may run again", args.job)
    });
    Ok(ExitCode::SUCCESS)
}
