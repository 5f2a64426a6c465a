//! `bhatti`: parse → dispatch → exit code. `bhatti serve` runs the daemon; every other command
//! talks to it over HTTP (or, for `user …`, opens its database directly).

mod args;
mod commands;
mod config;
mod exit;
mod output;
mod prompt;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The namespace engine re-executes this binary as its single-threaded launcher.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__nsinit") {
        let code = bhatti_engine::namespace::init::main(&argv[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help, --version and bare `bhatti` are not errors; usage errors exit 1 like every
            // other error.
            let help = e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            let code = if e.use_stderr() && !help {
                exit::FAILURE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let code = match commands::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            let r = exit::report(&err);
            if !r.text.is_empty() {
                eprintln!("{}", r.text);
            }
            r.code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
