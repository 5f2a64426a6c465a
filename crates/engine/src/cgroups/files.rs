//! Reading and writing cgroupfs files, with the failing path and step in every error.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Reads a whole control file.
pub(super) fn read(step: &'static str, path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        step,
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to a control file in one `write(2)` (cgroupfs parses each write on its own).
pub(super) fn write(step: &'static str, path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        step,
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    // No O_CREAT/O_TRUNC: a missing control file means the controller is missing, not a file to make.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// Reads a file holding one unsigned number.
pub(super) fn read_u64(step: &'static str, path: &Path) -> Result<u64, CgroupError> {
    let text = read(step, path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        step,
        path: path.to_path_buf(),
        content: text.clone(),
    })
}

/// Reads `key value` from a flat keyed file such as `cpu.stat` or `cgroup.events`.
pub(super) fn read_keyed(step: &'static str, path: &Path, key: &str) -> Result<u64, CgroupError> {
    let text = read(step, path)?;
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| CgroupError::Parse {
            step,
            path: path.to_path_buf(),
            content: text.clone(),
        })
}

/// Creates one directory; `Ok(false)` when it already existed.
pub(super) fn mkdir(step: &'static str, path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Mkdir {
            step,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Sub-directories (child cgroups) of `dir`; none when `dir` does not exist.
pub(super) fn subdirs(step: &'static str, dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                step,
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// How long `rmdir` keeps retrying EBUSY: exiting tasks leave a group a moment after SIGKILL.
const RMDIR_RETRY: Duration = Duration::from_secs(3);

/// Removes a cgroup directory and every child group below it (depth first). Missing is fine.
pub(super) fn remove_tree(step: &'static str, dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(step, dir)? {
        remove_tree(step, &child)?;
    }
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_RETRY => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    step,
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Pids listed in `cgroup.procs` of `dir` and every child group; none when `dir` is gone.
pub(super) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                step: "list processes",
                path,
                source,
            })
        }
    }
    for child in subdirs("list processes", dir)? {
        procs_recursive(&child, out)?;
    }
    Ok(())
}
