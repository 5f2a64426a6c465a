//! PID-1 duties, done synchronously before the async runtime starts.

pub mod clock;
pub mod identity;
pub mod initramfs;
pub mod mounts;
pub mod net;
pub mod provision;

use crate::config::SandboxConfig;

/// Everything lohar does at boot as PID 1 of a sandbox. Failures are logged, not fatal: a
/// sandbox with a missing hostname is still more useful than one whose agent never listens.
pub fn pid1(config: &SandboxConfig) {
    std::env::set_var("PATH", crate::exec::spawn::DEFAULT_PATH);
    std::env::set_var("HOME", "/root");
    mounts::mount_all();
    let _ = std::fs::create_dir_all("/run/bhatti");
    if let Err(e) = identity::apply(config) {
        tracing::warn!(error = %e, "applying hostname and resolver config failed");
    }
    if let Err(e) = net::loopback_up() {
        tracing::warn!(error = %e, "bringing lo up failed");
    }
    if initramfs::booted_from_initramfs() {
        // A VM's clock stops while it is warm or cold; keep it on the host's time.
        clock::start_rtc_sync();
    }
}
