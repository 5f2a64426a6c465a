//! v2 filesystem operations (FS_REQ/FS_RESP) and directory watches (WATCH_REQ/WATCH_EVENT).

use serde::{Deserialize, Serialize};

/// What an FS_REQ asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsOp {
    /// Metadata of `path` (the link itself for a symlink, with its target).
    Stat,
    /// Entries under directory `path`, down to `depth` levels (1: direct children).
    List,
    /// Create directory `path` and missing parents; `created` false when it already existed.
    Mkdir,
    /// Rename `path` to `dest`; answers the entry at `dest`.
    Move,
    /// Remove `path` (recursively for a directory).
    Remove,
}

/// FS_REQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRequest {
    /// The operation.
    pub op: FsOp,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Destination of a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Depth of a list (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
}

/// One file's metadata as FS_RESP reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// Base name.
    pub name: String,
    /// Absolute path.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other` (a symlink reports its target's kind when it
    /// resolves, with `symlink_target` set).
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// `ls -l` style, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// Owner name (or the numeric uid when it has no name).
    pub owner: String,
    /// Group name (or the numeric gid).
    pub group: String,
    /// Modification time, unix seconds.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    #[serde(default)]
    pub mtime_nsec: u32,
    /// Target of a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// FS_RESP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsResponse {
    /// The entry (stat, mkdir, move) or the entries (list); empty for remove.
    #[serde(default)]
    pub entries: Vec<FsEntry>,
    /// Mkdir: whether the directory was created by this request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// WATCH_REQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Directory to watch.
    pub path: String,
    /// Watch subdirectories too (also ones created later).
    #[serde(default)]
    pub recursive: bool,
}

/// WATCH_EVENT: one change under the watched directory. The first event after a successful
/// WATCH_REQ is `{"op":"start"}` (the watch is in place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `start`, `create`, `write`, `remove`, `rename` or `chmod`.
    pub op: String,
    /// Path relative to the watched directory.
    #[serde(default)]
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        let r: FsRequest =
            serde_json::from_str(r#"{"op":"move","path":"/a","dest":"/b"}"#).unwrap();
        assert_eq!(r.op, FsOp::Move);
        assert_eq!(r.dest.as_deref(), Some("/b"));
        let s = serde_json::to_string(&FsRequest {
            op: FsOp::List,
            path: "/x".into(),
            dest: None,
            depth: Some(2),
        })
        .unwrap();
        assert_eq!(s, r#"{"op":"list","path":"/x","depth":2}"#);
        assert!(serde_json::from_str::<FsRequest>(r#"{"op":"chmod","path":"/a"}"#).is_err());
    }
}
