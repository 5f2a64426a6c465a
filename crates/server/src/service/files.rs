//! `/sandboxes/:id/files`: streamed reads and atomic writes through the agent, stat and ls.
//!
//! Fixes over the original: a missing path is 404 (not 500), a directory is 400, an upload over
//! 100 MiB is 413 before any byte is sent to the sandbox, and a PUT without `Content-Length`
//! is 411. Content is streamed both ways; the daemon never holds a whole file.

use bhatti_api::{FileEntry, MAX_FILE_WRITE_BYTES};
use bhatti_engine::agent::{AgentError, FileReader};
use bhatti_proto::msg::{FileInfo, FileReadRequest};
use tokio::io::AsyncRead;

use super::agent;
use super::ServiceError;
use crate::state::AppState;
use crate::store::users::UserRow;

/// Query parameters of `/files`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileQuery {
    /// Absolute path inside the sandbox.
    pub path: Option<String>,
    /// `ls=true`: list the directory.
    pub ls: bool,
    /// Line mode: 1-based first line.
    pub offset: Option<u64>,
    /// Line mode: at most this many lines.
    pub limit: Option<u64>,
    /// Line mode: at most this many bytes.
    pub max_bytes: Option<u64>,
    /// PUT: permission bits, octal (default 0644).
    pub mode: Option<String>,
}

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(m.into())
}

/// Parses the raw query string (unknown keys are ignored; bad numbers are 400).
pub fn parse_query(raw: Option<&str>) -> Result<FileQuery, ServiceError> {
    let mut q = FileQuery::default();
    let num = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| invalid(format!("{k} must be a non-negative integer (got {v:?})")))
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*k {
            "path" => q.path = Some(v.into_owned()),
            "ls" => q.ls = matches!(&*v, "true" | "1" | "yes"),
            "offset" => q.offset = Some(num("offset", &v)?),
            "limit" => q.limit = Some(num("limit", &v)?),
            "max_bytes" => q.max_bytes = Some(num("max_bytes", &v)?),
            "mode" => q.mode = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(q)
}

/// The `path` parameter: present and absolute.
pub fn require_path(q: &FileQuery) -> Result<&str, ServiceError> {
    let p = q
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("path query parameter required"))?;
    if !p.starts_with('/') {
        return Err(invalid(format!("path must be absolute (got {p:?})")));
    }
    if p.contains('\0') {
        return Err(invalid("path must not contain NUL"));
    }
    Ok(p)
}

/// The `mode` parameter: octal permission bits, default 0644.
pub fn parse_mode(m: Option<&str>) -> Result<u32, ServiceError> {
    let m = m.unwrap_or("0644");
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o7777 && !m.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "invalid mode {m:?}: want octal permission bits like 0644"
            ))
        })
}

/// A file read in progress.
pub struct FileDownload {
    /// Total size of the file.
    pub size: u64,
    /// Line mode (no `Content-Length`: the size of the answer is unknown).
    pub line_mode: bool,
    /// The content.
    pub reader: FileReader,
    /// Keeps the sandbox hot until the content has been sent.
    pub busy: crate::thermal::Busy,
}

/// Starts reading a file (whole, or in line mode).
pub async fn read(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    q: &FileQuery,
) -> Result<FileDownload, ServiceError> {
    let path = require_path(q)?.to_string();
    let (row, agent, busy) = agent::open(st, user, id_or_name).await?;
    let req = FileReadRequest {
        path,
        offset: q.offset,
        limit: q.limit,
        max_bytes: q.max_bytes,
    };
    let line_mode = req.line_mode();
    let reader = agent::checked(st, &row, agent.read_file(&req)).await?;
    Ok(FileDownload {
        size: reader.header.size,
        line_mode,
        reader,
        busy,
    })
}

/// Stat (follows symlinks).
pub async fn stat(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    q: &FileQuery,
) -> Result<FileInfo, ServiceError> {
    let path = require_path(q)?.to_string();
    let (row, agent, _busy) = agent::open(st, user, id_or_name).await?;
    agent::checked(st, &row, agent.stat(&path)).await
}

/// Lists a directory (capped at 10 000 entries plus a sentinel entry).
pub async fn ls(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    q: &FileQuery,
) -> Result<Vec<FileEntry>, ServiceError> {
    let path = require_path(q)?.to_string();
    let (row, agent, _busy) = agent::open(st, user, id_or_name).await?;
    Ok(agent::checked(st, &row, agent.ls(&path))
        .await?
        .into_iter()
        .map(|f| FileEntry {
            name: f.name,
            size: f.size,
            mode: f.mode,
            is_dir: f.is_dir,
            mtime: f.mtime,
        })
        .collect())
}

/// Writes `content_length` bytes from `body` atomically. Checks everything it can (path, mode,
/// length, cap, sandbox) before reading any of the body.
pub async fn write<R: AsyncRead + Unpin>(
    st: &AppState,
    user: &UserRow,
    id_or_name: &str,
    q: &FileQuery,
    content_length: Option<u64>,
    body: R,
) -> Result<(), ServiceError> {
    let path = require_path(q)?.to_string();
    let mode = parse_mode(q.mode.as_deref())?;
    let size = content_length.ok_or_else(|| {
        ServiceError::LengthRequired(
            "Content-Length required: send the exact size of the file (chunked uploads are not accepted)".into(),
        )
    })?;
    if size > MAX_FILE_WRITE_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "file too large: {size} bytes (max {MAX_FILE_WRITE_BYTES})"
        )));
    }
    let (row, agent, _busy) = agent::open(st, user, id_or_name).await?;
    match agent.write_file(&path, mode, size, body).await {
        Ok(()) => Ok(()),
        // The HTTP body broke or ended early: the client's fault, and nothing was written.
        Err(AgentError::Unexpected(m)) if m.contains("upload source") => {
            Err(invalid(format!("request body ended early or failed: {m}")))
        }
        Err(e) => Err(agent::failed(st, &row, e).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query(Some("path=%2Fa%20b&ls=true&limit=3&mode=0755")).unwrap();
        assert_eq!(q.path.as_deref(), Some("/a b"));
        assert!(q.ls);
        assert_eq!(q.limit, Some(3));
        assert_eq!(parse_mode(q.mode.as_deref()).unwrap(), 0o755);
        assert!(parse_query(Some("offset=-1")).is_err());
        assert!(require_path(&parse_query(None).unwrap()).is_err());
        assert!(require_path(&parse_query(Some("path=rel")).unwrap()).is_err());
        assert_eq!(parse_mode(None).unwrap(), 0o644);
        for bad in ["", "9", "17777", "rw"] {
            assert!(parse_mode(Some(bad)).is_err(), "{bad}");
        }
    }
}
