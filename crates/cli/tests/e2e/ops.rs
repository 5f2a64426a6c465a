//! exec, files, ps/kill and ports through the real CLI, daemon and sandboxes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::gvisor::Eng;
use crate::harness::Daemon;
use crate::require_e2e;

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn tiny(d: &Daemon, name: &str, extra: &[&str]) {
    let mut args = vec![
        "create", "--name", name, "--image", "tiny", "--memory", "256",
    ];
    args.extend_from_slice(extra);
    d.ok(&args);
}

#[test]
fn exec_exit_codes_output_env_secrets_stdin() {
    exec_suite(Eng::Namespace);
}

#[test]
fn gvisor_exec_exit_codes_output_env_secrets_stdin() {
    exec_suite(Eng::Gvisor);
}

fn exec_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    d.ok(&["secret", "set", "API_KEY", "sk-from-secret"]);
    env.tiny("dev", &["--env", "FOO=from-env", "--secret", "API_KEY"]);

    for (cmd, code) in [
        (vec!["true"], 0),
        (vec!["false"], 1),
        (vec!["sh", "-c", "exit 42"], 42),
        (vec!["sh", "-c", "kill -TERM $$"], 143),
    ] {
        let mut args = vec!["exec", "dev", "--"];
        args.extend(cmd.iter().copied());
        let (c, _, err) = d.cli(&args);
        assert_eq!(c, code, "{cmd:?}: {err}");
    }
    let (c, _, err) = d.cli(&["exec", "nope", "--", "true"]);
    assert_ne!(c, 0);
    assert!(err.contains("not found"), "{err}");

    // stdout and stderr stay separate.
    let (c, out, err) = d.cli(&["exec", "dev", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!((c, out.as_str(), err.as_str()), (0, "out\n", "err\n"));

    // The create-time env and the secret reach the command; so does exec --env.
    let out = d.ok(&["exec", "dev", "--", "sh", "-c", "echo $FOO $API_KEY"]);
    assert_eq!(out, "from-env sk-from-secret\n");
    let out = d.ok(&[
        "exec",
        "dev",
        "-e",
        "API_KEY=override",
        "--",
        "sh",
        "-c",
        "echo $API_KEY",
    ]);
    assert_eq!(out, "override\n");

    // Piped stdin is forwarded; /dev/null stdin means empty input.
    let (c, out, err) = d.cli_stdin(&["exec", "dev", "--", "cat"], b"hi\n");
    assert_eq!((c, out.as_slice()), (0, &b"hi\n"[..]), "{err}");
    assert_eq!(d.ok(&["exec", "dev", "--", "cat"]), "");
    let (_, out, _) = d.cli_stdin(&["exec", "dev", "-n", "--", "cat"], b"ignored");
    assert!(out.is_empty());

    // --json: the result object, and still the remote exit code.
    let (c, out, _) = d.cli(&["--json", "exec", "dev", "--", "sh", "-c", "echo j; exit 3"]);
    assert_eq!(c, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stdout"], "j\n");

    // Binary output comes out byte-exact.
    let (c, out, _) = d.cli_stdin(&["exec", "dev", "--", "sh", "-c", "printf 'a\\377b'"], b"");
    assert_eq!((c, out.as_slice()), (0, &b"a\xffb"[..]));

    // --detach returns at once; the process keeps running.
    let out = d.ok(&[
        "exec",
        "dev",
        "--detach",
        "--",
        "sh",
        "-c",
        "sleep 1; echo late",
    ]);
    assert!(out.starts_with("pid: "), "{out}");
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("output: "))
        .unwrap()
        .to_string();
    assert!(file.starts_with("/tmp/bhatti-exec-"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, content, _) = d.cli(&["file", "read", "dev", &file]);
        if content == "late\n" {
            break;
        }
        assert!(Instant::now() < deadline, "detached output: {content:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // No command: help, exit 0.
    let (c, out, _) = d.cli(&["exec", "dev"]);
    assert_eq!(c, 0);
    assert!(out.contains("Usage"), "{out}");
}

#[test]
fn exec_timeout_and_streaming() {
    require_e2e!();
    let d = Daemon::start();
    tiny(&d, "dev", &[]);

    // The timeout kills the process group and says so.
    let started = Instant::now();
    let (c, _, err) = d.cli(&[
        "exec",
        "dev",
        "--timeout",
        "2",
        "--",
        "sh",
        "-c",
        "sleep 30; echo never",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c, 124, "{err}");
    assert!(err.contains("timed out after 2s"), "{err}");
    let ps = d.ok(&["exec", "dev", "--", "ps"]);
    assert!(!ps.contains("sleep 30"), "still running:\n{ps}");
    // The same when streaming.
    let o = d
        .command(&["exec", "dev", "--timeout", "2", "--", "sleep", "30"])
        .env("BHATTI_FORCE_STREAM", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&o.stderr).contains("timed out"));

    // Streaming: the first line arrives while the command still runs.
    let mut child = d
        .command(&[
            "exec",
            "dev",
            "--",
            "sh",
            "-c",
            "echo first; sleep 3; echo second >&2; echo third; exit 7",
        ])
        .env("BHATTI_FORCE_STREAM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first line only came at the end"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(rest, "third\n");
    assert_eq!(err, "second\n");
    assert_eq!(status.code(), Some(7));

    // Bad input gets a clear error.
    let (c, _, err) = d.cli(&["exec", "dev", "--timeout", "90000", "--", "true"]);
    assert_ne!(c, 0);
    assert!(
        err.contains("Bad Request") && err.contains("timeout_sec"),
        "{err}"
    );
    let (c, _, err) = d.cli(&["exec", "dev", "--cwd", "rel", "--", "true"]);
    assert_ne!(c, 0);
    assert!(err.contains("cwd must be an absolute path"), "{err}");
    // Raw API: bad JSON, empty cmd, no key.
    let curl = |args: &[&str]| {
        let o = d.in_netns("curl", args);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let url = format!("{}/sandboxes/dev/exec", d.url());
    let auth = format!("Authorization: Bearer {}", d.token);
    let out = curl(&["-s", "-w", "%{http_code}", "-H", &auth, "-d", "{nope", &url]);
    assert!(
        out.contains("invalid json") && out.ends_with("400"),
        "{out}"
    );
    let out = curl(&[
        "-s",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        "-d",
        r#"{"cmd":[]}"#,
        &url,
    ]);
    assert!(
        out.contains("cmd required") && out.ends_with("400"),
        "{out}"
    );
    let out = curl(&[
        "-s",
        "-w",
        "%{http_code}",
        "-d",
        r#"{"cmd":["true"]}"#,
        &url,
    ]);
    assert!(out.ends_with("401"), "{out}");
    let huge = d.dir.path().join("huge.json");
    std::fs::write(
        &huge,
        format!(r#"{{"cmd":["echo","{}"]}}"#, "x".repeat(2 << 20)),
    )
    .unwrap();
    let out = curl(&[
        "-s",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        "--data-binary",
        &format!("@{}", huge.display()),
        &url,
    ]);
    assert!(out.contains("too large") && out.ends_with("413"), "{out}");
    let other = curl(&[
        "-s",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        "-d",
        r#"{"cmd":["true"]}"#,
        &format!("{}/sandboxes/nope/exec", d.url()),
    ]);
    assert!(other.ends_with("404"), "{other}");
}

#[test]
fn files_round_trip_caps_and_ls() {
    files_suite(Eng::Namespace);
}

#[test]
fn gvisor_files_round_trip_caps_and_ls() {
    files_suite(Eng::Gvisor);
}

fn files_suite(eng: Eng) {
    require_e2e!();
    let Some(env) = eng.start("") else {
        return;
    };
    let d = &env.d;
    env.tiny("dev", &[]);
    let tmp = tempfile::tempdir().unwrap();

    // Small text through a pipe, as the seed shows.
    let (c, out, err) = d.cli_stdin(
        &["file", "write", "dev", "/workspace/app.js"],
        b"console.log(\"hello\")\n",
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(out, b"ok\n");
    assert_eq!(
        d.ok(&["file", "read", "dev", "/workspace/app.js"]),
        "console.log(\"hello\")\n"
    );
    let ls = d.ok(&["file", "ls", "dev", "/workspace/"]);
    assert!(ls.contains("-0644       21 app.js"), "{ls}");

    // 1 MB and 100 MB from files (streamed), read back to files; checksums match.
    for size in [1_000_000usize, 100 * 1024 * 1024] {
        let mut data = vec![0u8; size];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 253) as u8 ^ (i >> 12) as u8;
        }
        let src = tmp.path().join(format!("src-{size}"));
        std::fs::write(&src, &data).unwrap();
        let path = format!("/tmp/blob-{size}");
        let o = d
            .command(&["file", "write", "dev", &path])
            .stdin(std::fs::File::open(&src).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dst = tmp.path().join(format!("dst-{size}"));
        let o = d
            .command(&["file", "read", "dev", &path])
            .stdout(std::fs::File::create(&dst).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            sha(&std::fs::read(&dst).unwrap()),
            sha(&data),
            "size {size}"
        );
        let (_, out, _) = d.cli(&["exec", "dev", "--", "sha256sum", &path]);
        assert!(out.starts_with(&sha(&data)), "{out}");
    }

    // 100 MiB + 1 is refused, nothing written.
    let big = tmp.path().join("too-big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 * 1024 * 1024 + 1)
        .unwrap();
    let o = d
        .command(&["file", "write", "dev", "/tmp/too-big"])
        .stdin(std::fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("file too large"));
    // The server refuses it too, from the header alone.
    let out = d.in_netns(
        "curl",
        &[
            "-s",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {}", d.token),
            "-H",
            "Content-Length: 104857601",
            "--data-binary",
            "x",
            &format!("{}/sandboxes/dev/files?path=/tmp/too-big", d.url()),
        ],
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.ends_with("413") && out.contains("file too large"),
        "{out}"
    );
    let (c, _, _) = d.cli(&["exec", "dev", "--", "test", "-e", "/tmp/too-big"]);
    assert_eq!(c, 1, "a partial file was left");

    // Errors: missing → 404, directory → 400, relative → 400.
    for (args, want) in [
        (vec!["file", "read", "dev", "/nope"], "Not Found"),
        (vec!["file", "read", "dev", "/tmp"], "is a directory"),
        (vec!["file", "read", "dev", "relative"], "absolute"),
        (vec!["file", "ls", "dev", "/nope"], "Not Found"),
        (vec!["file", "read", "nope", "/etc/passwd"], "not found"),
    ] {
        let (c, _, err) = d.cli(&args);
        assert_ne!(c, 0, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // ls of 10 001 entries is capped with a sentinel.
    d.ok(&[
        "exec", "dev", "--", "sh", "-c",
        "mkdir /tmp/many && cd /tmp/many && i=0; while [ $i -lt 10001 ]; do : > f$i; i=$((i+1)); done",
    ]);
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["--json", "file", "ls", "dev", "/tmp/many"])).unwrap();
    assert_eq!(v.len(), 10_001);
    assert!(v[10_000]["name"]
        .as_str()
        .unwrap()
        .contains("truncated at 10000 entries"));

    // Concurrent readers never see a partial write.
    let a = vec![b'a'; 512 * 1024];
    let b = vec![b'b'; 512 * 1024];
    d.cli_stdin(&["file", "write", "dev", "/tmp/atomic"], &a);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..6 {
                let data = if i % 2 == 0 { &b } else { &a };
                let (c, _, err) = d.cli_stdin(&["file", "write", "dev", "/tmp/atomic"], data);
                assert_eq!(c, 0, "{err}");
            }
        });
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..6 {
                    let o = d
                        .command(&["file", "read", "dev", "/tmp/atomic"])
                        .output()
                        .unwrap();
                    assert!(o.status.success());
                    let got = o.stdout;
                    assert_eq!(got.len(), 512 * 1024);
                    assert!(got.iter().all(|x| *x == got[0]), "partial write seen");
                }
            });
        }
        writer.join().unwrap();
    });
}

#[test]
fn ps_kill_and_ports() {
    require_e2e!();
    let d = Daemon::start();
    d.ok(&[
        "create",
        "--name",
        "py",
        "--image",
        "minimal",
        "--memory",
        "512",
        "--init",
        "sleep 1000",
    ]);

    // The init script is a session.
    let table = d.ok(&["ps", "py"]);
    assert!(table.starts_with("ID         COMMAND"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("init") && l.contains("true")),
        "{table}"
    );
    let v: Vec<serde_json::Value> = serde_json::from_str(&d.ok(&["--json", "ps", "py"])).unwrap();
    assert_eq!(v[0]["session_id"], "init");
    assert_eq!(v[0]["running"], true);
    let (c, _, err) = d.cli(&["kill", "py", "s999"]);
    assert_ne!(c, 0);
    assert!(err.contains("not found"), "{err}");
    assert!(d.ok(&["kill", "py", "init"]).contains("killed"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&d.ok(&["--json", "ps", "py"])).unwrap();
        if v.iter().all(|s| s["running"] == false) {
            break;
        }
        assert!(Instant::now() < deadline, "init still running: {v:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A python3 http.server shows up in ports; lohar's own ports do not.
    assert_eq!(d.ok(&["ports", "py"]), "No listening ports detected.\n");
    d.ok(&[
        "exec",
        "py",
        "--detach",
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let table = loop {
        let t = d.ok(&["ports", "py"]);
        if t.contains("8000") {
            break t;
        }
        assert!(Instant::now() < deadline, "port 8000 never listed: {t}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(table.starts_with("PORT"), "{table}");
    assert!(table.contains("/proxy/8000/"), "{table}");
    assert!(
        !table.contains("1024") && !table.contains("1025"),
        "{table}"
    );
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["--json", "ports", "py"])).unwrap();
    assert_eq!(v[0]["container_port"], 8000);
}
