//! Piped and detached exec.

use std::time::{Duration, Instant};

use bhatti_engine::agent::AgentEvent;
use bhatti_proto::msg::ExecRequest;

use crate::harness::*;

#[tokio::test]
async fn exit_codes() {
    let l = Lohar::start().await;
    for (script, want) in [
        ("true", 0),
        ("false", 1),
        ("exit 42", 42),
        ("kill -9 $$", 137),
    ] {
        let out = l.client.exec(&sh(script), None, None).await.unwrap();
        assert_eq!(out.exit_code, want, "{script}");
    }
}

#[tokio::test]
async fn missing_program_is_127_with_message() {
    let l = Lohar::start().await;
    let out = l
        .client
        .exec(&ExecRequest::command(["/nonexistent/prog"]), None, None)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 127);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/prog"));
}

#[tokio::test]
async fn stdout_and_stderr_are_separate() {
    let l = Lohar::start().await;
    let out = l
        .client
        .exec(
            &sh("echo to-out; echo to-err >&2; echo more-out"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"to-out\nmore-out\n");
    assert_eq!(out.stderr, b"to-err\n");
}

#[tokio::test]
async fn one_megabyte_of_output_arrives_intact() {
    let l = Lohar::start().await;
    let out = l
        .client
        .exec(
            &sh("head -c 1048576 /dev/urandom | od -An -tx1 -v | head -c 1048576"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), 1 << 20);
    // Check content identity by round-tripping through a file write.
    let p = l.path("big.txt");
    l.client
        .write_file_bytes(p.to_str().unwrap(), 0o644, &out.stdout)
        .await
        .unwrap();
    let sum = l
        .client
        .exec(&sh(&format!("wc -c < {}", p.display())), None, None)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sum.stdout).trim(), "1048576");
}

#[tokio::test]
async fn stdin_is_piped_and_closed() {
    let l = Lohar::start().await;
    let input: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let out = l
        .client
        .exec(&ExecRequest::command(["cat"]), Some(&input), None)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, input);
}

#[tokio::test]
async fn env_and_cwd_apply() {
    let l = Lohar::start_with(Some(
        serde_json::json!({"env": {"FROM_CONFIG": "cfg", "OVERRIDE": "config"}}),
    ))
    .await;
    let mut req = sh("echo $FROM_CONFIG $OVERRIDE $FROM_REQ; pwd");
    req.env = Some(
        [
            ("OVERRIDE".to_string(), "request".to_string()),
            ("FROM_REQ".into(), "req".into()),
        ]
        .into(),
    );
    req.cwd = Some(l.dir.path().display().to_string());
    let out = l.client.exec(&req, None, None).await.unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s, format!("cfg request req\n{}\n", l.dir.path().display()));
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let l = Lohar::start().await;
    let pidfile = l.path("bg.pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
    let started = Instant::now();
    let out = l
        .client
        .exec(&sh(&script), None, Some(Duration::from_millis(700)))
        .await
        .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, 124);
    assert!(started.elapsed() < Duration::from_secs(5));
    let bg = read_pid(&pidfile);
    assert!(
        eventually(5, || async { !pid_alive(bg) }).await,
        "background child {bg} survived the kill"
    );
}

#[tokio::test]
async fn streaming_delivers_output_before_exit() {
    let l = Lohar::start().await;
    let mut ch = l
        .client
        .exec_stream(&sh("echo first; sleep 1; echo second"))
        .await
        .unwrap();
    let t0 = Instant::now();
    match ch.next_event().await.unwrap() {
        Some(AgentEvent::Stdout(b)) => assert_eq!(&b[..], b"first\n"),
        other => panic!("{other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "first line was not streamed"
    );
    let rest = read_until(&mut ch, "second").await;
    assert!(rest.contains("second"));
}

#[tokio::test]
async fn background_child_holding_pipes_does_not_hang_exec() {
    let l = Lohar::start().await;
    let t0 = Instant::now();
    let out = l
        .client
        .exec(
            &sh("sleep 30 & echo done"),
            None,
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(!out.timed_out);
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, b"done\n");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn detached_exec_survives_and_writes_its_file() {
    let l = Lohar::start().await;
    let outfile = l.path("detached.log");
    let mut req = sh("echo detached-out; echo detached-err >&2; sleep 0.2; echo late");
    req.output_file = Some(outfile.display().to_string());
    let reply = l.client.exec_detached(&req).await.unwrap();
    assert!(reply.pid > 0);
    assert_eq!(reply.output_file, outfile.display().to_string());
    let ok = eventually(5, || async {
        std::fs::read_to_string(&outfile)
            .map(|s| s.contains("late"))
            .unwrap_or(false)
    })
    .await;
    assert!(ok);
    let s = std::fs::read_to_string(&outfile).unwrap();
    assert!(s.contains("detached-out") && s.contains("detached-err"));
    // Reaped: no zombie left behind.
    assert!(eventually(5, || async { !pid_alive(reply.pid) }).await);
}

#[tokio::test]
async fn empty_argv_is_an_error() {
    let l = Lohar::start().await;
    let err = l
        .client
        .exec(&ExecRequest::default(), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("argv required"), "{err}");
}
