//! cgroup limits, freezer, kill and cleanup on the real host (v1 here, v2 on most hosts).
//! Needs root; each test uses its own parent group and removes it even when it fails.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bhatti_engine::cgroups::{Cgroup, CgroupVersion, Cgroups, Limits};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A parent group unique to one test; Drop destroys every group under it and the parent.
struct TestParent {
    cgroups: Cgroups,
}

impl TestParent {
    fn new(tag: &str) -> Option<TestParent> {
        if !is_root() {
            eprintln!("skipping: cgroup tests need root");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let parent = format!("bhatti-test-{tag}-{}-{nanos}", std::process::id());
        let cgroups = Cgroups::detect(&parent).expect("detect cgroups");
        Some(TestParent { cgroups })
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        for key in self.cgroups.list().unwrap_or_default() {
            if let Some(cg) = self.cgroups.open(&key) {
                if let Err(e) = cg.destroy() {
                    eprintln!("cleanup: destroy {key}: {e}");
                }
            }
        }
        if let Err(e) = self.cgroups.remove_parent() {
            eprintln!("cleanup: remove parent: {e}");
        }
    }
}

/// Spawns `cmd` with the child joining `cg` (writing "0" to each cgroup.procs) before exec,
/// as the launcher does, so not one instruction of the program runs outside the group.
fn spawn_in(cg: &Cgroup, cmd: &mut Command) -> Child {
    let paths: Vec<CString> = cg
        .procs_path_for_child()
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()).unwrap())
        .collect();
    // SAFETY: the closure only calls open/write/close (async-signal-safe) on prepared strings.
    unsafe {
        cmd.pre_exec(move || {
            for p in &paths {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn in cgroup")
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

/// The file `name` in whichever of the group's directories has it.
fn control_file(cg: &Cgroup, name: &str) -> PathBuf {
    cg.dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {name} in {:?}", cg.dirs()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn no_limits() -> Limits {
    Limits {
        cpus: 0.0,
        memory_mb: 0,
        pids_max: 0,
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn detect_picks_the_hosts_version_with_a_reason() {
    let Some(t) = TestParent::new("detect") else {
        return;
    };
    let v2_usable = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .map(|c| {
            ["cpu", "memory", "pids"]
                .iter()
                .all(|n| c.split_whitespace().any(|x| x == *n))
        })
        .unwrap_or(false);
    let expected = if v2_usable {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    };
    eprintln!("picked {:?}: {}", t.cgroups.version(), t.cgroups.reason());
    assert_eq!(t.cgroups.version(), expected, "{}", t.cgroups.reason());
    if expected == CgroupVersion::V1 {
        assert!(
            t.cgroups.reason().contains("using cgroup v1"),
            "{}",
            t.cgroups.reason()
        );
    }
    for d in t.cgroups.parent_dirs() {
        assert!(d.is_dir(), "{} missing", d.display());
    }
}

#[test]
fn create_then_destroy_leaves_no_directory() {
    let Some(t) = TestParent::new("lifecycle") else {
        return;
    };
    let limits = Limits {
        cpus: 1.0,
        memory_mb: 128,
        pids_max: 64,
    };
    let cg = t.cgroups.create("sb1", &limits).unwrap();
    let dirs = cg.dirs();
    assert!(!dirs.is_empty());
    assert!(dirs.iter().all(|d| d.is_dir()));
    assert!(
        t.cgroups.create("sb1", &limits).is_err(),
        "second create must fail"
    );
    assert!(t.cgroups.create("../evil", &limits).is_err());
    assert!(t.cgroups.create("a/b", &limits).is_err());

    let mut child = spawn_in(&cg, Command::new("sleep").arg("30"));
    assert_eq!(cg.pids().unwrap(), vec![child.id() as i32]);
    cg.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    cg.destroy().expect("destroy is idempotent");
    assert!(t.cgroups.open("sb1").is_none());
}

#[test]
fn limits_are_written_as_expected() {
    let Some(t) = TestParent::new("files") else {
        return;
    };
    let cg = t
        .cgroups
        .create(
            "q",
            &Limits {
                cpus: 1.5,
                memory_mb: 64,
                pids_max: 20,
            },
        )
        .unwrap();
    let mib64 = (64u64 * 1024 * 1024).to_string();
    match t.cgroups.version() {
        CgroupVersion::V1 => {
            assert_eq!(read(&control_file(&cg, "cpu.cfs_quota_us")), "150000");
            assert_eq!(read(&control_file(&cg, "cpu.cfs_period_us")), "100000");
            assert_eq!(read(&control_file(&cg, "memory.limit_in_bytes")), mib64);
            let memsw = cg
                .dirs()
                .into_iter()
                .map(|d| d.join("memory.memsw.limit_in_bytes"));
            for p in memsw.filter(|p| p.exists()) {
                assert_eq!(read(&p), mib64);
            }
        }
        CgroupVersion::V2 => {
            assert_eq!(read(&control_file(&cg, "cpu.max")), "150000 100000");
            assert_eq!(read(&control_file(&cg, "memory.max")), mib64);
            let swap = cg.dirs()[0].join("memory.swap.max");
            if swap.exists() {
                assert_eq!(read(&swap), "0");
            }
        }
    }
    assert_eq!(read(&control_file(&cg, "pids.max")), "20");
}

#[test]
fn memory_limit_oom_kills_only_the_allocator() {
    let Some(t) = TestParent::new("oom") else {
        return;
    };
    let cg = t
        .cgroups
        .create(
            "mem",
            &Limits {
                cpus: 0.0,
                memory_mb: 64,
                pids_max: 0,
            },
        )
        .unwrap();
    let mut sibling = spawn_in(&cg, Command::new("sleep").arg("30"));
    let mut hog = spawn_in(
        &cg,
        Command::new("python3")
            .arg("-c")
            .arg("b = b'x' * (200 * 1024 * 1024); print(len(b))")
            .stdout(Stdio::null()),
    );
    let status = hog.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "allocator: {status:?}"
    );
    assert!(
        sibling.try_wait().unwrap().is_none(),
        "sibling must survive"
    );
    assert!(cg.pids().unwrap().contains(&(sibling.id() as i32)));
    assert!(cg.memory_current().unwrap() < 64 * 1024 * 1024);
    cg.destroy().unwrap();
    assert_eq!(sibling.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn pids_limit_stops_a_fork_loop_without_touching_the_host() {
    let Some(t) = TestParent::new("pids") else {
        return;
    };
    let cg = t
        .cgroups
        .create(
            "forks",
            &Limits {
                cpus: 0.0,
                memory_mb: 0,
                pids_max: 20,
            },
        )
        .unwrap();
    let mut child = spawn_in(
        &cg,
        sh("for i in $(seq 50); do sleep 30 & done; echo looped >&2; sleep 30")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    // Sample while the loop runs: the group never exceeds the limit but does reach it.
    let mut most = 0;
    wait_until(Duration::from_secs(3), || {
        most = most.max(cg.pids().unwrap().len());
        false
    });
    assert!(
        (15..=20).contains(&most),
        "at most {most} processes (limit 20)"
    );
    // The kernel counts refused forks in pids.events (v1 and v2).
    let events = read(&control_file(&cg, "pids.events"));
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "pids.events: {events}");
    // The host can still fork.
    assert!(Command::new("true").status().unwrap().success());
    cg.kill_all().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(err.to_lowercase().contains("fork"), "stderr: {err}");
}

#[test]
fn freeze_stops_cpu_use_and_thaw_resumes_it() {
    let Some(t) = TestParent::new("freeze") else {
        return;
    };
    let cg = t.cgroups.create("spin", &no_limits()).unwrap();
    let mut child = spawn_in(&cg, &mut sh("while :; do :; done"));
    // Waits rather than fixed sleeps: on a loaded CI machine the loop may get little CPU.
    assert!(
        wait_until(Duration::from_secs(5), || cg.cpu_usage_usec().unwrap()
            > 20_000),
        "busy loop uses CPU"
    );

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let before = cg.cpu_usage_usec().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = cg.cpu_usage_usec().unwrap();
    assert_eq!(after, before, "a frozen group must not use CPU");
    assert!(child.try_wait().unwrap().is_none());

    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || cg.cpu_usage_usec().unwrap()
            > after + 20_000),
        "thawed loop runs again"
    );

    // Destroying a frozen group works too.
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn kill_all_empties_a_fork_happy_tree() {
    let Some(t) = TestParent::new("kill") else {
        return;
    };
    let cg = t
        .cgroups
        .create(
            "tree",
            &Limits {
                cpus: 0.0,
                memory_mb: 0,
                pids_max: 300,
            },
        )
        .unwrap();
    let mut child = spawn_in(
        &cg,
        sh("while :; do (sleep 100 &); sh -c 'sleep 100 & sleep 100' & sleep 0.005; done")
            .stderr(Stdio::null()),
    );
    assert!(wait_until(Duration::from_secs(5), || cg
        .pids()
        .unwrap()
        .len()
        > 20));
    cg.kill_all().unwrap();
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    cg.destroy().unwrap();
}

#[test]
fn list_finds_groups_left_by_a_crashed_instance() {
    let Some(t) = TestParent::new("orphans") else {
        return;
    };
    let parent_dirs = t.cgroups.parent_dirs();
    let mut orphan_proc;
    {
        // "Previous daemon": creates groups, starts a process, then vanishes without cleanup.
        let old = t.cgroups.clone();
        let a = old.create("sb-a", &no_limits()).unwrap();
        old.create("sb-b", &no_limits()).unwrap();
        orphan_proc = spawn_in(&a, Command::new("sleep").arg("30"));
    }
    let parent = parent_dirs[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let fresh = Cgroups::detect(&parent).unwrap();
    assert_eq!(
        fresh.list().unwrap(),
        vec!["sb-a".to_string(), "sb-b".to_string()]
    );
    assert!(fresh.open("sb-c").is_none());
    let a = fresh.open("sb-a").unwrap();
    assert_eq!(a.pids().unwrap(), vec![orphan_proc.id() as i32]);
    for key in fresh.list().unwrap() {
        fresh.open(&key).unwrap().destroy().unwrap();
    }
    assert!(fresh.list().unwrap().is_empty());
    assert_eq!(orphan_proc.wait().unwrap().signal(), Some(libc::SIGKILL));
}
