//! `GET /sandboxes/:id/ws`: the interactive shell over a WebSocket (reference §2.7).
//!
//! Server → client: first a text message `{"type":"session","session_id":"s3"}`, then terminal
//! output as binary messages (≤ 4096 bytes each); close 1000 when the shell exits. Client →
//! server: binary or text bytes are keystrokes; a text message that parses as
//! `{"type":"resize","rows":R,"cols":C}` resizes. Pings every 30 s; a client silent for 90 s is
//! dropped. Disconnecting detaches: the shell keeps running (and is reattached next time).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bhatti_engine::agent::{AgentChannel, AgentClient, AgentEvent};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::extract::{AuthUser, Ws};
use crate::service::shell as svc;
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(30);
const READ_DEADLINE: Duration = Duration::from_secs(90);
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
const CHUNK: usize = 4096;

/// Query of `/ws`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ShellQuery {
    /// Attach to this session (taking it over from any other client).
    pub session: Option<String>,
    /// Always start a new shell.
    #[serde(default)]
    pub new: bool,
}

/// Opens (or reattaches) an interactive shell as a WebSocket.
#[utoipa::path(get, path = "/sandboxes/{id}/ws", tag = "shell",
    params(("id" = String, Path, description = "Sandbox id or name"), ShellQuery),
    responses(
        (status = 101, description = "WebSocket: see the module documentation for the protocol"),
        (status = 404, description = "No such sandbox", body = bhatti_api::ErrorBody),
        (status = 409, description = "Sandbox not running", body = bhatti_api::ErrorBody),
    ))]
pub async fn shell_ws(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Query(q): Query<ShellQuery>,
    Ws(ws): Ws,
) -> Result<Response, ApiError> {
    // One lookup gives both the agent and the sandbox id the session event names.
    let (row, agent, busy) = crate::service::agent::open(&st, &user, &id).await?;
    let sandbox = row.id;
    Ok(ws.on_upgrade(move |socket| async move {
        let _busy = busy;
        let started = std::time::Instant::now();
        if let Some((session_id, reattach)) = relay(socket, agent, q).await {
            st.record(crate::store::events::NewEvent::new(
                "shell.session",
                &user.id,
                &sandbox,
                serde_json::json!({
                    "sandbox": sandbox,
                    "session_id": session_id,
                    "reattach": reattach,
                    "duration_s": started.elapsed().as_secs(),
                }),
            ));
        }
    }))
}

pub(crate) async fn send(ws: &mut (impl SinkExt<Message> + Unpin), m: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, ws.send(m)).await,
        Ok(Ok(()))
    )
}

pub(crate) fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Relays until exit or disconnect; returns the session id and whether it was a reattach.
async fn relay(mut ws: WebSocket, agent: AgentClient, q: ShellQuery) -> Option<(String, bool)> {
    let shell = match svc::open(&agent, q.session.as_deref(), q.new).await {
        Ok(s) => s,
        Err(e) => {
            let what = if q.session.is_some() {
                "attach"
            } else {
                "shell"
            };
            let _ = send(&mut ws, Message::Text(format!("{what} error: {e}").into())).await;
            let _ = send(&mut ws, close(1011, "shell unavailable")).await;
            return None;
        }
    };
    tracing::debug!(session = %shell.session_id, reattached = shell.reattached, "shell attached");
    let session = (shell.session_id.clone(), shell.reattached);
    let hello = serde_json::json!({"type": "session", "session_id": shell.session_id}).to_string();
    let (mut tx, mut rx) = ws.split();
    if !send(&mut tx, Message::Text(hello.into())).await {
        return Some(session);
    }
    // Client gone: the session detaches and keeps running (reattached next time).
    pump(&mut tx, &mut rx, shell.channel, None).await;
    Some(session)
}

/// Why a terminal relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpEnd {
    /// The shell exited or failed, or the sandbox went away (the client was told).
    Shell,
    /// The client left or stopped answering.
    Client,
    /// `stop` fired (the client was sent close 1008).
    Stopped,
}

/// Relays a terminal session both ways until the shell ends, the client leaves or `stop`
/// fires: output as binary messages, client bytes as keystrokes, a text
/// `{"type":"resize",…}` as a resize; pings every 30 s, and a client silent for 90 s is dropped.
pub(crate) async fn pump(
    tx: &mut (impl SinkExt<Message> + Unpin),
    rx: &mut (impl futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin),
    channel: AgentChannel,
    stop: Option<CancellationToken>,
) -> PumpEnd {
    let stop = stop.unwrap_or_default();
    let (mut rd, mut wr) = channel.into_split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            ev = rd.next_event() => match ev {
                Ok(Some(AgentEvent::Stdout(b) | AgentEvent::Stderr(b))) => {
                    if !send_output(tx, b).await {
                        return PumpEnd::Client;
                    }
                }
                Ok(Some(AgentEvent::Exit(_))) => {
                    let _ = send(tx, close(1000, "exited")).await;
                    return PumpEnd::Shell;
                }
                Ok(Some(AgentEvent::Error(m))) => {
                    let _ = send(tx, Message::Text(format!("shell error: {m}").into())).await;
                    let _ = send(tx, close(1011, "shell error")).await;
                    return PumpEnd::Shell;
                }
                Ok(Some(AgentEvent::SessionInfo(_))) => {}
                Ok(None) | Err(_) => {
                    let _ = send(tx, close(1011, "sandbox connection lost")).await;
                    return PumpEnd::Shell;
                }
            },
            msg = rx.next() => {
                last_seen = tokio::time::Instant::now();
                let res = match msg {
                    Some(Ok(Message::Binary(b))) => wr.stdin(&b).await,
                    Some(Ok(Message::Text(t))) => match svc::parse_resize(t.as_str()) {
                        Some((rows, cols)) => wr.resize(rows, cols).await,
                        None => wr.stdin(t.as_bytes()).await,
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return PumpEnd::Client,
                };
                if res.is_err() {
                    let _ = send(tx, close(1011, "sandbox connection lost")).await;
                    return PumpEnd::Shell;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > READ_DEADLINE
                    || !send(tx, Message::Ping(Bytes::new())).await
                {
                    return PumpEnd::Client;
                }
            }
            _ = stop.cancelled() => {
                let _ = send(tx, close(1008, "access revoked")).await;
                return PumpEnd::Stopped;
            }
        }
    }
}

async fn send_output(tx: &mut (impl SinkExt<Message> + Unpin), b: Bytes) -> bool {
    let mut off = 0;
    while off < b.len() {
        let end = (off + CHUNK).min(b.len());
        if !send(tx, Message::Binary(b.slice(off..end))).await {
            return false;
        }
        off = end;
    }
    true
}

/// Query of `/exec/ws`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PipedQuery {
    /// Reattach to this piped session (taking it over from any other client).
    pub session: Option<String>,
}

/// How long a new piped session's first message (`{"cmd":[…]}`) may take.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);

/// A long-running non-TTY process with scrollback and reattach, over a WebSocket (§2.8).
///
/// New session: the client's first message (within 10 s) is `{"cmd":[…], "env"?, "max_idle_sec"?
/// (default 3600), "cwd"?}`; a bad one gets `{"error":"…"}` and close. Reattach: `?session=`.
/// The server sends `{"type":"session","session_id":…}`, then the output (stdout and stderr
/// merged) as text messages (invalid UTF-8 replaced by U+FFFD), then `{"type":"exit",
/// "exit_code":N}` and close 1000; agent errors are `{"type":"error","message":…}`. Every client
/// message's bytes go to the process's stdin.
#[utoipa::path(get, path = "/sandboxes/{id}/exec/ws", tag = "exec",
    params(("id" = String, Path, description = "Sandbox id or name"), PipedQuery),
    responses(
        (status = 101, description = "WebSocket: see the description for the protocol"),
        (status = 404, description = "No such sandbox", body = bhatti_api::ErrorBody),
        (status = 409, description = "Sandbox not running", body = bhatti_api::ErrorBody),
    ))]
pub async fn piped_ws(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Query(q): Query<PipedQuery>,
    Ws(ws): Ws,
) -> Result<Response, ApiError> {
    let (agent, busy) = svc::prepare(&st, &user, &id).await?;
    Ok(ws.on_upgrade(move |socket| async move {
        let _busy = busy;
        piped_relay(socket, agent, q).await
    }))
}

fn json_text(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn piped_relay(mut ws: WebSocket, agent: AgentClient, q: PipedQuery) {
    let opened = match q.session.as_deref().filter(|s| !s.is_empty()) {
        Some(sid) => svc::attach_piped(&agent, sid)
            .await
            .map_err(|e| e.to_string()),
        None => {
            let first = match tokio::time::timeout(FIRST_MESSAGE, ws.recv()).await {
                Ok(Some(Ok(Message::Text(t)))) => svc::parse_piped_start(t.as_str()),
                Ok(Some(Ok(Message::Binary(b)))) => {
                    svc::parse_piped_start(&String::from_utf8_lossy(&b))
                }
                Err(_) => Err("cmd required (no start message within 10s)".into()),
                _ => return,
            };
            match first {
                Ok(p) => svc::open_piped(&agent, p).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        }
    };
    let shell = match opened {
        Ok(s) => s,
        Err(e) => {
            let _ = send(&mut ws, json_text(serde_json::json!({ "error": e }))).await;
            let _ = send(&mut ws, close(1008, "no session")).await;
            return;
        }
    };
    let hello = serde_json::json!({"type": "session", "session_id": shell.session_id});
    let (mut tx, mut rx) = ws.split();
    if !send(&mut tx, json_text(hello)).await {
        return;
    }
    let (mut rd, mut wr) = shell.channel.into_split();
    let mut text = crate::service::exec::Utf8Chunker::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            ev = rd.next_event() => match ev {
                Ok(Some(AgentEvent::Stdout(b) | AgentEvent::Stderr(b))) => {
                    if let Some((t, _)) = text.push(&b) {
                        if !send(&mut tx, Message::Text(t.into())).await {
                            break;
                        }
                    }
                }
                Ok(Some(AgentEvent::Exit(code))) => {
                    if let Some((t, _)) = text.finish() {
                        let _ = send(&mut tx, Message::Text(t.into())).await;
                    }
                    let _ = send(&mut tx, json_text(serde_json::json!({"type": "exit", "exit_code": code}))).await;
                    let _ = send(&mut tx, close(1000, "exited")).await;
                    break;
                }
                Ok(Some(AgentEvent::Error(m))) => {
                    let _ = send(&mut tx, json_text(serde_json::json!({"type": "error", "message": m}))).await;
                    let _ = send(&mut tx, close(1011, "error")).await;
                    break;
                }
                Ok(Some(AgentEvent::SessionInfo(_))) => {}
                Ok(None) | Err(_) => {
                    let _ = send(&mut tx, close(1011, "sandbox connection lost")).await;
                    break;
                }
            },
            msg = rx.next() => {
                last_seen = tokio::time::Instant::now();
                let res = match msg {
                    Some(Ok(Message::Binary(b))) => wr.stdin(&b).await,
                    Some(Ok(Message::Text(t))) => wr.stdin(t.as_bytes()).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                if res.is_err() {
                    let _ = send(&mut tx, close(1011, "sandbox connection lost")).await;
                    break;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > READ_DEADLINE
                    || !send(&mut tx, Message::Ping(Bytes::new())).await
                {
                    break;
                }
            }
        }
    }
}
