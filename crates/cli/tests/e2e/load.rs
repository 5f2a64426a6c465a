//! Load, bounded and on the daemon's own network namespace only: concurrent clients doing mixed
//! exec / file write / file read / list against a set of sandboxes, with no errors but
//! documented 429s and the daemon's RSS and open fds flat afterwards; and many idle sandboxes
//! with the daemon still responsive.
//!
//! Fast tier (default, in `cargo test`): 20 clients for 10 s against 10 sandboxes; 200 idle
//! sandboxes. Long tier (the 60 s):
//! `BHATTI_LOAD_SECS=60 cargo test -p bhatti-cli --test e2e load`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::require_e2e;

/// Per-user rate limits far above what the test sends.
const HIGH_LIMITS: &str = "rate_limits:\n  create: {burst: 1000, per_minute: 60000}\n  exec: {burst: 1000, per_minute: 60000}\n  other: {burst: 1000, per_minute: 60000}\n";

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of the daemon in KiB.
fn daemon_rss_kib(d: &Daemon) -> u64 {
    let pid = d.daemon_pid().expect("daemon running");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    limited: AtomicU64,
}

#[test]
fn mixed_load_from_twenty_clients_with_flat_rss_and_fds() {
    require_e2e!();
    let secs = env_u64("BHATTI_LOAD_SECS", 10);
    let clients = 20;
    let sandboxes = 10;
    // Limits high enough that the load reaches the handlers (429s would still be accepted).
    let d = Arc::new(Daemon::start_with(HIGH_LIMITS));
    for i in 0..sandboxes {
        d.ok(&[
            "create",
            "--name",
            &format!("load-{i}"),
            "--image",
            "tiny",
            "--memory",
            "128",
        ]);
    }
    let run = |secs: u64, counts: Arc<Counts>, errors: Arc<std::sync::Mutex<Vec<String>>>| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let d = d.clone();
                let counts = counts.clone();
                let errors = errors.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let sb = format!("load-{}", (c + n as usize) % sandboxes);
                        let path = format!("/workspace/c{c}");
                        let (code, out, err) = match n % 4 {
                            0 => d.cli(&["exec", &sb, "--", "echo", "hi"]),
                            1 => {
                                let (code, out, err) = d.cli_stdin(
                                    &["file", "write", &sb, &path],
                                    format!("client {c} round {n}").as_bytes(),
                                );
                                (code, String::from_utf8_lossy(&out).into_owned(), err)
                            }
                            2 => d.cli(&["file", "read", &sb, "/etc/hostname"]),
                            _ => d.cli(&["list"]),
                        };
                        if code == 0 {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        } else if err.contains("429") || err.to_lowercase().contains("rate limit") {
                            counts.limited.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(200));
                        } else {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("client {c} op {}: {code} {err}{out}", n % 4));
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    };
    // Warm-up (connection pools, allocator arenas, lazily built state), then the baseline.
    run(
        2,
        Arc::new(Counts::default()),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, fds0) = (daemon_rss_kib(&d), d.daemon_fds().unwrap());
    let counts = Arc::new(Counts::default());
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    run(secs, counts.clone(), errors.clone());
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, fds1) = (daemon_rss_kib(&d), d.daemon_fds().unwrap());
    let ok = counts.ok.load(Ordering::Relaxed);
    let limited = counts.limited.load(Ordering::Relaxed);
    eprintln!(
        "load: {clients} clients × {took:?}: {ok} ok ({:.0}/s), {limited} × 429; daemon RSS {rss0} → {rss1} KiB, fds {fds0} → {fds1}",
        ok as f64 / took.as_secs_f64()
    );
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 0);
    assert!(fds1 <= fds0 + 8, "daemon fds grew {fds0} → {fds1}");
    assert!(
        rss1 <= rss0 + rss0 / 4 + 16 * 1024,
        "daemon RSS grew {rss0} → {rss1} KiB"
    );
    for i in 0..sandboxes {
        d.ok(&["destroy", &format!("load-{i}"), "-y"]);
    }
}

#[test]
fn many_idle_sandboxes_and_a_responsive_daemon() {
    require_e2e!();
    let n = env_u64("BHATTI_IDLE_SANDBOXES", 200);
    let d = Daemon::start_with(&format!(
        "{HIGH_LIMITS}admin:\n  max_sandboxes: {}\n",
        n + 10
    ));
    let t0 = Instant::now();
    for i in 0..n {
        d.ok(&[
            "create",
            "--name",
            &format!("idle-{i}"),
            "--image",
            "tiny",
            "--memory",
            "64",
        ]);
    }
    let created = t0.elapsed();
    assert_eq!(d.list().len() as u64, n);
    // Responsive: list, and exec into the first, middle and last sandbox, each quickly.
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        for i in [0, n / 2, n - 1] {
            let t = Instant::now();
            let (c, out, err) = d.cli(&["exec", &format!("idle-{i}"), "--", "echo", "ok"]);
            assert_eq!((c, out.trim()), (0, "ok"), "{err}");
            worst = worst.max(t.elapsed());
        }
        let t = Instant::now();
        assert_eq!(d.list().len() as u64, n);
        worst = worst.max(t.elapsed());
    }
    eprintln!(
        "{n} idle sandboxes created in {created:?}; slowest exec/list after {worst:?}; daemon RSS {} KiB",
        daemon_rss_kib(&d)
    );
    assert!(worst < Duration::from_secs(2), "slowest answer {worst:?}");
    for i in 0..n {
        d.ok(&["destroy", &format!("idle-{i}"), "-y"]);
    }
}
