//! Running `runsc` (gVisor's OCI runtime), and the network namespaces it runs in.
//!
//! Version floor: Debian's `runsc` 0.0~20221219. That build decides it is "in the root network
//! namespace" when `/proc/sys/net/core/rmem_default` exists, which on Linux ≥ 6.x is true in
//! every network namespace, and then refuses `--network=sandbox`. So `run` and `restore` are
//! started inside the sandbox's network namespace and a private mount namespace in which an
//! empty tmpfs hides `/proc/sys/net/core`; newer builds do not need this and do not mind it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::io;
use crate::EngineError;

/// How to invoke runsc.
#[derive(Debug, Clone)]
pub struct Runsc {
    /// The binary.
    pub bin: PathBuf,
    /// runsc's state directory (`--root`).
    pub root: PathBuf,
    /// `--platform` (ptrace, kvm, systrap).
    pub platform: String,
    /// `--debug-log` directory, if any.
    pub debug_log_dir: Option<PathBuf>,
    /// With `debug_log_dir`: `--strace` for these system calls (`"*"`: all).
    pub debug_strace: Option<String>,
}

/// The useful part of runsc's output: its first line (runsc appends Go stack traces).
pub fn summarise(out: &str) -> String {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    let mut s: String = line.chars().take(400).collect();
    if line.chars().count() > 400 {
        s.push('…');
    }
    s
}

impl Runsc {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c.arg(format!("--platform={}", self.platform));
        if let Some(d) = &self.debug_log_dir {
            c.arg("--debug")
                .arg(format!("--debug-log={}/", d.display()));
            if let Some(list) = &self.debug_strace {
                c.arg("--strace");
                if list != "*" {
                    c.arg(format!("--strace-syscalls={list}"));
                }
            }
        }
        c.args(args);
        c
    }

    /// Runs `runsc <args>` to completion (blocking), its output in `log` (a file, not a pipe:
    /// `run`/`restore --detach` leave the sandbox holding their stdio). With `netns`, runsc
    /// starts inside that network namespace (see the module docs): every command that talks to
    /// a running sandbox needs it, since runsc reaches the sandbox over an abstract Unix socket,
    /// which is per network namespace. Fails with runsc's message.
    pub fn run(&self, args: &[&str], netns: Option<&Path>, log: &Path) -> Result<(), EngineError> {
        let step = format!("runsc {}", args.first().copied().unwrap_or(""));
        // `run`/`restore` hand their stdio to the sandbox (lohar logs there): append, so the
        // sandbox's whole history stays readable; read back only this command's part.
        let starts = matches!(args.first(), Some(&"run") | Some(&"restore"));
        let out = if starts {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log.with_file_name("console.log"))
        } else {
            File::create(log)
        }
        .map_err(|e| io(format!("{step}: open log"), e))?;
        let from = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out
            .try_clone()
            .map_err(|e| io(format!("{step}: open log"), e))?;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let ns_file = match netns {
            Some(p) => Some(File::open(p).map_err(|e| io(format!("{step}: open netns"), e))?),
            None => None,
        };
        if let Some(f) = &ns_file {
            let fd = f.as_raw_fd();
            // SAFETY: only async-signal-safe syscalls between fork and exec.
            unsafe {
                cmd.pre_exec(move || enter_netns(fd));
            }
        }
        let status = cmd
            .status()
            .map_err(|e| io(format!("{step}: spawn {}", self.bin.display()), e))?;
        if status.success() {
            return Ok(());
        }
        let path = if starts {
            log.with_file_name("console.log")
        } else {
            log.to_path_buf()
        };
        let text = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        Err(io(step, summarise(&text)))
    }

    /// `runsc state <id>` as JSON, run inside the sandbox's network namespace (runsc reaches
    /// a sandbox over an abstract Unix socket, which lives in that namespace).
    fn state(&self, id: &str, netns: &Path) -> Option<serde_json::Value> {
        let mut cmd = self.command(&["state", id]);
        cmd.stdin(Stdio::null());
        let ns = File::open(netns).ok()?;
        let fd = ns.as_raw_fd();
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || enter_netns(fd));
        }
        let out = cmd.output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The container's status (`running`, `paused`, `stopped`, `created`); `None` when runsc
    /// does not know it.
    pub fn status(&self, id: &str, netns: &Path) -> Option<String> {
        self.state(id, netns)?["status"]
            .as_str()
            .map(str::to_string)
    }

    /// The host pid of the sandbox's user-space kernel (runsc-sandbox), if it runs.
    pub fn pid(&self, id: &str, netns: &Path) -> Option<i32> {
        self.state(id, netns)?["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .map(|p| p as i32)
    }

    /// Container ids runsc holds state for (`runsc list -q`).
    pub fn list(&self) -> Vec<String> {
        self.command(&["list", "-quiet"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs in the forked child before exec: joins the sandbox's network namespace, takes a private
/// mount namespace and hides `/proc/sys/net/core` there.
fn enter_netns(fd: i32) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a valid fd / static C strings.
    unsafe {
        if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // Best effort: a kernel without the sysctl directory has nothing to hide.
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/proc/sys/net/core".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=4k".as_ptr().cast(),
        );
    }
    Ok(())
}

/// Creates a network namespace kept alive by a bind mount on `path` (like `ip netns add`).
pub fn create_netns(path: &Path) -> Result<(), EngineError> {
    File::create(path).map_err(|e| io("create netns file", e))?;
    let p = path.to_path_buf();
    // unshare(CLONE_NEWNET) affects only the calling thread: do it on a throwaway one.
    std::thread::spawn(move || -> Result<(), nix::Error> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| io("create netns", "thread panicked"))?
    .map_err(|e| io("create netns", e))
}

/// Unmounts (lazily) and removes a file or directory mount point; missing is fine.
pub fn unmount(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
}

/// Whether `path` is a mount point (its device differs from its parent's, or it is a netns
/// bind).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_first_line() {
        assert_eq!(
            summarise("\nrunning container: boom\ngoroutine 1 [running]:\n..."),
            "running container: boom"
        );
        assert_eq!(summarise(""), "no output");
        assert_eq!(summarise(&"x".repeat(500)).chars().count(), 401);
    }
}
