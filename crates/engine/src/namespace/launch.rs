//! The daemon's side of launching a sandbox: start the helper, hand it the spec, map its ids,
//! let the caller attach the network, and learn the host pid of the sandbox's PID 1.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::protocol::{FromLauncher, LaunchSpec, ToLauncher};

/// How long one launch may take before it is abandoned.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A launch failure, with the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {error}")]
pub struct LaunchError {
    /// What was being done.
    pub step: String,
    /// Why it failed.
    pub error: String,
}

fn err(step: &str, e: impl std::fmt::Display) -> LaunchError {
    LaunchError {
        step: step.into(),
        error: e.to_string(),
    }
}

/// Starts `helper` (e.g. `["/proc/self/exe", "__nsinit"]`), which builds the sandbox.
/// `spawned(pid)` runs right after the helper starts (put it in the cgroup there);
/// `unshared(pid)` runs once it is in its namespaces (attach the network there).
/// Returns the host pid of the sandbox's PID 1.
pub async fn launch<S, U, UF>(
    helper: &[String],
    spec: &LaunchSpec,
    spawned: S,
    unshared: U,
) -> Result<i32, LaunchError>
where
    S: FnOnce(u32) -> Result<(), LaunchError>,
    U: FnOnce(u32) -> UF,
    UF: Future<Output = Result<(), LaunchError>>,
{
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| err("socketpair", e))?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(&helper[0]);
    cmd.args(&helper[1..])
        .arg("3")
        .stdin(std::process::Stdio::null())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: dup2 is async-signal-safe; it gives the helper the socket as fd 3 (without
    // CLOEXEC), which is all that happens between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(child_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err("start launcher", e))?;
    drop(theirs);
    let helper_pid = child.id().ok_or_else(|| err("start launcher", "no pid"))?;
    spawned(helper_pid)?;

    ours.set_nonblocking(true).map_err(|e| err("socket", e))?;
    let sock = tokio::net::UnixStream::from_std(ours).map_err(|e| err("socket", e))?;
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();

    let drive = async {
        send(&mut w, &ToLauncher::Launch(Box::new(spec.clone()))).await?;
        match recv(&mut lines).await? {
            FromLauncher::Unshared => {}
            FromLauncher::Failed { step, error } => return Err(LaunchError { step, error }),
            other => return Err(err("handshake", format!("unexpected {other:?}"))),
        }
        unshared(helper_pid).await?;
        send(&mut w, &ToLauncher::Proceed).await?;
        let pid = match recv(&mut lines).await? {
            FromLauncher::Started { pid } => pid,
            FromLauncher::Failed { step, error } => return Err(LaunchError { step, error }),
            other => return Err(err("handshake", format!("unexpected {other:?}"))),
        };
        // The socket closes when the sandbox's init execs lohar (CLOEXEC); a failure before
        // that arrives as a message.
        loop {
            match lines.next_line().await {
                Ok(None) => return Ok(pid),
                Ok(Some(l)) => {
                    if let Ok(FromLauncher::Failed { step, error }) = serde_json::from_str(&l) {
                        return Err(LaunchError { step, error });
                    }
                }
                Err(e) => return Err(err("read launcher", e)),
            }
        }
    };
    let result = match tokio::time::timeout(LAUNCH_TIMEOUT, drive).await {
        Ok(r) => r,
        Err(_) => Err(err("launch", format!("timed out after {LAUNCH_TIMEOUT:?}"))),
    };
    // The helper exits right after forking the sandbox's init; reap it.
    match result {
        Ok(pid) => {
            let status = child.wait().await.map_err(|e| err("wait launcher", e))?;
            if !status.success() {
                return Err(err("launcher", format!("exited with {status}")));
            }
            Ok(pid)
        }
        Err(e) => {
            let _ = child.kill().await;
            Err(e)
        }
    }
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, m: &ToLauncher) -> Result<(), LaunchError> {
    let mut line = serde_json::to_vec(m).map_err(|e| err("encode", e))?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| err("write to launcher", e))
}

async fn recv(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<FromLauncher, LaunchError> {
    match lines.next_line().await {
        Ok(Some(l)) => serde_json::from_str(&l).map_err(|e| err("decode launcher message", e)),
        Ok(None) => Err(err("launcher", "exited before finishing")),
        Err(e) => Err(err("read launcher", e)),
    }
}
