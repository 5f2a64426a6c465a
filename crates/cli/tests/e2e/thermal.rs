//! Thermal states, stop/start and daemon restart/shutdown through the real stack, with short
//! thermal timings from the config.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::require_e2e;

const FAST: &str = "shutdown_grace_secs: 5\nthermal:\n  tick_ms: 200\n  warm_after_ms: 1500\n  cold_after_ms: 500\n";

fn create(d: &Daemon, name: &str, extra: &[&str]) {
    let mut args = vec![
        "create", "--name", name, "--image", "tiny", "--memory", "256",
    ];
    args.extend_from_slice(extra);
    d.ok(&args);
}

fn sandbox(d: &Daemon, name: &str) -> serde_json::Value {
    d.list()
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sandbox {name}"))
}

fn wait_thermal(d: &Daemon, name: &str, want: &str, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if sandbox(d, name)["thermal"] == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The sandbox's cgroup directory for a controller (v1), or the unified one (v2).
fn cg_dir(d: &Daemon, engine_id: &str, controller: &str) -> Option<PathBuf> {
    [
        format!(
            "/sys/fs/cgroup/{controller}/{}/{engine_id}",
            d.cgroup_parent
        ),
        format!("/sys/fs/cgroup/{}/{engine_id}", d.cgroup_parent),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_dir())
}

/// Whether the kernel reports the sandbox's cgroup frozen (v1 freezer.state, v2 cgroup.events).
fn frozen(d: &Daemon, engine_id: &str) -> bool {
    let dir = cg_dir(d, engine_id, "freezer").expect("freezer cgroup");
    if let Ok(s) = std::fs::read_to_string(dir.join("freezer.state")) {
        return s.trim() == "FROZEN";
    }
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "frozen 1"))
        .unwrap_or(false)
}

/// CPU time used by the sandbox so far (ns or µs; only compared with itself).
fn cpu_usage(d: &Daemon, engine_id: &str) -> u64 {
    for c in ["cpuacct", "cpu,cpuacct", "cpu"] {
        if let Some(dir) = cg_dir(d, engine_id, c) {
            if let Ok(s) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
                return s.trim().parse().unwrap();
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("cpu.stat")) {
                if let Some(l) = s.lines().find(|l| l.starts_with("usage_usec")) {
                    return l.split_whitespace().nth(1).unwrap().parse().unwrap();
                }
            }
        }
    }
    panic!("no cpu accounting for {engine_id}");
}

/// Every process of the sandbox (from its cgroup) and their /proc state letters.
fn proc_states(d: &Daemon, engine_id: &str) -> Vec<String> {
    let dir = cg_dir(d, engine_id, "freezer").expect("cgroup");
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn idle_sandbox_goes_warm_frozen_and_exec_wakes_it() {
    require_e2e!();
    let d = Daemon::start_with(FAST);
    create(&d, "idle", &[]);
    let eid = sandbox(&d, "idle")["id"].as_str().unwrap().to_string();
    assert!(
        wait_thermal(&d, "idle", "warm", Duration::from_secs(20)),
        "never went warm: {}",
        sandbox(&d, "idle")
    );
    assert!(
        frozen(&d, &eid),
        "thermal says warm but the cgroup is not frozen"
    );
    assert!(!proc_states(&d, &eid).is_empty());
    // No CPU used while warm.
    let c0 = cpu_usage(&d, &eid);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(cpu_usage(&d, &eid), c0, "a warm sandbox used CPU");
    // Stays warm past the cold period (the namespace engine cannot snapshot), and says why.
    let s: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "idle", "--json"])).unwrap();
    assert_eq!(s["thermal"], "warm");
    let reason = s["engine_meta"]["thermal_reason"].as_str().unwrap_or("");
    assert!(reason.contains("cannot snapshot memory"), "{s}");
    // Inspect is a metadata read: it does not wake.
    assert!(frozen(&d, &eid));

    let t0 = Instant::now();
    let out = d.ok(&["exec", "idle", "--", "echo", "awake"]);
    assert_eq!(out.trim(), "awake");
    eprintln!(
        "exec on a warm sandbox (CLI round trip incl. wake): {:?}",
        t0.elapsed()
    );
    assert!(!frozen(&d, &eid));
    assert_eq!(sandbox(&d, "idle")["thermal"], "hot");

    // Each transition is in the event log, readable DB-direct.
    let data = d.data_dir().to_string_lossy().into_owned();
    let mut evs = String::new();
    for _ in 0..50 {
        evs = d.ok(&["admin", "events", "--type", "thermal", "--data-dir", &data]);
        if evs.contains("thermal.wake") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(evs.starts_with("TS"), "{evs}");
    assert!(
        evs.contains("thermal.pause") && evs.contains("thermal.wake"),
        "{evs}"
    );
    assert!(!evs.contains("sandbox.created"), "{evs}");
    let n = d.ok(&[
        "admin",
        "events",
        "--sandbox",
        "idle",
        "--since",
        "1h",
        "--count",
        "--data-dir",
        &data,
    ]);
    assert!(n.trim().parse::<u32>().unwrap() >= 3, "{n}");
    let status = d.ok(&["admin", "status", "--data-dir", &data]);
    assert!(
        status.contains("Sandboxes  1 total (1 hot, 0 warm, 0 cold)"),
        "{status}"
    );
    assert!(status.contains("daemon.started"), "{status}");
    d.ok(&["destroy", "idle", "-y"]);
}

#[test]
fn busy_background_job_keeps_it_hot() {
    require_e2e!();
    let d = Daemon::start_with(FAST);
    create(&d, "busy", &[]);
    let eid = sandbox(&d, "busy")["id"].as_str().unwrap().to_string();
    d.ok(&[
        "exec",
        "busy",
        "--",
        "sh",
        "-c",
        "while :; do :; done >/dev/null 2>&1 </dev/null &",
    ]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(sandbox(&d, "busy")["thermal"], "hot");
    assert!(!frozen(&d, &eid));
    d.ok(&["destroy", "busy", "-y"]);
}

#[test]
fn stop_start_keeps_files() {
    require_e2e!();
    let d = Daemon::start_with(FAST);
    create(&d, "ss", &[]);
    d.ok(&[
        "exec",
        "ss",
        "--",
        "sh",
        "-c",
        "echo kept > /workspace/f.txt",
    ]);
    let out = d.ok(&["stop", "ss"]);
    assert_eq!(out.trim(), "sandbox/ss stopped");
    assert_eq!(sandbox(&d, "ss")["status"], "stopped");
    let (code, _, err) = d.cli(&["exec", "ss", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("is stopped (bhatti start ss)"), "{err}");
    let out = d.ok(&["start", "ss"]);
    assert_eq!(out.trim(), "sandbox/ss started");
    assert_eq!(sandbox(&d, "ss")["status"], "running");
    let out = d.ok(&["exec", "ss", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "kept");
    d.ok(&["destroy", "ss", "-y"]);
}

#[test]
fn sigkill_with_hot_warm_and_stopped_sandboxes_then_restart() {
    require_e2e!();
    let mut d = Daemon::start_with(FAST);
    create(&d, "hot", &["--keep-hot"]);
    create(&d, "warm", &[]);
    create(&d, "stopped", &[]);
    for n in ["hot", "warm", "stopped"] {
        d.ok(&[
            "exec",
            n,
            "--",
            "sh",
            "-c",
            &format!("echo {n} > /workspace/f.txt"),
        ]);
    }
    d.ok(&["stop", "stopped"]);
    assert!(wait_thermal(&d, "warm", "warm", Duration::from_secs(20)));
    assert_eq!(sandbox(&d, "hot")["thermal"], "hot");
    let warm_eid = sandbox(&d, "warm")["id"].as_str().unwrap().to_string();
    assert!(frozen(&d, &warm_eid));

    d.kill9();
    d.spawn_daemon();
    // The warm one was re-adopted frozen and is seen as warm.
    assert!(wait_thermal(&d, "warm", "warm", Duration::from_secs(5)));
    assert!(frozen(&d, &warm_eid));
    for n in ["hot", "warm"] {
        let out = d.ok(&["exec", n, "--", "cat", "/workspace/f.txt"]);
        assert_eq!(out.trim(), n);
    }
    // The stopped one stayed stopped, with its files.
    assert_eq!(sandbox(&d, "stopped")["status"], "stopped");
    d.ok(&["start", "stopped"]);
    let out = d.ok(&["exec", "stopped", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "stopped");
    for n in ["hot", "warm", "stopped"] {
        d.ok(&["destroy", n, "-y"]);
    }
}

#[test]
fn sigterm_shutdown_is_bounded_and_leaves_sandboxes_running() {
    require_e2e!();
    let mut d = Daemon::start_with(FAST);
    create(&d, "stay", &[]);
    d.ok(&[
        "exec",
        "stay",
        "--",
        "sh",
        "-c",
        "echo up > /workspace/f.txt",
    ]);
    let cgroups = d.cgroups();
    let took = d
        .sigterm(Duration::from_secs(10))
        .expect("daemon did not exit within 10 s of SIGTERM");
    eprintln!("SIGTERM shutdown took {took:?}");
    assert!(d.log().contains("stopped") || took < Duration::from_secs(10));
    // The sandbox still runs: its cgroup is there, and the next daemon adopts it.
    assert_eq!(d.cgroups(), cgroups);
    d.spawn_daemon();
    let out = d.ok(&["exec", "stay", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "up");
    d.ok(&["destroy", "stay", "-y"]);
}
