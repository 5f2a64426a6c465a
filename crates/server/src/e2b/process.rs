//! envd's `process.Process` service on lohar: every E2B process is one lohar exec (piped) or
//! session (PTY) whose connection the daemon holds; a table here gives pid/tag lookup,
//! stdin, signals, resize, and reattach (`Connect`, which streams only output produced after
//! it attached).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bhatti_engine::agent::{AgentChannel, AgentEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::connect::{self, pbjson, Code, RpcError};
use super::{envd_sandbox, rpc_of_agent, E2bState, Target};

/// How often an idle stream says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Output events buffered per process for slow readers (beyond: the reader misses output).
/// The buffer stays full while a reader lags (a client that never reads its stream), so it is
/// memory the daemon holds per process: at most this many chunks of up to 32 KiB (8 MiB).
const EVENT_BUFFER: usize = 256;
/// Inputs (stdin chunks, signals, resizes) waiting to be relayed to one process; beyond it
/// SendInput and friends get `resource_exhausted` rather than queueing without bound.
const INPUT_QUEUE: usize = 256;

/// What a client can do to a running process.
#[derive(Debug)]
enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Signal(i32),
    Resize(u16, u16),
}

/// Events of one process, as streamed to Start/Connect clients.
#[derive(Debug, Clone)]
enum Ev {
    Data(&'static str, Bytes),
    End { code: i32, error: Option<String> },
}

/// One E2B process.
struct Proc {
    pid: u32,
    tag: Option<String>,
    config: Value,
    input: mpsc::Sender<Input>,
    events: broadcast::Sender<Ev>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The E2B processes of one sandbox.
#[derive(Default)]
pub struct ProcTable {
    procs: Mutex<HashMap<u32, Arc<Proc>>>,
}

impl ProcTable {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Proc>>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, sel: &Selector) -> Option<Arc<Proc>> {
        let m = self.map();
        match sel {
            Selector::Pid(p) => m.get(p).cloned(),
            Selector::Tag(t) => m.values().find(|p| p.tag.as_deref() == Some(t)).cloned(),
        }
    }

    /// Drops every process's connection (the sandbox is going away).
    pub fn abort_all(&self) {
        for p in self.map().drain().map(|(_, p)| p) {
            if let Some(t) = p.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
                t.abort();
            }
        }
    }
}

/// `ProcessSelector`: `{"pid": N}` or `{"tag": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Pid(u32),
    Tag(String),
}

fn selector(v: Option<&Value>) -> Result<Selector, RpcError> {
    let v = v.ok_or_else(|| RpcError::new(Code::InvalidArgument, "process selector required"))?;
    if let Some(p) = v.get("pid") {
        let pid = p
            .as_u64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| RpcError::new(Code::InvalidArgument, "invalid pid"))?;
        return Ok(Selector::Pid(pid as u32));
    }
    if let Some(t) = v.get("tag").and_then(Value::as_str) {
        return Ok(Selector::Tag(t.to_string()));
    }
    Err(RpcError::new(
        Code::InvalidArgument,
        "process selector needs pid or tag",
    ))
}

/// Signal numbers of E2B's `Signal` enum (names or numbers).
fn signal_of(v: Option<&Value>) -> Result<i32, RpcError> {
    match v {
        Some(Value::String(s)) => match s.as_str() {
            "SIGNAL_SIGKILL" => Ok(9),
            "SIGNAL_SIGTERM" => Ok(15),
            other => Err(RpcError::new(
                Code::InvalidArgument,
                format!("unsupported signal {other}"),
            )),
        },
        Some(Value::Number(n)) if n.as_i64() == Some(9) || n.as_i64() == Some(15) => {
            Ok(n.as_i64().unwrap_or(9) as i32)
        }
        _ => Err(RpcError::new(Code::InvalidArgument, "signal required")),
    }
}

fn event_json(ev: &Ev) -> Value {
    match ev {
        Ev::Data(stream, data) => json!({"event": {"data": {*stream: pbjson::b64(data)}}}),
        Ev::End { code, error } => {
            let mut end = json!({
                "exitCode": code,
                "exited": error.is_none(),
                "status": if *code >= 128 && *code < 160 {
                    format!("signal: {}", signal_name(code - 128))
                } else {
                    format!("exit status {code}")
                },
            });
            if let Some(e) = error {
                end["error"] = json!(e);
            }
            json!({"event": {"end": end}})
        }
    }
}

fn signal_name(n: i32) -> &'static str {
    match n {
        9 => "killed",
        15 => "terminated",
        2 => "interrupt",
        1 => "hangup",
        _ => "signal",
    }
}

/// One Connect RPC of `process.Process`.
pub(super) async fn rpc(
    State(st): State<E2bState>,
    Path(method): Path<String>,
    axum::Extension(target): axum::Extension<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let streaming = matches!(method.as_str(), "Start" | "Connect");
    let result = async {
        let json: &[u8] = if streaming {
            connect::first_envelope(&body)?
        } else {
            &body
        };
        let req: Value = connect::parse(json)?;
        let sbx = envd_sandbox(&st, &headers, &target, None).await?;
        if method == "Start" {
            super::limit(&st, &sbx.user, crate::rate_limit::RequestClass::Exec)
                .map_err(|e| RpcError::new(Code::ResourceExhausted, e.1))?;
        }
        match method.as_str() {
            "Start" => start(&st, &sbx, &req, &headers).await,
            "Connect" => {
                let p = sbx
                    .meta
                    .procs
                    .find(&selector(req.get("process"))?)
                    .ok_or_else(|| RpcError::new(Code::NotFound, "process not found"))?;
                sbx.agent(&st).await?;
                let rx = p.events.subscribe();
                // The driver leaves the table before it announces the end: a process still
                // listed after subscribing will send its end event to this subscriber.
                if sbx.meta.procs.find(&Selector::Pid(p.pid)).is_none() {
                    return Err(RpcError::new(Code::NotFound, "process already ended"));
                }
                Ok(stream_response(
                    p.pid,
                    rx,
                    connect::timeout_ms(&headers)
                        .map(|d| tokio::time::Instant::now() + super::capped(d)),
                ))
            }
            "List" => {
                let procs: Vec<Value> = sbx
                    .meta
                    .procs
                    .map()
                    .values()
                    .map(|p| {
                        let mut v = json!({"pid": p.pid, "config": p.config});
                        if let Some(t) = &p.tag {
                            v["tag"] = json!(t);
                        }
                        v
                    })
                    .collect();
                Ok(axum::Json(json!({"processes": procs})).into_response())
            }
            "SendInput" | "CloseStdin" | "SendSignal" | "Update" => {
                let p = sbx
                    .meta
                    .procs
                    .find(&selector(req.get("process"))?)
                    .ok_or_else(|| RpcError::new(Code::NotFound, "process not found"))?;
                let input = match method.as_str() {
                    "SendInput" => {
                        let i = req.get("input").ok_or_else(|| {
                            RpcError::new(Code::InvalidArgument, "input required")
                        })?;
                        let b64 = i
                            .get("stdin")
                            .or_else(|| i.get("pty"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        Input::Stdin(pbjson::from_b64(b64).ok_or_else(|| {
                            RpcError::new(Code::InvalidArgument, "input is not base64")
                        })?)
                    }
                    "CloseStdin" => Input::CloseStdin,
                    "SendSignal" => Input::Signal(signal_of(req.get("signal"))?),
                    _ => {
                        let size = req.pointer("/pty/size").ok_or_else(|| {
                            RpcError::new(
                                Code::InvalidArgument,
                                "only pty size updates are supported",
                            )
                        })?;
                        let dim = |k: &str| size.get(k).and_then(Value::as_u64).unwrap_or(0) as u16;
                        Input::Resize(dim("rows"), dim("cols"))
                    }
                };
                // A paused sandbox is woken first (a frozen process cannot take a signal).
                sbx.agent(&st).await?;
                p.input.try_send(input).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => RpcError::new(
                        Code::ResourceExhausted,
                        "too much input waiting for this process; retry later",
                    ),
                    mpsc::error::TrySendError::Closed(_) => {
                        RpcError::new(Code::NotFound, "process not found")
                    }
                })?;
                Ok(axum::Json(json!({})).into_response())
            }
            "StreamInput" => Err(RpcError::new(
                Code::Unimplemented,
                "StreamInput (client streaming) is not supported by bhatti; use SendInput",
            )),
            m => Err(RpcError::new(
                Code::Unimplemented,
                format!("process.Process/{m} is not implemented"),
            )),
        }
    }
    .await;
    match result {
        Ok(r) => r,
        // Server-stream errors travel in the end-of-stream envelope with status 200.
        Err(e) if streaming => stream_error(&e),
        Err(e) => e.into_response(),
    }
}

fn stream_error(e: &RpcError) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/connect+json")],
        connect::end_stream(Some(e)),
    )
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
struct ProcessConfig {
    #[serde(default)]
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

async fn start(
    st: &E2bState,
    sbx: &super::Sbx,
    req: &Value,
    headers: &HeaderMap,
) -> Result<Response, RpcError> {
    let config_v = req
        .get("process")
        .cloned()
        .ok_or_else(|| RpcError::new(Code::InvalidArgument, "process required"))?;
    let cfg: ProcessConfig = serde_json::from_value(config_v.clone())
        .map_err(|e| RpcError::new(Code::InvalidArgument, format!("invalid process: {e}")))?;
    if cfg.cmd.is_empty() {
        return Err(RpcError::new(Code::InvalidArgument, "process.cmd required"));
    }
    let tag = req.get("tag").and_then(Value::as_str).map(str::to_string);
    let pty = req.get("pty").filter(|v| !v.is_null());
    let keep_stdin = req.get("stdin").and_then(Value::as_bool).unwrap_or(false);
    let root = match request_user(headers)? {
        None => false,
        Some(u) if u == sbx.meta.tpl.user => false,
        Some(u) if u == "root" => true,
        Some(u) => {
            return Err(RpcError::new(
                Code::InvalidArgument,
                format!(
                "user {u:?} is not supported by bhatti: use the default user ({:?}) or \"root\"",
                sbx.meta.tpl.user
            ),
            ))
        }
    };
    let (agent, busy) = sbx.agent(st).await?;

    let mut env = sbx.meta.envs.clone();
    let home = if root {
        env.insert("HOME".into(), "/root".into());
        env.insert("USER".into(), "root".into());
        "/root".to_string()
    } else {
        sbx.meta.tpl.home.clone()
    };
    env.extend(cfg.envs.clone());
    let cwd = cfg.cwd.clone().filter(|c| !c.is_empty()).unwrap_or(home);
    let mut argv = vec![cfg.cmd.clone()];
    argv.extend(cfg.args.iter().cloned());
    let dim = |k: &str| {
        pty.and_then(|p| p.pointer(&format!("/size/{k}")))
            .and_then(Value::as_u64)
            .map(|v| v as u16)
    };
    let exec = bhatti_proto::msg::ExecRequest {
        argv,
        env: Some(env),
        cwd: Some(cwd),
        tty: pty.is_some(),
        root,
        rows: dim("rows"),
        cols: dim("cols"),
        ..Default::default()
    };
    let (pid, ch) = agent.exec_started(&exec).await.map_err(|e| {
        let e = rpc_of_agent(e);
        // A program that cannot be started is the caller's problem, as in envd.
        if e.code == Code::Internal || e.code == Code::NotFound {
            RpcError::new(Code::InvalidArgument, e.message)
        } else {
            e
        }
    })?;
    let pid = pid as u32;
    let (events, rx) = broadcast::channel(EVENT_BUFFER);
    let (in_tx, in_rx) = mpsc::channel(INPUT_QUEUE);
    let proc_ = Arc::new(Proc {
        pid,
        tag,
        config: config_v,
        input: in_tx.clone(),
        events: events.clone(),
        driver: Mutex::new(None),
    });
    sbx.meta.procs.map().insert(pid, proc_.clone());
    if !keep_stdin && pty.is_none() {
        let _ = in_tx.try_send(Input::CloseStdin);
    }
    let meta = sbx.meta.clone();
    let stream_name = if pty.is_some() { "pty" } else { "stdout" };
    // The process's lifetime is the Start call's Connect-Timeout-Ms.
    let deadline =
        connect::timeout_ms(headers).map(|d| tokio::time::Instant::now() + super::capped(d));
    let driver = tokio::spawn(async move {
        let _busy = busy;
        let end = drive(ch, in_rx, &events, stream_name, deadline).await;
        meta.procs.map().remove(&pid);
        let _ = events.send(end);
    });
    *proc_.driver.lock().unwrap_or_else(|e| e.into_inner()) = Some(driver);
    Ok(stream_response(pid, rx, deadline))
}

/// Relays one process: input to lohar, output to the event channel; returns its end.
async fn drive(
    ch: AgentChannel,
    mut input: mpsc::Receiver<Input>,
    events: &broadcast::Sender<Ev>,
    stream_name: &'static str,
    deadline: Option<tokio::time::Instant>,
) -> Ev {
    let (mut rd, mut wr) = ch.into_split();
    let mut input_open = true;
    // The process's lifetime ends at the deadline even when no client is streaming it.
    let mut deadline = deadline;
    let end = loop {
        let at = deadline.unwrap_or_else(far_future);
        tokio::select! {
            _ = tokio::time::sleep_until(at), if deadline.is_some() => {
                deadline = None;
                if let Err(e) = wr.signal(9).await {
                    tracing::debug!(error = %e, "e2b: kill at the process timeout failed");
                }
            }
            ev = rd.next_event() => match ev {
                Ok(Some(AgentEvent::Stdout(b))) => { let _ = events.send(Ev::Data(stream_name, b)); }
                Ok(Some(AgentEvent::Stderr(b))) => { let _ = events.send(Ev::Data("stderr", b)); }
                Ok(Some(AgentEvent::SessionInfo(_))) => {}
                Ok(Some(AgentEvent::Exit(code))) => break Ev::End { code, error: None },
                Ok(Some(AgentEvent::Error(e))) => break Ev::End { code: -1, error: Some(e) },
                Ok(None) => break Ev::End { code: -1, error: Some("connection to the process ended".into()) },
                Err(e) => break Ev::End { code: -1, error: Some(e.to_string()) },
            },
            i = input.recv(), if input_open => {
                let r = match i {
                    None => { input_open = false; Ok(()) }
                    Some(Input::Stdin(b)) if b.is_empty() => Ok(()),
                    Some(Input::Stdin(b)) => wr.stdin(&b).await,
                    Some(Input::CloseStdin) => wr.close_stdin().await,
                    Some(Input::Signal(s)) => wr.signal(s).await,
                    Some(Input::Resize(r, c)) => wr.resize(r.max(1), c.max(1)).await,
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, "e2b: process input failed");
                }
            }
        }
    };
    end
}

/// The server stream of Start/Connect: start event, output, end (or a deadline error).
fn stream_response(
    pid: u32,
    mut rx: broadcast::Receiver<Ev>,
    deadline: Option<tokio::time::Instant>,
) -> Response {
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        if tx
            .send(Ok(connect::message(
                &json!({"event": {"start": {"pid": pid}}}),
            )))
            .await
            .is_err()
        {
            return;
        }
        let deadline_at = deadline.unwrap_or_else(far_future);
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Ok(connect::message(&json!({"event": {"keepalive": {}}})))).await.is_err() {
                        return;
                    }
                    continue;
                }
                // The driver kills the process at the same deadline.
                _ = tokio::time::sleep_until(deadline_at) => {
                    let e = RpcError::new(Code::DeadlineExceeded, "the request's timeout (Connect-Timeout-Ms) passed; a started process is killed at it");
                    let _ = tx.send(Ok(connect::end_stream(Some(&e)))).await;
                    return;
                }
            };
            match ev {
                Ok(ev @ Ev::Data(..)) => {
                    if tx
                        .send(Ok(connect::message(&event_json(&ev))))
                        .await
                        .is_err()
                    {
                        // The client went away: the process keeps running (Connect reattaches).
                        return;
                    }
                }
                Ok(ev @ Ev::End { .. }) => {
                    let _ = tx.send(Ok(connect::message(&event_json(&ev)))).await;
                    let _ = tx.send(Ok(connect::end_stream(None))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(pid, missed = n, "e2b: slow process stream missed output");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let e = RpcError::new(Code::Unavailable, "process stream ended");
                    let _ = tx.send(Ok(connect::end_stream(Some(&e)))).await;
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream_of(body_rx));
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/connect+json")],
        body,
    )
        .into_response()
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// The user of an envd request: `Authorization: Basic base64("<user>:")`, absent = default.
fn request_user(headers: &HeaderMap) -> Result<Option<String>, RpcError> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || RpcError::new(Code::InvalidArgument, "invalid Authorization header");
    let b64 = v
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(bad)?;
    let raw = pbjson::from_b64(b64.trim()).ok_or_else(bad)?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let user = text.split(':').next().unwrap_or_default();
    Ok((!user.is_empty()).then(|| user.to_string()))
}

/// An mpsc receiver as a stream (without pulling in tokio-stream).
pub(super) fn tokio_stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_signals() {
        assert_eq!(
            selector(Some(&json!({"pid": 12}))).unwrap(),
            Selector::Pid(12)
        );
        assert_eq!(
            selector(Some(&json!({"pid": "12"}))).unwrap(),
            Selector::Pid(12)
        );
        assert_eq!(
            selector(Some(&json!({"tag": "t"}))).unwrap(),
            Selector::Tag("t".into())
        );
        assert!(selector(Some(&json!({}))).is_err());
        assert!(selector(None).is_err());
        assert_eq!(signal_of(Some(&json!("SIGNAL_SIGKILL"))).unwrap(), 9);
        assert_eq!(signal_of(Some(&json!("SIGNAL_SIGTERM"))).unwrap(), 15);
        assert_eq!(signal_of(Some(&json!(15))).unwrap(), 15);
        assert!(signal_of(Some(&json!("SIGNAL_UNSPECIFIED"))).is_err());
    }

    #[test]
    fn users() {
        let mut h = HeaderMap::new();
        assert_eq!(request_user(&h).unwrap(), None);
        h.insert("authorization", "Basic cm9vdDo=".parse().unwrap());
        assert_eq!(request_user(&h).unwrap().as_deref(), Some("root"));
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert!(request_user(&h).is_err());
    }

    #[test]
    fn event_shapes() {
        let d = event_json(&Ev::Data("stdout", Bytes::from_static(b"hi")));
        assert_eq!(d, json!({"event": {"data": {"stdout": "aGk="}}}));
        let e = event_json(&Ev::End {
            code: 3,
            error: None,
        });
        assert_eq!(e["event"]["end"]["exitCode"], 3);
        assert_eq!(e["event"]["end"]["status"], "exit status 3");
        let k = event_json(&Ev::End {
            code: 137,
            error: None,
        });
        assert_eq!(k["event"]["end"]["status"], "signal: killed");
    }
}
