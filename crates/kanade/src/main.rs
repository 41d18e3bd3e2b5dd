//! `kanade`: parses flags, sets up logging, runs the command and exits with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kanade::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            kanade::output::error(&anyhow::Error::new(err).context("cannot start the async runtime"));
            return ExitCode::from(kanade::EXIT_ERROR);
        }
    };
    match runtime.block_on(kanade::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            kanade::output::error(&err);
            ExitCode::from(kanade::EXIT_ERROR)
        }
    }
}
