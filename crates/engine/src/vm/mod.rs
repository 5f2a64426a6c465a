//! The `vm` engine: each sandbox is a QEMU virtual machine — KVM where the host has usable
//! hardware virtualisation, TCG software emulation elsewhere.
//!
//! A sandbox is a directory (`root.qcow2` overlay over the image's base ext4, the config disk,
//! QMP socket, pid file, memory snapshot when cold), a cgroup holding QEMU, and a TAP on its
//! user's bridge. The guest kernel boots bhatti's initramfs, whose `/init` is lohar: it loads
//! the virtio modules, mounts the root disk, `switch_root`s and stays PID 1. See
//! docs/ARCHITECTURE.md ("The vm engine").
//!
//! * `engine` — [`VmEngine`] and its operations; `recover.rs` — recovery after a daemon restart.
//! * `config` — [`VmConfig`], finding the kernel and its modules, [`check_host`]; `cache` —
//!   sweeps of unused initramfs files and base disks.
//! * [`vmm`] — the [`vmm::Vmm`] trait and the QEMU driver; [`qmp`] — its control socket.
//! * [`initramfs`] — cpio writer, `modules.dep` resolution, the cached initramfs.
//! * [`disk`] — base ext4, qcow2 overlays, the config disk.

mod cache;
mod config;
pub mod disk;
mod engine;
pub mod initramfs;
pub mod qmp;
pub mod vmm;

pub use config::{check_host, find_kernel, modules_dir_for, VmConfig};
pub use engine::{mac_for, VmEngine, VmMeta};
pub use vmm::{probe_kvm, Accel};

/// Alive and not a zombie.
pub(crate) fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}
