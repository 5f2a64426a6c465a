//! The launcher: `bhatti __nsinit <fd>`, a freshly exec'd, single-threaded helper that builds
//! one sandbox and execs lohar as its PID 1.
//!
//! Why a re-exec'd helper: namespaces, mounts and forks are done here, in a process with one
//! thread, never between fork and exec of the multi-threaded daemon. The daemon drives it over
//! a socketpair with typed messages ([`super::protocol`]).
//!
//! Steps: (1) a short-lived child creates the sandbox's user namespace (ids mapped to its host
//! range) and a private mount namespace owned by it; (2) still real root, we enter that mount
//! namespace and build the root there: idmapped image, overlay, /run, /dev
//! ([`super::rootfs::prepare`]); (3) we enter the user namespace, become its root and unshare
//! uts, ipc, net, cgroup and pid namespaces; the daemon attaches the network; (4) we set the
//! hostname and fork the sandbox's PID 1, which mounts /proc, /sys …, pivots into the root,
//! drops the capability bounding set, installs seccomp and execs lohar.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Gid, Uid};

use super::protocol::{id_map, FromLauncher, ToLauncher};
use super::rootfs::{self, CONFIG_PATH, LOHAR_PATH};
use super::{caps, seccomp};

/// Entry point of `bhatti __nsinit <fd>`; returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let Some(fd) = args.first().and_then(|s| s.parse::<i32>().ok()) else {
        eprintln!("usage: bhatti __nsinit <fd> (internal: started by the daemon)");
        return 2;
    };
    // If the daemon dies mid-launch, so do we (before any sandbox process exists); the daemon
    // removes what we built when it starts again.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() == 1 {
        return 1;
    }
    // SAFETY: the daemon passes us this open socket and nothing else owns it.
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    // Children must not inherit it across exec (lohar never sees the daemon's socket).
    let _ = nix::fcntl::fcntl(
        sock.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut link = Link::new(sock);
    match run(&mut link) {
        Ok(()) => 0,
        Err((step, error)) => {
            link.send(&FromLauncher::Failed { step, error });
            1
        }
    }
}

struct Link {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Link {
    fn new(sock: UnixStream) -> Link {
        let writer = sock.try_clone().unwrap_or_else(|_| std::process::exit(3));
        Link {
            reader: BufReader::new(sock),
            writer,
        }
    }

    fn send(&mut self, m: &FromLauncher) {
        if let Ok(mut line) = serde_json::to_vec(m) {
            line.push(b'\n');
            let _ = self.writer.write_all(&line);
        }
    }

    fn recv(&mut self) -> Result<ToLauncher, (String, String)> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(("read from daemon".into(), "daemon went away".into())),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| ("parse daemon message".into(), e.to_string())),
            Err(e) => Err(("read from daemon".into(), e.to_string())),
        }
    }
}

fn fail(step: &str) -> impl FnOnce(String) -> (String, String) + '_ {
    move |e| (step.to_string(), e)
}

fn run(link: &mut Link) -> Result<(), (String, String)> {
    let spec = match link.recv()? {
        ToLauncher::Launch(s) => *s,
        other => {
            return Err((
                "handshake".into(),
                format!("expected launch, got {other:?}"),
            ))
        }
    };
    let ns = sandbox_userns(spec.uid_base).map_err(fail("create the sandbox's user namespace"))?;
    // Still real root, now inside the sandbox's (private) mount namespace: build its root.
    setns(&ns.mnt, CloneFlags::CLONE_NEWNS)
        .map_err(|e| ("enter mount namespace".into(), e.to_string()))?;
    rootfs::prepare(&spec, &ns.user).map_err(fail("prepare root filesystem"))?;
    // The sandbox's init works relative to its root (see `rootfs::enter`).
    nix::unistd::chdir(&rootfs::Layout::of(&spec.dir).merged)
        .map_err(|e| ("chdir to the new root".into(), e.to_string()))?;
    setns(&ns.user, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| ("enter user namespace".into(), e.to_string()))?;
    drop(ns);
    become_root().map_err(fail("become root of the user namespace"))?;
    unshare(
        CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| ("unshare sandbox namespaces".into(), e.to_string()))?;
    link.send(&FromLauncher::Unshared);
    match link.recv()? {
        ToLauncher::Proceed => {}
        other => {
            return Err((
                "handshake".into(),
                format!("expected proceed, got {other:?}"),
            ))
        }
    }
    nix::unistd::sethostname(&spec.hostname).map_err(|e| ("sethostname".into(), e.to_string()))?;

    // SAFETY: this process is single-threaded (a fresh exec of the helper), so fork is safe.
    match unsafe { fork() }.map_err(|e| ("fork sandbox init".into(), e.to_string()))? {
        ForkResult::Parent { child } => {
            link.send(&FromLauncher::Started {
                pid: child.as_raw(),
            });
            Ok(())
        }
        ForkResult::Child => {
            let err = sandbox_init();
            link.send(&FromLauncher::Failed {
                step: "sandbox init".into(),
                error: err,
            });
            std::process::exit(1);
        }
    }
}

fn setns(fd: &OwnedFd, kind: CloneFlags) -> nix::Result<()> {
    nix::sched::setns(fd, kind)
}

/// The sandbox's user namespace (ids mapped to its host range) and a mount namespace it owns.
struct SandboxNs {
    user: OwnedFd,
    mnt: OwnedFd,
}

/// Creates the sandbox's user and mount namespaces in a short-lived child: it unshares them and
/// makes every mount private (so nothing propagates between host and sandbox); we write its id
/// maps and keep references to both namespaces, then let it exit.
fn sandbox_userns(uid_base: u32) -> Result<SandboxNs, String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (r2, w2) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: single-threaded process; the child only makes syscalls and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(w);
            drop(r2);
            let ok = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_ok()
                && nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .is_ok();
            let _ = nix::unistd::write(w2.as_fd(), if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(r.as_raw_fd(), &mut b);
            // SAFETY: _exit avoids running the parent's atexit handlers in the child.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            drop(r);
            drop(w2);
            let mut b = [0u8; 1];
            let n = nix::unistd::read(r2.as_raw_fd(), &mut b).map_err(|e| format!("read: {e}"))?;
            let result = if n == 1 && b[0] == b'1' {
                let map = id_map(uid_base);
                let open = |ns: &str| {
                    std::fs::File::open(format!("/proc/{child}/ns/{ns}")).map(OwnedFd::from)
                };
                std::fs::write(format!("/proc/{child}/uid_map"), &map)
                    .and_then(|_| std::fs::write(format!("/proc/{child}/gid_map"), &map))
                    .and_then(|_| {
                        Ok(SandboxNs {
                            user: open("user")?,
                            mnt: open("mnt")?,
                        })
                    })
                    .map_err(|e| format!("map ids: {e}"))
            } else {
                Err("unshare of user and mount namespaces failed in the helper child".into())
            };
            drop(w);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn become_root() -> Result<(), String> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setresuid: {e}"))?;
    Ok(())
}

/// PID 1 of the sandbox, before it becomes lohar. Returns only on failure.
fn sandbox_init() -> String {
    if let Err(e) = rootfs::enter() {
        return e;
    }
    if let Err(e) = caps::restrict_bounding_set() {
        return format!("restrict capability bounding set: {e}");
    }
    let prog = match seccomp::filter() {
        Ok(p) => p,
        Err(e) => return format!("build seccomp filter: {e}"),
    };
    if let Err(e) = seccomp::install(&prog) {
        return format!("install seccomp filter: {e}");
    }
    let path = std::ffi::CString::new(LOHAR_PATH).unwrap_or_default();
    let cfg = std::ffi::CString::new(CONFIG_PATH).unwrap_or_default();
    let env = [
        c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        c"HOME=/root",
    ];
    let err = nix::unistd::execve(&path, &[path.as_c_str(), cfg.as_c_str()], &env);
    format!("exec {LOHAR_PATH}: {err:?}")
}
