//! `kanade completions <shell>`: the shell's completion script for every command and flag, generated from the
//! same clap definition the CLI parses with (`clap_complete`), so it is never out of date.

use std::process::ExitCode;

use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script to stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = crate::Cli::command();
    let mut stdout = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "kanade", &mut stdout);
    Ok(ExitCode::SUCCESS)
}
