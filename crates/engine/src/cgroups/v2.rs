//! cgroup v2: one unified hierarchy; the freezer is `cgroup.freeze`, kill is `cgroup.kill`.

use std::path::{Path, PathBuf};

use super::probe::V2_NEEDED;
use super::{files, CgroupError, CgroupVersion, Dirs, Limits};

/// CFS period; the quota is cpus × this.
const PERIOD_US: u64 = 100_000;

/// The unified hierarchy mounted at `root`.
#[derive(Debug)]
pub(super) struct V2 {
    root: PathBuf,
}

impl V2 {
    pub(super) fn new(root: PathBuf) -> Self {
        V2 { root }
    }
}

/// cpus × period, at least the kernel's 1 ms minimum quota.
pub(super) fn quota_us(cpus: f64, period_us: u64) -> u64 {
    ((cpus * period_us as f64).round() as u64).max(1000)
}

/// Makes the needed controllers available to the children of `dir`.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = files::read("read subtree_control", &path)?;
    for c in V2_NEEDED {
        if !enabled.split_whitespace().any(|e| e == c) {
            // One controller per write, so an error names the one the kernel refused.
            files::write("enable controller", &path, &format!("+{c}"))?;
        }
    }
    Ok(())
}

impl super::Backend for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn dirs(&self, rel: &Path) -> Dirs {
        let d = self.root.join(rel);
        Dirs {
            cpu: d.clone(),
            cpuacct: d.clone(),
            memory: d.clone(),
            pids: d.clone(),
            freezer: d,
        }
    }

    fn prepare_parent(&self, parent: &Path) -> Result<(), CgroupError> {
        // Controllers must be enabled in every ancestor's subtree_control, top-down. The
        // ancestors below the root hold no processes (ours), which v2 requires for this.
        let mut dir = self.root.clone();
        for comp in parent.components() {
            enable_controllers(&dir)?;
            dir.push(comp);
            files::mkdir("create parent group", &dir)?;
        }
        enable_controllers(&dir)?;
        // cgroup.freeze exists in non-root groups since Linux 5.2.
        if !dir.join("cgroup.freeze").exists() {
            return Err(CgroupError::Unusable {
                reason: format!(
                    "{} has no cgroup.freeze: the kernel lacks the cgroup v2 freezer (Linux >= 5.2)",
                    dir.display()
                ),
            });
        }
        Ok(())
    }

    fn apply(&self, d: &Dirs, limits: &Limits) -> Result<(), CgroupError> {
        if limits.cpus > 0.0 {
            let value = format!("{} {PERIOD_US}", quota_us(limits.cpus, PERIOD_US));
            files::write("set cpu quota", &d.cpu.join("cpu.max"), &value)?;
        }
        if limits.memory_mb > 0 {
            let bytes = limits.memory_mb.saturating_mul(1024 * 1024).to_string();
            files::write("set memory limit", &d.memory.join("memory.max"), &bytes)?;
            // No swapping past the limit; the file is absent when swap accounting is off.
            let swap = d.memory.join("memory.swap.max");
            if swap.exists() {
                files::write("set swap limit", &swap, "0")?;
            }
        }
        if limits.pids_max > 0 {
            files::write(
                "set pids limit",
                &d.pids.join("pids.max"),
                &limits.pids_max.to_string(),
            )?;
        }
        Ok(())
    }

    fn request_freeze(&self, d: &Dirs, frozen: bool) -> Result<(), CgroupError> {
        let (step, value) = if frozen {
            ("freeze", "1")
        } else {
            ("thaw", "0")
        };
        files::write(step, &d.freezer.join("cgroup.freeze"), value)
    }

    fn freeze_state(&self, d: &Dirs) -> Result<Option<bool>, CgroupError> {
        let frozen = files::read_keyed(
            "read freezer state",
            &d.freezer.join("cgroup.events"),
            "frozen",
        )?;
        Ok(Some(frozen == 1))
    }

    fn cpu_usage_usec(&self, d: &Dirs) -> Result<u64, CgroupError> {
        files::read_keyed("read cpu usage", &d.cpu.join("cpu.stat"), "usage_usec")
    }

    fn memory_current(&self, d: &Dirs) -> Result<u64, CgroupError> {
        files::read_u64("read memory usage", &d.memory.join("memory.current"))
    }

    fn kill_native(&self, d: &Dirs) -> Result<bool, CgroupError> {
        // cgroup.kill exists since Linux 5.14; it also reaches tasks that are forking right now.
        let path = d.freezer.join("cgroup.kill");
        if !path.exists() {
            return Ok(false);
        }
        files::write("kill group", &path, "1")?;
        Ok(true)
    }
}
