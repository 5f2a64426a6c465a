//! E2B compatibility: the unmodified `e2b` SDKs (pinned, from PyPI and npm; installed by
//! scripts/test) drive a real `bhatti serve` through its E2B facade, with real sandboxes of the
//! namespace engine. The suites themselves live in tests/e2b/ (pytest) and tests/e2b/node/
//! (node's test runner); this test starts the daemon in its own network namespace, runs them
//! inside that namespace, and fails when they fail.

#[path = "../e2e/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Daemon;

/// Where the facade listens inside the daemon's namespace.
const E2B_PORT: u16 = 49999;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory named by `var`, or `None` (then the test is skipped, except under CI where
/// scripts/test always provides it).
fn tool_dir(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("{var} not set: scripts/test installs the pinned E2B SDKs and sets it")
        }
        None => {
            eprintln!(
                "SKIP: {var} not set (run ./scripts/test, which installs the pinned E2B SDKs)"
            );
            None
        }
    }
}

fn daemon() -> Daemon {
    Daemon::start_with(&format!(
        "e2b:\n  listen: 127.0.0.1:{E2B_PORT}\n  domain: e2b.localhost\n"
    ))
}

/// A command run inside the daemon's namespace with the SDK pointed at the facade.
fn sdk_command(d: &Daemon, program: &Path) -> Command {
    let url = format!("http://127.0.0.1:{E2B_PORT}");
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{}/ns/net", d.netns_pid()))
        .arg(program)
        .env("E2B_API_KEY", &d.token)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_DOMAIN", "e2b.localhost")
        .current_dir(repo_root().join("tests/e2b"));
    c
}

fn check(d: &Daemon, what: &str, out: std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- daemon log (tail) ---\n{}",
        out.status,
        d.log()
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every test kills what it created: nothing may be left behind.
    assert_eq!(
        d.list(),
        Vec::<serde_json::Value>::new(),
        "sandboxes left behind"
    );
}

#[test]
fn python_sdk() {
    require_e2e!();
    let Some(venv) = tool_dir("BHATTI_E2B_VENV") else {
        return;
    };
    let d = daemon();
    let out = sdk_command(&d, &venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "."])
        .output()
        .expect("run pytest");
    check(&d, "pytest tests/e2b", out);
}

#[test]
fn node_sdk() {
    require_e2e!();
    let Some(modules) = tool_dir("BHATTI_E2B_NODE_MODULES") else {
        return;
    };
    let d = daemon();
    let node = which("node").expect("node on PATH");
    let out = sdk_command(&d, &node)
        .env("NODE_PATH", &modules)
        .args(["--test", "node/sdk.test.cjs"])
        .output()
        .expect("run node --test");
    check(&d, "node --test tests/e2b/node", out);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}
