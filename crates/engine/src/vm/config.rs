//! The vm engine's configuration and what it needs from the host: [`VmConfig`], finding the
//! guest kernel and its modules, [`check_host`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::engine::unavailable;
use super::vmm::Accel;
use crate::net::NetConfig;
use crate::EngineError;

/// Configuration of the vm engine.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Where sandbox directories live (`<dir>/<engine id>/`: overlay, config disk, QMP socket,
    /// memory snapshot).
    pub sandboxes_dir: PathBuf,
    /// Cache of base disks and the initramfs.
    pub cache_dir: PathBuf,
    /// The image store directory.
    pub images_dir: PathBuf,
    /// The static lohar binary (the initramfs's `/init`).
    pub lohar: PathBuf,
    /// Guest kernel (bzImage).
    pub kernel: PathBuf,
    /// The kernel's module directory (`…/lib/modules/<version>`, with `modules.dep`); `None`
    /// derives it from the kernel's file name (see [`modules_dir_for`]).
    pub modules_dir: Option<PathBuf>,
    /// Modules lohar loads in the guest (dependencies added from `modules.dep`).
    pub modules: Vec<String>,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Accelerator; `None` probes (KVM when usable, else TCG with a warning).
    pub accel: Option<Accel>,
    /// Size of each image's base ext4 (sparse), hence of every sandbox's root filesystem.
    pub disk_size_mb: u64,
    /// Memory QEMU may use beyond guest RAM (its own code, device state, I/O buffers).
    pub memory_overhead_mb: u64,
    /// TCG translation cache size in MiB (counted in the cgroup's cap under TCG).
    pub tcg_tb_mb: u64,
    /// Run QEMU as this user after setup (`-runas`); `None` keeps root. Ignored when
    /// `uid_base` is set.
    pub runas: Option<String>,
    /// Each VM's QEMU drops to a uid of its own, `uid_base + n` (gid the same), once its
    /// devices are open, so no two VMs' QEMUs share an identity.
    pub uid_base: Option<u32>,
    /// Keep each VM's serial console in `<dir>/console.log`.
    pub console_log: bool,
    /// cgroup parent group name for the QEMU processes.
    pub cgroup_parent: String,
    /// Networking (used when the engine starts its own [`Network`](crate::net::Network)).
    pub net: NetConfig,
    /// Nameservers written to every guest's resolv.conf (empty: leave the image's).
    pub dns: Vec<String>,
    /// How long create waits for lohar to answer (boot under TCG takes seconds).
    pub ready_timeout: Duration,
}

/// The module directory that belongs to `kernel`: for `<root>/boot/vmlinuz-<ver>`,
/// `<root>/lib/modules/<ver>` if it exists (a kernel package unpacked anywhere), else
/// `/lib/modules/<ver>`.
pub fn modules_dir_for(kernel: &Path) -> Option<PathBuf> {
    let name = kernel.file_name()?.to_str()?;
    let ver = name.strip_prefix("vmlinuz-")?;
    let beside = kernel.parent()?.parent()?.join("lib/modules").join(ver);
    if beside.join("modules.dep").is_file() {
        return Some(beside);
    }
    Some(Path::new("/lib/modules").join(ver))
}

/// The guest kernel to use when none is configured: the newest Debian cloud kernel installed
/// in `/boot`, else one unpacked by `scripts/vm-kernel` under `extra_dirs` (e.g.
/// `<data_dir>/vm/kernel`, `/var/tmp/bhatti-vm-kernel`).
pub fn find_kernel(extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let newest = |dir: &Path| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
            })
            .collect();
        v.sort();
        v.pop()
    };
    std::iter::once(PathBuf::from("/boot"))
        .chain(extra_dirs.iter().map(|d| d.join("boot")))
        .find_map(|d| newest(&d))
}

/// Checks what the engine needs from the host; the error says what is missing.
pub fn check_host(cfg: &VmConfig) -> Result<(), EngineError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(unavailable("bhatti serve must run as root"));
    }
    if !cfg.qemu.is_file() {
        return Err(unavailable(format!(
            "QEMU not found at {} (apt install qemu-system-x86 qemu-utils)",
            cfg.qemu.display()
        )));
    }
    if !cfg.kernel.is_file() {
        return Err(unavailable(format!(
            "guest kernel not found at {} (apt install linux-image-cloud-amd64, or \
             ./scripts/vm-kernel, and set vm.kernel)",
            cfg.kernel.display()
        )));
    }
    if !cfg.lohar.is_file() {
        return Err(unavailable(format!(
            "lohar binary not found at {}",
            cfg.lohar.display()
        )));
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(unavailable("/dev/net/tun is missing (modprobe tun)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_dir_beside_kernel() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("lib/modules/6.1.0-9-cloud-amd64");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("modules.dep"), "").unwrap();
        let k = d.path().join("boot/vmlinuz-6.1.0-9-cloud-amd64");
        assert_eq!(modules_dir_for(&k), Some(m));
        assert_eq!(
            modules_dir_for(Path::new("/boot/vmlinuz-6.1.0-1-amd64")),
            Some(PathBuf::from("/lib/modules/6.1.0-1-amd64"))
        );
        assert_eq!(modules_dir_for(Path::new("/x/bzImage")), None);
    }
}
