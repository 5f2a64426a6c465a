//! The v2 freezer, `cgroup.kill` and accounting on the real host, even where v1 is in use: the
//! core v2 files (cgroup.procs/freeze/kill/events, cpu.stat) exist in any cgroup2 mount, with
//! or without controllers, so hybrid hosts exercise the v2 code paths too.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::{probe, v2, Backend, Cgroup};

/// A group directly under the first cgroup2 mount, removed on drop.
struct LiveGroup(Cgroup);

impl Drop for LiveGroup {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

fn live_group(tag: &str) -> Option<LiveGroup> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root: PathBuf = probe::parse_mountinfo(&mountinfo)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")?
        .mount_point;
    if !root.join("cgroup.procs").exists() {
        return None;
    }
    let backend = Arc::new(v2::V2::new(root));
    let rel = PathBuf::from(format!("bhatti-v2live-{tag}-{}", std::process::id()));
    let dirs = backend.dirs(&rel);
    std::fs::create_dir(&dirs.freezer).ok()?;
    if !dirs.freezer.join("cgroup.freeze").exists() {
        let _ = std::fs::remove_dir(&dirs.freezer);
        return None;
    }
    Some(LiveGroup(Cgroup {
        backend,
        key: tag.to_string(),
        dirs,
    }))
}

/// Polls `f` for up to 5 s (CI machines may be loaded).
fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn v2_freeze_thaw_and_cpu_accounting() {
    let Some(g) = live_group("freeze") else {
        return eprintln!("skipping: needs root and a cgroup2 mount with cgroup.freeze");
    };
    let cg = &g.0;
    let mut child = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    cg.add_pid(child.id() as i32).unwrap();
    assert!(wait_for(|| cg.cpu_usage_usec().unwrap() > 20_000));
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let before = cg.cpu_usage_usec().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cg.cpu_usage_usec().unwrap(), before);
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    assert!(wait_for(|| cg.cpu_usage_usec().unwrap() > before + 20_000));
    // cgroup.kill (Linux >= 5.14) or the freeze/kill/thaw fallback, on a frozen group.
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!cg.dirs.freezer.exists());
}

#[test]
fn v2_kill_all_empties_a_forking_tree() {
    let Some(g) = live_group("kill") else {
        return eprintln!("skipping: needs root and a cgroup2 mount with cgroup.freeze");
    };
    let cg = &g.0;
    let mut child = Command::new("sh")
        .args(["-c", "sleep 0.3; while :; do sleep 100 & sleep 0.005; done"])
        .spawn()
        .unwrap();
    cg.add_pid(child.id() as i32).unwrap();
    assert!(wait_for(|| cg.pids().unwrap().len() > 5));
    cg.kill_all().unwrap();
    assert!(cg.pids().unwrap().is_empty());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}
