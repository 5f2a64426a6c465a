//! The virtual machine monitor behind the vm engine: a small trait, so a Firecracker or Cloud
//! Hypervisor driver can sit beside [`Qemu`] later, and the QEMU driver itself.
//!
//! A VM is named by its directory: the QMP socket (`qmp.sock`) and pid file (`qemu.pid`) live
//! there, so nothing but the directory is needed to re-attach after a daemon restart.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::qmp::{Qmp, QmpError};

/// How guest code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (slow; for hosts without usable KVM, e.g. CI inside a VM).
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            o => Err(format!("unknown accelerator {o:?} (kvm, tcg)")),
        }
    }
}

/// Whether this host's KVM can run an ordinary guest: `/dev/kvm`, `kvm_intel` or `kvm_amd`
/// loaded, and the CPU's vmx/svm flag. A paravirtual-only KVM (no vendor module) does not count.
pub fn probe_kvm() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    kvm_usable(
        Path::new("/dev/kvm").exists(),
        Path::new("/sys/module/kvm_intel").exists(),
        Path::new("/sys/module/kvm_amd").exists(),
        &cpuinfo,
    )
}

/// The pure part of [`probe_kvm`].
pub fn kvm_usable(dev_kvm: bool, kvm_intel: bool, kvm_amd: bool, cpuinfo: &str) -> bool {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    dev_kvm && ((kvm_intel && flags.contains(&"vmx")) || (kvm_amd && flags.contains(&"svm")))
}

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct VmLaunch {
    /// The VM's directory (QMP socket, pid file, console log).
    pub dir: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mb: u64,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line (never secrets: it is readable in the guest's /proc/cmdline).
    pub cmdline: String,
    /// Root disk (qcow2 overlay), virtio serial `bhatti-root`.
    pub root_disk: PathBuf,
    /// Config disk (raw, read-only), virtio serial `bhatti-config`.
    pub config_disk: PathBuf,
    /// Host TAP interface (already created and on the bridge).
    pub tap: String,
    /// Guest MAC address.
    pub mac: String,
    /// Keep the serial console in `console.log` (debugging).
    pub console_log: bool,
    /// Restore from this memory snapshot instead of booting.
    pub incoming: Option<PathBuf>,
    /// Drop to this user after setup (`-runas`).
    pub runas: Option<String>,
    /// TCG translation cache size in MiB (bounds QEMU's own memory under TCG).
    pub tcg_tb_mb: u64,
}

/// Errors of the VMM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Starting the VMM failed.
    #[error("start {vmm}: {reason}")]
    Start {
        /// The VMM.
        vmm: &'static str,
        /// What it said.
        reason: String,
    },
    /// Talking to a running VMM failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// Snapshotting failed.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Any other I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a VM monitor does for the vm engine. Blocking calls: the engine runs them on the
/// blocking pool.
pub trait Vmm: Send + Sync + 'static {
    /// Short name (`qemu`).
    fn name(&self) -> &'static str;
    /// Starts the VM (in its own session, so it outlives the daemon) with its vCPUs stopped (so the caller can put it in a cgroup first);
    /// returns the VMM's pid. With `incoming`, returns once the memory image is loaded.
    fn launch(&self, vm: &VmLaunch) -> Result<i32, VmmError>;
    /// Runs the vCPUs.
    fn resume(&self, dir: &Path) -> Result<(), VmmError>;
    /// Stops the vCPUs (memory stays).
    fn pause(&self, dir: &Path) -> Result<(), VmmError>;
    /// Whether the vCPUs are stopped, or `None` when the VMM does not answer.
    fn paused(&self, dir: &Path) -> Option<bool>;
    /// Writes the paused VM's memory and device state to `file` and verifies it; the VMM
    /// keeps running (stopped) until [`Vmm::kill`].
    fn snapshot(&self, dir: &Path, file: &Path) -> Result<(), VmmError>;
    /// The VMM's pid, if it is running.
    fn pid(&self, dir: &Path) -> Option<i32>;
    /// Ends the VMM and waits (bounded) until it is gone.
    fn kill(&self, dir: &Path);
}

/// The QEMU driver (`qemu-system-x86_64`, `-M q35`).
#[derive(Debug, Clone)]
pub struct Qemu {
    /// The QEMU binary.
    pub binary: PathBuf,
}

const QMP_SOCK: &str = "qmp.sock";
const PID_FILE: &str = "qemu.pid";
/// QEMU's stderr.
const LOG_FILE: &str = "qemu.log";
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

impl Qemu {
    fn qmp(&self, dir: &Path) -> Result<Qmp, QmpError> {
        Qmp::connect(&dir.join(QMP_SOCK), QMP_TIMEOUT)
    }

    /// The full QEMU argument list for `vm` (pure; unit-tested).
    pub fn args(vm: &VmLaunch, incoming_fd: Option<i32>) -> Vec<String> {
        let d = |p: &str| vm.dir.join(p).display().to_string();
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let accel = match vm.accel {
            Accel::Kvm => "kvm".to_string(),
            Accel::Tcg => format!("tcg,tb-size={}", vm.tcg_tb_mb),
        };
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&["-M", "q35", "-accel", &accel]);
        push(&[
            "-cpu",
            if vm.accel == Accel::Kvm {
                "host"
            } else {
                "max"
            },
        ]);
        push(&[
            "-smp",
            &vm.vcpus.to_string(),
            "-m",
            &format!("{}M", vm.memory_mb),
        ]);
        push(&["-kernel", &vm.kernel.display().to_string()]);
        push(&["-initrd", &vm.initrd.display().to_string()]);
        push(&["-append", &vm.cmdline]);
        // The overlay comes in as an fd set (one read-write, one read-only descriptor): QEMU
        // reopens it when migration (de)activates the disk, after -runas has dropped the
        // rights to open it by path.
        push(&[
            "-add-fd",
            &format!("fd={ROOT_FD_RW},set=1,opaque=rw"),
            "-add-fd",
            &format!("fd={ROOT_FD_RO},set=1,opaque=ro"),
            "-drive",
            "file=/dev/fdset/1,if=none,id=root,format=qcow2,cache=writeback,discard=unmap",
            "-device",
            "virtio-blk-pci,drive=root,serial=bhatti-root",
        ]);
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id=config,format=raw,readonly=on",
                vm.config_disk.display()
            ),
            "-device",
            "virtio-blk-pci,drive=config,serial=bhatti-config",
        ]);
        push(&[
            "-netdev",
            &format!("tap,id=net0,ifname={},script=no,downscript=no", vm.tap),
            "-device",
            &format!("virtio-net-pci,netdev=net0,mac={}", vm.mac),
        ]);
        if vm.console_log {
            push(&["-serial", &format!("file:{}", d("console.log"))]);
        } else {
            push(&["-serial", "none"]);
        }
        push(&["-qmp", &format!("unix:{},server=on,wait=off", d(QMP_SOCK))]);
        push(&["-pidfile", &d(PID_FILE), "-S", "-no-reboot"]);
        match &vm.runas {
            // -runas drops to the user with set*id after the seccomp filter is in place, so
            // the filter must allow them; once dropped, QEMU holds no capabilities to regain
            // anything with.
            Some(u) => push(&[
                "-sandbox",
                "on,obsolete=deny,spawn=deny,resourcecontrol=deny",
                "-runas",
                u,
            ]),
            None => push(&[
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            ]),
        }
        if let Some(fd) = incoming_fd {
            push(&["-incoming", &format!("fd:{fd}")]);
        }
        a
    }

    fn wait_status(
        &self,
        dir: &Path,
        done: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> Result<String, VmmError> {
        let t0 = Instant::now();
        let mut q = self.qmp(dir)?;
        loop {
            let s = q.status()?;
            if done(&s) {
                return Ok(s);
            }
            if t0.elapsed() > limit {
                return Err(VmmError::Snapshot(format!("VM still {s} after {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The fd number the memory snapshot is passed as to an incoming QEMU.
const INCOMING_FD: i32 = 3;
/// The fd numbers of the root overlay (read-write and read-only) in QEMU's fd set 1.
const ROOT_FD_RW: i32 = 4;
const ROOT_FD_RO: i32 = 5;

impl Vmm for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn launch(&self, vm: &VmLaunch) -> Result<i32, VmmError> {
        let _ = std::fs::remove_file(vm.dir.join(QMP_SOCK));
        let _ = std::fs::remove_file(vm.dir.join(PID_FILE));
        let snap = match &vm.incoming {
            Some(p) => Some(std::fs::File::open(p)?),
            None => None,
        };
        let log = std::fs::File::create(vm.dir.join(LOG_FILE))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(Self::args(vm, snap.as_ref().map(|_| INCOMING_FD)));
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let root_rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&vm.root_disk)?;
        let root_ro = std::fs::File::open(&vm.root_disk)?;
        // (source fd, fd number in QEMU); -1: none.
        let fds: [(i32, i32); 3] = [
            (snap.as_ref().map_or(-1, |f| f.as_raw_fd()), INCOMING_FD),
            (root_rw.as_raw_fd(), ROOT_FD_RW),
            (root_ro.as_raw_fd(), ROOT_FD_RO),
        ];
        // SAFETY: setsid, fcntl, dup2 and close are async-signal-safe and nothing else (no
        // allocation) runs between fork and exec. Its own session keeps QEMU out of the
        // daemon's process group, so it outlives a daemon restart. The fds are first moved
        // above the targets so no dup2 clobbers a source, then placed (dup2 clears CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut high = [-1i32; 3];
                for (i, (src, _)) in fds.iter().enumerate() {
                    if *src >= 0 {
                        high[i] = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 64);
                        if high[i] < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                for (i, (_, dst)) in fds.iter().enumerate() {
                    if high[i] >= 0 && libc::dup2(high[i], *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        // Not -daemonize: its fork is what `-sandbox spawn=deny` forbids.
        let mut child = cmd.spawn().map_err(|e| VmmError::Start {
            vmm: "qemu",
            reason: format!("{}: {e}", self.binary.display()),
        })?;
        drop((snap, root_rw, root_ro));
        let pid = child.id() as i32;
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(vm.dir.join(LOG_FILE)).unwrap_or_default();
                return Err(VmmError::Start {
                    vmm: "qemu",
                    reason: format!("exited ({status}): {}", log.trim()),
                });
            }
            if vm.dir.join(QMP_SOCK).exists() && self.qmp(&vm.dir).is_ok() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmmError::Start {
                    vmm: "qemu",
                    reason: "QMP socket did not come up in 30 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Reap it when it ends (while this daemon lives; afterwards init does).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        if vm.incoming.is_some() {
            // The state loads in the background once QMP is up; wait for it.
            let s = self.wait_status(&vm.dir, |s| s != "inmigrate", Duration::from_secs(120))?;
            if s != "paused" && s != "prelaunch" && s != "running" {
                self.kill(&vm.dir);
                return Err(VmmError::Snapshot(format!("restore ended in state {s}")));
            }
        }
        Ok(pid)
    }

    fn resume(&self, dir: &Path) -> Result<(), VmmError> {
        let mut q = self.qmp(dir)?;
        if q.status()? != "running" {
            q.execute("cont", None)?;
        }
        Ok(())
    }

    fn pause(&self, dir: &Path) -> Result<(), VmmError> {
        self.qmp(dir)?.execute("stop", None)?;
        Ok(())
    }

    fn paused(&self, dir: &Path) -> Option<bool> {
        let s = self.qmp(dir).ok()?.status().ok()?;
        Some(s != "running")
    }

    fn snapshot(&self, dir: &Path, file: &Path) -> Result<(), VmmError> {
        let mut q = self.qmp(dir)?;
        if q.status()? == "running" {
            q.execute("stop", None)?;
        }
        // Unthrottled: the default 128 MiB/s limit is meant for live migration over a network.
        q.execute(
            "migrate-set-parameters",
            Some(json!({ "max-bandwidth": 64u64 << 30 })),
        )?;
        // Guest memory holds the sandbox's secrets: root-only.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)?;
        q.send_fd("snapshot", f.as_raw_fd())?;
        q.execute("migrate", Some(json!({ "uri": "fd:snapshot" })))?;
        let t0 = Instant::now();
        loop {
            let r = q.execute("query-migrate", None)?;
            match r["status"].as_str().unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => {
                    return Err(VmmError::Snapshot(format!(
                        "migration {}: {}",
                        r["status"],
                        r["error-desc"].as_str().unwrap_or("")
                    )))
                }
                _ if t0.elapsed() > Duration::from_secs(300) => {
                    let _ = q.execute("migrate_cancel", None);
                    return Err(VmmError::Snapshot(
                        "migration did not finish in 300 s".into(),
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        f.sync_all()?;
        let len = f.metadata()?.len();
        if len == 0 {
            return Err(VmmError::Snapshot("empty snapshot file".into()));
        }
        Ok(())
    }

    fn pid(&self, dir: &Path) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        // A recycled pid belongs to something else: only a QEMU naming our QMP socket counts.
        let sock = dir.join(QMP_SOCK);
        let needle = sock.as_os_str().as_encoded_bytes();
        let alive = crate::vm::pid_alive(pid) && cmdline.windows(needle.len()).any(|w| w == needle);
        alive.then_some(pid)
    }

    fn kill(&self, dir: &Path) {
        let Some(pid) = self.pid(dir) else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let t0 = Instant::now();
        while crate::vm::pid_alive(pid) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_probe() {
        let intel = "processor\t: 0\nflags\t\t: fpu vmx sse\n";
        let plain = "flags\t\t: fpu sse hypervisor\n";
        assert!(kvm_usable(true, true, false, intel));
        assert!(!kvm_usable(false, true, false, intel));
        // Paravirtual-only KVM: /dev/kvm but no vendor module.
        assert!(!kvm_usable(true, false, false, intel));
        assert!(!kvm_usable(true, true, false, plain));
        assert!(kvm_usable(true, false, true, "flags : svm\n"));
    }

    #[test]
    fn qemu_args() {
        let vm = VmLaunch {
            dir: "/d".into(),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mb: 256,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "quiet".into(),
            root_disk: "/d/root.qcow2".into(),
            config_disk: "/d/config.img".into(),
            tap: "bh-12345678".into(),
            mac: "52:54:00:00:00:01".into(),
            console_log: false,
            incoming: None,
            runas: None,
            tcg_tb_mb: 64,
        };
        let a = Qemu::args(&vm, None).join(" ");
        assert!(a.contains("-accel tcg,tb-size=64"), "{a}");
        assert!(a.contains("-smp 2 -m 256M"));
        assert!(a.contains("serial=bhatti-config"));
        assert!(a.contains("readonly=on"));
        assert!(a.contains("-serial none"));
        assert!(a.contains("-sandbox on,"));
        assert!(!a.contains("-incoming"));
        assert!(Qemu::args(&vm, Some(3))
            .join(" ")
            .ends_with("-incoming fd:3"));
    }
}
