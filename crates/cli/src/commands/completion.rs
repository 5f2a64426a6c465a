//! `bhatti completion bash|zsh|fish|powershell`.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, CompletionArgs, CompletionShell};

pub fn run(args: &CompletionArgs) -> Result<()> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut Cli::command(), "bhatti", &mut std::io::stdout());
    Ok(())
}
