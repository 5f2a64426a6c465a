//! Thermal states, stop/start and daemon restart/shutdown through the real stack, with short
//! thermal timings from the config. The suites that apply to gvisor run on both engines
//! (`gvisor_*` variants): warm there is `runsc pause` instead of the cgroup freezer; the cold
//! path (checkpoint/restore) is covered by gvisor.rs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::gvisor::{Eng, Env};
use crate::harness::Daemon;
use crate::require_e2e;

const FAST: &str = "shutdown_grace_secs: 5\nthermal:\n  tick_ms: 200\n  warm_after_ms: 1500\n  cold_after_ms: 500\n";

/// The busy threshold for gvisor sandboxes as the cgroup's raw CPU use shows it, in percent
/// of one CPU: the thermal manager's default 1 % on top of the engine's idle allowance (5 %,
/// `IDLE_ALLOWANCE` in the gvisor engine: an idle sentry keeps using a little CPU, measured
/// here 0.2–1 %). A busy loop in the sandbox uses a whole CPU (measured 65–100 %, the low end
/// on a loaded host); `gvisor_busy_background_job_keeps_it_hot` checks both sides.
const GVISOR_BUSY_CPU_PERCENT: f64 = 6.0;

/// Thermal settings per engine. gvisor: the default busy threshold (idle gvisor sandboxes cool
/// with it), and a cold period far beyond these tests (they are about warm; gvisor.rs covers
/// cold).
fn fast(eng: Eng) -> String {
    match eng {
        Eng::Namespace => FAST.to_string(),
        Eng::Gvisor => "shutdown_grace_secs: 5\nthermal:\n  tick_ms: 200\n  warm_after_ms: 1500\n  cold_after_ms: 3600000\n  wake_timeout_ms: 20000\n".to_string(),
    }
}

/// CPU use, in percent of one CPU, at or above which the engine's sandboxes count as busy.
fn busy_cpu_percent(eng: Eng) -> f64 {
    match eng {
        // The thermal manager's default.
        Eng::Namespace => 1.0,
        Eng::Gvisor => GVISOR_BUSY_CPU_PERCENT,
    }
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
fn cg_dir(env: &Env, engine_id: &str, controller: &str) -> Option<PathBuf> {
    let parent = env.cgroup_parent();
    [
        format!("/sys/fs/cgroup/{controller}/{parent}/{engine_id}"),
        format!("/sys/fs/cgroup/{parent}/{engine_id}"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_dir())
}

/// Whether the sandbox is frozen: namespace, the kernel reports its cgroup frozen (v1
/// freezer.state, v2 cgroup.events); gvisor, runsc reports it paused (`runsc pause` stops the
/// sandbox's tasks inside the sentry; the cgroup freezer is not used).
fn frozen(env: &Env, engine_id: &str) -> bool {
    if env.eng() == Eng::Gvisor {
        return env.runsc_status(engine_id).as_deref() == Some("paused");
    }
    let dir = cg_dir(env, engine_id, "freezer").expect("freezer cgroup");
    if let Ok(s) = std::fs::read_to_string(dir.join("freezer.state")) {
        return s.trim() == "FROZEN";
    }
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "frozen 1"))
        .unwrap_or(false)
}

/// CPU time used by the sandbox so far (ns or µs; only compared with itself).
fn cpu_usage(env: &Env, engine_id: &str) -> u64 {
    cpu_usage_unit(env, engine_id).0
}

/// CPU time used by the sandbox so far, and nanoseconds per unit of it (v1 cpuacct.usage
/// counts ns, v2 cpu.stat µs).
fn cpu_usage_unit(env: &Env, engine_id: &str) -> (u64, u64) {
    for c in ["cpuacct", "cpu,cpuacct", "cpu"] {
        if let Some(dir) = cg_dir(env, engine_id, c) {
            if let Ok(s) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
                return (s.trim().parse().unwrap(), 1);
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("cpu.stat")) {
                if let Some(l) = s.lines().find(|l| l.starts_with("usage_usec")) {
                    return (l.split_whitespace().nth(1).unwrap().parse().unwrap(), 1000);
                }
            }
        }
    }
    panic!("no cpu accounting for {engine_id}");
}

/// The sandbox's CPU use over `over`, in percent of one CPU.
fn cpu_percent(env: &Env, engine_id: &str, over: Duration) -> f64 {
    let ((c0, unit), t0) = (cpu_usage_unit(env, engine_id), Instant::now());
    std::thread::sleep(over);
    let used_ns = (cpu_usage(env, engine_id) - c0) * unit;
    used_ns as f64 * 100.0 / t0.elapsed().as_nanos() as f64
}

/// Every process of the sandbox (from its cgroup) and their /proc state letters.
fn proc_states(env: &Env, engine_id: &str) -> Vec<String> {
    let dir = cg_dir(env, engine_id, "freezer").expect("cgroup");
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
    idle_suite(Eng::Namespace);
}

#[test]
fn gvisor_idle_sandbox_goes_warm_frozen_and_exec_wakes_it() {
    idle_suite(Eng::Gvisor);
}

fn idle_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start(&fast(eng)) else {
        return;
    };
    let d = &env.d;
    env.tiny("idle", &[]);
    let eid = sandbox(d, "idle")["id"].as_str().unwrap().to_string();
    assert!(
        wait_thermal(d, "idle", "warm", Duration::from_secs(20)),
        "never went warm: {}",
        sandbox(d, "idle")
    );
    assert!(
        frozen(&env, &eid),
        "thermal says warm but the sandbox is not frozen"
    );
    assert!(!proc_states(&env, &eid).is_empty());
    match eng {
        // No CPU used while warm.
        Eng::Namespace => {
            let c0 = cpu_usage(&env, &eid);
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(cpu_usage(&env, &eid), c0, "a warm sandbox used CPU");
        }
        // gVisor differs: a paused sandbox's tasks are stopped inside the sentry, but the
        // sentry process itself (its Go runtime) still wakes now and then, so "no CPU" is
        // "well below the busy threshold" here.
        Eng::Gvisor => {
            let pct = cpu_percent(&env, &eid, Duration::from_millis(2000));
            eprintln!("paused gvisor sandbox: {pct:.2} % of a CPU");
            assert!(
                pct < busy_cpu_percent(eng) / 4.0,
                "a warm gvisor sandbox used {pct:.2} % of a CPU"
            );
        }
    }
    let s: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "idle", "--json"])).unwrap();
    assert_eq!(s["thermal"], "warm");
    let reason = s["engine_meta"]["thermal_reason"].as_str().unwrap_or("");
    match eng {
        // Stays warm past the cold period (the namespace engine cannot snapshot), and says why.
        Eng::Namespace => assert!(reason.contains("cannot snapshot memory"), "{s}"),
        // gvisor can snapshot (it would go cold after `cold_after_ms`, set long here).
        Eng::Gvisor => {
            assert_eq!(
                s["engine_meta"]["capabilities"]["snapshot_memory"], true,
                "{s}"
            );
            assert!(!reason.contains("cannot snapshot"), "{s}");
        }
    }
    // Inspect is a metadata read: it does not wake.
    assert!(frozen(&env, &eid));

    let t0 = Instant::now();
    let out = d.ok(&["exec", "idle", "--", "echo", "awake"]);
    assert_eq!(out.trim(), "awake");
    eprintln!(
        "exec on a warm {eng:?} sandbox (CLI round trip incl. wake): {:?}",
        t0.elapsed()
    );
    assert!(!frozen(&env, &eid));
    assert_eq!(sandbox(d, "idle")["thermal"], "hot");

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
    busy_suite(Eng::Namespace);
}

#[test]
fn gvisor_busy_background_job_keeps_it_hot() {
    busy_suite(Eng::Gvisor);
}

fn busy_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start(&fast(eng)) else {
        return;
    };
    let d = &env.d;
    env.tiny("busy", &[]);
    let eid = sandbox(d, "busy")["id"].as_str().unwrap().to_string();
    if eng == Eng::Gvisor {
        // The other side of the threshold: an idle gvisor sandbox (sentry, gofer, lohar) stays
        // below it, or idle gvisor sandboxes would never cool.
        let idle = cpu_percent(&env, &eid, Duration::from_millis(1000));
        eprintln!("idle gvisor sandbox: {idle:.2} % of a CPU");
        assert!(
            idle < busy_cpu_percent(eng),
            "an idle gvisor sandbox used {idle:.1} % of a CPU"
        );
    }
    d.ok(&[
        "exec",
        "busy",
        "--",
        "sh",
        "-c",
        "while :; do :; done >/dev/null 2>&1 </dev/null &",
    ]);
    // The job really is above the engine's busy threshold (what keeps the sandbox hot, not
    // a threshold nothing reaches); measured over most of the idle period.
    let pct = cpu_percent(&env, &eid, Duration::from_secs(3));
    eprintln!("busy loop in a {eng:?} sandbox: {pct:.1} % of a CPU");
    assert!(
        pct >= busy_cpu_percent(eng),
        "the busy job used only {pct:.1} % of a CPU (threshold {})",
        busy_cpu_percent(eng)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sandbox(d, "busy")["thermal"], "hot");
    assert!(!frozen(&env, &eid));
    d.ok(&["destroy", "busy", "-y"]);
}

#[test]
fn stop_start_keeps_files() {
    stop_start_suite(Eng::Namespace);
}

/// On gvisor, stop checkpoints and start restores the checkpoint (or, when the restore does
/// not come up, boots afresh over the kept files): the files survive either way.
#[test]
fn gvisor_stop_start_keeps_files() {
    stop_start_suite(Eng::Gvisor);
}

fn stop_start_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start(&fast(eng)) else {
        return;
    };
    let d = &env.d;
    env.tiny("ss", &[]);
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
    assert_eq!(sandbox(d, "ss")["status"], "stopped");
    let (code, _, err) = d.cli(&["exec", "ss", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("is stopped (bhatti start ss)"), "{err}");
    let out = d.ok(&["start", "ss"]);
    assert_eq!(out.trim(), "sandbox/ss started");
    assert_eq!(sandbox(d, "ss")["status"], "running");
    let out = d.ok(&["exec", "ss", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "kept");
    d.ok(&["destroy", "ss", "-y"]);
}

#[test]
fn sigkill_with_hot_warm_and_stopped_sandboxes_then_restart() {
    sigkill_suite(Eng::Namespace);
}

/// gvisor's recovery re-attaches to runsc sandboxes that are running or paused (a paused one
/// is seen as warm again) and keeps stopped ones with their files and checkpoint.
#[test]
fn gvisor_sigkill_with_hot_warm_and_stopped_sandboxes_then_restart() {
    sigkill_suite(Eng::Gvisor);
}

fn sigkill_suite(eng: Eng) {
    require_e2e!();
    let Some(mut env) = eng.start(&fast(eng)) else {
        return;
    };
    env.tiny("hot", &["--keep-hot"]);
    env.tiny("warm", &[]);
    env.tiny("stopped", &[]);
    let d = &env.d;
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
    assert!(wait_thermal(d, "warm", "warm", Duration::from_secs(20)));
    assert_eq!(sandbox(d, "hot")["thermal"], "hot");
    let warm_eid = sandbox(d, "warm")["id"].as_str().unwrap().to_string();
    assert!(frozen(&env, &warm_eid));

    env.d.kill9();
    env.d.spawn_daemon();
    let d = &env.d;
    // The warm one was re-adopted frozen and is seen as warm.
    assert!(wait_thermal(d, "warm", "warm", Duration::from_secs(5)));
    assert!(frozen(&env, &warm_eid));
    for n in ["hot", "warm"] {
        let out = d.ok(&["exec", n, "--", "cat", "/workspace/f.txt"]);
        assert_eq!(out.trim(), n);
    }
    // The stopped one stayed stopped, with its files.
    assert_eq!(sandbox(d, "stopped")["status"], "stopped");
    d.ok(&["start", "stopped"]);
    let out = d.ok(&["exec", "stopped", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "stopped");
    for n in ["hot", "warm", "stopped"] {
        d.ok(&["destroy", n, "-y"]);
    }
}

#[test]
fn sigterm_shutdown_is_bounded_and_leaves_sandboxes_running() {
    sigterm_suite(Eng::Namespace);
}

#[test]
fn gvisor_sigterm_shutdown_is_bounded_and_leaves_sandboxes_running() {
    sigterm_suite(Eng::Gvisor);
}

fn sigterm_suite(eng: Eng) {
    require_e2e!();
    let Some(mut env) = eng.start(&fast(eng)) else {
        return;
    };
    env.tiny("stay", &[]);
    env.d.ok(&[
        "exec",
        "stay",
        "--",
        "sh",
        "-c",
        "echo up > /workspace/f.txt",
    ]);
    let cgroups = env.cgroups();
    assert!(!cgroups.is_empty());
    let took = env
        .d
        .sigterm(Duration::from_secs(10))
        .expect("daemon did not exit within 10 s of SIGTERM");
    eprintln!("SIGTERM shutdown took {took:?}");
    assert!(env.d.log().contains("stopped") || took < Duration::from_secs(10));
    // The sandbox still runs: its cgroup is there, and the next daemon adopts it.
    assert_eq!(env.cgroups(), cgroups);
    env.d.spawn_daemon();
    let out = env.d.ok(&["exec", "stay", "--", "cat", "/workspace/f.txt"]);
    assert_eq!(out.trim(), "up");
    env.d.ok(&["destroy", "stay", "-y"]);
}
