//! Protocol v2 (frames 0x70–0x75): PROC_STARTED, SIGNAL, FS_REQ/FS_RESP, WATCH_REQ/WATCH_EVENT,
//! through the host-side client against a real lohar in test mode.

use std::process::{Command, Stdio};
use std::time::Duration;

use bhatti_engine::agent::{AgentClient, AgentEvent};
use bhatti_engine::AgentEndpoint;
use bhatti_proto::msg::{ExecRequest, FsOp, FsRequest, WatchRequest};

use crate::harness::*;

/// A test-mode lohar with v2 filesystem operations enabled (`LOHAR_FS_OPS=1`).
struct FsLohar {
    child: std::process::Child,
    dir: tempfile::TempDir,
    client: AgentClient,
}

impl Drop for FsLohar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_fs_ops() -> FsLohar {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let forward = dir.path().join("forward.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_lohar"))
        .env("LOHAR_TEST", "1")
        .env("LOHAR_FS_OPS", "1")
        .env("LOHAR_SOCK", &control)
        .env("LOHAR_FWD_SOCK", &forward)
        .env("LOHAR_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn lohar");
    let client = AgentClient::new(AgentEndpoint::Unix {
        control,
        forward,
        token: None,
    });
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    FsLohar { child, dir, client }
}

fn fs(op: FsOp, path: String, dest: Option<String>, depth: Option<u32>) -> FsRequest {
    FsRequest {
        op,
        path,
        dest,
        depth,
    }
}

#[tokio::test]
async fn exec_reports_pid_and_takes_signals() {
    let l = Lohar::start().await;
    let (pid, ch) = l
        .client
        .exec_started(&ExecRequest::command([
            "sh",
            "-c",
            "trap 'echo term; exit 9' TERM; echo ready; while :; do sleep 0.05; done",
        ]))
        .await
        .unwrap();
    assert!(pid > 1);
    let (mut rd, mut wr) = ch.into_split();
    assert_eq!(
        rd.next_event().await.unwrap(),
        Some(AgentEvent::Stdout("ready\n".into()))
    );
    wr.signal(15).await.unwrap();
    let mut out = Vec::new();
    let code = loop {
        match rd.next_event().await.unwrap() {
            Some(AgentEvent::Stdout(b)) => out.extend_from_slice(&b),
            // The group's `sleep` may die of the same SIGTERM and the shell report it.
            Some(AgentEvent::Stderr(_)) => {}
            Some(AgentEvent::Exit(c)) => break c,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 9);
    assert_eq!(out, b"term\n");

    // A program that cannot start is an error, not a process.
    let err = l
        .client
        .exec_started(&ExecRequest::command(["/no/such/program"]))
        .await
        .err()
        .expect("start failure");
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

/// A process that never reads its stdin must still take a signal sent after megabytes of input:
/// lohar keeps reading the connection (input is queued, and cut beyond its cap).
#[tokio::test]
async fn signal_is_not_stuck_behind_unread_stdin() {
    let l = Lohar::start().await;
    let (_pid, ch) = l
        .client
        .exec_started(&ExecRequest::command(["sleep", "600"]))
        .await
        .unwrap();
    let (mut rd, mut wr) = ch.into_split();
    let chunk = vec![b'x'; 64 * 1024];
    // 8 MiB: far beyond the pipe, the socket buffers and lohar's stdin cap.
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..128 {
            wr.stdin(&chunk).await.unwrap();
        }
    })
    .await;
    assert!(sent.is_ok(), "lohar stopped reading while stdin was full");
    wr.signal(9).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.next_event().await.unwrap() {
                Some(AgentEvent::Exit(c)) => break c,
                Some(_) => {}
                None => panic!("stream ended without exit"),
            }
        }
    })
    .await
    .expect("SIGKILL delivered");
    assert_eq!(code, 128 + 9);
}

#[tokio::test]
async fn fs_ops_and_watch() {
    let l = start_fs_ops().await;
    let root = l.dir.path().join("t").display().to_string();
    let r = l
        .client
        .fs(&fs(FsOp::Mkdir, format!("{root}/a/b"), None, None))
        .await
        .unwrap();
    assert!(r.created);
    assert_eq!(r.entries[0].kind, "dir");
    assert_eq!(r.entries[0].permissions, "drwxr-xr-x");

    let mut w = l
        .client
        .watch(&WatchRequest {
            path: format!("{root}/a"),
            recursive: true,
        })
        .await
        .unwrap();
    std::fs::write(format!("{root}/a/b/new.txt"), b"x").unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((ev.op.as_str(), ev.name.as_str()), ("create", "b/new.txt"));
    drop(w);

    let list = l
        .client
        .fs(&fs(FsOp::List, format!("{root}/a"), None, Some(2)))
        .await
        .unwrap();
    let paths: Vec<_> = list.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        paths,
        [format!("{root}/a/b"), format!("{root}/a/b/new.txt")]
    );
    let moved = l
        .client
        .fs(&fs(
            FsOp::Move,
            format!("{root}/a/b/new.txt"),
            Some(format!("{root}/c/moved.txt")),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(moved.entries[0].size, 1);
    l.client
        .fs(&fs(FsOp::Remove, format!("{root}/a"), None, None))
        .await
        .unwrap();
    let err = l
        .client
        .fs(&fs(FsOp::Stat, format!("{root}/a"), None, None))
        .await
        .unwrap_err();
    assert!(
        err.is_not_found() || err.to_string().contains("no such file"),
        "{err}"
    );
}

#[tokio::test]
async fn fs_ops_are_off_in_plain_test_mode() {
    let l = Lohar::start().await;
    let p = l.path("x").display().to_string();
    let err = l
        .client
        .fs(&fs(FsOp::Mkdir, p.clone(), None, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disabled"), "{err}");
    assert!(!std::path::Path::new(&p).exists());
}
