//! One file per command. [`run`] picks the runtime and dispatches.

mod admin;
mod completion;
mod create;
mod destroy;
mod exec;
mod file;
mod image;
mod inspect;
mod lifecycle;
mod list;
mod ps;
mod publish;
mod secret;
mod serve;
mod setup;
mod shell;
mod user;
mod version;

use anyhow::Result;
use bhatti_client::Client;

use crate::args::{Cli, Command, GlobalArgs};
use crate::config;

/// The CLI's own version, `X.Y.Z`.
pub const CLI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(cli.global);
    match cli.command {
        // The daemon gets a multi-threaded runtime; CLI commands a single-threaded one (faster
        // to start, and they make one request at a time).
        Command::Serve => serve::run(&ctx),
        Command::User(cmd) => user::run(&ctx, cmd),
        Command::Admin(cmd) => admin::run(&ctx, cmd),
        Command::Image(cmd) => image::run(&ctx, cmd),
        Command::Completion(args) => completion::run(&args),
        cmd => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(async {
                match cmd {
                    Command::Create(args) => create::run(&ctx, args).await,
                    Command::List(args) => list::run(&ctx, args).await,
                    Command::Inspect(args) => inspect::run(&ctx, args).await,
                    Command::Destroy(args) => destroy::run(&ctx, args).await,
                    Command::Stop(args) => lifecycle::stop(&ctx, args).await,
                    Command::Start(args) => lifecycle::start(&ctx, args).await,
                    Command::Edit(args) => lifecycle::edit(&ctx, args).await,
                    Command::Exec(args) => exec::run(&ctx, args).await,
                    Command::Shell(args) => shell::run(&ctx, args).await,
                    Command::Ps(args) => ps::run(&ctx, args).await,
                    Command::Kill(args) => ps::kill(&ctx, args).await,
                    Command::Ports(args) => ps::ports(&ctx, args).await,
                    Command::Publish(args) => publish::publish(&ctx, args).await,
                    Command::Unpublish(args) => publish::unpublish(&ctx, args).await,
                    Command::Share(args) => publish::share(&ctx, args).await,
                    Command::File(cmd) => file::run(&ctx, cmd).await,
                    Command::Secret(cmd) => secret::run(&ctx, cmd).await,
                    Command::Setup => setup::run(&ctx).await,
                    Command::Version => version::run(&ctx).await,
                    Command::Serve
                    | Command::User(_)
                    | Command::Admin(_)
                    | Command::Image(_)
                    | Command::Completion(_) => unreachable!(),
                }
            });
            ctx.warn_if_cli_too_old();
            ctx.print_timing();
            result
        }
    }
}

/// What every command can use: the global flags and, lazily, the API client.
pub struct Ctx {
    pub global: GlobalArgs,
    client: std::sync::OnceLock<Client>,
}

impl Ctx {
    fn new(global: GlobalArgs) -> Self {
        Self {
            global,
            client: std::sync::OnceLock::new(),
        }
    }

    /// `--json` given.
    pub fn json(&self) -> bool {
        self.global.json
    }

    /// URL and token after the precedence rules.
    pub fn resolved(&self) -> Result<config::Resolved> {
        let invoker = config::invoker();
        let file = config::read_file(&config::config_path(&invoker))?;
        let flags = config::Layer {
            url: self.global.url.clone(),
            token: self.global.token.clone(),
        };
        Ok(config::resolve(&flags, &file, &config::env_layer()))
    }

    /// The API client for the resolved URL and token.
    pub fn client(&self) -> Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let r = self.resolved()?;
        let c = Client::new(&r.url, r.token)?;
        Ok(self.client.get_or_init(|| c))
    }

    /// `--timing`: the last request's timing on stderr.
    fn print_timing(&self) {
        if !self.global.timing {
            return;
        }
        if let Some(t) = self.client.get().and_then(Client::last_timing) {
            eprint!("{}", crate::output::timing(&t));
        }
    }

    /// One-time warning when the server asks for a newer CLI (`X-Bhatti-Min-CLI`).
    fn warn_if_cli_too_old(&self) {
        let Some(min) = self.client.get().and_then(Client::min_cli_version) else {
            return;
        };
        if let (Some(want), Some(have)) = (parse_semver(&min), parse_semver(CLI_VERSION)) {
            if have < want {
                eprintln!(
                    "⚠ the server wants bhatti CLI {min} or newer (this is v{CLI_VERSION}); please update"
                );
            }
        }
    }
}

/// `vX.Y.Z` / `X.Y.Z` (numeric parts only; pre-release suffixes ignored).
fn parse_semver(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Parses `k=v` (split on the first `=`; the key must not be empty).
pub fn parse_label(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => anyhow::bail!("invalid label {s:?}: want key=value"),
    }
}

/// Parses labels given as repeated `--label k=v`.
pub fn parse_labels(items: &[String]) -> Result<Vec<(String, String)>> {
    items.iter().map(|s| parse_label(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(
            parse_label("team/x=").unwrap(),
            ("team/x".into(), "".into())
        );
        assert!(parse_label("=b").is_err());
        assert!(parse_label("novalue").is_err());
        assert_eq!(
            parse_labels(&["a=1".into(), "b=2".into()]).unwrap().len(),
            2
        );
    }

    #[test]
    fn semver() {
        assert_eq!(parse_semver("v1.2.3"), Some((1, 2, 3)));
        assert_eq!(parse_semver("0.1.0-dev"), Some((0, 1, 0)));
        assert_eq!(parse_semver("2"), Some((2, 0, 0)));
        assert_eq!(parse_semver("dev"), None);
        assert!(parse_semver("0.1.0") < parse_semver("0.2.0"));
    }
}
