//! Finding the cgroup hierarchies from `/proc/self/mountinfo` and deciding between v1 and v2.

use std::path::{Path, PathBuf};

/// Controllers a sandbox needs (v2 names; the v1 freezer is a controller, v2's is built in).
pub(super) const V2_NEEDED: [&str; 3] = ["cpu", "memory", "pids"];
/// v1 hierarchies a sandbox needs.
pub(super) const V1_NEEDED: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "freezer"];

/// One line of mountinfo, reduced to what the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// Super options; for v1 these name the controllers of the hierarchy.
    pub super_opts: Vec<String>,
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// A unified hierarchy with cpu, memory and pids, mounted at the path.
    V2 { root: PathBuf, reason: String },
    /// v1 hierarchies: mount points of cpu, cpuacct, memory, pids, freezer (in [`V1_NEEDED`] order).
    V1 { roots: [PathBuf; 5], reason: String },
}

/// Parses mountinfo text, keeping cgroup and cgroup2 mounts.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // "id parent maj:min root mount_point opts [optional...] - fstype source super_opts"
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let super_opts = r
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            (fstype == "cgroup" || fstype == "cgroup2").then(|| Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype,
                super_opts,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                out.push(
                    o.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Picks v2 when a unified hierarchy offers cpu+memory+pids, else v1 when every needed v1
/// controller is mounted; otherwise explains what is missing. `controllers_of` reads a v2
/// mount's `cgroup.controllers`.
pub(super) fn decide(
    mounts: &[Mount],
    controllers_of: impl Fn(&Path) -> Option<String>,
) -> Result<Found, String> {
    let mut v2_notes = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let have = controllers_of(&m.mount_point).unwrap_or_default();
        let have: Vec<&str> = have.split_whitespace().collect();
        let missing: Vec<&str> = V2_NEEDED
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        if missing.is_empty() {
            return Ok(Found::V2 {
                root: m.mount_point.clone(),
                reason: format!(
                    "cgroup v2 at {} offers {}",
                    m.mount_point.display(),
                    have.join(" ")
                ),
            });
        }
        v2_notes.push(format!(
            "cgroup v2 at {} offers [{}] (lacks {})",
            m.mount_point.display(),
            have.join(" "),
            missing.join(", ")
        ));
    }
    if v2_notes.is_empty() {
        v2_notes.push("no cgroup v2 mount".to_string());
    }

    let v1_root = |ctrl: &str| {
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == ctrl))
            .map(|m| m.mount_point.clone())
    };
    let found: Vec<(&str, Option<PathBuf>)> = V1_NEEDED.iter().map(|c| (*c, v1_root(c))).collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(c, _)| *c)
        .collect();
    if missing.is_empty() {
        let roots: Vec<PathBuf> = found.iter().filter_map(|(_, p)| p.clone()).collect();
        let listing: Vec<String> = found
            .iter()
            .filter_map(|(c, p)| p.as_ref().map(|p| format!("{c} at {}", p.display())))
            .collect();
        let roots: [PathBuf; 5] = roots
            .try_into()
            .map_err(|_| "internal: v1 controller count".to_string())?;
        return Ok(Found::V1 {
            roots,
            reason: format!(
                "{}; using cgroup v1 hierarchies: {}",
                v2_notes.join("; "),
                listing.join(", ")
            ),
        });
    }
    Err(format!(
        "{}; cgroup v1 lacks {} (the namespace engine needs cpu, memory, pids and a freezer)",
        v2_notes.join("; "),
        missing.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
    const PURE_V2: &str =
        "29 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn hybrid_with_comounted_cpu_picks_v1() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 6);
        let found = decide(&mounts, |_| Some("hugetlb\n".into())).unwrap();
        match found {
            Found::V1 { roots, reason } => {
                assert_eq!(roots[0], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
                assert_eq!(roots[0], roots[1]);
                assert_eq!(roots[4], PathBuf::from("/sys/fs/cgroup/freezer"));
                assert!(reason.contains("lacks cpu, memory, pids"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pure_v2_picks_v2() {
        let mounts = parse_mountinfo(PURE_V2);
        let found = decide(&mounts, |_| {
            Some("cpuset cpu io memory hugetlb pids rdma\n".into())
        });
        assert!(
            matches!(found, Ok(Found::V2 { ref root, .. }) if root == Path::new("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn neither_explains_what_is_missing() {
        let mounts = parse_mountinfo(PURE_V2);
        let err = decide(&mounts, |_| Some("cpu io\n".into())).unwrap_err();
        assert!(err.contains("lacks memory, pids"), "{err}");
        assert!(
            err.contains("cgroup v1 lacks cpu, cpuacct, memory, pids, freezer"),
            "{err}"
        );
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
    }
}
