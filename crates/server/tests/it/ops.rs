//! Exec, files, sessions and ports through the router against a real lohar (test mode, Unix
//! sockets): real processes and files, no root needed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bhatti_engine::agent::AgentClient;
use bhatti_engine::AgentEndpoint;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{err_of, spawn_app, TestApp};

/// The lohar binary: `LOHAR_BIN`, else one built in this workspace (built if missing).
fn lohar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LOHAR_BIN") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let triple = if cfg!(target_arch = "x86_64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    for p in [
        root.join("target/debug/lohar"),
        root.join(format!("target/{triple}/debug/lohar")),
    ] {
        if p.is_file() {
            return p;
        }
    }
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "lohar"])
        .current_dir(&root)
        .status()
        .expect("cargo build -p lohar");
    assert!(ok.success(), "building lohar failed");
    root.join("target/debug/lohar")
}

/// A lohar in test mode; killed on drop.
pub(crate) struct Lohar {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) endpoint: AgentEndpoint,
}

impl Drop for Lohar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lohar {
    pub(crate) async fn start() -> Lohar {
        let dir = tempfile::tempdir().unwrap();
        let (control, forward) = (dir.path().join("c.sock"), dir.path().join("f.sock"));
        let child = Command::new(lohar_bin())
            .env("LOHAR_TEST", "1")
            .env("LOHAR_SOCK", &control)
            .env("LOHAR_FWD_SOCK", &forward)
            .env("LOHAR_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn lohar");
        let endpoint = AgentEndpoint::Unix {
            control,
            forward,
            token: None,
        };
        AgentClient::new(endpoint.clone())
            .wait_ready(Duration::from_secs(10))
            .await
            .expect("lohar ready");
        Lohar {
            child,
            dir,
            endpoint,
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

/// An app whose sandboxes all talk to one real lohar; returns (app, lohar, key, sandbox name).
pub(crate) async fn setup(user: &str) -> (TestApp, Lohar, String) {
    let app = spawn_app().await;
    let lohar = Lohar::start().await;
    *app.engine.agent.lock().unwrap() = Some(lohar.endpoint.clone());
    let key = app.user(user);
    app.create(&key, json!({"name": "dev"})).await;
    (app, lohar, key)
}

async fn exec(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/sandboxes/dev/exec", Some(key), Some(body))
        .await
}

#[tokio::test]
async fn exec_buffered_contract() {
    let (app, _l, key) = setup("alice").await;
    for (cmd, code) in [
        (json!(["true"]), 0),
        (json!(["false"]), 1),
        (json!(["sh", "-c", "exit 42"]), 42),
        (json!(["sh", "-c", "kill -TERM $$"]), 143),
    ] {
        let (s, v) = exec(&app, &key, json!({ "cmd": cmd })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["exit_code"], code, "{cmd}: {v}");
    }
    let (_, v) = exec(
        &app,
        &key,
        json!({"cmd": ["sh", "-c", "echo out; echo err >&2"]}),
    )
    .await;
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert!(v.get("stdout_b64").is_none() && v.get("timed_out").is_none());

    // Extensions: env, cwd, stdin.
    let (_, v) = exec(
        &app,
        &key,
        json!({"cmd": ["sh", "-c", "echo $API_KEY; pwd; cat"], "env": {"API_KEY": "sk-1"},
               "cwd": "/tmp", "stdin": base64::engine::general_purpose::STANDARD.encode("piped\n")}),
    )
    .await;
    assert_eq!(v["stdout"], "sk-1\n/tmp\npiped\n", "{v}");
    // Without stdin the command's stdin is closed, so `cat` ends.
    let (_, v) = exec(&app, &key, json!({"cmd": ["cat"], "timeout_sec": 10})).await;
    assert_eq!(v["exit_code"], 0, "{v}");

    // Binary output is not mangled.
    let (_, v) = exec(&app, &key, json!({"cmd": ["sh", "-c", "printf 'a\\377b'"]})).await;
    assert_eq!(v["stdout"], "a\u{fffd}b");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(v["stdout_b64"].as_str().unwrap())
            .unwrap(),
        b"a\xffb"
    );

    // Unknown program: a clear message, not a 500.
    let (s, v) = exec(&app, &key, json!({"cmd": ["/no/such/prog"]})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_ne!(v["exit_code"], 0);
    assert!(
        v["stderr"].as_str().unwrap().contains("/no/such/prog"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn exec_timeout_kills_the_process_group() {
    let (app, l, key) = setup("alice").await;
    let marker = l.path("still-running");
    let started = Instant::now();
    let (s, v) = exec(
        &app,
        &key,
        json!({"cmd": ["sh", "-c", format!("sleep 30; touch {marker}")], "timeout_sec": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(v["exit_code"], 124, "{v}");
    assert_eq!(v["timed_out"], true);
    assert!(
        v["stderr"].as_str().unwrap().contains("timed out after 1s"),
        "{v}"
    );
    // The process group is gone: no `sleep 30` from this test left.
    let (_, ps) = exec(&app, &key, json!({"cmd": ["sh", "-c", "ps -eo args"]})).await;
    let ps = ps["stdout"].as_str().unwrap_or("");
    assert!(
        !ps.lines().any(|l| l.contains(&marker)),
        "timed-out command still running:\n{ps}"
    );

    // Streaming: the same, as events.
    let started = Instant::now();
    let r = app
        .http
        .post(format!("{}/sandboxes/dev/exec", app.url))
        .bearer_auth(&key)
        .header("accept", "application/x-ndjson")
        .json(&json!({"cmd": ["sh", "-c", "echo first; sleep 30"], "timeout_sec": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0], json!({"type": "stdout", "data": "first\n"}));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "exit", "{body}");
    assert_eq!(last["exit_code"], 124);
    assert!(body.contains("timed out"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn exec_streams_events_as_produced() {
    let (app, _l, key) = setup("alice").await;
    let started = Instant::now();
    let mut r = app
        .http
        .post(format!("{}/sandboxes/dev/exec", app.url))
        .bearer_auth(&key)
        .header("accept", "application/x-ndjson")
        .json(&json!({"cmd": ["sh", "-c", "echo one; echo two >&2; sleep 2; echo three; exit 3"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let mut buf = String::new();
    let mut first_at = None;
    while let Some(c) = r.chunk().await.unwrap() {
        first_at.get_or_insert(started.elapsed());
        buf.push_str(std::str::from_utf8(&c).unwrap());
    }
    let total = started.elapsed();
    assert!(
        first_at.unwrap() + Duration::from_millis(1500) < total,
        "first event at {first_at:?}, end at {total:?}"
    );
    let events: Vec<Value> = buf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.contains(&json!({"type": "stdout", "data": "one\n"})));
    assert!(events.contains(&json!({"type": "stderr", "data": "two\n"})));
    assert!(events.contains(&json!({"type": "stdout", "data": "three\n"})));
    assert_eq!(
        events.last().unwrap(),
        &json!({"type": "exit", "exit_code": 3})
    );

    // Detached: returns at once; the output lands in the file.
    let out = _l.path("detached.log");
    let (s, v) = exec(
        &app,
        &key,
        json!({"cmd": ["sh", "-c", "echo bg"], "detach": true, "output_file": out}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["detached"], true);
    assert_eq!(v["output_file"], out.as_str());
    assert!(v["pid"].as_i64().unwrap() > 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&out).unwrap_or_default() != "bg\n" {
        assert!(Instant::now() < deadline, "detached output missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, v) = exec(&app, &key, json!({"cmd": ["true"], "detach": true})).await;
    assert!(v["output_file"]
        .as_str()
        .unwrap()
        .starts_with("/tmp/bhatti-exec-"));
    app.stop().await;
}

#[tokio::test]
async fn streaming_client_that_goes_away_kills_the_command() {
    // Noticed when the next output cannot be delivered.
    let (app, l, key) = setup("alice").await;
    let marker = l.path("abandoned");
    let mut r = app
        .http
        .post(format!("{}/sandboxes/dev/exec", app.url))
        .bearer_auth(&key)
        .header("accept", "application/x-ndjson")
        .json(&json!({"cmd": ["sh", "-c", format!(
            "i=0; while [ $i -lt 40 ]; do echo $i; sleep 0.1; i=$((i+1)); done; touch {marker}"
        )]}))
        .send()
        .await
        .unwrap();
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the command outlived its streaming client"
    );
    app.stop().await;
}

#[tokio::test]
async fn exec_bad_inputs() {
    let (app, _l, key) = setup("alice").await;
    let bob = app.user("bob");
    for (body, want) in [
        (json!({}), "cmd required"),
        (json!({"cmd": []}), "cmd required"),
        (json!({"cmd": ["true"], "timeout_sec": -1}), "timeout_sec"),
        (
            json!({"cmd": ["true"], "timeout_sec": 86401}),
            "timeout_sec",
        ),
        (json!({"cmd": ["true"], "cwd": "rel"}), "cwd"),
        (json!({"cmd": ["true"], "stdin": "%%%"}), "base64"),
        (json!({"cmd": "true"}), "invalid json"),
    ] {
        let (s, v) = exec(&app, &key, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(err_of(&v).contains(want), "{body}: {v}");
    }
    let r = app
        .http
        .post(format!("{}/sandboxes/dev/exec", app.url))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("invalid json"));
    // Huge body.
    let big = "x".repeat(2 << 20);
    let (s, v) = exec(&app, &key, json!({"cmd": ["echo", big]})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Unknown sandbox, another user's sandbox: 404.
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/nope/exec",
            Some(&key),
            Some(json!({"cmd": ["true"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = exec(&app, &bob, json!({"cmd": ["true"]})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(
            Method::GET,
            "/sandboxes/dev/files?path=/etc/hostname",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // No key: 401.
    let (s, _) = exec(&app, "", json!({"cmd": ["true"]})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A sandbox the engine no longer runs: 409, with the reason.
    app.engine.sandboxes.lock().unwrap().clear();
    let (s, v) = exec(&app, &key, json!({"cmd": ["true"]})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(err_of(&v).contains("not running"), "{v}");
    app.stop().await;
}

fn sha(b: &[u8]) -> String {
    hex_of(&Sha256::digest(b))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn files_round_trip_and_errors() {
    let (app, l, key) = setup("alice").await;
    let url = |q: &str| format!("{}/sandboxes/dev/files?{q}", app.url);
    let path = l.path("sub/dir/data.bin");
    let data: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let r = app
        .http
        .put(url(&format!("path={path}&mode=0600")))
        .bearer_auth(&key)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = app
        .http
        .get(url(&format!("path={path}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["x-file-size"], "1048576");
    assert_eq!(r.headers()["content-length"], "1048576");
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&data));
    let r = app
        .http
        .head(url(&format!("path={path}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-file-mode"], "0600");
    assert_eq!(r.headers()["x-file-isdir"], "false");
    assert_eq!(r.headers()["x-file-size"], "1048576");

    // Line mode.
    std::fs::write(l.path("lines.txt"), "a\nb\nc\nd\n").unwrap();
    let r = app
        .http
        .get(url(&format!(
            "path={}&offset=2&limit=2",
            l.path("lines.txt")
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-file-size"], "8");
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.text().await.unwrap(), "b\nc\n");

    // ls, capped.
    let many = l.path("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..10_001 {
        std::fs::File::create(format!("{many}/f{i}")).unwrap();
    }
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/files?path={many}&ls=true"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 10_001);
    assert!(entries.last().unwrap()["name"]
        .as_str()
        .unwrap()
        .contains("truncated at 10000 entries"));
    let (_, v) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/files?path={}&ls=true", l.path("sub/dir")),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(v[0]["name"], "data.bin");
    assert_eq!(v[0]["size"], 1 << 20);
    assert_eq!(v[0]["mode"], "0600");
    assert_eq!(v[0]["is_dir"], false);

    // Errors.
    let dir = l.path("sub");
    let missing = l.path("missing");
    for (method, q, status, want) in [
        (Method::GET, format!("path={missing}"), 404, "no such file"),
        (Method::GET, format!("path={dir}"), 400, "is a directory"),
        (Method::GET, "path=relative/x".into(), 400, "absolute"),
        (Method::GET, "".into(), 400, "path query parameter required"),
        (
            Method::GET,
            format!("path={missing}&ls=true"),
            404,
            "no such file",
        ),
        (
            Method::GET,
            format!("path={path}&ls=true"),
            400,
            "not a directory",
        ),
        (Method::GET, format!("path={path}&limit=x"), 400, "limit"),
        (Method::PUT, format!("path={dir}"), 400, "directory"),
        (
            Method::PUT,
            format!("path={path}&mode=999"),
            400,
            "invalid mode",
        ),
        (Method::PUT, "path=rel".into(), 400, "absolute"),
    ] {
        let r = app
            .http
            .request(method.clone(), url(&q))
            .bearer_auth(&key)
            .body("x")
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(s, status, "{method} {q}: {body}");
        assert!(body.contains(want), "{method} {q}: {body}");
    }
    let r = app
        .http
        .head(url(&format!("path={missing}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!std::path::Path::new(&dir).join("x").exists());

    // Chunked upload (no Content-Length): 411, nothing written.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"abc".to_vec())];
    let r = app
        .http
        .put(url(&format!("path={}", l.path("chunked"))))
        .bearer_auth(&key)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LENGTH_REQUIRED);
    assert!(r.text().await.unwrap().contains("Content-Length required"));
    assert!(!std::path::Path::new(&l.path("chunked")).exists());

    // Over 100 MiB: 413 from the headers alone (raw HTTP, no body sent).
    let resp = raw_http(
        app.addr,
        format!(
            "PUT /sandboxes/dev/files?path={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            l.path("big"),
            100 * 1024 * 1024 + 1
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("file too large: 104857601 bytes"), "{resp}");
    // A body shorter than its Content-Length: 400 (if the client still listens), no file.
    let resp = raw_http(
        app.addr,
        format!(
            "PUT /sandboxes/dev/files?path={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 10\r\n\r\nabc",
            l.path("short")
        ),
    )
    .await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    assert!(!std::path::Path::new(&l.path("short")).exists());
    assert!(!std::path::Path::new(&format!("{}.bhatti-tmp", l.path("short"))).exists());
    app.stop().await;
}

#[tokio::test]
async fn files_100_mib_stream_through() {
    let (app, l, key) = setup("alice").await;
    let path = l.path("big.bin");
    let size = 100 * 1024 * 1024usize;
    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate().step_by(4096) {
        *b = (i / 4096) as u8;
    }
    let want = sha(&data);
    let r = app
        .http
        .put(format!("{}/sandboxes/dev/files?path={path}", app.url))
        .bearer_auth(&key)
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let mut r = app
        .http
        .get(format!("{}/sandboxes/dev/files?path={path}", app.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len();
        h.update(&c);
    }
    assert_eq!(n, size);
    assert_eq!(hex_of(&h.finalize()), want);
    app.stop().await;
}

#[tokio::test]
async fn sessions_and_ports() {
    let (app, _l, key) = setup("alice").await;
    let (s, v) = app
        .call(Method::GET, "/sandboxes/dev/sessions", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.is_array());
    let (s, v) = app
        .call(
            Method::DELETE,
            "/sandboxes/dev/sessions/s999",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(err_of(&v).contains("not found"));

    // Test-mode lohar shares this process's network namespace: a port we listen on shows up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (s, v) = app
        .call(Method::GET, "/sandboxes/dev/ports", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, sb) = app
        .call(Method::GET, "/sandboxes/dev", Some(&key), None)
        .await;
    let id = sb["id"].as_str().unwrap();
    let ports = v.as_array().unwrap();
    assert!(
        ports.contains(
            &json!({"container_port": port, "proxy_url": format!("/sandboxes/{id}/proxy/{port}/")})
        ),
        "{v}"
    );
    assert!(ports
        .iter()
        .all(|p| p["container_port"] != 1024 && p["container_port"] != 1025));
    app.stop().await;
}

/// Sends raw bytes (then half-closes) and reads the whole answer.
async fn raw_http(addr: std::net::SocketAddr, req: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(req.as_bytes()).await.unwrap();
    sock.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads shell output until `want` shows up (10 s).
async fn read_until(rd: &mut bhatti_client::ShellReader, want: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.next()).await {
            Ok(Ok(Some(bhatti_client::ShellEvent::Output(b)))) => {
                seen.push_str(&String::from_utf8_lossy(&b))
            }
            other => panic!("waiting for {want:?}: {other:?}; seen {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn shell_websocket_detach_reattach_resize() {
    let (app, _l, key) = setup("alice").await;
    let client = bhatti_client::Client::new(&app.url, Some(key.clone())).unwrap();
    let (sid, mut wr, mut rd) = client.shell("dev", None, false).await.unwrap();
    assert!(sid.starts_with('s'), "{sid}");
    wr.resize(30, 100).await.unwrap();
    wr.input(b"echo hi-$((40+2)); stty size\r").await.unwrap();
    let seen = read_until(&mut rd, "30 100").await;
    assert!(seen.contains("hi-42"), "{seen}");
    // Detach: the shell keeps running, unattached.
    wr.close().await;
    drop(rd);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = app
            .call(Method::GET, "/sandboxes/dev/sessions", Some(&key), None)
            .await;
        let s = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == sid.as_str())
            .cloned()
            .expect("session listed");
        if s["attached"] == false {
            assert_eq!(s["running"], true);
            assert_eq!(s["tty"], true);
            break;
        }
        assert!(Instant::now() < deadline, "still attached: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reattach by default: same session, scrollback replayed.
    let (sid2, mut wr, mut rd) = client.shell("dev", None, false).await.unwrap();
    assert_eq!(sid2, sid);
    read_until(&mut rd, "hi-42").await;
    // --new starts another one.
    let (sid3, mut wr3, _rd3) = client.shell("dev", None, true).await.unwrap();
    assert_ne!(sid3, sid);
    wr3.close().await;
    // The shell exits: close code 1000.
    wr.input(b"exit\r").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.next())
            .await
            .expect("no close")
        {
            Ok(Some(bhatti_client::ShellEvent::Closed { code, .. })) => {
                assert_eq!(code, Some(1000));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    // Errors: unknown session (after upgrade, as text), unknown sandbox and no key (before).
    let e = client
        .shell("dev", Some("s999"), false)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("attach error") && e.contains("not found"), "{e}");
    let e = client.shell("nope", None, false).await.err().unwrap();
    assert_eq!(e.status(), Some(404), "{e}");
    let anon = bhatti_client::Client::new(&app.url, None).unwrap();
    let e = anon.shell("dev", None, false).await.err().unwrap();
    assert_eq!(e.status(), Some(401), "{e}");
    // Each shell connection is an event: a new session, then the reattach.
    let dir = app.stop().await;
    let store = bhatti_server::store::Store::open(&dir.path().join("data/state.db")).unwrap();
    let ev = store
        .with(|c| bhatti_server::store::events::by_type(c, "shell.session"))
        .unwrap();
    assert!(ev.len() >= 2, "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.2["session_id"] == sid.as_str() && e.2["reattach"] == true),
        "{ev:?}"
    );
}

mod piped {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn connect(app: &TestApp, key: &str, query: &str) -> Ws {
        let url = format!("ws://{}/sandboxes/dev/exec/ws{query}", app.addr);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    /// Text messages until one contains `want` (10 s); returns them joined.
    async fn text_until(ws: &mut Ws, want: &str) -> String {
        let mut seen = String::new();
        while !seen.contains(want) {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => seen.push_str(t.as_str()),
                Ok(Some(Ok(Message::Ping(_)))) => {}
                other => panic!("waiting for {want:?}: {other:?}; seen {seen:?}"),
            }
        }
        seen
    }

    #[tokio::test]
    async fn piped_session_websocket() {
        let (app, _l, key) = setup("alice").await;
        let mut ws = connect(&app, &key, "").await;
        ws.send(Message::Text(
            r#"{"cmd":["sh","-c","read x; echo got-$x; echo err >&2; exit 5"]}"#.into(),
        ))
        .await
        .unwrap();
        let hello = text_until(&mut ws, "session_id").await;
        let v: Value = serde_json::from_str(&hello).unwrap();
        assert_eq!(v["type"], "session");
        ws.send(Message::Binary(b"hello\n".to_vec().into()))
            .await
            .unwrap();
        let out = text_until(&mut ws, "\"exit\"").await;
        assert!(out.contains("got-hello") && out.contains("err"), "{out}");
        assert!(out.contains(r#""exit_code":5"#), "{out}");
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => assert_eq!(u16::from(f.code), 1000),
            other => panic!("{other:?}"),
        }

        // Detach and reattach: scrollback, then live input.
        let mut ws = connect(&app, &key, "").await;
        ws.send(Message::Text(r#"{"cmd":["cat"]}"#.into()))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&text_until(&mut ws, "session_id").await).unwrap();
        let sid = v["session_id"].as_str().unwrap().to_string();
        ws.send(Message::Text("one\n".into())).await.unwrap();
        text_until(&mut ws, "one").await;
        drop(ws);
        let mut ws = connect(&app, &key, &format!("?session={sid}")).await;
        let first = text_until(&mut ws, "session_id").await;
        assert!(first.contains(&sid), "{first}");
        text_until(&mut ws, "one").await;
        ws.send(Message::Text("two\n".into())).await.unwrap();
        text_until(&mut ws, "two").await;
        let (s, _) = app
            .call(
                Method::DELETE,
                &format!("/sandboxes/dev/sessions/{sid}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);

        // Bad start message.
        let mut ws = connect(&app, &key, "").await;
        ws.send(Message::Text("{}".into())).await.unwrap();
        let e = text_until(&mut ws, "error").await;
        assert_eq!(e, r#"{"error":"cmd required"}"#);
        app.stop().await;
    }
}
