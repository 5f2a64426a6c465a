use serde::{Deserialize, Serialize};

/// FILE_READ_REQ. Line mode is used when `limit` or `max_bytes` is positive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReadRequest {
    /// Absolute path inside the sandbox.
    pub path: String,
    /// First line to return, 1-based (line mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Maximum number of lines (line mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Maximum number of bytes (line mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl FileReadRequest {
    /// Whether the request asks for line mode.
    pub fn line_mode(&self) -> bool {
        self.limit.unwrap_or(0) > 0 || self.max_bytes.unwrap_or(0) > 0
    }
}

/// FILE_READ_RESP header: total size and permission bits, before the content frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReadResponse {
    /// Total size of the file in bytes.
    pub size: u64,
    /// Permission bits as `%04o`, e.g. `0644`.
    pub mode: String,
}

/// FILE_WRITE_REQ, followed by STDIN frames totalling `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWriteRequest {
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Octal permission string, e.g. `0644`.
    #[serde(default)]
    pub mode: String,
    /// Exact number of content bytes that follow.
    pub size: i64,
}

/// FILE_STAT_REQ and FILE_LS_REQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRequest {
    /// Absolute path inside the sandbox.
    pub path: String,
}

/// FILE_WRITE_RESP: `{"status":"ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Always `ok` on success (failures are ERROR frames).
    pub status: String,
}

/// One file's metadata (FILE_STAT_RESP, entries of FILE_LS_RESP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Base name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits as `%04o`.
    pub mode: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Modification time, unix seconds.
    pub mtime: i64,
}
