//! The agent value shared by every connection, and the process entry point.

use std::path::PathBuf;
use std::sync::Arc;

use bhatti_proto::msg::ExecRequest;

use crate::activity::ActivityClock;
use crate::boot;
use crate::config::{SandboxConfig, DEFAULT_CONTROL_PORT, DEFAULT_FORWARD_PORT};
use crate::exec::reaper::Reaper;
use crate::exec::session::{self, SessionRegistry, INIT_SESSION_ID};
use crate::exec::spawn::{ProcessContext, LOHAR_UID};
use crate::server::listen::{self, ListenAddrs};

/// How lohar was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a sandbox: boot duties, TCP listeners, processes as uid 1000.
    Pid1,
    /// `LOHAR_TEST=1`: Unix sockets, no PID-1 work, processes as lohar's own user.
    Test {
        /// Control socket path (`$LOHAR_SOCK`).
        control: PathBuf,
        /// Forward socket path (`$LOHAR_FWD_SOCK`).
        forward: PathBuf,
    },
}

/// State shared by all connections.
pub struct Agent {
    /// How user processes are started.
    pub ctx: ProcessContext,
    /// Token required on every connection (`None`: no auth).
    pub token: Option<String>,
    /// Last-activity clock.
    pub activity: ActivityClock,
    /// Sessions of this boot.
    pub sessions: SessionRegistry,
    /// The child reaper.
    pub reaper: Arc<Reaper>,
    /// `sync()` before reporting an exec's exit.
    pub sync_on_exit: bool,
    /// Whether v2 filesystem operations and watches (FS_REQ, WATCH_REQ) are served: always as
    /// PID 1 of a sandbox; in test mode, where paths are the host's, only with
    /// `LOHAR_FS_OPS=1` (a recursive remove of an arbitrary host path is never a default).
    pub fs_ops: bool,
}

impl Agent {
    /// Builds the agent for `config` (starts the reaper on the current runtime).
    pub fn new(config: &SandboxConfig, mode: &Mode) -> std::io::Result<Arc<Agent>> {
        let run_as = match mode {
            Mode::Test { .. } => None,
            Mode::Pid1 if config.run_as_root() => None,
            Mode::Pid1 => Some((LOHAR_UID, LOHAR_UID)),
        };
        let home = if run_as.is_some() || *mode == Mode::Pid1 {
            "/home/lohar".to_string()
        } else {
            std::env::var("HOME").unwrap_or_else(|_| "/".into())
        };
        let mut env = ProcessContext::default_env(&home);
        env.extend(config.env.clone());
        if *mode == Mode::Pid1 {
            if let Ok(text) = std::fs::read_to_string("/run/bhatti/env") {
                env.extend(boot::provision::parse_env_lines(&text));
            }
        }
        Ok(Arc::new(Agent {
            ctx: ProcessContext { env, run_as },
            token: Some(config.token.clone()).filter(|t| !t.is_empty()),
            activity: ActivityClock::default(),
            sessions: SessionRegistry::default(),
            reaper: Reaper::start()?,
            sync_on_exit: config.sync_on_exit,
            fs_ops: *mode == Mode::Pid1 || std::env::var("LOHAR_FS_OPS").as_deref() == Ok("1"),
        }))
    }
}

/// The process entry point; returns the exit status.
pub fn run(args: Vec<String>) -> i32 {
    init_logging();
    let mode = if std::env::var("LOHAR_TEST").as_deref() == Ok("1") {
        let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
        match (var("LOHAR_SOCK"), var("LOHAR_FWD_SOCK")) {
            (Some(control), Some(forward)) => Mode::Test { control, forward },
            _ => {
                eprintln!("lohar: test mode needs LOHAR_SOCK and LOHAR_FWD_SOCK");
                return 2;
            }
        }
    } else {
        Mode::Pid1
    };
    if mode == Mode::Pid1 && std::process::id() != 1 {
        // Never do PID-1 work (mounts, power-off) on a host by mistake.
        eprintln!(
            "lohar: refusing to run: not PID 1 of a sandbox (LOHAR_TEST=1 selects test mode)"
        );
        return 2;
    }
    if mode == Mode::Pid1 {
        // In a VM: load modules, mount the root disk, switch_root (a no-op anywhere else).
        boot::initramfs::stage1_if_initramfs();
    }
    let config_path = args
        .get(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LOHAR_CONFIG").map(PathBuf::from));
    let config = match config_path {
        Some(p) => match SandboxConfig::read_and_delete(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lohar: {e}");
                return 2;
            }
        },
        None => SandboxConfig::default(),
    };
    crate::io_mode::set_epoll_free(config.epoll_free_io);
    if mode == Mode::Pid1 {
        boot::pid1(&config);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lohar: start runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(config, mode)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lohar: {e}");
            1
        }
    }
}

async fn serve(config: SandboxConfig, mode: Mode) -> std::io::Result<()> {
    if crate::io_mode::epoll_free() {
        tracing::info!("epoll-free I/O: TCP connections, pipes and terminals served by threads");
    }
    let agent = Agent::new(&config, &mode)?;
    boot::provision::write_files(&config, agent.ctx.run_as);
    if !config.init.trim().is_empty() {
        start_init(&agent, &config);
    }
    let addrs = match &mode {
        Mode::Pid1 => {
            tokio::spawn(shutdown_on_sigterm());
            ListenAddrs::Tcp {
                control: config.control_port.unwrap_or(DEFAULT_CONTROL_PORT),
                forward: config.forward_port.unwrap_or(DEFAULT_FORWARD_PORT),
            }
        }
        Mode::Test { control, forward } => ListenAddrs::Unix {
            control: control.clone(),
            forward: forward.clone(),
        },
    };
    listen::serve(agent, addrs).await
}

/// The `init` script runs as a TTY session with the fixed id `init`, cwd `/workspace`.
fn start_init(agent: &Arc<Agent>, config: &SandboxConfig) {
    let req = ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), config.init.clone()],
        tty: true,
        cwd: Some(crate::exec::spawn::resolve_cwd(None)),
        ..Default::default()
    };
    if let Err(e) = session::start(agent, &req, Some(INIT_SESSION_ID)) {
        tracing::warn!(error = %e, "starting init session failed");
    }
}

/// SIGTERM/SIGINT to PID 1: flush filesystems and power the sandbox off.
async fn shutdown_on_sigterm() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    nix::unistd::sync();
    // In a PID namespace this ends the namespace; in a VM it powers the VM off. If it is not
    // permitted, exiting PID 1 has the same effect.
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    std::process::exit(0);
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOHAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
