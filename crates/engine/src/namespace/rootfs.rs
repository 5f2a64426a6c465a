//! The sandbox's root filesystem: an overlay over an idmapped image, a minimal /dev, a private
//! /proc with the usual masks, read-only /sys, then pivot_root.
//!
//! Two phases, because they need different privileges:
//! - [`prepare`] runs in the launcher as real root in a private mount namespace: idmapped lower
//!   layer, overlay, `/run` (lohar + its config) and `/dev` tmpfs.
//! - [`enter`] runs as PID 1 of the sandbox, inside its user/mount/pid namespaces: `/proc`,
//!   `/sys`, `/dev/pts`, `/dev/shm`, `/tmp`, masks, pivot_root.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::protocol::LaunchSpec;
use super::sys;

/// Host device nodes bind-mounted into the sandbox's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// /proc files hidden behind /dev/null (Docker's masked paths).
pub const MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
/// /proc directories hidden behind an empty read-only tmpfs.
pub const MASKED_DIRS: &[&str] = &["acpi", "asound", "scsi"];
/// /proc paths made read-only (Docker's readonly paths).
pub const READONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Where lohar and its config live inside the sandbox.
pub const LOHAR_PATH: &str = "/run/bhatti/lohar";
/// Where lohar's config lives inside the sandbox (lohar deletes it after reading).
pub const CONFIG_PATH: &str = "/run/bhatti/config.json";

/// Sub-directories of a sandbox directory.
pub struct Layout {
    /// The idmapped image mount point.
    pub lower: PathBuf,
    /// The sandbox's own writable layer (kept across restarts).
    pub upper: PathBuf,
    /// overlayfs work dir.
    pub work: PathBuf,
    /// The merged root.
    pub merged: PathBuf,
}

impl Layout {
    /// The layout under a sandbox directory.
    pub fn of(dir: &Path) -> Layout {
        Layout {
            lower: dir.join("lower"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        }
    }
}

fn step<T>(what: &str, r: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn mnt(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    step(
        &format!("mount {fstype} on {}", target.display()),
        mount(Some(src), target, Some(fstype), flags, data),
    )
}

fn bind(src: &Path, target: &Path, readonly: bool) -> Result<(), String> {
    step(
        &format!("bind {} on {}", src.display(), target.display()),
        mount(
            Some(src),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    if readonly {
        step(
            &format!("remount {} read-only", target.display()),
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

fn touch(p: &Path) -> Result<(), String> {
    step(
        &format!("create {}", p.display()),
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o644)
            .open(p),
    )
    .map(|_| ())
}

fn mkdir(p: &Path, mode: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(mode).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("mkdir {}: {e}", p.display())),
    }
}

/// Phase 1 (launcher, real root, private mount namespace).
pub fn prepare(spec: &LaunchSpec, userns: &OwnedFd) -> Result<(), String> {
    let l = Layout::of(&spec.dir);
    step("create sandbox dir", std::fs::create_dir_all(&spec.dir))?;
    for d in [&l.lower, &l.upper, &l.work, &l.merged] {
        mkdir(d, 0o755)?;
    }
    let base = spec.uid_base;
    // The upper root is the sandbox's "/": owned by sandbox root.
    step(
        "chown upper",
        std::os::unix::fs::chown(&l.upper, Some(base), Some(base)),
    )?;

    let tree = step(
        "idmapped image mount",
        sys::idmapped_tree(&spec.image_rootfs, userns),
    )?;
    step("attach idmapped image", sys::attach_tree(&tree, &l.lower))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.lower.display(),
        l.upper.display(),
        l.work.display()
    );
    mnt(
        "overlay",
        &l.merged,
        "overlay",
        MsFlags::empty(),
        Some(&opts),
    )?;

    let m = &l.merged;
    let owner = format!("uid={base},gid={base}");
    // /run: tmpfs holding lohar (read-only bind of the host binary) and its config.
    let run = m.join("run");
    mkdir(&run, 0o755)?;
    mnt(
        "tmpfs",
        &run,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=0755,size=64m,{owner}")),
    )?;
    let bh = run.join("bhatti");
    mkdir(&bh, 0o755)?;
    step(
        "chown /run/bhatti",
        std::os::unix::fs::chown(&bh, Some(base), Some(base)),
    )?;
    let lohar_target = bh.join("lohar");
    touch(&lohar_target)?;
    bind(&spec.lohar, &lohar_target, true)?;
    let cfg = bh.join("config.json");
    step(
        "write lohar config",
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&cfg)
            .and_then(|mut f| std::io::Write::write_all(&mut f, spec.lohar_config.as_bytes())),
    )?;
    step(
        "chown lohar config",
        std::os::unix::fs::chown(&cfg, Some(base), Some(base)),
    )?;

    // /dev: tmpfs with a handful of host device nodes, nothing else.
    let dev = m.join("dev");
    mkdir(&dev, 0o755)?;
    mnt(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&format!("mode=0755,size=64k,{owner}")),
    )?;
    for d in DEVICES {
        let t = dev.join(d);
        touch(&t)?;
        bind(&Path::new("/dev").join(d), &t, false)?;
    }
    for d in ["pts", "shm"] {
        mkdir(&dev.join(d), 0o755)?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step(
            &format!("symlink /dev/{link}"),
            std::os::unix::fs::symlink(target, dev.join(link)),
        )?;
    }
    for d in ["proc", "sys", "tmp"] {
        mkdir(&m.join(d), 0o755)?;
    }
    Ok(())
}

/// Phase 2 (sandbox PID 1, inside the sandbox's namespaces): kernel filesystems, masks and
/// pivot_root into the merged root. The caller's working directory is the merged root: paths
/// here are relative to it, because the sandbox's (unprivileged) root may not traverse the
/// host directories above it.
pub fn enter() -> Result<(), String> {
    let m = Path::new(".");
    let hard = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_ = m.join("proc");
    mnt("proc", &proc_, "proc", hard, None)?;
    for f in MASKED_FILES {
        let p = proc_.join(f);
        if p.exists() {
            bind(Path::new("/dev/null"), &p, false)?;
        }
    }
    for d in MASKED_DIRS {
        let p = proc_.join(d);
        if p.is_dir() {
            mnt(
                "tmpfs",
                &p,
                "tmpfs",
                hard | MsFlags::MS_RDONLY,
                Some("size=0"),
            )?;
        }
    }
    for r in READONLY {
        let p = proc_.join(r);
        if p.exists() {
            bind(&p, &p, true)?;
        }
    }
    mnt(
        "sysfs",
        &m.join("sys"),
        "sysfs",
        hard | MsFlags::MS_RDONLY,
        None,
    )?;
    mnt(
        "devpts",
        &m.join("dev/pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mnt(
        "shm",
        &m.join("dev/shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=64m"),
    )?;
    mnt(
        "tmpfs",
        &m.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;

    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves nothing
    // of the host visible.
    if let Err(e) = nix::unistd::pivot_root(".", ".") {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let rel: Vec<&str> = mi
            .lines()
            .filter(|l| l.contains("merged") || l.split(' ').nth(4) == Some("/"))
            .collect();
        return Err(format!("pivot_root: {e}; mounts: {}", rel.join(" | ")));
    }
    step("detach old root", umount2(".", MntFlags::MNT_DETACH))?;
    step("chdir /", nix::unistd::chdir("/"))?;
    let _ = std::fs::set_permissions("/tmp", std::fs::Permissions::from_mode(0o1777));
    Ok(())
}
