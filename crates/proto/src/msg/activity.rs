use serde::{Deserialize, Serialize};

/// ACTIVITY_RESP: what the host's thermal manager needs to decide whether a sandbox is idle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Unix seconds of the last exec, file read/write or session input; 0 if none yet.
    pub last_activity_unix: i64,
    /// Sessions whose process is still running.
    pub active_sessions: u32,
    /// Sessions with a connected client.
    pub attached_sessions: u32,
}
