//! Interactive shells (`GET /sandboxes/:id/ws`): which session to open or reattach.
//!
//! `?session=<sid>` attaches explicitly (stealing it from any current client); otherwise,
//! unless `?new=true`, the newest detached running TTY session is reattached; else a new login
//! shell starts: `/bin/bash -li` (or `/bin/sh -l` in images without bash) in `/workspace`
//! (or `/` without it), `TERM=xterm-256color`, killed after 1 h of being detached.

use bhatti_engine::agent::{AgentChannel, AgentClient, AgentError, AgentEvent};
use bhatti_proto::msg::ExecRequest;

use super::agent;
use super::ServiceError;
use crate::state::AppState;
use crate::store::users::UserRow;

/// Idle timeout of a detached shell (seconds).
pub const SHELL_IDLE_SECS: u64 = 3600;

/// The sandbox's agent, checked before the WebSocket upgrade (so unknown → 404, stopped → 409),
/// and the hold that keeps the sandbox hot while the shell is open.
pub async fn prepare(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
) -> Result<(AgentClient, crate::thermal::Busy), ServiceError> {
    let (_, agent, busy) = agent::open(st, user, id_or_name).await?;
    Ok((agent, busy))
}

/// An open shell: its session id and the channel carrying it (the scrollback of a reattached
/// session is the first output).
pub struct Shell {
    /// `s<N>` (or `init`).
    pub session_id: String,
    /// Whether an existing session was attached.
    pub reattached: bool,
    /// The session's I/O.
    pub channel: AgentChannel,
}

/// Opens the shell the query asks for (see the module docs).
pub async fn open(
    agent: &AgentClient,
    session: Option<&str>,
    new: bool,
) -> Result<Shell, AgentError> {
    if let Some(sid) = session.filter(|s| !s.is_empty()) {
        return start(agent, attach_request(sid, false), true).await;
    }
    if !new {
        let mut candidates: Vec<_> = agent
            .list_sessions()
            .await?
            .into_iter()
            .filter(|s| s.tty && s.running && !s.attached)
            .collect();
        candidates.sort_by_key(|s| s.created_at);
        if let Some(s) = candidates.last() {
            match start(agent, attach_request(&s.session_id, true), true).await {
                Ok(shell) => return Ok(shell),
                // Someone attached (or it ended) in between: start a new one instead.
                Err(AgentError::Remote(m)) if m.contains("attached") || m.contains("not found") => {
                }
                Err(e) => return Err(e),
            }
        }
    }
    let req = new_shell_request(agent).await;
    start(agent, req, false).await
}

fn attach_request(sid: &str, if_detached: bool) -> ExecRequest {
    ExecRequest {
        session_id: Some(sid.to_string()),
        tty: true,
        if_detached,
        ..Default::default()
    }
}

async fn new_shell_request(agent: &AgentClient) -> ExecRequest {
    let bash = agent.stat("/bin/bash").await.is_ok();
    let workspace = matches!(agent.stat("/workspace").await, Ok(i) if i.is_dir);
    let argv: Vec<String> = if bash {
        vec!["/bin/bash".into(), "-li".into()]
    } else {
        vec!["/bin/sh".into(), "-l".into()]
    };
    ExecRequest {
        argv,
        env: Some([("TERM".to_string(), "xterm-256color".to_string())].into()),
        tty: true,
        rows: Some(24),
        cols: Some(80),
        cwd: Some(if workspace { "/workspace" } else { "/" }.into()),
        max_idle_sec: Some(SHELL_IDLE_SECS),
        ..Default::default()
    }
}

/// Sends the request and waits for SESSION_INFO.
async fn start(
    agent: &AgentClient,
    req: ExecRequest,
    reattached: bool,
) -> Result<Shell, AgentError> {
    let mut channel = agent.exec_stream(&req).await?;
    loop {
        match channel.next_event().await? {
            Some(AgentEvent::SessionInfo(info)) => {
                return Ok(Shell {
                    session_id: info.session_id,
                    reattached,
                    channel,
                })
            }
            Some(AgentEvent::Error(m)) => return Err(AgentError::Remote(m)),
            Some(_) => continue,
            None => {
                return Err(AgentError::Unexpected(
                    "end of stream before the session started".into(),
                ))
            }
        }
    }
}

/// The first message of a new piped session (`/exec/ws`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PipedStart {
    /// argv.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// Kill after this long detached (default 3600 s).
    #[serde(default)]
    pub max_idle_sec: Option<u64>,
    /// Extension: absolute working directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Parses and checks the first message of a piped session; the error is the text to send.
pub fn parse_piped_start(text: &str) -> Result<PipedStart, String> {
    let p: PipedStart = serde_json::from_str(text).map_err(|e| format!("invalid json: {e}"))?;
    if p.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err("cmd required".into());
    }
    if let Some(cwd) = &p.cwd {
        if !cwd.starts_with('/') {
            return Err(format!("cwd must be an absolute path (got {cwd:?})"));
        }
    }
    Ok(p)
}

/// Starts a piped session (stdout and stderr merged, scrollback kept, reattachable).
pub async fn open_piped(agent: &AgentClient, start_req: PipedStart) -> Result<Shell, AgentError> {
    let req = ExecRequest {
        argv: start_req.cmd,
        env: start_req.env,
        cwd: start_req.cwd,
        session: true,
        max_idle_sec: Some(
            start_req
                .max_idle_sec
                .filter(|s| *s > 0)
                .unwrap_or(SHELL_IDLE_SECS),
        ),
        ..Default::default()
    };
    start(agent, req, false).await
}

/// Attaches to a piped session (taking it over from any other client).
pub async fn attach_piped(agent: &AgentClient, sid: &str) -> Result<Shell, AgentError> {
    let req = ExecRequest {
        session_id: Some(sid.to_string()),
        ..Default::default()
    };
    start(agent, req, true).await
}

/// A client text message that is a resize request: `{"type":"resize","rows":R,"cols":C}`.
pub fn parse_resize(text: &str) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    struct Resize {
        #[serde(rename = "type")]
        ty: String,
        rows: u16,
        cols: u16,
    }
    let r: Resize = serde_json::from_str(text).ok()?;
    (r.ty == "resize" && r.rows > 0 && r.cols > 0).then_some((r.rows, r.cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_start_messages() {
        assert_eq!(
            parse_piped_start(r#"{"cmd":["cat"]}"#).unwrap().cmd,
            ["cat"]
        );
        assert_eq!(parse_piped_start("{}").unwrap_err(), "cmd required");
        assert_eq!(
            parse_piped_start(r#"{"cmd":[""]}"#).unwrap_err(),
            "cmd required"
        );
        assert!(parse_piped_start("nope")
            .unwrap_err()
            .starts_with("invalid json"));
        assert!(parse_piped_start(r#"{"cmd":["x"],"cwd":"rel"}"#).is_err());
    }

    #[test]
    fn resize_messages() {
        assert_eq!(
            parse_resize(r#"{"type":"resize","rows":40,"cols":120}"#),
            Some((40, 120))
        );
        assert_eq!(parse_resize(r#"{"type":"resize","rows":0,"cols":1}"#), None);
        assert_eq!(parse_resize(r#"{"type":"other","rows":1,"cols":1}"#), None);
        assert_eq!(parse_resize("ls\r"), None);
        assert_eq!(parse_resize("{"), None);
    }
}
