//! cgroup v1: one hierarchy per controller (cpu and cpuacct possibly co-mounted).

use std::path::{Path, PathBuf};

use super::{files, CgroupError, CgroupVersion, Dirs, Limits};

/// CFS period; the quota is cpus × this.
const PERIOD_US: u64 = 100_000;

/// Mount points of the cpu, cpuacct, memory, pids and freezer hierarchies.
#[derive(Debug)]
pub(super) struct V1 {
    roots: [PathBuf; 5],
}

impl V1 {
    pub(super) fn new(roots: [PathBuf; 5]) -> Self {
        V1 { roots }
    }
}

impl super::Backend for V1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn dirs(&self, rel: &Path) -> Dirs {
        let [cpu, cpuacct, memory, pids, freezer] = &self.roots;
        Dirs {
            cpu: cpu.join(rel),
            cpuacct: cpuacct.join(rel),
            memory: memory.join(rel),
            pids: pids.join(rel),
            freezer: freezer.join(rel),
        }
    }

    fn prepare_parent(&self, parent: &Path) -> Result<(), CgroupError> {
        for root in self.dirs(Path::new("")).unique() {
            let mut dir = root.to_path_buf();
            for comp in parent.components() {
                dir.push(comp);
                files::mkdir("create parent group", &dir)?;
            }
        }
        Ok(())
    }

    fn apply(&self, d: &Dirs, limits: &Limits) -> Result<(), CgroupError> {
        if limits.cpus > 0.0 {
            files::write(
                "set cpu period",
                &d.cpu.join("cpu.cfs_period_us"),
                &PERIOD_US.to_string(),
            )?;
            files::write(
                "set cpu quota",
                &d.cpu.join("cpu.cfs_quota_us"),
                &super::v2::quota_us(limits.cpus, PERIOD_US).to_string(),
            )?;
        }
        if limits.memory_mb > 0 {
            let bytes = limits.memory_mb.saturating_mul(1024 * 1024).to_string();
            // memory first: memsw must never be set below it.
            files::write(
                "set memory limit",
                &d.memory.join("memory.limit_in_bytes"),
                &bytes,
            )?;
            // memory+swap = memory forbids swap; absent when the kernel has swap accounting off.
            let memsw = d.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                files::write("set memory+swap limit", &memsw, &bytes)?;
            } else {
                tracing::debug!("no memory.memsw: the memory limit does not cover swap");
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
            ("freeze", "FROZEN")
        } else {
            ("thaw", "THAWED")
        };
        files::write(step, &d.freezer.join("freezer.state"), value)
    }

    fn freeze_state(&self, d: &Dirs) -> Result<Option<bool>, CgroupError> {
        let path = d.freezer.join("freezer.state");
        let state = files::read("read freezer state", &path)?;
        match state.trim() {
            "FROZEN" => Ok(Some(true)),
            "THAWED" => Ok(Some(false)),
            "FREEZING" => Ok(None),
            _ => Err(CgroupError::Parse {
                step: "read freezer state",
                path,
                content: state,
            }),
        }
    }

    fn cpu_usage_usec(&self, d: &Dirs) -> Result<u64, CgroupError> {
        Ok(files::read_u64("read cpu usage", &d.cpuacct.join("cpuacct.usage"))? / 1000)
    }

    fn memory_current(&self, d: &Dirs) -> Result<u64, CgroupError> {
        files::read_u64("read memory usage", &d.memory.join("memory.usage_in_bytes"))
    }

    fn kill_native(&self, _d: &Dirs) -> Result<bool, CgroupError> {
        Ok(false)
    }
}
