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
    // The suite creates a sandbox per test: more than the default create burst allows (the
    // facade shares bhatti's per-user rate limits).
    Daemon::start_with(&format!(
        "e2b:\n  listen: 127.0.0.1:{E2B_PORT}\n  domain: e2b.localhost\n\
         rate_limits:\n  create: {{burst: 200, per_minute: 600}}\n  exec: {{burst: 300, per_minute: 3000}}\n  other: {{burst: 600, per_minute: 6000}}\n"
    ))
}

/// A command run inside the daemon's namespace with the SDK pointed at the facade.
fn sdk_command(d: &Daemon, program: &Path) -> Command {
    let url = format!("http://127.0.0.1:{E2B_PORT}");
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{}/ns/net", d.netns_pid()))
        // A hung suite fails the test instead of stalling CI.
        .args(["timeout", "--kill-after=10", "600"])
        .arg(program)
        .env("E2B_API_KEY", &d.token)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_DOMAIN", "e2b.localhost")
        // Nothing written into the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
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

/// E2B state (metadata, timeout) is kept across a daemon restart, the sandbox's envd token
/// still works, and the timeout still kills it.
#[test]
fn state_survives_daemon_restart() {
    require_e2e!();
    let Some(venv) = tool_dir("BHATTI_E2B_VENV") else {
        return;
    };
    let mut d = daemon();
    let py = venv.join("bin/python");
    let create = "from e2b import Sandbox\n\
                  s = Sandbox.create(timeout=120, metadata={'k': 'v'})\n\
                  s.files.write('/tmp/x', 'y')\n\
                  print(s.sandbox_id)\n";
    let out = sdk_command(&d, &py).args(["-c", create]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    d.kill9();
    d.spawn_daemon();
    let check = format!(
        "from e2b import Sandbox\n\
         import time\n\
         i = Sandbox.get_info('{id}')\n\
         assert i.metadata == {{'k': 'v'}}, i.metadata\n\
         left = i.end_at.timestamp() - time.time()\n\
         assert 60 < left <= 121, left\n\
         s = Sandbox.connect('{id}')\n\
         assert s.files.read('/tmp/x') == 'y'\n\
         s.set_timeout(1)\n"
    );
    let out = sdk_command(&d, &py).args(["-c", &check]).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !d.list().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(
        d.list(),
        Vec::<serde_json::Value>::new(),
        "timeout did not kill it"
    );
}

/// Another user's API key, envd token or traffic token reaches nothing of a sandbox through any
/// facade route (control plane, envd by header and by Host, /files, signed URLs, port proxy),
/// and no route does anything without credentials.
#[test]
fn another_user_reaches_nothing() {
    require_e2e!();
    let Some(venv) = tool_dir("BHATTI_E2B_VENV") else {
        return;
    };
    let d = daemon();
    let mallory = d.create_user("mallory");
    let script = r#"
import http.client, json, os, urllib.parse
from e2b import Sandbox

u = urllib.parse.urlparse(os.environ["E2B_API_URL"])
def req(method, path, headers=None, body=b""):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request(method, path, body, headers or {})
    r = c.getresponse()
    return r.status, r.read()

victim = Sandbox.create(timeout=300)
theirs = Sandbox.create(timeout=300, api_key=os.environ["MALLORY_KEY"])
try:
    vid = victim.sandbox_id
    victim.files.write("/tmp/secret", "s3cret")
    victim.commands.run("mkdir -p /tmp/www && cd /tmp/www && echo hi > index.html && (python3 -m http.server 8000 >/dev/null 2>&1 &)", background=True)
    m = {"X-API-KEY": os.environ["MALLORY_KEY"], "Content-Type": "application/json"}
    # Control plane with mallory's key: as if the sandbox did not exist.
    for method, path in [("GET", f"/sandboxes/{vid}"), ("DELETE", f"/sandboxes/{vid}"),
                         ("POST", f"/sandboxes/{vid}/timeout"), ("POST", f"/sandboxes/{vid}/pause"),
                         ("POST", f"/sandboxes/{vid}/connect"), ("POST", f"/sandboxes/{vid}/resume"),
                         ("POST", f"/sandboxes/{vid}/refreshes"), ("POST", f"/v2/sandboxes/{vid}/connect")]:
        s, b = req(method, path, m, b'{"timeout": 10}')
        assert s == 404, (method, path, s, b)
    for path in ["/v2/sandboxes", "/sandboxes"]:
        s, b = req("GET", path, m)
        assert s == 200 and vid not in b.decode(), (path, b)
    # Without any key.
    for method, path in [("GET", f"/sandboxes/{vid}"), ("DELETE", f"/sandboxes/{vid}"), ("POST", "/sandboxes"), ("GET", "/v2/sandboxes")]:
        assert req(method, path)[0] == 401, (method, path)
    # envd: mallory's API key, mallory's own sandbox's tokens, or nothing.
    bad_tokens = [os.environ["MALLORY_KEY"], theirs._envd_access_token, theirs.traffic_access_token, None]
    for tok in bad_tokens:
        for how in ["header", "host"]:
            h = {"Content-Type": "application/json"}
            if how == "header":
                h.update({"E2b-Sandbox-Id": vid, "E2b-Sandbox-Port": "49983"})
            else:
                h["Host"] = f"49983-{vid}.e2b.localhost"
            if tok:
                h["X-Access-Token"] = tok
            s, b = req("POST", "/filesystem.Filesystem/ListDir", h, b'{"path": "/tmp"}')
            assert s == 401, (how, tok, s, b)
            s, b = req("GET", "/files?path=/tmp/secret", h)
            assert s == 401 and b"s3cret" not in b, (how, tok, s, b)
            s, b = req("POST", "/files?path=/tmp/pwned", dict(h, **{"Content-Type": "application/octet-stream"}), b"x")
            assert s == 401, (how, tok, s, b)
    # A URL signed with mallory's own token for the victim's sandbox.
    forged = theirs.download_url("/tmp/secret")
    q = urllib.parse.urlparse(forged).query
    s, b = req("GET", "/files?" + q, {"Host": f"49983-{vid}.e2b.localhost"})
    assert s == 401 and b"s3cret" not in b, (s, b)
    # The port proxy: mallory's traffic or envd token for the victim's port.
    for hdr, tok in [("e2b-traffic-access-token", theirs.traffic_access_token),
                     ("x-access-token", theirs._envd_access_token), (None, None)]:
        h = {"Host": f"8000-{vid}.e2b.localhost"}
        if hdr:
            h[hdr] = tok
        s, b = req("GET", "/index.html", h)
        assert s == 403, (hdr, s, b)
    assert not victim.files.exists("/tmp/pwned")
    assert victim.files.read("/tmp/secret") == "s3cret"
    print("ok")
finally:
    victim.kill()
    theirs.kill()
"#;
    let out = sdk_command(&d, &venv.join("bin/python"))
        .env("MALLORY_KEY", &mallory)
        .args(["-c", script])
        .output()
        .unwrap();
    check(&d, "cross-user checks", out);
    // The refused credentials are auth.failed events, as on bhatti's own API, without them.
    let data = d.data_dir();
    let events = d.ok(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
        "admin",
        "events",
        "--type",
        "auth.failed",
    ]);
    assert!(events.contains("127.0.0.1"), "{events}");
    assert!(!events.contains(&mallory), "{events}");
}

/// A client that starts a loud process and never reads its stream costs the daemon a bounded
/// amount of memory (the output a lagging reader may still get is capped), not hundreds of MB.
#[test]
fn an_unread_process_stream_does_not_grow_the_daemon() {
    require_e2e!();
    let Some(venv) = tool_dir("BHATTI_E2B_VENV") else {
        return;
    };
    let d = daemon();
    let pid = d.daemon_pid().expect("daemon pid");
    let script = r#"
import http.client, json, os, struct, time, urllib.parse
from e2b import Sandbox

def rss_mib():
    for line in open(f"/proc/{os.environ['DAEMON_PID']}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

s = Sandbox.create(timeout=300)
try:
    u = urllib.parse.urlparse(os.environ["E2B_SANDBOX_URL"])
    before = rss_mib()
    conns = []
    for _ in range(2):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        body = json.dumps({"process": {"cmd": "/bin/sh", "args": ["-c", "head -c 300000000 /dev/zero"]}}).encode()
        c.request("POST", "/process.Process/Start", struct.pack(">BI", 0, len(body)) + body, {
            "Content-Type": "application/connect+json", "E2b-Sandbox-Id": s.sandbox_id,
            "E2b-Sandbox-Port": "49983", "X-Access-Token": s._envd_access_token})
        r = c.getresponse()  # headers only: the stream is never read
        assert r.status == 200
        conns.append((c, r))
    time.sleep(8)
    grown = rss_mib() - before
    print(f"daemon RSS grew {grown:.1f} MiB")
    assert grown < 64, grown
    for c, _ in conns:
        c.close()
finally:
    s.kill()
"#;
    let out = sdk_command(&d, &venv.join("bin/python"))
        .env("DAEMON_PID", pid.to_string())
        .args(["-c", script])
        .output()
        .unwrap();
    check(&d, "unread stream", out);
}
