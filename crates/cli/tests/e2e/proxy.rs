//! Proxies through the real daemon to servers inside a real sandbox: `python3 -m http.server`,
//! an SSE stream and a WebSocket echo server (stdlib Python, no pip). Clients (curl and a small
//! stdlib Python WebSocket/SSE client) run inside the daemon's network namespace.

use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::require_e2e;

/// In the sandbox, port 9000: `/sse` (3 events 500 ms apart), `/ws` (WebSocket echo, replies
/// `echo:<text>`), anything else `hello <path> host=<Host> xff=<X-Forwarded-For>`.
pub const APP: &str = r#"
import base64, hashlib, struct, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(3):
                self.wfile.write(("data: tick%d\n\n" % i).encode()); self.wfile.flush()
                time.sleep(0.5)
            self.close_connection = True
            return
        if self.path == "/ws":
            key = self.headers["Sec-WebSocket-Key"]
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", acc)
            self.end_headers(); self.wfile.flush()
            r = self.rfile
            while True:
                h = r.read(2)
                if len(h) < 2: break
                op, n = h[0] & 15, h[1] & 127
                if n == 126: n = struct.unpack(">H", r.read(2))[0]
                mask = r.read(4) if h[1] & 128 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
                if op == 8: break
                out = b"echo:" + data
                self.wfile.write(bytes([0x81, len(out)]) + out); self.wfile.flush()
            self.close_connection = True
            return
        body = ("hello %s host=%s xff=%s" % (self.path, self.headers["Host"], self.headers["X-Forwarded-For"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", 9000), H).serve_forever()
"#;

/// Client (host side, in the netns): `sse|ws ADDR PATH [Header: value]...`.
/// `sse` prints `first=<s> last=<s>` (seconds until tick0 and tick2 arrived); `ws` sends
/// m0..m2 and prints the replies, one a line.
pub const CLIENT: &str = r#"
import base64, os, socket, sys, time
mode, addr, path = sys.argv[1:4]
host, port = addr.rsplit(":", 1)
hdrs = sys.argv[4:]
s = socket.create_connection((host, int(port)), timeout=10)
req = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (path, addr)
req = req if any(h.lower().startswith("host:") for h in hdrs) is False else "GET %s HTTP/1.1\r\n" % path
for h in hdrs: req += h + "\r\n"
if mode == "ws":
    req += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n" % base64.b64encode(os.urandom(16)).decode()
else:
    req += "Accept: text/event-stream\r\n"
s.sendall((req + "\r\n").encode())
t0 = time.time()
buf = b""
if mode == "sse":
    first = None
    while b"tick2" not in buf:
        c = s.recv(4096)
        if not c: break
        buf += c
        if first is None and b"tick0" in buf: first = time.time() - t0
    print("first=%.3f last=%.3f" % (first or -1, time.time() - t0))
    sys.exit(0 if b"tick2" in buf else 1)
while b"\r\n\r\n" not in buf:
    c = s.recv(4096)
    if not c: break
    buf += c
head, _, rest = buf.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode()
if " 101 " not in status + " ":
    print("STATUS", status, rest[:200]); sys.exit(1)
def frame():
    global rest
    while len(rest) < 2 or len(rest) < 2 + (rest[1] & 127):
        c = s.recv(4096)
        if not c: raise SystemExit("closed")
        rest += c
    n = rest[1] & 127
    data, rest = rest[2:2 + n], rest[2 + n:]
    return data.decode()
for i in range(3):
    msg = ("m%d" % i).encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(msg)))
    print(frame())
s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
"#;

/// Runs `curl -s -i` with `args` in the daemon's netns; returns (status code, headers+body).
pub fn curl(d: &Daemon, args: &[&str]) -> (u16, String) {
    let mut a = vec!["-s", "-i", "--max-time", "10"];
    a.extend_from_slice(args);
    let o = d.in_netns("curl", &a);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// Runs the Python client in the daemon's netns; returns stdout (asserts success).
pub fn client(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["-c", CLIENT];
    a.extend_from_slice(args);
    let o = d.in_netns("python3", &a);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "client {args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Asserts the SSE client saw tick0 well before tick2.
pub fn assert_incremental(out: &str) {
    let num = |k: &str| -> f64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {out:?}"))
    };
    let (first, last) = (num("first="), num("last="));
    assert!(first >= 0.0 && last - first > 0.7, "not incremental: {out}");
}

/// A `minimal` sandbox running `python3 -m http.server 8000` (serving /workspace with a
/// `hello.txt`) and [`APP`] on 9000, both listening.
pub fn sandbox_with_servers(d: &Daemon, name: &str) {
    d.ok(&[
        "create", "--name", name, "--image", "minimal", "--memory", "512",
    ]);
    d.ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo hi-from-file > /tmp/hello.txt",
    ]);
    d.ok(&[
        "exec",
        name,
        "--cwd",
        "/tmp",
        "--detach",
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
        "--bind",
        "127.0.0.1",
    ]);
    d.ok(&["exec", name, "--detach", "--", "python3", "-c", APP]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = d.ok(&["ports", name]);
        if t.contains("8000") && t.contains("9000") {
            break;
        }
        assert!(Instant::now() < deadline, "servers never listened: {t}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn authenticated_proxy_http_sse_websocket() {
    require_e2e!();
    let d = Daemon::start();
    sandbox_with_servers(&d, "px");
    let auth = format!("Authorization: Bearer {}", d.token);
    let base = format!("{}/sandboxes/px/proxy", d.url());

    // python3 -m http.server through the proxy.
    let (code, out) = curl(&d, &["-H", &auth, &format!("{base}/8000/hello.txt")]);
    assert_eq!(code, 200, "{out}\n{}", d.log());
    assert!(out.ends_with("hi-from-file\n"), "{out}");

    // Path, query, Host and X-Forwarded-For as the sandbox sees them.
    let (code, out) = curl(&d, &["-H", &auth, &format!("{base}/9000/a/b?x=1")]);
    assert_eq!(code, 200, "{out}");
    assert!(
        out.contains("hello /a/b?x=1 host=localhost:9000 xff=127.0.0.1"),
        "{out}"
    );

    // SSE arrives as produced.
    let addr = format!("127.0.0.1:{}", d.port);
    assert_incremental(&client(
        &d,
        &["sse", &addr, "/sandboxes/px/proxy/9000/sse", &auth],
    ));

    // WebSocket echo.
    let out = client(&d, &["ws", &addr, "/sandboxes/px/proxy/9000/ws", &auth]);
    assert_eq!(out, "echo:m0\necho:m1\necho:m2\n");

    // Nothing listening → 502; bad port → 400; no key → 401.
    let (code, out) = curl(&d, &["-H", &auth, &format!("{base}/8999/")]);
    assert_eq!(code, 502, "{out}");
    assert!(out.contains(r#"{"error":"bad gateway: "#), "{out}");
    let (code, out) = curl(&d, &["-H", &auth, &format!("{base}/0/")]);
    assert_eq!(code, 400, "{out}");
    let (code, _) = curl(&d, &[&format!("{base}/8000/")]);
    assert_eq!(code, 401);
}

#[test]
fn publish_unpublish_cli() {
    require_e2e!();
    let d = Daemon::start_with("public_proxy_listen: 127.0.0.1:18443\n");
    d.ok(&[
        "create", "--name", "web", "--image", "tiny", "--memory", "256",
    ]);
    let out = d.ok(&["publish", "web", "-p", "8000", "-a", "my-site"]);
    assert_eq!(out, "Published: http://127.0.0.1:18443/my-site/\n");
    // Idempotent.
    assert_eq!(d.ok(&["publish", "web", "-p", "8000"]), out);
    let auto = d.ok(&["publish", "web", "-p", "9000"]);
    assert!(
        auto.starts_with("Published: http://127.0.0.1:18443/web-"),
        "{auto}"
    );
    // Conflicts and validation fail with exit 1.
    d.ok(&[
        "create", "--name", "web2", "--image", "tiny", "--memory", "256",
    ]);
    let (c, _, err) = d.cli(&["publish", "web2", "-p", "80", "-a", "my-site"]);
    assert_eq!(c, 1);
    assert!(err.contains("already in use"), "{err}");
    let (c, _, err) = d.cli(&["publish", "web2", "-p", "80", "-a", "admin"]);
    assert_eq!(c, 1);
    assert!(err.contains("reserved"), "{err}");
    // list shows the URL column.
    let table = d.ok(&["list"]);
    assert!(table.lines().next().unwrap().contains("URL"), "{table}");
    assert!(table.contains("http://127.0.0.1:18443/my-site/"), "{table}");
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["--json", "publish", "web", "-p", "8000"]))
            .map(|r: serde_json::Value| vec![r])
            .unwrap();
    assert_eq!(v[0]["alias"], "my-site");
    assert_eq!(
        d.ok(&["unpublish", "web", "-p", "8000"]),
        "Unpublished port 8000\n"
    );
    let (c, _, err) = d.cli(&["unpublish", "web", "-p", "8000"]);
    assert_eq!(c, 1);
    assert!(err.contains("not published"), "{err}");
    // Destroy deletes the rules: the alias is free for another sandbox.
    d.ok(&["destroy", "web", "--yes"]);
    d.ok(&[
        "publish",
        "web2",
        "-p",
        "80",
        "-a",
        auto.trim().rsplit('/').nth(1).unwrap(),
    ]);
}

#[test]
fn public_proxy_path_and_host_modes() {
    require_e2e!();
    let d = Daemon::start_with(
        "public_proxy_listen: 127.0.0.1:18443\ndomain:\n  api_host: api.test\n  proxy_zone: apps.test\n  listen: 127.0.0.1:18444\npublic_proxy:\n  per_ip: {burst: 20, per_minute: 60}\n",
    );
    sandbox_with_servers(&d, "pub");
    assert_eq!(
        d.ok(&["publish", "pub", "-p", "8000", "-a", "files"]),
        "Published: https://files.apps.test\n"
    );
    d.ok(&["publish", "pub", "-p", "9000", "-a", "app9"]);

    // python3 -m http.server without a key: path mode and Host mode.
    let (code, out) = curl(&d, &["http://127.0.0.1:18443/files/hello.txt"]);
    assert_eq!(code, 200, "{out}\n{}", d.log());
    assert!(out.ends_with("hi-from-file\n"), "{out}");
    let (code, out) = curl(
        &d,
        &[
            "-H",
            "Host: files.apps.test",
            "http://127.0.0.1:18444/hello.txt",
        ],
    );
    assert_eq!(code, 200, "{out}");
    assert!(out.ends_with("hi-from-file\n"), "{out}");
    // The API behind api_host; unknown hosts 404.
    let (code, _) = curl(
        &d,
        &["-H", "Host: api.test", "http://127.0.0.1:18444/sandboxes"],
    );
    assert_eq!(code, 401);
    let (code, out) = curl(&d, &["-H", "Host: other.test", "http://127.0.0.1:18444/"]);
    assert_eq!(code, 404);
    assert!(out.contains(r#"{"error":"unknown host"}"#), "{out}");

    // SSE and WebSocket through both modes.
    assert_incremental(&client(&d, &["sse", "127.0.0.1:18443", "/app9/sse"]));
    assert_incremental(&client(
        &d,
        &["sse", "127.0.0.1:18444", "/sse", "Host: app9.apps.test"],
    ));
    let echo = "echo:m0\necho:m1\necho:m2\n";
    assert_eq!(client(&d, &["ws", "127.0.0.1:18443", "/app9/ws"]), echo);
    assert_eq!(
        client(
            &d,
            &["ws", "127.0.0.1:18444", "/ws", "Host: app9.apps.test"]
        ),
        echo
    );

    // Unpublish → 404 at once, both modes.
    d.ok(&["unpublish", "pub", "-p", "8000"]);
    let (code, _) = curl(&d, &["http://127.0.0.1:18443/files/hello.txt"]);
    assert_eq!(code, 404);
    let (code, _) = curl(
        &d,
        &[
            "-H",
            "Host: files.apps.test",
            "http://127.0.0.1:18444/hello.txt",
        ],
    );
    assert_eq!(code, 404);

    // Per-IP rate limit (burst 20, then one a second) trips with Retry-After, then recovers.
    let mut args = vec!["-s", "-i", "-w", "\nCODE=%{http_code}\n"];
    let url = "http://127.0.0.1:18443/app9/";
    args.extend(std::iter::repeat_n(url, 40));
    let o = d.in_netns("curl", &args);
    let codes = String::from_utf8_lossy(&o.stdout).into_owned();
    let n429 = codes.lines().filter(|c| *c == "CODE=429").count();
    assert!(n429 >= 10, "{codes}");
    assert!(
        codes.to_ascii_lowercase().contains("retry-after: 1"),
        "{codes}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (code, out) = curl(&d, &[url]);
    assert_eq!(code, 200, "{out}");
}
