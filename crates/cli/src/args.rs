//! The command line, one clap struct per command. Parsing only: no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// bhatti: sandboxes for AI agents and untrusted code.
///
/// `bhatti serve` runs the daemon; every other command talks to it over its HTTP API.
/// Sandbox commands accept a sandbox name or ID.
#[derive(Debug, Parser)]
#[command(
    name = "bhatti",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// API endpoint (default: config file, then $BHATTI_URL, then http://localhost:8080)
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// API key (default: config file, then $BHATTI_TOKEN)
    #[arg(long, global = true, value_name = "KEY")]
    pub token: Option<String>,

    /// Machine-readable output (pretty-printed JSON)
    #[arg(long, global = true)]
    pub json: bool,

    /// Print the last HTTP request's timing to stderr
    #[arg(long, global = true)]
    pub timing: bool,

    /// Directory holding state.db, for commands that open the database directly (user …)
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `edit` arguments.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Never let it cool (also wakes it now)
    #[arg(long, conflicts_with = "allow_cold")]
    pub keep_hot: bool,
    /// Let it cool when idle again
    #[arg(long)]
    pub allow_cold: bool,
    /// Rename (the hostname inside the sandbox is unchanged)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Add or overwrite a label k=v (repeatable)
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Remove a label (repeatable)
    #[arg(long, value_name = "KEY")]
    pub label_delete: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a sandbox
    Create(CreateArgs),
    /// List your sandboxes
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a sandbox's details
    #[command(visible_alias = "info")]
    Inspect(SandboxArg),
    /// Destroy a sandbox
    #[command(visible_alias = "rm")]
    Destroy(DestroyArgs),
    /// Stop a sandbox: its processes end, its files are kept (bhatti start brings it back)
    Stop(SandboxArg),
    /// Start a stopped sandbox again (its init runs again)
    Start(SandboxArg),
    /// Change a sandbox: --keep-hot/--allow-cold, --name, --label k=v, --label-delete k
    Edit(EditArgs),
    /// Run a command in a sandbox: bhatti exec NAME -- CMD…
    Exec(ExecArgs),
    /// Interactive shell in a sandbox (Ctrl+\ detaches; the shell keeps running)
    #[command(visible_alias = "sh")]
    Shell(ShellArgs),
    /// Share a browser shell: prints a link anyone holding it can open (--revoke ends sharing)
    Share(ShareArgs),
    /// List a sandbox's sessions (shells, piped sessions, init)
    Ps(SandboxArg),
    /// End a session in a sandbox (SIGKILL to its process group)
    Kill(KillArgs),
    /// List the TCP ports listening inside a sandbox
    Ports(SandboxArg),
    /// Publish a sandbox port at a public URL (no key needed to reach it)
    Publish(PublishArgs),
    /// Stop publishing a sandbox port (its URL answers 404 at once)
    Unpublish(UnpublishArgs),
    /// Read, write and list files in a sandbox
    #[command(subcommand, arg_required_else_help = true)]
    File(FileCommand),
    /// Manage your encrypted secrets
    #[command(subcommand, arg_required_else_help = true)]
    Secret(SecretCommand),
    /// Save the API endpoint and key to ~/.bhatti/config.yaml and test them
    Setup,
    /// Manage users and API keys (opens the database directly; no daemon needed)
    #[command(subcommand, arg_required_else_help = true)]
    User(UserCommand),
    /// Operator views: event log and status (opens the database directly; no daemon needed)
    #[command(subcommand, arg_required_else_help = true)]
    Admin(AdminCommand),
    /// Build and list images (works on the local data dir; no daemon needed)
    #[command(subcommand, arg_required_else_help = true)]
    Image(ImageCommand),
    /// Run the daemon
    Serve,
    /// Show the CLI and server versions
    Version,
    /// Print a shell completion script
    Completion(CompletionArgs),
}

/// `create` flags.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Sandbox name (default: sandbox-<6 hex>); must match [a-zA-Z0-9][a-zA-Z0-9._-]{0,62}
    #[arg(long)]
    pub name: Option<String>,

    /// Image (default: the server's default, `minimal`)
    #[arg(long)]
    pub image: Option<String>,

    /// Engine: namespace, gvisor or vm, among those the daemon enables (default: its default)
    #[arg(long)]
    pub engine: Option<String>,

    /// Number of CPUs (fractions allowed)
    #[arg(long, default_value_t = 1.0)]
    pub cpus: f64,

    /// Memory in MB (0 = server default, 1024)
    #[arg(long, default_value_t = 0)]
    pub memory: u64,

    /// Disk size in MB (0 = image size)
    #[arg(long, default_value_t = 0)]
    pub disk_size: u64,

    /// Environment variables, KEY=VALUE,KEY=VALUE (repeatable)
    #[arg(long, value_name = "K=V,…")]
    pub env: Vec<String>,

    /// Script run once at boot as the attachable session "init"
    #[arg(long)]
    pub init: Option<String>,

    /// Never pause this sandbox when idle
    #[arg(long)]
    pub keep_hot: bool,

    /// Label k=v (repeatable)
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,

    /// Inject a secret as an environment variable (repeatable)
    #[arg(long, value_name = "NAME")]
    pub secret: Vec<String>,

    /// Copy a local file into the sandbox at boot, local_path:guest_path (repeatable)
    #[arg(long, value_name = "LOCAL:GUEST")]
    pub file: Vec<String>,
}

/// `list` flags.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,

    /// Only sandboxes with this label k=v (repeatable; all must match)
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
}

/// `list -o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// More columns: CPUs, memory, disk, image, labels
    Wide,
}

/// A single sandbox name or ID.
#[derive(Debug, Clone, Args)]
pub struct SandboxArg {
    /// Sandbox name or ID
    pub sandbox: String,
}

/// `exec` arguments.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Sandbox name or ID
    pub sandbox: String,

    /// Kill the command after this many seconds (0 = server default, 300; max 86400)
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,

    /// Start in the background; prints its pid and output file
    #[arg(long)]
    pub detach: bool,

    /// Extra environment variable K=V for this command (repeatable)
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,

    /// Working directory (absolute; default /)
    #[arg(long)]
    pub cwd: Option<String>,

    /// Do not forward stdin even when it is a pipe or file
    #[arg(short = 'n', long)]
    pub no_stdin: bool,

    /// The command and its arguments (after `--`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// `shell` arguments.
#[derive(Debug, Clone, Args)]
pub struct ShellArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Start a new shell instead of reattaching the newest detached one
    #[arg(long)]
    pub new: bool,
    /// Attach to this session (see `bhatti ps`), taking it over from any other client
    #[arg(long, conflicts_with = "new")]
    pub session: Option<String>,
}

/// `kill` arguments.
#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Session id (see `bhatti ps`)
    pub session: String,
}

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Print a file's content (raw bytes) on stdout
    Read {
        /// Sandbox name or ID
        sandbox: String,
        /// Absolute path in the sandbox
        path: String,
    },
    /// Write stdin to a file, atomically (max 100 MB)
    Write {
        /// Sandbox name or ID
        sandbox: String,
        /// Absolute path in the sandbox
        path: String,
        /// Permission bits, octal
        #[arg(long, default_value = "0644")]
        mode: String,
    },
    /// List a directory
    Ls {
        /// Sandbox name or ID
        sandbox: String,
        /// Absolute path in the sandbox
        path: String,
    },
}

/// `publish` arguments.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Port inside the sandbox
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Public alias (lowercase letters, digits, -; default: <name>-<6 hex>)
    #[arg(short, long)]
    pub alias: Option<String>,
    /// Also share a browser shell (as `bhatti share`) and print its link
    #[arg(long)]
    pub shell: bool,
}

/// `share` arguments.
#[derive(Debug, Clone, Args)]
pub struct ShareArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Turn sharing off and disconnect everyone using the link
    #[arg(long)]
    pub revoke: bool,
}

/// `unpublish` arguments.
#[derive(Debug, Clone, Args)]
pub struct UnpublishArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Published port
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

/// `destroy` arguments.
#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// Sandbox name or ID
    pub sandbox: String,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret
    Set {
        /// Name (letters, digits, _; not starting with a digit)
        name: String,
        /// Value; `-` reads it from stdin. Omitted: prompted for (masked) on a terminal, else
        /// read from stdin.
        value: Option<String>,
    },
    /// List your secrets' names
    #[command(visible_alias = "ls")]
    List,
    /// Delete a secret
    #[command(visible_alias = "rm")]
    Delete {
        /// Name
        name: String,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The event log, newest first
    Events(AdminEventsArgs),
    /// Sandboxes (hot/warm/cold), users and recent events
    Status,
}

/// `admin events` arguments.
#[derive(Debug, Args)]
pub struct AdminEventsArgs {
    /// Event type; without a dot a prefix (`thermal` = `thermal.*`)
    #[arg(long = "type", value_name = "TYPE")]
    pub r#type: Option<String>,
    /// User name or id
    #[arg(long)]
    pub user: Option<String>,
    /// Sandbox id or name
    #[arg(long)]
    pub sandbox: Option<String>,
    /// Only since: 24h, 7d, 30m, 45s, 2026-04-01 or RFC 3339
    #[arg(long)]
    pub since: Option<String>,
    /// Most events shown
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print only the number of matching events
    #[arg(long)]
    pub count: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its API key (shown once)
    Create(UserCreateArgs),
    /// List users
    #[command(visible_alias = "ls")]
    List,
    /// Replace a user's API key; the old key stops working at once
    RotateKey {
        /// User name
        name: String,
    },
    /// Delete a user (refused while it has sandboxes or secrets)
    #[command(visible_alias = "rm")]
    Delete {
        /// User name
        name: String,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
    },
}

/// `user create` flags.
#[derive(Debug, Clone, Args)]
pub struct UserCreateArgs {
    /// User name (unique)
    #[arg(long)]
    pub name: String,
    /// Maximum live sandboxes
    #[arg(long, default_value_t = 5)]
    pub max_sandboxes: u32,
    /// Maximum CPUs per sandbox
    #[arg(long, default_value_t = 4)]
    pub max_cpus: u32,
    /// Maximum memory per sandbox, MB
    #[arg(long, default_value_t = 4096)]
    pub max_memory: u64,
}

/// `completion` arguments.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// Shell
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells we print completion scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["bhatti", "list", "--json", "--url", "http://x"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.url.as_deref(), Some("http://x"));
        let cli = Cli::try_parse_from(["bhatti", "--token", "t", "secret", "list"]).unwrap();
        assert_eq!(cli.global.token.as_deref(), Some("t"));
    }

    #[test]
    fn exec_command_lines() {
        let cmd = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Exec(e) => e,
            other => panic!("{other:?}"),
        };
        let e = cmd(&[
            "bhatti",
            "exec",
            "dev",
            "--timeout",
            "2",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
        assert_eq!((e.sandbox.as_str(), e.timeout), ("dev", 2));
        assert_eq!(e.cmd, ["sh", "-c", "exit 3"]);
        let e = cmd(&["bhatti", "exec", "dev", "ls", "-la", "--json"]);
        assert_eq!(e.cmd, ["ls", "-la", "--json"]);
        let e = cmd(&["bhatti", "--json", "exec", "-e", "A=1", "dev", "--", "--x"]);
        assert_eq!(
            (e.env.as_slice(), e.cmd.as_slice()),
            (&["A=1".to_string()][..], &["--x".to_string()][..])
        );
        assert!(cmd(&["bhatti", "exec", "dev"]).cmd.is_empty());
    }

    #[test]
    fn aliases() {
        for (alias, ok) in [("ls", true), ("rm", true), ("info", true), ("nope", false)] {
            let args: Vec<&str> = match alias {
                "ls" => vec!["bhatti", "ls"],
                _ => vec!["bhatti", alias, "x"],
            };
            assert_eq!(Cli::try_parse_from(args).is_ok(), ok, "{alias}");
        }
    }
}

/// `image …` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ImageCommand {
    /// Build an image: `minimal` (Debian bookworm via debootstrap) or `tiny` (busybox)
    Build(ImageBuildArgs),
    /// List the images in the data dir
    #[command(visible_alias = "ls")]
    List,
}

/// `image build` arguments.
#[derive(Debug, Clone, Args)]
pub struct ImageBuildArgs {
    /// Which image: `minimal` or `tiny`
    pub name: String,

    /// Rebuild even if it exists
    #[arg(long)]
    pub force: bool,

    /// Images directory (default: the daemon's, `<data_dir>/images`)
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}
