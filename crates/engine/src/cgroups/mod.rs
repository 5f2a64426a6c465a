//! cgroup limits, accounting and the freezer, on cgroup v1 and v2 (picked by probing the host).
//!
//! [`Cgroups::detect`] reads `/proc/self/mountinfo`: a unified (v2) hierarchy that offers cpu,
//! memory and pids wins; otherwise the v1 hierarchies cpu, cpuacct (possibly co-mounted as
//! `cpu,cpuacct`), memory, pids and freezer are used; otherwise detection fails and says what is
//! missing. Hybrid hosts (v1 controllers + a v2 mount holding almost nothing) therefore use v1.
//!
//! Layout: v2 `<mount>/<parent>/<key>`; v1 `<controller mount>/<parent>/<key>` for each hierarchy.
//! The version-specific file names live in `v1.rs` / `v2.rs` behind one small trait; everything
//! else (create, pids, freeze wait, kill, destroy) is written once here.

mod files;
mod probe;
mod v1;
mod v2;
#[cfg(test)]
mod v2_live_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resource limits of one sandbox. Zero (or a non-positive `cpus`) means "no limit".
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPUs worth of time per period (0.5 = half a CPU); quota = cpus × 100 ms.
    pub cpus: f64,
    /// Memory limit in MiB; allocations past it OOM-kill inside the group, swap is not allowed.
    pub memory_mb: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: u64,
}

/// Which cgroup interface the host gives us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Separate per-controller hierarchies (legacy / hybrid hosts).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Failures, each naming the step and the cgroupfs path involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither v2 nor v1 offers cpu, memory, pids and a freezer.
    #[error("no usable cgroups on this host: {reason}")]
    Unusable {
        /// What was found and what is missing.
        reason: String,
    },
    /// A key or parent name that is not a single safe path component.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `create` found the group already there (recover it with `open` or remove it first).
    #[error("cgroup {path} already exists")]
    Exists {
        /// The existing directory.
        path: PathBuf,
    },
    /// Reading a control file or directory failed.
    #[error("{step}: cannot read {path}: {source}")]
    Read {
        /// What we were doing.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing a control file failed.
    #[error("{step}: cannot write {value:?} to {path}: {source}")]
    Write {
        /// What we were doing.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// What we wrote.
        value: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating a group directory failed.
    #[error("{step}: cannot create {path}: {source}")]
    Mkdir {
        /// What we were doing.
        step: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Removing a group directory failed.
    #[error("{step}: cannot remove {path}: {source}")]
    Rmdir {
        /// What we were doing.
        step: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A control file held something we could not parse.
    #[error("{step}: unexpected content in {path}: {content:?}")]
    Parse {
        /// What we were doing.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// Freezing, thawing or emptying a group did not finish in time.
    #[error("{step} of {path} did not finish within {waited:?}")]
    Timeout {
        /// What we were waiting for.
        step: &'static str,
        /// The group.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// Killing a group left processes behind.
    #[error("kill_all: {path} still holds {remaining} process(es) after {rounds} rounds")]
    NotEmpty {
        /// The group.
        path: PathBuf,
        /// How many processes are left.
        remaining: usize,
        /// How many freeze/kill/thaw rounds ran.
        rounds: u32,
    },
}

/// Directories of one group, one per controller role (all equal on v2; on v1 cpu and cpuacct
/// are equal when co-mounted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dirs {
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub memory: PathBuf,
    pub pids: PathBuf,
    pub freezer: PathBuf,
}

impl Dirs {
    /// Each distinct directory once, in a fixed order (freezer last so it is joined last).
    fn unique(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::with_capacity(5);
        for d in [
            &self.cpu,
            &self.cpuacct,
            &self.memory,
            &self.pids,
            &self.freezer,
        ] {
            if !out.contains(&d.as_path()) {
                out.push(d);
            }
        }
        out
    }
}

/// The version-specific part: file names and how limits, freezing and accounting are spelt.
trait Backend: fmt::Debug + Send + Sync {
    fn version(&self) -> CgroupVersion;
    /// Directories of the group at `rel` (relative to the hierarchy roots).
    fn dirs(&self, rel: &Path) -> Dirs;
    /// Creates the parent group(s) and makes the controllers available to their children.
    fn prepare_parent(&self, parent: &Path) -> Result<(), CgroupError>;
    fn apply(&self, dirs: &Dirs, limits: &Limits) -> Result<(), CgroupError>;
    /// Asks the kernel to freeze (true) or thaw (false); does not wait.
    fn request_freeze(&self, dirs: &Dirs, frozen: bool) -> Result<(), CgroupError>;
    /// `Some(true)` frozen, `Some(false)` thawed, `None` in between (v1 FREEZING).
    fn freeze_state(&self, dirs: &Dirs) -> Result<Option<bool>, CgroupError>;
    fn cpu_usage_usec(&self, dirs: &Dirs) -> Result<u64, CgroupError>;
    fn memory_current(&self, dirs: &Dirs) -> Result<u64, CgroupError>;
    /// Kills the whole group in one step if the kernel can (v2 `cgroup.kill`); false otherwise.
    fn kill_native(&self, dirs: &Dirs) -> Result<bool, CgroupError>;
}

/// How long freeze/thaw may take before we report a timeout.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Freeze → SIGKILL → thaw rounds before `kill_all` gives up.
const KILL_ROUNDS: u32 = 20;

/// The host's cgroup setup plus the parent group under which sandboxes live.
#[derive(Debug, Clone)]
pub struct Cgroups {
    backend: Arc<dyn Backend>,
    parent: PathBuf,
    reason: String,
}

impl Cgroups {
    /// Probes v2/v1, creates the parent group(s) (on v2 enabling cpu/memory/pids along the path).
    pub fn detect(parent: &str) -> Result<Cgroups, CgroupError> {
        let parent_rel = checked_parent(parent)?;
        let mountinfo = files::read("probe cgroup mounts", Path::new("/proc/self/mountinfo"))?;
        let mounts = probe::parse_mountinfo(&mountinfo);
        let found = probe::decide(&mounts, |root| {
            std::fs::read_to_string(root.join("cgroup.controllers")).ok()
        })
        .map_err(|reason| CgroupError::Unusable { reason })?;
        let (backend, reason): (Arc<dyn Backend>, String) = match found {
            probe::Found::V2 { root, reason } => (Arc::new(v2::V2::new(root)), reason),
            probe::Found::V1 { roots, reason } => (Arc::new(v1::V1::new(roots)), reason),
        };
        backend.prepare_parent(&parent_rel)?;
        tracing::info!(version = ?backend.version(), parent, %reason, "cgroups detected");
        Ok(Cgroups {
            backend,
            parent: parent_rel,
            reason,
        })
    }

    /// Which interface was picked.
    pub fn version(&self) -> CgroupVersion {
        self.backend.version()
    }

    /// Why that interface was picked (what the probe saw), for logs and `bhatti doctor`-style output.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Directories of the parent group (one per distinct hierarchy).
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        let d = self.backend.dirs(&self.parent);
        d.unique().into_iter().map(Path::to_path_buf).collect()
    }

    /// Creates the group of sandbox `key` with `limits`; fails if it already exists.
    pub fn create(&self, key: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        check_name(key)?;
        let cg = self.group(key);
        let mut made = Vec::new();
        for dir in cg.dirs.unique() {
            match files::mkdir("create group", dir) {
                Ok(true) => made.push(dir.to_path_buf()),
                Ok(false) => {
                    rollback(&made);
                    return Err(CgroupError::Exists {
                        path: dir.to_path_buf(),
                    });
                }
                Err(e) => {
                    rollback(&made);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.backend.apply(&cg.dirs, limits) {
            rollback(&made);
            return Err(e);
        }
        tracing::debug!(key, ?limits, "cgroup created");
        Ok(cg)
    }

    /// The existing group of `key` (any of its directories present), for recovery after a restart.
    pub fn open(&self, key: &str) -> Option<Cgroup> {
        check_name(key).ok()?;
        let cg = self.group(key);
        cg.dirs.unique().iter().any(|d| d.is_dir()).then_some(cg)
    }

    /// Keys of every sandbox group under the parent (in any hierarchy), for orphan cleanup.
    pub fn list(&self) -> Result<Vec<String>, CgroupError> {
        let mut keys = Vec::new();
        for dir in self.parent_dirs() {
            for sub in files::subdirs("list groups", &dir)? {
                if let Some(name) = sub.file_name().and_then(|n| n.to_str()) {
                    keys.push(name.to_string());
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Removes the (empty) parent group(s); fails with EBUSY while sandbox groups remain.
    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        for dir in self.parent_dirs() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::Rmdir {
                        step: "remove parent",
                        path: dir,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn group(&self, key: &str) -> Cgroup {
        Cgroup {
            backend: self.backend.clone(),
            key: key.to_string(),
            dirs: self.backend.dirs(&self.parent.join(key)),
        }
    }
}

/// Removes directories `create` made before it failed.
fn rollback(made: &[PathBuf]) {
    for dir in made {
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot roll back cgroup");
        }
    }
}

/// A parent may be nested (`a/b`); each component must be a safe name.
fn checked_parent(parent: &str) -> Result<PathBuf, CgroupError> {
    if parent.is_empty() {
        return Err(CgroupError::InvalidName {
            name: parent.to_string(),
            reason: "empty",
        });
    }
    parent.split('/').try_for_each(check_name)?;
    Ok(PathBuf::from(parent))
}

/// Keys become directory names: one component of letters, digits, `-`, `_`, `.`.
fn check_name(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if name == "." || name == ".." || name.starts_with("cgroup.") {
        return bad("reserved name");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// One sandbox's group (in every hierarchy it uses).
#[derive(Debug, Clone)]
pub struct Cgroup {
    backend: Arc<dyn Backend>,
    key: String,
    dirs: Dirs,
}

impl Cgroup {
    /// The sandbox key this group belongs to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every distinct directory of the group (v1: one per hierarchy; v2: one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs
            .unique()
            .into_iter()
            .map(Path::to_path_buf)
            .collect()
    }

    /// Moves process `pid` (and so its future children) into the group in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for path in self.procs_path_for_child() {
            files::write("add process", &path, &pid.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files; a launcher's child can join by writing "0" to each itself.
    pub fn procs_path_for_child(&self) -> Vec<PathBuf> {
        self.dirs
            .unique()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Freezes every process; returns once the kernel reports the group frozen (or times out,
    /// thawing again so the sandbox is not left half-frozen).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.backend.request_freeze(&self.dirs, true)?;
        if let Err(e) = self.wait_state(true, "freeze") {
            let _ = self.backend.request_freeze(&self.dirs, false);
            return Err(e);
        }
        Ok(())
    }

    /// Thaws the group and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.backend.request_freeze(&self.dirs, false)?;
        self.wait_state(false, "thaw")
    }

    /// Whether the group is completely frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(self.backend.freeze_state(&self.dirs)? == Some(true))
    }

    fn wait_state(&self, frozen: bool, step: &'static str) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut nap = Duration::from_micros(200);
        loop {
            if self.backend.freeze_state(&self.dirs)? == Some(frozen) {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    step,
                    path: self.dirs.freezer.clone(),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    /// CPU time used by the group (all processes, ever) in microseconds.
    pub fn cpu_usage_usec(&self) -> Result<u64, CgroupError> {
        self.backend.cpu_usage_usec(&self.dirs)
    }

    /// Memory charged to the group now, in bytes.
    pub fn memory_current(&self) -> Result<u64, CgroupError> {
        self.backend.memory_current(&self.dirs)
    }

    /// Host pids of every process in the group and its child groups (any hierarchy), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        for dir in self.dirs.unique() {
            files::procs_recursive(dir, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// SIGKILLs every process: v2 `cgroup.kill` when present, otherwise rounds of freeze (so
    /// nothing can fork in between) → SIGKILL each pid → thaw, until the group is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        if self.backend.kill_native(&self.dirs)? && self.wait_empty(FREEZE_TIMEOUT)? {
            return Ok(());
        }
        let freezer_exists = self.dirs.freezer.is_dir();
        for round in 0..KILL_ROUNDS {
            if self.pids()?.is_empty() {
                return Ok(());
            }
            // A failed freeze (e.g. a task stuck in D state) still lets SIGKILL through.
            let frozen = freezer_exists && self.freeze().is_ok();
            for pid in self.pids()? {
                // SAFETY: kill(2) has no memory effects; a pid that has already gone is ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if frozen {
                // Frozen tasks only die once thawed.
                if let Err(e) = self.thaw() {
                    tracing::warn!(key = %self.key, error = %e, "thaw after kill");
                }
            }
            if self.wait_empty(Duration::from_millis(50 * u64::from(round + 1)))? {
                return Ok(());
            }
        }
        Err(CgroupError::NotEmpty {
            path: self.dirs.freezer.clone(),
            remaining: self.pids()?.len(),
            rounds: KILL_ROUNDS,
        })
    }

    fn wait_empty(&self, limit: Duration) -> Result<bool, CgroupError> {
        let start = Instant::now();
        loop {
            if self.pids()?.is_empty() {
                return Ok(true);
            }
            if start.elapsed() > limit {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills everything and removes every directory of the group; idempotent.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let killed = self.kill_all();
        for dir in self.dirs.unique() {
            files::remove_tree("destroy group", dir)?;
        }
        killed
    }
}
