//! [`AgentClient`]: dial, authenticate, run one operation.

use std::time::Duration;

use bhatti_proto::msg::{
    json_frame, parse_json, Activity, DetachReply, ExecKillRequest, ExecRequest, FileInfo,
    FwdRequest, FwdResponse, PathRequest, SessionInfo,
};
use bhatti_proto::{Frame, FrameType};

use super::{AgentChannel, AgentError, AgentEvent, BoxedStream};
use crate::spec::AgentEndpoint;

/// Buffered exec keeps at most this much combined stdout + stderr (10 MiB).
pub const MAX_BUFFERED_OUTPUT: usize = 10 * 1024 * 1024;
/// Appended to stderr when buffered output was cut.
pub const TRUNCATION_MARKER: &str = "\n[output truncated at 10MB]";
/// Default time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for single-answer requests (list, stat, activity …).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After a timeout KILL, how long to wait for lohar's EXIT before giving up on it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Result of a buffered exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (124 when the timeout killed it).
    pub exit_code: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error bytes.
    pub stderr: Vec<u8>,
    /// Output beyond [`MAX_BUFFERED_OUTPUT`] was dropped.
    pub truncated: bool,
    /// The timeout expired and the process group was killed.
    pub timed_out: bool,
}

/// Client of one sandbox's lohar.
#[derive(Debug, Clone)]
pub struct AgentClient {
    endpoint: AgentEndpoint,
    connect_timeout: Duration,
}

impl AgentClient {
    /// A client for `endpoint`.
    pub fn new(endpoint: AgentEndpoint) -> Self {
        AgentClient {
            endpoint,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Overrides the connect timeout (readiness probes use short ones).
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &AgentEndpoint {
        &self.endpoint
    }

    async fn dial(&self, forward: bool) -> Result<BoxedStream, AgentError> {
        let connect = async {
            let (stream, token): (BoxedStream, _) = match &self.endpoint {
                AgentEndpoint::Tcp {
                    control,
                    forward: fwd,
                    token,
                } => {
                    let s = tokio::net::TcpStream::connect(if forward { fwd } else { control })
                        .await
                        .map_err(AgentError::Connect)?;
                    let _ = s.set_nodelay(true);
                    keepalive(&s);
                    (Box::new(ResetOnClose { inner: s }), token)
                }
                AgentEndpoint::Unix {
                    control,
                    forward: fwd,
                    token,
                } => {
                    let s = tokio::net::UnixStream::connect(if forward { fwd } else { control })
                        .await
                        .map_err(AgentError::Connect)?;
                    (Box::new(s), token)
                }
            };
            Ok::<_, AgentError>((stream, token.clone()))
        };
        let (mut stream, token) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| AgentError::Timeout(self.connect_timeout))??;
        if let Some(t) = token {
            bhatti_proto::io::write_frame(&mut stream, FrameType::Auth, t.as_bytes()).await?;
        }
        Ok(stream)
    }

    /// Opens a control connection and sends the request frame.
    pub(super) async fn request(&self, frame: &Frame) -> Result<AgentChannel, AgentError> {
        let stream = self.dial(false).await?;
        let mut ch = AgentChannel::new(stream);
        if let Err(e) = ch.writer().frame(frame.ty, &frame.payload).await {
            // lohar may already have refused (bad token, limits) and closed: its ERROR says why.
            return Err(refusal(&mut ch).await.unwrap_or(e));
        }
        Ok(ch)
    }

    /// Sends one request and returns the first answer frame (an ERROR becomes `Remote`).
    async fn single(&self, frame: Frame, want: FrameType) -> Result<Frame, AgentError> {
        let fut = async {
            let mut ch = self.request(&frame).await?;
            match ch.next_frame().await? {
                Some(f) if f.ty == want => Ok(f),
                Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
                Some(f) => Err(AgentError::Unexpected(f.ty.to_string())),
                None => Err(AgentError::Unexpected("end of stream".into())),
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| AgentError::Timeout(REQUEST_TIMEOUT))?
    }

    /// Starts an exec or session and returns its channel (the caller reads the events).
    pub async fn exec_stream(&self, req: &ExecRequest) -> Result<AgentChannel, AgentError> {
        self.request(&json_frame(FrameType::ExecReq, req)).await
    }

    /// Runs a command to completion, buffering output (capped at [`MAX_BUFFERED_OUTPUT`]).
    /// `stdin` is sent and closed first. On `timeout` the process group is killed and the
    /// result has `timed_out` set and exit code 124.
    pub async fn exec(
        &self,
        req: &ExecRequest,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, AgentError> {
        let mut ch = self.exec_stream(req).await?;
        if let Some(data) = stdin {
            ch.writer().stdin(data).await?;
            ch.writer().close_stdin().await?;
        }
        let mut out = ExecOutput::default();
        let collect = collect_output(&mut ch, &mut out);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, collect).await,
            None => Ok(collect.await),
        };
        match result {
            Ok(Ok(code)) => {
                out.exit_code = code;
                Ok(out)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // Timed out: kill the whole process group and wait briefly for lohar to confirm.
                ch.writer().kill().await?;
                let _ = tokio::time::timeout(KILL_GRACE, collect_output(&mut ch, &mut out)).await;
                out.exit_code = 124;
                out.timed_out = true;
                Ok(out)
            }
        }
    }

    /// Starts a detached process; returns its pid and output file.
    pub async fn exec_detached(&self, req: &ExecRequest) -> Result<DetachReply, AgentError> {
        let req = ExecRequest {
            detach: true,
            ..req.clone()
        };
        let f = self
            .single(json_frame(FrameType::ExecReq, &req), FrameType::Stdout)
            .await?;
        Ok(serde_json::from_slice(&f.payload)
            .map_err(|e| bhatti_proto::ProtoError::bad_payload("DetachReply", e))?)
    }

    /// Lists sessions.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>, AgentError> {
        let f = self
            .single(
                Frame::empty(FrameType::ExecListReq),
                FrameType::ExecListResp,
            )
            .await?;
        Ok(parse_json(&f)?)
    }

    /// SIGKILLs a session's process group.
    pub async fn kill_session(&self, session_id: &str) -> Result<(), AgentError> {
        let req = ExecKillRequest {
            session_id: session_id.into(),
        };
        self.single(json_frame(FrameType::ExecKill, &req), FrameType::Exit)
            .await?;
        Ok(())
    }

    /// The activity report.
    pub async fn activity(&self) -> Result<Activity, AgentError> {
        let f = self
            .single(
                Frame::empty(FrameType::ActivityReq),
                FrameType::ActivityResp,
            )
            .await?;
        Ok(parse_json(&f)?)
    }

    /// Stat (follows symlinks).
    pub async fn stat(&self, path: &str) -> Result<FileInfo, AgentError> {
        let f = self
            .single(
                json_frame(FrameType::FileStatReq, &PathRequest { path: path.into() }),
                FrameType::FileStatResp,
            )
            .await?;
        Ok(parse_json(&f)?)
    }

    /// Directory listing (capped by lohar at 10 000 entries plus a sentinel).
    pub async fn ls(&self, path: &str) -> Result<Vec<FileInfo>, AgentError> {
        let f = self
            .single(
                json_frame(FrameType::FileLsReq, &PathRequest { path: path.into() }),
                FrameType::FileLsResp,
            )
            .await?;
        Ok(parse_json(&f)?)
    }

    /// Opens a raw tunnel to `127.0.0.1:<port>` inside the sandbox.
    pub async fn forward(&self, port: u16) -> Result<BoxedStream, AgentError> {
        let mut stream = self.dial(true).await?;
        let f = json_frame(FrameType::FwdReq, &FwdRequest { port });
        let sent = bhatti_proto::io::write_frame(&mut stream, f.ty, &f.payload).await;
        let reply =
            tokio::time::timeout(REQUEST_TIMEOUT, bhatti_proto::io::read_frame(&mut stream))
                .await
                .map_err(|_| AgentError::Timeout(REQUEST_TIMEOUT))?;
        // A refused connection may fail the write; the ERROR frame it got first says why.
        let reply = match (sent, reply) {
            (Err(e), Ok(None) | Err(_)) => return Err(e.into()),
            (_, r) => r?,
        };
        match reply {
            Some(f) if f.ty == FrameType::FwdResp => {
                let r: FwdResponse = parse_json(&f)?;
                if r.is_ok() {
                    Ok(stream)
                } else {
                    Err(AgentError::Remote(
                        r.message.unwrap_or_else(|| "forward failed".into()),
                    ))
                }
            }
            Some(f) if f.ty == FrameType::Error => Err(AgentError::Remote(f.text())),
            Some(f) => Err(AgentError::Unexpected(f.ty.to_string())),
            None => Err(AgentError::Unexpected("end of stream".into())),
        }
    }

    /// Waits until lohar answers, probing with short, escalating timeouts so that a lost first
    /// SYN does not cost a full retransmit interval.
    pub async fn wait_ready(&self, total: Duration) -> Result<(), AgentError> {
        let deadline = tokio::time::Instant::now() + total;
        let steps = [50u64, 100, 100, 250, 250, 500, 500, 1000, 2000];
        let mut i = 0;
        loop {
            let per_try = Duration::from_millis(steps[i.min(steps.len() - 1)]);
            i += 1;
            let probe = self.clone().with_connect_timeout(per_try);
            let res = tokio::time::timeout(per_try * 2, probe.activity()).await;
            if let Ok(Ok(_)) = res {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match res {
                    Ok(Err(e)) => e,
                    _ => AgentError::Timeout(total),
                });
            }
            // A refused connection answers at once (lohar is still starting): poll briskly.
            let refused = matches!(&res, Ok(Err(AgentError::Connect(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            tokio::time::sleep(Duration::from_millis(if refused { 2 } else { 10 })).await;
        }
    }
}

/// After a failed write: the ERROR frame lohar sent before closing, if any.
async fn refusal(ch: &mut AgentChannel) -> Option<AgentError> {
    match tokio::time::timeout(Duration::from_secs(1), ch.next_frame()).await {
        Ok(Ok(Some(f))) if f.ty == FrameType::Error => Some(AgentError::Remote(f.text())),
        _ => None,
    }
}

/// Reads events into `out` until EXIT; returns the exit code.
async fn collect_output(ch: &mut AgentChannel, out: &mut ExecOutput) -> Result<i32, AgentError> {
    loop {
        match ch.next_event().await? {
            Some(AgentEvent::Stdout(b)) => keep(out, &b, false),
            Some(AgentEvent::Stderr(b)) => keep(out, &b, true),
            Some(AgentEvent::Exit(code)) => return Ok(code),
            Some(AgentEvent::Error(e)) => return Err(AgentError::Remote(e)),
            Some(AgentEvent::SessionInfo(_)) => {}
            None => return Err(AgentError::Unexpected("end of stream before exit".into())),
        }
    }
}

/// Appends output within the shared 10 MiB budget; the first overflow appends the truncation
/// marker to stderr.
fn keep(out: &mut ExecOutput, data: &[u8], stderr: bool) {
    let used = out.stdout.len() + out.stderr.len()
        - if out.truncated {
            TRUNCATION_MARKER.len()
        } else {
            0
        };
    let n = MAX_BUFFERED_OUTPUT.saturating_sub(used).min(data.len());
    let dst = if stderr {
        &mut out.stderr
    } else {
        &mut out.stdout
    };
    dst.extend_from_slice(&data[..n]);
    if n < data.len() && !out.truncated {
        out.truncated = true;
        out.stderr.extend_from_slice(TRUNCATION_MARKER.as_bytes());
    }
}

/// A TCP stream to lohar that ends with a reset instead of a FIN when dropped. lohar closes
/// its side first after answering, so an orderly close would leave its socket in TIME_WAIT for
/// a minute, and gVisor refuses to checkpoint a sandbox holding such a socket (the gvisor
/// engine's cold state). Every exchange has finished by the time a stream is dropped (requests
/// wait for their answer; streams end on EOF or error), so nothing in flight is lost.
struct ResetOnClose {
    inner: tokio::net::TcpStream,
}

/// TCP keepalive and a user timeout on agent connections: a sandbox whose kernel died (a
/// gVisor sentry killed by the host's OOM killer, a crashed VM) sends no reset, and an exec
/// waiting on it would otherwise hang until the host's TCP gives up (hours while idle). With
/// these it fails within about 25 s, and a destroy's removed network is noticed as fast.
fn keepalive(s: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(s, sockopt::KeepAlive, &true);
    let _ = setsockopt(s, sockopt::TcpKeepIdle, &10);
    let _ = setsockopt(s, sockopt::TcpKeepInterval, &5);
    let _ = setsockopt(s, sockopt::TcpKeepCount, &3);
    let _ = setsockopt(s, sockopt::TcpUserTimeout, &25_000);
}

impl Drop for ResetOnClose {
    fn drop(&mut self) {
        let _ = nix::sys::socket::setsockopt(
            &self.inner,
            nix::sys::socket::sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
    }
}

impl tokio::io::AsyncRead for ResetOnClose {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}
impl tokio::io::AsyncWrite for ResetOnClose {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
