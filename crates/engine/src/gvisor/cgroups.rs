//! Host clean-up of the cgroups runsc makes on its own, outside the ones the engine manages.

use std::path::Path;

/// Removes the groups runsc made for a sandbox in cgroup v1 hierarchies we do not manage
/// (blkio, cpuset, devices, name=systemd …: runsc joins every mounted one), then their parent
/// once it is empty. Our own controllers' groups are removed by [`crate::cgroups::Cgroup`].
pub(super) fn remove_runsc_cgroups(parent: &str, id: &str) {
    let parent = parent.trim_matches('/');
    if parent.is_empty() || parent.contains("..") || id.is_empty() || id.contains('/') {
        return;
    }
    // Named, so a cgroup v2 host (where these are not hierarchies) is never touched.
    const UNMANAGED_V1: &[&str] = &[
        "blkio",
        "cpuset",
        "devices",
        "systemd",
        "net_cls",
        "net_prio",
        "net_cls,net_prio",
        "perf_event",
        "rdma",
        "misc",
    ];
    for h in UNMANAGED_V1 {
        let root = Path::new("/sys/fs/cgroup").join(h);
        if !root.join("cgroup.procs").exists() {
            continue;
        }
        let p = root.join(parent);
        // rmdir only: a group that still has processes or children stays (EBUSY).
        let _ = std::fs::remove_dir(p.join(id));
        let _ = std::fs::remove_dir(&p);
    }
}
