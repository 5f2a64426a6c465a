//! Chaos: the daemon SIGKILLed at random points during create, exec, file write and destroy,
//! then restarted, with the invariants checked after every round; and lohar killed inside a
//! sandbox. Bounded: `BHATTI_CHAOS_ROUNDS` rounds (default 12, the fast tier run by
//! `cargo test`; the long tier is `BHATTI_CHAOS_ROUNDS=60 cargo test -p bhatti-cli --test e2e
//! chaos`).

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::require_e2e;

fn rand_u32() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_le_bytes(b)
}

fn rounds() -> u32 {
    std::env::var("BHATTI_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// The invariants after a restart: no sandbox lost (every `keep` is there and running) or
/// duplicated (names and ids unique), every running sandbox answers exec, cgroups, links and
/// engine directories match the running sandboxes one to one, and the store passes SQLite's
/// integrity check. Failed creates (visible as `failed`) are destroyed. Returns the names of
/// the running sandboxes.
fn check_invariants(d: &Daemon, keep: &[&str], round: u32) -> Vec<String> {
    let ctx = |what: String| format!("round {round}: {what}\n--- daemon log ---\n{}", d.log());
    // Failed creates are reported, never hidden; cleaning them up must work.
    for s in d.list() {
        if s["status"] == "failed" {
            let id = s["id"].as_str().unwrap().to_string();
            d.ok(&["destroy", &id, "-y"]);
        }
    }
    let list = d.list();
    let names: Vec<String> = list
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let ids: HashSet<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "{}",
        ctx(format!("duplicate names {names:?}"))
    );
    assert_eq!(ids.len(), list.len(), "{}", ctx("duplicate ids".into()));
    for k in keep {
        let s = list.iter().find(|s| s["name"] == *k);
        assert!(s.is_some(), "{}", ctx(format!("sandbox {k} lost")));
    }
    let running: Vec<String> = list
        .iter()
        .filter(|s| s["status"] == "running")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        running.len(),
        list.len(),
        "{}",
        ctx(format!("not all running: {list:?}"))
    );
    for n in &running {
        let (c, out, err) = d.cli(&["exec", n, "--", "echo", "ok"]);
        assert_eq!(
            (c, out.trim()),
            (0, "ok"),
            "{}",
            ctx(format!("{n} does not answer exec: {err}"))
        );
    }
    // Cleanup of an interrupted create/destroy may finish a moment after the restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    // One host veth per sandbox (the user's bridge aside).
    let veths = || -> Vec<String> {
        d.links()
            .into_iter()
            .filter(|l| l.starts_with("bh-"))
            .collect()
    };
    let engine_dirs = || {
        std::fs::read_dir(d.data_dir().join("sandboxes"))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    while Instant::now() < deadline
        && (d.cgroups().len() != running.len()
            || veths().len() != running.len()
            || engine_dirs() != running.len())
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        d.cgroups().len(),
        running.len(),
        "{}",
        ctx(format!("cgroups {:?} vs running {running:?}", d.cgroups()))
    );
    assert_eq!(
        veths().len(),
        running.len(),
        "{}",
        ctx(format!("links {:?} vs running {running:?}", d.links()))
    );
    assert_eq!(
        engine_dirs(),
        running.len(),
        "{}",
        ctx("engine directories vs running".into())
    );
    let db = d.data_dir().join("state.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        ctx(format!("store integrity: {out:?}"))
    );
    running
}

#[test]
fn daemon_sigkill_at_random_points_keeps_the_invariants() {
    require_e2e!();
    let mut d = Daemon::start();
    let keep = ["keep-0", "keep-1"];
    for k in keep {
        d.ok(&["create", "--name", k, "--image", "tiny", "--memory", "256"]);
    }
    let payload = vec![b'x'; 4 << 20];
    let mut created: Vec<String> = Vec::new();
    for round in 0..rounds() {
        let r = rand_u32();
        let op = r % 4;
        let name = format!("c-{round}");
        let args: Vec<String> = match op {
            0 => [
                "create", "--name", &name, "--image", "tiny", "--memory", "256",
            ]
            .map(String::from)
            .to_vec(),
            1 => ["exec", keep[0], "--", "sh", "-c", "sleep 0.3; echo done"]
                .map(String::from)
                .to_vec(),
            2 => ["file", "write", keep[1], "/workspace/blob"]
                .map(String::from)
                .to_vec(),
            _ => match created.pop() {
                Some(n) => ["destroy", n.as_str(), "-y"].map(String::from).to_vec(),
                None => [
                    "create", "--name", &name, "--image", "tiny", "--memory", "256",
                ]
                .map(String::from)
                .to_vec(),
            },
        };
        if args[0] == "create" {
            created.push(name.clone());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = d
            .command(&argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let data = if op == 2 { payload.clone() } else { Vec::new() };
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut stdin = stdin;
            let _ = stdin.write_all(&data);
        });
        // Somewhere inside the operation (a create takes ~100–300 ms here).
        std::thread::sleep(Duration::from_millis(u64::from(r >> 8) % 400));
        d.kill9();
        let _ = child.wait();
        let _ = writer.join();
        d.spawn_daemon();
        let running = check_invariants(&d, &keep, round);
        created.retain(|n| running.contains(n));
    }
    for s in d.list() {
        let id = s["id"].as_str().unwrap().to_string();
        d.ok(&["destroy", &id, "-y"]);
    }
}

/// lohar (PID 1 of the sandbox) killed from the host: the sandbox is reported as not running,
/// exec fails quickly with a clear error instead of hanging, and destroy still cleans up.
/// SIGKILLs the lohar (PID 1) of sandbox `name`: the `lohar` process in the cgroup named after
/// its id.
fn kill_lohar(d: &Daemon, name: &str) {
    let id = d
        .list()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap();
    // Its lohar: the `lohar` process in the cgroup named after its id.
    let lohar = d
        .leftovers(false)
        .processes
        .iter()
        .filter(|p| p.ends_with(" lohar"))
        .map(|p| p.split(' ').next().unwrap().to_string())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("/{}/{id}", d.cgroup_parent)))
        })
        .unwrap_or_else(|| panic!("{name}'s lohar on the host"));
    let status = std::process::Command::new("kill")
        .args(["-9", &lohar])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn lohar_killed_sandbox_is_reported_and_destroy_cleans_up() {
    require_e2e!();
    // Quick thermal ticks: the manager is what notices a sandbox dying when nobody asks.
    let d = Daemon::start_with("thermal:\n  tick_ms: 200\n  warm_after_ms: 1000\n");
    d.ok(&[
        "create", "--name", "victim", "--image", "tiny", "--memory", "256",
    ]);
    d.ok(&[
        "create", "--name", "other", "--image", "tiny", "--memory", "256",
    ]);
    kill_lohar(&d, "victim");
    // The list shows it without an inspect or exec first (the thermal manager's check of an
    // idle sandbox whose agent does not answer asks the engine).
    let t0 = Instant::now();
    let listed = loop {
        let s = d
            .list()
            .into_iter()
            .find(|s| s["name"] == "victim")
            .unwrap();
        if s["status"] != "running" || t0.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed["status"], "stopped", "{listed}");
    eprintln!("listed as stopped {:?} after lohar died", t0.elapsed());
    let t0 = Instant::now();
    let (c, _, err) = d.cli(&["exec", "victim", "--", "echo", "ok"]);
    assert_ne!(c, 0, "exec into a sandbox without its agent succeeded");
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "exec hung for {:?}",
        t0.elapsed()
    );
    assert!(!err.trim().is_empty(), "no error message");
    // Inspect asks the engine: the sandbox is reported as not running (the list shows the same
    // from then on).
    let info: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "inspect", "victim"])).unwrap();
    assert_ne!(info["status"], "running", "{info}");
    let listed = d
        .list()
        .into_iter()
        .find(|s| s["name"] == "victim")
        .unwrap();
    assert_eq!(listed["status"], info["status"], "{listed}");
    eprintln!(
        "after lohar was killed: status {}, exec error: {}",
        info["status"],
        err.trim()
    );
    // An exec right after the agent died: a conflict that says the sandbox is not running
    // (recorded by the exec itself, or by the thermal manager if it got there first), not a
    // gateway error to retry.
    d.ok(&[
        "create", "--name", "victim2", "--image", "tiny", "--memory", "256",
    ]);
    kill_lohar(&d, "victim2");
    let (c, _, err) = d.cli(&["exec", "victim2", "--", "echo", "ok"]);
    assert_ne!(c, 0);
    assert!(err.contains("Conflict"), "{err}");
    eprintln!("exec right after lohar died: {}", err.trim());
    d.ok(&["destroy", "victim2", "-y"]);
    // The neighbour is unaffected.
    let (c, out, _) = d.cli(&["exec", "other", "--", "echo", "ok"]);
    assert_eq!((c, out.trim()), (0, "ok"));
    d.ok(&["destroy", "victim", "-y"]);
    d.ok(&["destroy", "other", "-y"]);
}
