//! TTY and piped sessions: resize, detach/reattach, replay ordering, steal, idle, limits, init.

use std::time::Duration;

use bhatti_engine::agent::AgentEvent;
use bhatti_proto::msg::ExecRequest;

use crate::harness::*;

fn tty(script: &str) -> ExecRequest {
    ExecRequest {
        tty: true,
        ..sh(script)
    }
}

fn attach(id: &str) -> ExecRequest {
    ExecRequest {
        session_id: Some(id.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn tty_session_has_a_terminal_and_resizes() {
    let l = Lohar::start().await;
    let mut ch = l
        .client
        .exec_stream(&ExecRequest {
            rows: Some(24),
            cols: Some(80),
            ..tty("exec /bin/sh")
        })
        .await
        .unwrap();
    let id = session_id(&mut ch).await;
    assert!(id.starts_with('s'));
    ch.writer()
        .stdin(b"stty size; echo MA\"\"RK1\n")
        .await
        .unwrap();
    let out = read_until(&mut ch, "MARK1\r\n").await;
    assert!(out.contains("24 80"), "{out:?}");
    ch.writer().resize(30, 100).await.unwrap();
    ch.writer()
        .stdin(b"stty size; echo MA\"\"RK2\n")
        .await
        .unwrap();
    let out = read_until(&mut ch, "MARK2\r\n").await;
    assert!(out.contains("30 100"), "{out:?}");
    ch.writer().stdin(b"tty; echo MA\"\"RK3\n").await.unwrap();
    let out = read_until(&mut ch, "MARK3\r\n").await;
    assert!(out.contains("/dev/pts/"), "{out:?}");
    ch.writer().stdin(b"exit 7\n").await.unwrap();
    loop {
        match ch.next_event().await.unwrap() {
            Some(AgentEvent::Exit(c)) => {
                assert_eq!(c, 7);
                break;
            }
            Some(_) => {}
            None => panic!("closed without exit"),
        }
    }
}

#[tokio::test]
async fn detach_and_reattach_replays_scrollback() {
    let l = Lohar::start().await;
    let mut ch = l
        .client
        .exec_stream(&tty("echo hello-scrollback; exec sleep 1000"))
        .await
        .unwrap();
    let id = session_id(&mut ch).await;
    read_until(&mut ch, "hello-scrollback").await;
    drop(ch);
    assert!(
        eventually(5, || async {
            l.client
                .list_sessions()
                .await
                .unwrap()
                .iter()
                .any(|s| s.session_id == id && !s.attached && s.running)
        })
        .await
    );
    let mut ch = l.client.exec_stream(&attach(&id)).await.unwrap();
    assert_eq!(session_id(&mut ch).await, id);
    let out = read_until(&mut ch, "hello-scrollback").await;
    assert!(out.starts_with("hello-scrollback"));
    let list = l.client.list_sessions().await.unwrap();
    assert!(list.iter().any(|s| s.session_id == id && s.attached));
    l.client.kill_session(&id).await.unwrap();
}

/// The replay is sent before any live byte: a fast counter's output, read across many
/// reattaches, must always be consecutive numbers.
#[tokio::test]
async fn no_live_byte_precedes_the_replay() {
    let l = Lohar::start().await;
    let mut req = sh("i=0; while :; do i=$((i+1)); echo $i; done");
    req.session = true;
    let mut ch = l.client.exec_stream(&req).await.unwrap();
    let id = session_id(&mut ch).await;
    drop(ch);
    for round in 0..30 {
        let mut ch = l.client.exec_stream(&attach(&id)).await.unwrap();
        assert_eq!(session_id(&mut ch).await, id);
        let mut buf = Vec::new();
        while buf.len() < 200_000 {
            match ch.next_event().await.unwrap() {
                Some(AgentEvent::Stdout(b)) => buf.extend_from_slice(&b),
                other => panic!("round {round}: {other:?}"),
            }
        }
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.split('\n');
        lines.next(); // the ring may cut the first line
        let nums: Vec<u64> = lines
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let nums = &nums[..nums.len() - 1]; // the last line may be cut too
        for w in nums.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "round {round}: out of order {} then {}",
                w[0],
                w[1]
            );
        }
        drop(ch);
    }
    l.client.kill_session(&id).await.unwrap();
}

#[tokio::test]
async fn attach_steals_from_the_previous_client() {
    let l = Lohar::start().await;
    let mut a = l
        .client
        .exec_stream(&tty("echo steal-me; exec sleep 1000"))
        .await
        .unwrap();
    let id = session_id(&mut a).await;
    read_until(&mut a, "steal-me").await;
    // if_detached refuses while A is attached.
    let mut refused = l
        .client
        .exec_stream(&ExecRequest {
            if_detached: true,
            ..attach(&id)
        })
        .await
        .unwrap();
    match refused.next_event().await.unwrap() {
        Some(AgentEvent::Error(e)) => assert_eq!(e, "session is attached"),
        other => panic!("{other:?}"),
    }
    let mut b = l.client.exec_stream(&attach(&id)).await.unwrap();
    assert_eq!(session_id(&mut b).await, id);
    read_until(&mut b, "steal-me").await;
    // A is told it lost the session: EXIT(0), then the connection closes.
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a.next_event().await.unwrap() {
                Some(AgentEvent::Exit(c)) => return Some(c),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ev, Some(0));
    l.client.kill_session(&id).await.unwrap();
}

#[tokio::test]
async fn idle_timeout_kills_a_detached_session() {
    let l = Lohar::start().await;
    let pidfile = l.path("idle.pid");
    let mut req = tty(&format!("echo $$ > {}; exec sleep 1000", pidfile.display()));
    req.max_idle_sec = Some(1);
    let mut ch = l.client.exec_stream(&req).await.unwrap();
    let id = session_id(&mut ch).await;
    assert!(
        eventually(5, || async {
            pidfile.exists() && std::fs::read_to_string(&pidfile).unwrap().ends_with('\n')
        })
        .await
    );
    let pid = read_pid(&pidfile);
    // While attached the idle timer does not run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pid_alive(pid));
    drop(ch);
    assert!(
        eventually(5, || async { !pid_alive(pid) }).await,
        "idle session not killed"
    );
    let list = l.client.list_sessions().await.unwrap();
    assert!(list.iter().all(|s| s.session_id != id || !s.running));
}

#[tokio::test]
async fn session_limit_is_enforced() {
    let l = Lohar::start().await;
    let mut chans = Vec::new();
    for _ in 0..20 {
        let mut ch = l.client.exec_stream(&tty("exec sleep 1000")).await.unwrap();
        let id = session_id(&mut ch).await;
        chans.push((id, ch));
    }
    let mut ch = l.client.exec_stream(&tty("exec sleep 1000")).await.unwrap();
    match ch.next_event().await.unwrap() {
        Some(AgentEvent::Error(e)) => assert_eq!(e, "session limit exceeded"),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.client.list_sessions().await.unwrap().len(), 20);
    for (id, _) in &chans {
        l.client.kill_session(id).await.unwrap();
    }
    // Sessions whose client was attached at exit are removed at once.
    assert!(
        eventually(5, || async {
            l.client.list_sessions().await.unwrap().is_empty()
        })
        .await
    );
}

#[tokio::test]
async fn exited_session_keeps_scrollback_for_a_late_reattach() {
    let l = Lohar::start().await;
    let mut ch = l
        .client
        .exec_stream(&tty("echo before-exit; sleep 0.3; exit 3"))
        .await
        .unwrap();
    let id = session_id(&mut ch).await;
    read_until(&mut ch, "before-exit").await;
    drop(ch);
    assert!(
        eventually(5, || async {
            l.client
                .list_sessions()
                .await
                .unwrap()
                .iter()
                .any(|s| s.session_id == id && !s.running && s.exit_code == Some(3))
        })
        .await
    );
    let mut ch = l.client.exec_stream(&attach(&id)).await.unwrap();
    session_id(&mut ch).await;
    let mut out = Vec::new();
    let code = loop {
        match ch.next_event().await.unwrap() {
            Some(AgentEvent::Stdout(b)) => out.extend_from_slice(&b),
            Some(AgentEvent::Exit(c)) => break c,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 3);
    assert!(String::from_utf8_lossy(&out).contains("before-exit"));
    // Retrieved once, then gone.
    assert!(l
        .client
        .list_sessions()
        .await
        .unwrap()
        .iter()
        .all(|s| s.session_id != id));
}

#[tokio::test]
async fn unknown_session_and_kill_errors() {
    let l = Lohar::start().await;
    let mut ch = l.client.exec_stream(&attach("s999")).await.unwrap();
    match ch.next_event().await.unwrap() {
        Some(AgentEvent::Error(e)) => assert_eq!(e, "session not found"),
        other => panic!("{other:?}"),
    }
    let err = l.client.kill_session("nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn init_session_runs_from_config() {
    let l = Lohar::start_with(Some(
        serde_json::json!({"init": "echo init-ran; exec sleep 1000"}),
    ))
    .await;
    assert!(
        eventually(5, || async {
            l.client
                .list_sessions()
                .await
                .unwrap()
                .iter()
                .any(|s| s.session_id == "init" && s.tty && s.running)
        })
        .await
    );
    let mut ch = l.client.exec_stream(&attach("init")).await.unwrap();
    assert_eq!(session_id(&mut ch).await, "init");
    read_until(&mut ch, "init-ran").await;
    l.client.kill_session("init").await.unwrap();
}

#[tokio::test]
async fn piped_session_merges_stderr_and_accepts_stdin() {
    let l = Lohar::start().await;
    let mut req = sh("echo out; echo err >&2; read line; echo got-$line");
    req.session = true;
    let mut ch = l.client.exec_stream(&req).await.unwrap();
    session_id(&mut ch).await;
    read_until(&mut ch, "err").await;
    ch.writer().stdin(b"xyz\n").await.unwrap();
    read_until(&mut ch, "got-xyz").await;
}

#[tokio::test]
async fn activity_reports_sessions() {
    let l = Lohar::start().await;
    let a0 = l.client.activity().await.unwrap();
    assert_eq!(a0.active_sessions, 0);
    let mut ch = l.client.exec_stream(&tty("exec sleep 1000")).await.unwrap();
    let id = session_id(&mut ch).await;
    let a = l.client.activity().await.unwrap();
    assert_eq!((a.active_sessions, a.attached_sessions), (1, 1));
    assert!(a.last_activity_unix > 0);
    drop(ch);
    assert!(
        eventually(5, || async {
            l.client.activity().await.unwrap().attached_sessions == 0
        })
        .await
    );
    l.client.kill_session(&id).await.unwrap();
}
