//! `POST /sandboxes/:id/exec`: buffered, streamed (NDJSON events) or detached.
//!
//! Unlike the original, a timeout **kills the process group** (KILL to the agent) and says so:
//! exit code 124, `timed_out: true` and a note on stderr. Output that is not valid UTF-8 is
//! never silently mangled: buffered results add `stdout_b64`/`stderr_b64`, stream events add
//! `data_b64`.

use std::time::Duration;

use base64::Engine as _;
use bhatti_api::ops::{DEFAULT_EXEC_TIMEOUT_SECS, MAX_EXEC_TIMEOUT_SECS, TIMEOUT_EXIT_CODE};
use bhatti_api::{ExecEvent, ExecRequest, ExecResult};
use bhatti_engine::agent::{
    AgentChannel, AgentError, AgentEvent, ChannelWriter, MAX_BUFFERED_OUTPUT, TRUNCATION_MARKER,
};
use tokio::sync::mpsc;

use super::agent;
use super::ServiceError;
use crate::ids;
use crate::state::AppState;
use crate::store::users::UserRow;
use crate::validate;

/// After the timeout's KILL, how long to wait for the agent to report the exit.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What an exec produced.
pub enum ExecOutcome {
    /// The finished command (buffered mode).
    Done(ExecResult),
    /// A detached process: `pid`, `output_file`, `detached`.
    Detached(ExecResult),
    /// Events, as produced (streaming mode).
    Stream(mpsc::Receiver<ExecEvent>),
}

/// A validated request.
struct Plan {
    req: bhatti_proto::msg::ExecRequest,
    stdin: Vec<u8>,
    timeout_secs: u64,
    detach: bool,
}

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(m.into())
}

fn plan(req: ExecRequest) -> Result<Plan, ServiceError> {
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(invalid("cmd required"));
    }
    let timeout_secs = match req.timeout_sec {
        None | Some(0) => DEFAULT_EXEC_TIMEOUT_SECS,
        Some(t) if t > 0 && (t as u64) <= MAX_EXEC_TIMEOUT_SECS => t as u64,
        Some(t) => {
            return Err(invalid(format!(
                "timeout_sec must be between 1 and {MAX_EXEC_TIMEOUT_SECS} (got {t}; 0 or absent means {DEFAULT_EXEC_TIMEOUT_SECS})"
            )))
        }
    };
    if let Some(env) = &req.env {
        if let Some(k) = env.keys().find(|k| !validate::is_valid_env_key(k)) {
            return Err(invalid(format!("invalid env var name {k:?}")));
        }
    }
    if let Some(cwd) = &req.cwd {
        if !cwd.starts_with('/') {
            return Err(invalid(format!(
                "cwd must be an absolute path (got {cwd:?})"
            )));
        }
    }
    if let Some(f) = &req.output_file {
        if !f.starts_with('/') {
            return Err(invalid(format!(
                "output_file must be an absolute path (got {f:?})"
            )));
        }
    }
    let stdin = match &req.stdin {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map_err(|e| invalid(format!("stdin is not valid base64: {e}")))?,
        None => Vec::new(),
    };
    if req.detach && !stdin.is_empty() {
        return Err(invalid("stdin cannot be combined with detach"));
    }
    let output_file = req.detach.then(|| {
        req.output_file
            .clone()
            .unwrap_or_else(|| format!("/tmp/bhatti-exec-{}.log", ids::random_hex(4)))
    });
    Ok(Plan {
        req: bhatti_proto::msg::ExecRequest {
            argv: req.cmd,
            env: req.env,
            cwd: req.cwd,
            detach: req.detach,
            output_file,
            ..Default::default()
        },
        stdin,
        timeout_secs,
        detach: req.detach,
    })
}

/// Runs `req` in one of the caller's sandboxes. `stream` selects NDJSON events (ignored for
/// detached execs, as in the original).
pub async fn exec(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    req: ExecRequest,
    stream: bool,
) -> Result<ExecOutcome, ServiceError> {
    let plan = plan(req)?;
    let (row, agent, busy) = agent::open(st, user, id_or_name).await?;
    if plan.detach {
        let r = agent::checked(st, &row, agent.exec_detached(&plan.req)).await?;
        return Ok(ExecOutcome::Detached(ExecResult {
            pid: Some(r.pid),
            output_file: Some(r.output_file),
            detached: true,
            ..Default::default()
        }));
    }
    // Connect before answering, so that failures still get a proper status.
    let ch = agent::checked(st, &row, agent.exec_stream(&plan.req)).await?;
    let (tx, rx) = mpsc::channel(64);
    // A running exec keeps the sandbox hot even when it is quiet (lohar only counts its start).
    tokio::spawn(async move {
        let _busy = busy;
        drive(ch, plan.stdin, plan.timeout_secs, tx).await
    });
    if stream {
        let (etx, erx) = mpsc::channel(64);
        tokio::spawn(to_events(rx, etx, plan.timeout_secs));
        Ok(ExecOutcome::Stream(erx))
    } else {
        collect(rx, plan.timeout_secs).await.map(ExecOutcome::Done)
    }
}

/// What [`drive`] reports: raw output, then one exit or error.
enum Raw {
    Out { stderr: bool, data: bytes::Bytes },
    Exit { code: i32, timed_out: bool },
    Error(AgentError),
}

/// The write side of an exec: stdin is written by its own task (so a command that does not
/// read its input cannot block the output), after which the writer is kept for KILL.
struct Input {
    task: Option<tokio::task::JoinHandle<ChannelWriter>>,
    writer: Option<ChannelWriter>,
}

impl Input {
    async fn kill(&mut self) {
        if let Some(mut t) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(1), &mut t).await {
                Ok(Ok(w)) => self.writer = Some(w),
                _ => t.abort(),
            }
        }
        if let Some(w) = self.writer.as_mut() {
            let _ = w.kill().await;
        }
    }
}

/// Runs one exec channel: writes `stdin` (then closes it), forwards output, enforces the
/// timeout (KILL to the process group, then up to [`KILL_GRACE`] for its last output) and
/// kills the command when the receiver goes away.
async fn drive(ch: AgentChannel, stdin: Vec<u8>, timeout_secs: u64, tx: mpsc::Sender<Raw>) {
    let (mut rd, mut wr) = ch.into_split();
    let mut input = Input {
        task: Some(tokio::spawn(async move {
            // A command that exits without reading its input closes the pipe: not an error.
            if wr.stdin(&stdin).await.is_ok() {
                let _ = wr.close_stdin().await;
            }
            wr
        })),
        writer: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let ev = tokio::select! {
            ev = rd.next_event() => ev,
            _ = tokio::time::sleep_until(deadline) => {
                input.kill().await;
                let grace = tokio::time::Instant::now() + KILL_GRACE;
                loop {
                    match tokio::time::timeout_at(grace, rd.next_event()).await {
                        Ok(Ok(Some(AgentEvent::Stdout(b)))) => { let _ = tx.send(Raw::Out { stderr: false, data: b }).await; }
                        Ok(Ok(Some(AgentEvent::Stderr(b)))) => { let _ = tx.send(Raw::Out { stderr: true, data: b }).await; }
                        Ok(Ok(Some(AgentEvent::SessionInfo(_)))) => {}
                        _ => break,
                    }
                }
                let _ = tx.send(Raw::Exit { code: TIMEOUT_EXIT_CODE, timed_out: true }).await;
                return;
            }
            _ = tx.closed() => {
                // Nobody is listening any more: do not leave the command running unobserved.
                input.kill().await;
                return;
            }
        };
        let raw = match ev {
            Ok(Some(AgentEvent::Stdout(b))) => Raw::Out {
                stderr: false,
                data: b,
            },
            Ok(Some(AgentEvent::Stderr(b))) => Raw::Out {
                stderr: true,
                data: b,
            },
            Ok(Some(AgentEvent::SessionInfo(_))) => continue,
            Ok(Some(AgentEvent::Exit(code))) => {
                let _ = tx
                    .send(Raw::Exit {
                        code,
                        timed_out: false,
                    })
                    .await;
                return;
            }
            Ok(Some(AgentEvent::Error(m))) => {
                let _ = tx.send(Raw::Error(AgentError::Remote(m))).await;
                return;
            }
            Ok(None) => {
                let _ = tx
                    .send(Raw::Error(AgentError::Unexpected(
                        "end of stream before the command exited".into(),
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Raw::Error(e)).await;
                return;
            }
        };
        if tx.send(raw).await.is_err() {
            input.kill().await;
            return;
        }
    }
}

/// Buffered mode: output within the 10 MiB budget (then the marker), exit code, timeout note.
async fn collect(
    mut rx: mpsc::Receiver<Raw>,
    timeout_secs: u64,
) -> Result<ExecResult, ServiceError> {
    let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
    while let Some(raw) = rx.recv().await {
        match raw {
            Raw::Out { stderr, data } => {
                let n = MAX_BUFFERED_OUTPUT
                    .saturating_sub(out.len() + err.len())
                    .min(data.len());
                let dst = if stderr { &mut err } else { &mut out };
                dst.extend_from_slice(&data[..n]);
                truncated |= n < data.len();
            }
            Raw::Exit { code, timed_out } => {
                if truncated {
                    err.extend_from_slice(TRUNCATION_MARKER.as_bytes());
                }
                if timed_out {
                    err.extend_from_slice(timeout_note(timeout_secs).as_bytes());
                }
                let (stdout, stdout_b64) = text_or_b64(out);
                let (stderr, stderr_b64) = text_or_b64(err);
                return Ok(ExecResult {
                    exit_code: code,
                    stdout,
                    stderr,
                    stdout_b64,
                    stderr_b64,
                    truncated,
                    timed_out,
                    ..Default::default()
                });
            }
            Raw::Error(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Task("exec ended without a result".into()))
}

/// Streaming mode: raw output → text events (characters never split, non-UTF-8 chunks with
/// their exact bytes), the timeout note, then `exit` or `error`.
async fn to_events(mut rx: mpsc::Receiver<Raw>, tx: mpsc::Sender<ExecEvent>, timeout_secs: u64) {
    let (mut out, mut err) = (Utf8Chunker::default(), Utf8Chunker::default());
    while let Some(raw) = rx.recv().await {
        let ev = match raw {
            Raw::Out { stderr, data } => {
                let c = if stderr { &mut err } else { &mut out };
                match c.push(&data) {
                    Some(chunk) => event(stderr, chunk),
                    None => continue,
                }
            }
            Raw::Exit { code, timed_out } => {
                flush(&tx, &mut out, &mut err).await;
                if timed_out {
                    let _ = tx
                        .send(event(true, (timeout_note(timeout_secs), None)))
                        .await;
                }
                let _ = tx
                    .send(ExecEvent::Exit {
                        exit_code: code,
                        timed_out,
                    })
                    .await;
                return;
            }
            Raw::Error(e) => {
                flush(&tx, &mut out, &mut err).await;
                let _ = tx
                    .send(ExecEvent::Error {
                        data: e.to_string(),
                    })
                    .await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            // The client went away; dropping `rx` makes `drive` kill the command.
            return;
        }
    }
}

/// The note appended to stderr when the timeout killed the command.
pub fn timeout_note(secs: u64) -> String {
    format!("\n[bhatti: command timed out after {secs}s; its process group was killed (exit code {TIMEOUT_EXIT_CODE})]\n")
}

/// Text of `bytes`, plus the exact bytes as base64 when they are not valid UTF-8.
fn text_or_b64(bytes: Vec<u8>) -> (String, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(s) => (s, None),
        Err(e) => {
            let b = e.into_bytes();
            (
                String::from_utf8_lossy(&b).into_owned(),
                Some(base64::engine::general_purpose::STANDARD.encode(&b)),
            )
        }
    }
}

/// Splits a byte stream into UTF-8 text chunks without cutting a character that straddles two
/// chunks; chunks holding invalid UTF-8 are passed through with their exact bytes.
#[derive(Debug, Default)]
pub struct Utf8Chunker {
    carry: Vec<u8>,
}

/// A chunk of output: text, and the exact bytes if the text is lossy.
pub type Chunk = (String, Option<Vec<u8>>);

impl Utf8Chunker {
    /// Feeds bytes; returns what can be emitted now.
    pub fn push(&mut self, data: &[u8]) -> Option<Chunk> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        match std::str::from_utf8(&buf) {
            Ok(_) => (!buf.is_empty()).then(|| (String::from_utf8(buf).unwrap_or_default(), None)),
            Err(e) if e.error_len().is_none() => {
                // Only the tail is an incomplete character: keep it for the next chunk.
                self.carry = buf.split_off(e.valid_up_to());
                (!buf.is_empty()).then(|| (String::from_utf8(buf).unwrap_or_default(), None))
            }
            Err(_) => Some((String::from_utf8_lossy(&buf).into_owned(), Some(buf))),
        }
    }

    /// What is left at the end (an incomplete character, passed through exactly).
    pub fn finish(&mut self) -> Option<Chunk> {
        let buf = std::mem::take(&mut self.carry);
        (!buf.is_empty()).then(|| (String::from_utf8_lossy(&buf).into_owned(), Some(buf)))
    }
}

fn event(stderr: bool, (data, raw): Chunk) -> ExecEvent {
    let data_b64 = raw.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    if stderr {
        ExecEvent::Stderr { data, data_b64 }
    } else {
        ExecEvent::Stdout { data, data_b64 }
    }
}

async fn flush(tx: &mpsc::Sender<ExecEvent>, out: &mut Utf8Chunker, err: &mut Utf8Chunker) {
    if let Some(c) = out.finish() {
        let _ = tx.send(event(false, c)).await;
    }
    if let Some(c) = err.finish() {
        let _ = tx.send(event(true, c)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &[&str]) -> ExecRequest {
        ExecRequest {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn validation() {
        let e = |r: ExecRequest| plan(r).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e(req(&[])), "cmd required");
        assert_eq!(e(req(&[""])), "cmd required");
        assert_eq!(plan(req(&["true"])).unwrap().timeout_secs, 300);
        for bad in [-1, 86_401] {
            let mut r = req(&["true"]);
            r.timeout_sec = Some(bad);
            assert!(e(r).contains("timeout_sec"), "{bad}");
        }
        let mut r = req(&["true"]);
        r.timeout_sec = Some(86_400);
        assert_eq!(plan(r).unwrap().timeout_secs, 86_400);
        let mut r = req(&["true"]);
        r.cwd = Some("tmp".into());
        assert!(e(r).contains("cwd"));
        let mut r = req(&["true"]);
        r.stdin = Some("!!".into());
        assert!(e(r).contains("base64"));
        let mut r = req(&["true"]);
        r.env = Some([("1X".to_string(), "v".to_string())].into());
        assert!(e(r).contains("env"));
        let mut r = req(&["true"]);
        r.detach = true;
        let p = plan(r).unwrap();
        assert!(p.req.output_file.unwrap().starts_with("/tmp/bhatti-exec-"));
    }

    #[test]
    fn utf8_chunks_keep_split_characters_whole() {
        let mut c = Utf8Chunker::default();
        let s = "é€😀".as_bytes();
        let mut text = String::new();
        for b in s {
            if let Some((t, raw)) = c.push(&[*b]) {
                assert!(raw.is_none());
                text.push_str(&t);
            }
        }
        assert!(c.finish().is_none());
        assert_eq!(text, "é€😀");
        let (t, raw) = c.push(&[b'a', 0xff, b'b']).unwrap();
        assert_eq!(raw.unwrap(), vec![b'a', 0xff, b'b']);
        assert_eq!(t, "a\u{fffd}b");
        assert!(c.push(&[0xe2, 0x82]).is_none());
        let (_, raw) = c.finish().unwrap();
        assert_eq!(raw.unwrap(), vec![0xe2, 0x82]);
    }

    #[test]
    fn binary_output_gets_b64() {
        assert_eq!(text_or_b64(b"hi".to_vec()), ("hi".into(), None));
        let (t, b) = text_or_b64(vec![0xff]);
        assert_eq!(t, "\u{fffd}");
        assert_eq!(b.as_deref(), Some("/w=="));
    }
}
