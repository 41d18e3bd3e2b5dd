//! `kanade revoke <job>` / `kanade unrevoke <job>`: stop-the-bleed through the `script_status` KV bucket. Every
//! agent mirrors it and checks it before a run starts and again after any jitter or queue wait, so a revoked job's
//! not-yet-started runs stop everywhere — straight over NATS, with the backend down too. The value is signed with
//! the operator's key: agents ignore one the trust list does not let that key set for them.

use std::process::ExitCode;

use kanade_shared::JobId;

use crate::output;
use crate::{Cli, connect};

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The job to stop (or to allow again).
    pub job: JobId,
}

pub async fn run(cli: &Cli, args: &RevokeArgs, revoked: bool) -> anyhow::Result<ExitCode> {
    let signer = crate::signing_key(cli)?;
    let client = connect(cli).await?;
    kanade_ops::actions::set_revoked(&crate::audit::auditor(&client), &signer, &args.job, revoked).await?;
    output::note(&if revoked {
        format!("revoked `{}`: runs that have not started are skipped on every agent", args.job)
    } else {
        format!("`{}` may run again", args.job)
    });
    Ok(ExitCode::SUCCESS)
}
