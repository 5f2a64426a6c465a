//! The gvisor engine's configuration, and the host checks it makes before starting (runsc's
//! version).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::net::NetConfig;
use crate::EngineError;

/// Configuration of the gvisor engine.
#[derive(Debug, Clone)]
pub struct GvisorConfig {
    /// Engine directory: `sandboxes/<id>/` and runsc's state `runsc/`.
    pub dir: PathBuf,
    /// The image store directory (shared with the namespace engine).
    pub images_dir: PathBuf,
    /// The static lohar binary.
    pub lohar: PathBuf,
    /// The runsc binary.
    pub runsc: PathBuf,
    /// runsc platform (`ptrace` default; `kvm`, `systrap` where the build and host allow).
    pub platform: String,
    /// cgroup parent group.
    pub cgroup_parent: String,
    /// Per-sandbox process limit.
    pub pids_max: u64,
    /// Networking (used when the engine starts its own network).
    pub net: NetConfig,
    /// Nameservers written to every sandbox's resolv.conf (empty: leave the image's).
    pub dns: Vec<String>,
    /// How long create and wake wait for lohar.
    pub ready_timeout: Duration,
    /// runsc debug logs, if wanted.
    pub debug_log_dir: Option<PathBuf>,
    /// With `debug_log_dir`: system calls to trace (`"*"`: all), none when absent.
    pub debug_strace: Option<String>,
}

pub(super) fn unavailable(reason: impl Into<String>) -> EngineError {
    EngineError::Unavailable {
        engine: "gvisor".into(),
        reason: reason.into(),
    }
}

/// `runsc --version`, e.g. `0.0~20221219.0`.
pub(super) fn runsc_version(bin: &Path) -> Result<String, EngineError> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| {
            unavailable(format!(
                "runsc not found at {} ({e}); install the Debian package `runsc`",
                bin.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("runsc version ")
        .to_string())
}
