//! Sessions: processes (on a PTY or pipes) that outlive their client, with a scrollback ring,
//! detach on disconnect, reattach with replay, steal, idle timeout and retention after exit.
//!
//! Ordering guarantee: output is appended to the scrollback and handed to the attached client
//! under the session lock, and an attach replays the scrollback into the new client's queue
//! under that same lock, so no live byte can overtake the replay.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bhatti_proto::msg::{decode_resize, ExecRequest, SessionInfo, WindowSize};
use bhatti_proto::FrameType;
use bytes::Bytes;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::pty::{self, AsyncMaster};
use super::ring::{Scrollback, SCROLLBACK_BYTES};
use super::spawn::{spawn_failure, Grouping};
use super::{async_pipe_reader, async_pipe_writer, read_chunk, signal_group, READ_CHUNK};
use crate::activity::now_unix;
use crate::wire::{FrameReader, FrameWriter};
use crate::Agent;

/// At most this many sessions exist at once (exited-but-retained included).
pub const MAX_SESSIONS: usize = 20;
/// How long an exited session with no client keeps its scrollback.
pub const RETENTION: Duration = Duration::from_secs(30);
/// The fixed id of the init session.
pub const INIT_SESSION_ID: &str = "init";

/// What a session hands to its attached client.
#[derive(Debug)]
enum Event {
    Info(SessionInfo),
    Output(Bytes),
    Exit(i32),
}

/// The attached client: its queue and how to tell it that it was replaced.
struct Client {
    gen: u64,
    tx: mpsc::Sender<Event>,
    stolen: Option<oneshot::Sender<()>>,
}

/// Where keystrokes go.
enum Input {
    Pty(Arc<AsyncMaster>),
    Pipe(tokio::sync::Mutex<Option<super::PipeOut>>),
}

struct State {
    scrollback: Scrollback,
    client: Option<Client>,
    next_gen: u64,
    exit_code: Option<i32>,
    idle_timer: Option<JoinHandle<()>>,
}

/// One session.
pub struct Session {
    id: String,
    argv: String,
    tty: bool,
    created_at: i64,
    pgid: i32,
    max_idle: Option<Duration>,
    /// The init session is removed as soon as it exits (no retention).
    retain_after_exit: bool,
    input: Input,
    state: Mutex<State>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info_locked(&self, st: &State) -> SessionInfo {
        SessionInfo {
            session_id: self.id.clone(),
            argv: self.argv.clone(),
            tty: self.tty,
            running: st.exit_code.is_none(),
            exit_code: st.exit_code,
            attached: st.client.is_some(),
            created_at: self.created_at,
        }
    }

    /// The session's listing entry.
    pub fn info(&self) -> SessionInfo {
        let st = self.lock();
        self.info_locked(&st)
    }

    /// Whether the process is still running.
    pub fn running(&self) -> bool {
        self.lock().exit_code.is_none()
    }

    /// The process (group) id.
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Whether a client is attached.
    pub fn attached(&self) -> bool {
        self.lock().client.is_some()
    }
}

/// Errors starting or attaching to a session (sent to the host as ERROR frames).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The registry is full.
    #[error("session limit exceeded")]
    LimitExceeded,
    /// No such session.
    #[error("session not found")]
    NotFound,
    /// `if_detached` was set and a client is attached.
    #[error("session is attached")]
    Attached,
    /// The id is taken (only the fixed `init` id can collide).
    #[error("session {0} already exists")]
    Exists(String),
    /// The process could not be started.
    #[error("{0}")]
    Spawn(String),
}

/// All sessions of this boot.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<BTreeMap<String, Arc<Session>>>,
    counter: std::sync::atomic::AtomicU64,
}

impl SessionRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map().get(id).cloned()
    }

    /// Every session's listing entry, in creation order.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.map().values().map(|s| s.info()).collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.session_id.len().cmp(&b.session_id.len()))
                .then(a.session_id.cmp(&b.session_id))
        });
        v
    }

    /// (running sessions, attached sessions) for the activity report.
    pub fn counts(&self) -> (u32, u32) {
        let map = self.map();
        let mut active = 0;
        let mut attached = 0;
        for s in map.values() {
            let st = s.lock();
            active += u32::from(st.exit_code.is_none());
            attached += u32::from(st.client.is_some());
        }
        (active, attached)
    }

    fn remove(&self, id: &str, which: &Arc<Session>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|s| Arc::ptr_eq(s, which)) {
            map.remove(id);
        }
    }

    fn next_id(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        format!("s{n}")
    }
}

/// Starts a new session for `req` (PTY when `req.tty`, else piped with stderr merged) under a
/// generated id, or under `fixed_id` for the init session.
pub fn start(
    agent: &Arc<Agent>,
    req: &ExecRequest,
    fixed_id: Option<&str>,
) -> Result<Arc<Session>, SessionError> {
    // Reserve the slot first so concurrent starts cannot exceed the limit.
    let mut map = agent.sessions.map();
    if map.len() >= MAX_SESSIONS {
        return Err(SessionError::LimitExceeded);
    }
    let id = match fixed_id {
        Some(id) if map.contains_key(id) => return Err(SessionError::Exists(id.into())),
        Some(id) => id.to_string(),
        None => agent.sessions.next_id(),
    };
    let grouping = if req.tty {
        Grouping::SessionWithTty
    } else {
        Grouping::Session
    };
    let mut cmd = agent.ctx.for_request(req.root).command(
        &req.argv,
        req.env.as_ref(),
        req.cwd.as_deref(),
        grouping,
    );

    let spawn_err = |e: std::io::Error| SessionError::Spawn(spawn_failure(&req.argv[0], &e).1);
    let (child, exit_rx, input, output): (_, _, Input, Output) = if req.tty {
        let size = WindowSize {
            rows: req.rows.filter(|r| *r > 0).unwrap_or(24),
            cols: req.cols.filter(|c| *c > 0).unwrap_or(80),
        };
        let pair = pty::open(size).map_err(spawn_err)?;
        let slave = pair.slave;
        cmd.stdin(Stdio::from(slave.try_clone().map_err(spawn_err)?))
            .stdout(Stdio::from(slave.try_clone().map_err(spawn_err)?))
            .stderr(Stdio::from(slave));
        let (child, exit_rx) = agent.reaper.spawn(&mut cmd).map_err(spawn_err)?;
        // Our copies of the slave were moved into `cmd`; drop them so EOF/EIO arrives on exit.
        drop(cmd);
        let master = Arc::new(AsyncMaster::new(pair.master).map_err(spawn_err)?);
        (
            child,
            exit_rx,
            Input::Pty(master.clone()),
            Output::Pty(master),
        )
    } else {
        let (r, w) = nix::unistd::pipe().map_err(|e| spawn_err(e.into()))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(w.try_clone().map_err(spawn_err)?))
            .stderr(Stdio::from(w));
        let (mut child, exit_rx) = agent.reaper.spawn(&mut cmd).map_err(spawn_err)?;
        drop(cmd);
        let stdin = child
            .stdin
            .take()
            .and_then(|s| async_pipe_writer(OwnedFd::from(s)).ok());
        let reader = async_pipe_reader(r).map_err(spawn_err)?;
        (
            child,
            exit_rx,
            Input::Pipe(tokio::sync::Mutex::new(stdin)),
            Output::Pipe(reader),
        )
    };
    let session = Arc::new(Session {
        id: id.clone(),
        argv: req.argv.join(" "),
        tty: req.tty,
        created_at: now_unix(),
        pgid: child.id() as i32,
        max_idle: req.max_idle_sec.filter(|s| *s > 0).map(Duration::from_secs),
        retain_after_exit: fixed_id.is_none(),
        input,
        state: Mutex::new(State {
            scrollback: Scrollback::new(SCROLLBACK_BYTES),
            client: None,
            next_gen: 0,
            exit_code: None,
            idle_timer: None,
        }),
    });
    map.insert(id, session.clone());
    drop(map);

    let pump = tokio::spawn(pump_output(session.clone(), output));
    tokio::spawn(watch_exit(agent.clone(), session.clone(), exit_rx, pump));
    Ok(session)
}

enum Output {
    Pty(Arc<AsyncMaster>),
    Pipe(super::PipeIn),
}

/// Reads the session's output into the scrollback and the attached client's queue.
async fn pump_output(session: Arc<Session>, mut output: Output) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match &mut output {
            Output::Pty(m) => m.read(&mut buf).await.unwrap_or(0),
            Output::Pipe(r) => read_chunk(r, &mut buf).await.ok().flatten().unwrap_or(0),
        };
        if n == 0 {
            return;
        }
        let chunk = Bytes::copy_from_slice(&buf[..n]);
        let target = {
            let mut st = session.lock();
            st.scrollback.push(&chunk);
            st.client.as_ref().map(|c| (c.gen, c.tx.clone()))
        };
        let Some((gen, tx)) = target else { continue };
        // Waiting for queue room outside the lock gives backpressure to the process without
        // blocking attaches; the generation check then drops the chunk if the client changed
        // meanwhile (the new client got it in its replay).
        if let Ok(permit) = tx.reserve_owned().await {
            let st = session.lock();
            if st.client.as_ref().is_some_and(|c| c.gen == gen) {
                permit.send(Event::Output(chunk));
            }
        }
    }
}

/// Waits for the process to exit, lets the output drain, then reports and retires the session.
async fn watch_exit(
    agent: Arc<Agent>,
    session: Arc<Session>,
    exit_rx: super::reaper::ExitReceiver,
    pump: JoinHandle<()>,
) {
    let code = exit_rx.await.unwrap_or(1);
    let abort = pump.abort_handle();
    if tokio::time::timeout(Duration::from_millis(250), pump)
        .await
        .is_err()
    {
        // Background children still hold the terminal: stop collecting.
        abort.abort();
    }
    let client = {
        let mut st = session.lock();
        st.exit_code = Some(code);
        if let Some(t) = st.idle_timer.take() {
            t.abort();
        }
        st.client.as_ref().map(|c| c.tx.clone())
    };
    match client {
        Some(tx) => {
            let _ = tx.send(Event::Exit(code)).await;
            agent.sessions.remove(&session.id, &session);
        }
        None if session.retain_after_exit => {
            tokio::time::sleep(RETENTION).await;
            if !session.attached() {
                agent.sessions.remove(&session.id, &session);
            }
        }
        None => agent.sessions.remove(&session.id, &session),
    }
}

/// Attaches the connection to `session` and relays until exit, detach or steal.
pub async fn relay(
    agent: Arc<Agent>,
    session: Arc<Session>,
    if_detached: bool,
    rd: FrameReader,
    wr: FrameWriter,
) {
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let (stolen_tx, stolen_rx) = oneshot::channel();
    let gen = {
        let mut st = session.lock();
        if if_detached && st.client.is_some() {
            None
        } else {
            if let Some(mut old) = st.client.take() {
                if let Some(s) = old.stolen.take() {
                    let _ = s.send(());
                }
            }
            if let Some(t) = st.idle_timer.take() {
                t.abort();
            }
            st.next_gen += 1;
            let gen = st.next_gen;
            // The queue is fresh, so these cannot fail for lack of room.
            let _ = tx.try_send(Event::Info(SessionInfo {
                attached: true,
                ..session.info_locked(&st)
            }));
            let replay = st.scrollback.contents();
            if !replay.is_empty() {
                let _ = tx.try_send(Event::Output(Bytes::from(replay)));
            }
            if let Some(code) = st.exit_code {
                let _ = tx.try_send(Event::Exit(code));
            } else {
                st.client = Some(Client {
                    gen,
                    tx,
                    stolen: Some(stolen_tx),
                });
            }
            Some(gen)
        }
    };
    let Some(gen) = gen else {
        let _ = wr.error(SessionError::Attached.to_string()).await;
        return;
    };

    let mut input = tokio::spawn(read_input(agent.clone(), session.clone(), rd));
    // Only an explicit send means "stolen"; a dropped sender (no slot kept) never fires.
    let stolen = async move {
        if stolen_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stolen);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Info(info)) => {
                    if wr.send_json(FrameType::SessionInfo, &info).await.is_err() {
                        input.abort();
                        detach(&session, gen);
                        return;
                    }
                }
                Some(Event::Output(b)) => {
                    if wr.send_chunked(FrameType::Stdout, &b).await.is_err() {
                        input.abort();
                        detach(&session, gen);
                        return;
                    }
                }
                Some(Event::Exit(code)) => {
                    let _ = wr.exit(code).await;
                    if session.lock().exit_code.is_some() {
                        agent.sessions.remove(&session.id, &session);
                    }
                    input.abort();
                    wr.shutdown().await;
                    return;
                }
                // Our queue is closed only when another client replaced us: same as stolen.
                None => break,
            },
            _ = &mut stolen => break,
            // The client hung up: detach.
            _ = &mut input => {
                detach(&session, gen);
                return;
            }
        }
    }
    // Another client took over: this one is told the session ended for it.
    input.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.exit(0)).await;
    wr.shutdown().await;
}

/// Marks the client as gone (if it is still the current one) and starts the idle timer.
fn detach(session: &Arc<Session>, gen: u64) {
    let mut st = session.lock();
    if st.client.as_ref().is_none_or(|c| c.gen != gen) {
        return;
    }
    st.client = None;
    if st.exit_code.is_none() {
        if let Some(idle) = session.max_idle {
            let pgid = session.pgid;
            st.idle_timer = Some(tokio::spawn(async move {
                tokio::time::sleep(idle).await;
                signal_group(pgid, Signal::SIGKILL);
            }));
        }
    }
}

/// Applies the client's frames: keystrokes, resizes, KILL (SIGTERM to the group).
async fn read_input(agent: Arc<Agent>, session: Arc<Session>, mut rd: FrameReader) {
    while let Some(Ok(frame)) = rd.next().await {
        match frame.ty {
            FrameType::Stdin => {
                agent.activity.touch();
                match &session.input {
                    Input::Pty(m) => {
                        if !frame.payload.is_empty() {
                            let _ = m.write_all(&frame.payload).await;
                        }
                    }
                    Input::Pipe(p) => {
                        let mut g = p.lock().await;
                        if frame.payload.is_empty() {
                            *g = None;
                        } else if let Some(w) = g.as_mut() {
                            if w.write_all(&frame.payload).await.is_err() {
                                *g = None;
                            }
                        }
                    }
                }
            }
            FrameType::Resize => {
                if let (Input::Pty(m), Ok(size)) = (&session.input, decode_resize(&frame.payload)) {
                    let _ = m.resize(size);
                }
            }
            FrameType::Kill => signal_group(session.pgid, Signal::SIGTERM),
            FrameType::Signal => {
                if let Some(sig) = super::parse_signal(&frame.payload) {
                    signal_group(session.pgid, sig);
                }
            }
            _ => {}
        }
    }
}

/// EXEC_KILL: SIGKILL to the session's process group.
pub fn kill(agent: &Agent, id: &str) -> Result<(), SessionError> {
    let s = agent.sessions.get(id).ok_or(SessionError::NotFound)?;
    signal_group(s.pgid, Signal::SIGKILL);
    Ok(())
}
