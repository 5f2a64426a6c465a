//! The filesystems PID 1 needs, each mounted only if the engine has not already provided it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};

/// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /tmp and /run where missing.
pub fn mount_all() {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // A /proc of another PID namespace (ours is PID 1 in its own) is as good as none.
    if std::fs::read_link("/proc/self")
        .map(|p| p != Path::new("1"))
        .unwrap_or(true)
    {
        try_mount("proc", "/proc", "proc", nosuid_nodev_noexec, None);
    }
    if !Path::new("/sys/kernel").exists() {
        try_mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, None);
    }
    if !Path::new("/dev/null").exists() {
        try_mount(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        );
    }
    if !Path::new("/dev/pts/ptmx").exists() {
        let _ = std::fs::create_dir_all("/dev/pts");
        try_mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        );
    }
    if !Path::new("/dev/ptmx").exists() {
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    for (dir, opts) in [
        ("/dev/shm", "mode=1777"),
        ("/tmp", "mode=1777"),
        ("/run", "mode=0755"),
    ] {
        let _ = std::fs::create_dir_all(dir);
        if !is_mountpoint(dir) {
            try_mount(
                "tmpfs",
                dir,
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts),
            );
        }
    }
}

fn try_mount(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    if let Err(e) = mount(Some(src), target, Some(fstype), flags, data) {
        tracing::warn!(target, fstype, error = %e, "mount failed");
    }
}

/// A directory is a mount point when it sits on another device than its parent.
fn is_mountpoint(dir: &str) -> bool {
    let p = Path::new(dir);
    let (Ok(me), Some(Ok(parent))) = (std::fs::metadata(p), p.parent().map(std::fs::metadata))
    else {
        return false;
    };
    me.dev() != parent.dev()
}
