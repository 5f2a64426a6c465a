//! Operations inside a sandbox: exec, files, sessions, ports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default exec timeout (seconds) when `timeout_sec` is absent or 0.
pub const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 300;
/// Largest accepted `timeout_sec`.
pub const MAX_EXEC_TIMEOUT_SECS: u64 = 86_400;
/// Exit code reported when the timeout killed the command.
pub const TIMEOUT_EXIT_CODE: i32 = 124;
/// Largest file a single write may carry (100 MiB).
pub const MAX_FILE_WRITE_BYTES: u64 = 100 * 1024 * 1024;
/// `Accept` value that selects NDJSON streaming for exec.
pub const NDJSON: &str = "application/x-ndjson";

/// `POST /sandboxes/:id/exec` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecRequest {
    /// argv; the first element is the program (looked up in `PATH`).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Seconds before the process group is killed (1..=86400; absent or 0 = 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<i64>,
    /// Start in the background and return its pid and output file at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detach: bool,
    /// Detached only: where stdout+stderr go (default `/tmp/bhatti-exec-<8 hex>.log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    /// Extension: extra environment variables (override the sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Extension: absolute working directory (default `/workspace` when the image has it, else `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extension: standard input, base64. It is written and then closed; without it the
    /// command's stdin is empty (closed at once). Limited by the 1 MiB request body cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// Buffered exec result (also the shape `bhatti exec --json` prints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// The command's exit code (128+signal when killed by a signal; 124 on timeout).
    #[serde(default)]
    pub exit_code: i32,
    /// Standard output as text (invalid UTF-8 replaced by U+FFFD; see `stdout_b64`).
    #[serde(default)]
    pub stdout: String,
    /// Standard error as text (see `stderr_b64`).
    #[serde(default)]
    pub stderr: String,
    /// Extension: the exact stdout bytes, base64, present only when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_b64: Option<String>,
    /// Extension: the exact stderr bytes, base64, present only when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_b64: Option<String>,
    /// Extension: output beyond 10 MiB was dropped (a marker is appended to stderr).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Extension: the timeout expired and the process group was killed (exit code 124).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Detached: the process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Detached: the output file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    /// Detached: always true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

/// One line of the NDJSON exec stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExecEvent {
    /// Output bytes. `data` is text; when the chunk is not valid UTF-8, `data_b64` carries the
    /// exact bytes (and `data` a lossy rendering).
    Stdout {
        /// Text.
        data: String,
        /// Exact bytes (base64), only for non-UTF-8 chunks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_b64: Option<String>,
    },
    /// Error output (as `stdout`).
    Stderr {
        /// Text.
        data: String,
        /// Exact bytes (base64), only for non-UTF-8 chunks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_b64: Option<String>,
    },
    /// The command ended.
    Exit {
        /// Exit code (124 after a timeout).
        exit_code: i32,
        /// The timeout killed it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    /// The agent or transport failed; no `exit` follows.
    Error {
        /// What went wrong.
        data: String,
    },
}

/// A session (TTY shell, piped session or the init script) as `GET …/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// `s<N>` or `init`.
    pub session_id: String,
    /// The command, space-joined.
    pub argv: String,
    /// Has a terminal.
    #[serde(default)]
    pub tty: bool,
    /// The process has not exited.
    pub running: bool,
    /// Exit code once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A client is attached.
    pub attached: bool,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
}

/// A listening TCP port inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Port {
    /// Port number inside the sandbox.
    pub container_port: u16,
    /// Authenticated proxy path, `/sandboxes/<id>/proxy/<port>/`.
    pub proxy_url: String,
}

/// A directory entry (`GET …/files?ls=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// File name (the last entry of a capped listing is a sentinel describing the cut).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Permission bits, `%04o`.
    pub mode: String,
    /// Is a directory (symlinks are not followed).
    pub is_dir: bool,
    /// Unix seconds.
    #[serde(default)]
    pub mtime: i64,
}

/// Response header: total size of the file.
pub const X_FILE_SIZE: &str = "x-file-size";
/// Response header (HEAD): permission bits.
pub const X_FILE_MODE: &str = "x-file-mode";
/// Response header (HEAD): `true` for directories.
pub const X_FILE_ISDIR: &str = "x-file-isdir";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shapes() {
        let e = ExecEvent::Stdout {
            data: "hi".into(),
            data_b64: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"stdout","data":"hi"}"#
        );
        let e = ExecEvent::Exit {
            exit_code: 3,
            timed_out: false,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"exit","exit_code":3}"#
        );
        let r = ExecResult {
            exit_code: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"exit_code":1,"stdout":"","stderr":""}"#
        );
    }
}
