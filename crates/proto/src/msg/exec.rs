use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ProtoError;

/// EXEC_REQ: start a process, a session, or attach to a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments (empty when attaching).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Extra environment, overriding the sandbox's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Run on a PTY as a session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Initial PTY rows (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Initial PTY columns (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Present: attach to this session instead of starting a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Kill a detached session after this many idle seconds (0 or absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_sec: Option<u64>,
    /// With `session_id`: refuse to attach if a client is attached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub if_detached: bool,
    /// Start fully detached (setsid), output to `output_file`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detach: bool,
    /// Output file of a detached process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    /// Start a non-TTY (piped) session with scrollback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session: bool,
    /// v2: answer with PROC_STARTED `{pid}` before any output (piped execs and new sessions);
    /// a process that cannot be started is then an ERROR frame.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_pid: bool,
    /// v2: run as lohar's own identity (root in the sandbox) instead of the sandbox user
    /// (piped execs and new sessions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

impl ExecRequest {
    /// A plain piped exec of `argv`.
    pub fn command<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// A session as listed by EXEC_LIST_RESP and announced by SESSION_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// `s<N>` or `init`.
    pub session_id: String,
    /// The command line, space-joined.
    pub argv: String,
    /// Whether it runs on a PTY.
    pub tty: bool,
    /// Whether its process is still running.
    pub running: bool,
    /// Exit code once it has exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether a client is attached.
    pub attached: bool,
    /// Unix seconds at creation.
    pub created_at: i64,
}

/// PROC_STARTED (v2): the pid of a process just started for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStarted {
    /// PID in the sandbox's PID namespace (also its process group id).
    pub pid: i32,
}

/// SIGNAL payload (v2): `i32 BE`.
pub fn encode_signal(sig: i32) -> [u8; 4] {
    sig.to_be_bytes()
}

/// Parses a SIGNAL payload (exactly 4 bytes).
pub fn decode_signal(p: &[u8]) -> Result<i32, ProtoError> {
    let b: [u8; 4] = p
        .try_into()
        .map_err(|_| ProtoError::bad_payload("Signal", format!("{} bytes, want 4", p.len())))?;
    Ok(i32::from_be_bytes(b))
}

/// EXEC_KILL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecKillRequest {
    /// The session to kill.
    pub session_id: String,
}

/// The STDOUT payload that answers a detached exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachReply {
    /// PID of the detached process (in the sandbox's PID namespace).
    pub pid: i32,
    /// Where its stdout and stderr go.
    pub output_file: String,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// RESIZE payload: `u16 rows BE, u16 cols BE`.
pub fn encode_resize(size: WindowSize) -> [u8; 4] {
    let r = size.rows.to_be_bytes();
    let c = size.cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

/// Parses a RESIZE payload (exactly 4 bytes).
pub fn decode_resize(p: &[u8]) -> Result<WindowSize, ProtoError> {
    let b: [u8; 4] = p
        .try_into()
        .map_err(|_| ProtoError::bad_payload("Resize", format!("{} bytes, want 4", p.len())))?;
    Ok(WindowSize {
        rows: u16::from_be_bytes([b[0], b[1]]),
        cols: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// EXIT payload: `i32 BE`.
pub fn encode_exit(code: i32) -> [u8; 4] {
    code.to_be_bytes()
}

/// Parses an EXIT payload (exactly 4 bytes).
pub fn decode_exit(p: &[u8]) -> Result<i32, ProtoError> {
    let b: [u8; 4] = p
        .try_into()
        .map_err(|_| ProtoError::bad_payload("Exit", format!("{} bytes, want 4", p.len())))?;
    Ok(i32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exec_request_wire_names() {
        let r: ExecRequest = serde_json::from_str(
            r#"{"argv":["sh","-c","x"],"tty":true,"rows":30,"cols":100,"session_id":"s1","if_detached":true,"max_idle_sec":5}"#,
        )
        .unwrap();
        assert_eq!(r.argv, ["sh", "-c", "x"]);
        assert!(r.tty && r.if_detached);
        assert_eq!((r.rows, r.cols), (Some(30), Some(100)));
        assert_eq!(r.session_id.as_deref(), Some("s1"));
        let minimal = serde_json::to_string(&ExecRequest::command(["true"])).unwrap();
        assert_eq!(minimal, r#"{"argv":["true"]}"#);
    }

    #[test]
    fn bad_lengths() {
        assert!(decode_resize(&[1, 2, 3]).is_err());
        assert!(decode_exit(&[1, 2, 3, 4, 5]).is_err());
    }

    proptest! {
        #[test]
        fn resize_and_exit_round_trip(rows: u16, cols: u16, code: i32) {
            let w = WindowSize { rows, cols };
            prop_assert_eq!(decode_resize(&encode_resize(w)).unwrap(), w);
            prop_assert_eq!(decode_exit(&encode_exit(code)).unwrap(), code);
            prop_assert_eq!(decode_signal(&encode_signal(code)).unwrap(), code);
        }
    }
}
