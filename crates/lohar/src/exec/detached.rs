//! Detached exec: a new session, output to a file, reaped in the background.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::Arc;

use bhatti_proto::msg::{DetachReply, ExecRequest};
use bhatti_proto::FrameType;

use super::spawn::{spawn_failure, Grouping};
use crate::wire::FrameWriter;
use crate::Agent;

/// Starts `req` fully detached and replies `{pid, output_file}` then EXIT(0).
pub async fn run(agent: Arc<Agent>, req: ExecRequest, wr: FrameWriter) {
    let output_file = match req.output_file.as_deref() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!(
            "/tmp/bhatti-detach-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ),
    };
    let file = match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&output_file)
    {
        Ok(f) => f,
        Err(e) => {
            let _ = wr.error(format!("open {output_file}: {e}")).await;
            return;
        }
    };
    if let Some((uid, gid)) = agent.ctx.run_as {
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    let err_file = match file.try_clone() {
        Ok(f) => f,
        Err(e) => {
            let _ = wr.error(format!("dup {output_file}: {e}")).await;
            return;
        }
    };
    let mut cmd = agent.ctx.command(
        &req.argv,
        req.env.as_ref(),
        req.cwd.as_deref(),
        Grouping::Session,
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file));
    match agent.reaper.spawn(&mut cmd) {
        Ok((child, _exit)) => {
            // Dropping the exit receiver leaves the child to the reaper alone.
            let reply = DetachReply {
                pid: child.id() as i32,
                output_file,
            };
            let _ = wr.send_json(FrameType::Stdout, &reply).await;
            let _ = wr.exit(0).await;
        }
        Err(e) => {
            let (_, msg) = spawn_failure(&req.argv[0], &e);
            let _ = wr.error(msg.trim_end()).await;
        }
    }
}
