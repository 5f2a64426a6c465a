//! One-shot piped exec: stdout and stderr kept apart, stdin forwarded, KILL kills the group.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::msg::{ExecRequest, ProcStarted};
use bhatti_proto::FrameType;
use futures_util::StreamExt;
use nix::sys::signal::Signal;

use super::spawn::{spawn_failure, Grouping};
use super::{
    async_pipe_reader, async_pipe_writer, parse_signal, read_chunk, signal_group, StdinQueue,
    READ_CHUNK,
};
use crate::wire::{FrameReader, FrameWriter};
use crate::Agent;

/// How long output is still collected after the process exits, for pipes held open by its
/// background children (which would otherwise keep the exec from ever finishing).
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// Runs `req` with pipes and relays it over the connection until the process exits.
pub async fn run(agent: Arc<Agent>, req: ExecRequest, mut rd: FrameReader, wr: FrameWriter) {
    let mut cmd = agent.ctx.for_request(req.root).command(
        &req.argv,
        req.env.as_ref(),
        req.cwd.as_deref(),
        Grouping::ProcessGroup,
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit_rx) = match agent.reaper.spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            let (code, msg) = spawn_failure(&req.argv[0], &e);
            if req.report_pid {
                // v2 callers wait for PROC_STARTED: a start failure is an error, not a process.
                let _ = wr.error(msg.trim_end()).await;
            } else {
                let _ = wr.send(FrameType::Stderr, msg.as_bytes()).await;
                let _ = wr.exit(code).await;
            }
            return;
        }
    };
    let pgid = child.id() as i32;
    if req.report_pid {
        let _ = wr
            .send_json(FrameType::ProcStarted, &ProcStarted { pid: pgid })
            .await;
    }
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let stdin = child.stdin.take().map(OwnedFd::from);

    let out_task = stdout.map(|fd| tokio::spawn(pump(fd, FrameType::Stdout, wr.clone())));
    let err_task = stderr.map(|fd| tokio::spawn(pump(fd, FrameType::Stderr, wr.clone())));

    // Input runs in its own task so a child that does not read stdin cannot stall output, and
    // stdin is written by a queue of its own so that it cannot stall signals either.
    let input_task = tokio::spawn(async move {
        let mut stdin = StdinQueue::new(stdin.and_then(|fd| async_pipe_writer(fd).ok()));
        while let Some(item) = rd.next().await {
            let Ok(frame) = item else { break };
            match frame.ty {
                FrameType::Stdin => stdin.push(frame.payload),
                FrameType::Kill => signal_group(pgid, Signal::SIGKILL),
                FrameType::Signal => {
                    if let Some(sig) = parse_signal(&frame.payload) {
                        signal_group(pgid, sig);
                    }
                }
                _ => {}
            }
        }
        // The host closed its side: only stdin closes; the process keeps running.
    });

    let code = exit_rx.await.unwrap_or(1);
    for task in [out_task, err_task].into_iter().flatten() {
        let abort = task.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    input_task.abort();
    if agent.sync_on_exit {
        let _ = tokio::task::spawn_blocking(nix::unistd::sync).await;
    }
    let _ = wr.exit(code).await;
    wr.shutdown().await;
}

/// Copies a pipe into frames of `ty` until EOF. Write failures (host gone) do not stop the
/// draining, so the child never blocks on a full pipe.
async fn pump(fd: OwnedFd, ty: FrameType, wr: FrameWriter) {
    let Ok(mut r) = async_pipe_reader(fd) else {
        return;
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut host_gone = false;
    while let Ok(Some(n)) = read_chunk(&mut r, &mut buf).await {
        if !host_gone && wr.send(ty, &buf[..n]).await.is_err() {
            host_gone = true;
        }
    }
}
