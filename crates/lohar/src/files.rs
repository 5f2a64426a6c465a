//! File operations: streamed reads (whole or by lines), atomic writes, stat and ls.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bhatti_proto::msg::{
    FileInfo, FileReadRequest, FileReadResponse, FileWriteRequest, StatusResponse,
};
use bhatti_proto::FrameType;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::wire::{FrameReader, FrameWriter};
use crate::Agent;

/// Largest file a single write may carry: 100 MiB.
pub const MAX_WRITE_BYTES: i64 = 100 * 1024 * 1024;
/// Most entries an ls returns (plus one sentinel entry saying how many there were).
pub const MAX_LS_ENTRIES: usize = 10_000;
/// Longest line line-mode reads handle; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
const CHUNK: usize = 32 * 1024;

/// A file operation's failure, sent to the host as an ERROR frame.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Paths must be absolute.
    #[error("path must be absolute: {0:?}")]
    NotAbsolute(String),
    /// No such file or directory.
    #[error("{op} {path}: no such file or directory")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
    },
    /// A directory where a file was expected.
    #[error("{0} is a directory")]
    IsDirectory(String),
    /// Not a directory where one was expected.
    #[error("{0} is not a directory")]
    NotDirectory(String),
    /// Not a regular file (device, socket, fifo).
    #[error("{0} is not a regular file")]
    NotRegular(String),
    /// Over the write cap.
    #[error("file too large: {size} bytes (max {max})")]
    TooLarge {
        /// Requested size.
        size: i64,
        /// The cap.
        max: i64,
    },
    /// A negative size.
    #[error("invalid size {0}")]
    BadSize(i64),
    /// The host stopped sending before `size` bytes arrived.
    #[error("upload ended after {got} of {want} bytes")]
    ShortUpload {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// A listing too large for one answer.
    #[error(
        "listing of {path} has too many entries (more than {max}, or 900 KiB): use a smaller depth"
    )]
    TooManyEntries {
        /// The listed directory.
        path: String,
        /// The entry cap.
        max: usize,
    },
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(op: &'static str, path: &str, e: std::io::Error) -> FileError {
    match e.kind() {
        ErrorKind::NotFound => FileError::NotFound {
            op,
            path: path.into(),
        },
        _ if e.raw_os_error() == Some(libc::EISDIR) => FileError::IsDirectory(path.into()),
        _ if e.raw_os_error() == Some(libc::ENOTDIR) => FileError::NotFound {
            op,
            path: path.into(),
        },
        _ => FileError::Io {
            op,
            path: path.into(),
            source: e,
        },
    }
}

fn absolute(path: &str) -> Result<&Path, FileError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(FileError::NotAbsolute(path.into()))
    }
}

/// `%04o` of the permission bits.
pub fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

fn info(name: String, md: &std::fs::Metadata) -> FileInfo {
    FileInfo {
        name,
        size: md.len(),
        mode: mode_string(md.permissions().mode()),
        is_dir: md.is_dir(),
        mtime: md.mtime(),
    }
}

/// FILE_READ_REQ: header, content frames, EXIT(0); or an ERROR frame.
pub async fn read(agent: &Agent, req: FileReadRequest, wr: &FrameWriter) {
    agent.activity.touch();
    if let Err(e) = read_inner(req, wr).await {
        let _ = wr.error(e.to_string()).await;
    }
}

async fn read_inner(req: FileReadRequest, wr: &FrameWriter) -> Result<(), FileError> {
    let path = absolute(&req.path)?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_err("open", &req.path, e))?;
    let md = file
        .metadata()
        .await
        .map_err(|e| io_err("stat", &req.path, e))?;
    if md.is_dir() {
        return Err(FileError::IsDirectory(req.path));
    }
    if !md.is_file() {
        return Err(FileError::NotRegular(req.path));
    }
    let header = FileReadResponse {
        size: md.len(),
        mode: mode_string(md.permissions().mode()),
    };
    let send = |e: bhatti_proto::ProtoError| FileError::Io {
        op: "send",
        path: req.path.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    wr.send_json(FrameType::FileReadResp, &header)
        .await
        .map_err(send)?;
    if req.line_mode() {
        read_lines(file, &req, wr).await?;
    } else {
        let mut file = file;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| io_err("read", &req.path, e))?;
            if n == 0 {
                break;
            }
            wr.send(FrameType::Stdout, &buf[..n]).await.map_err(send)?;
        }
    }
    wr.exit(0).await.map_err(send)?;
    Ok(())
}

/// Line mode: from 1-based line `offset`, at most `limit` lines and `max_bytes` bytes (the last
/// line may be cut to respect `max_bytes`); every line is re-terminated with `\n`.
async fn read_lines(
    file: tokio::fs::File,
    req: &FileReadRequest,
    wr: &FrameWriter,
) -> Result<(), FileError> {
    let first = req.offset.unwrap_or(1).max(1);
    let limit = req.limit.filter(|l| *l > 0);
    let mut budget = req.max_bytes.filter(|b| *b > 0).map(|b| b as usize);
    let mut reader = tokio::io::BufReader::with_capacity(CHUNK, file);
    let mut out = Vec::with_capacity(CHUNK);
    let mut line = Vec::new();
    let mut lineno = 0u64;
    let mut emitted = 0u64;
    loop {
        line.clear();
        let n = read_line_capped(&mut reader, &mut line)
            .await
            .map_err(|e| io_err("read", &req.path, e))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if lineno < first {
            continue;
        }
        if limit.is_some_and(|l| emitted >= l) {
            break;
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let mut take = line.len();
        if let Some(b) = budget {
            take = take.min(b);
            budget = Some(b - take);
        }
        out.extend_from_slice(&line[..take]);
        emitted += 1;
        if out.len() >= CHUNK {
            wr.send(FrameType::Stdout, &out).await.ok();
            out.clear();
        }
        if budget == Some(0) {
            break;
        }
    }
    if !out.is_empty() {
        wr.send(FrameType::Stdout, &out).await.ok();
    }
    Ok(())
}

/// Reads one line (with its `\n`), keeping at most [`MAX_LINE_BYTES`] of it.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// FILE_WRITE_REQ: receive `size` bytes of STDIN frames into a temp file in the same directory,
/// fsync, rename over the target, fsync the directory. Readers see the old or the new content,
/// never a mix.
pub async fn write(agent: &Agent, req: FileWriteRequest, rd: &mut FrameReader, wr: &FrameWriter) {
    agent.activity.touch();
    match write_inner(agent, &req, rd).await {
        Ok(()) => {
            let _ = wr
                .send_json(
                    FrameType::FileWriteResp,
                    &StatusResponse {
                        status: "ok".into(),
                    },
                )
                .await;
        }
        Err(e) => {
            let _ = wr.error(e.to_string()).await;
        }
    }
}

async fn write_inner(
    agent: &Agent,
    req: &FileWriteRequest,
    rd: &mut FrameReader,
) -> Result<(), FileError> {
    let path = absolute(&req.path)?.to_path_buf();
    if req.size < 0 {
        return Err(FileError::BadSize(req.size));
    }
    if req.size > MAX_WRITE_BYTES {
        return Err(FileError::TooLarge {
            size: req.size,
            max: MAX_WRITE_BYTES,
        });
    }
    let mode = crate::config::parse_mode(&req.mode).unwrap_or(0o644);
    let owner = agent.ctx.run_as;
    if let Ok(md) = tokio::fs::metadata(&path).await {
        if md.is_dir() {
            return Err(FileError::IsDirectory(req.path.clone()));
        }
    }
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    create_parents(&parent, owner)
        .await
        .map_err(|e| io_err("mkdir", &parent.display().to_string(), e))?;
    let tmp = temp_path(&path);
    let result = receive_into(&tmp, req, mode, owner, rd).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_err("rename", &req.path, e));
    }
    // The rename is durable only once the directory entry is on disk.
    if let Ok(dir) = tokio::fs::File::open(&parent).await {
        let _ = dir.sync_all().await;
    }
    Ok(())
}

async fn receive_into(
    tmp: &Path,
    req: &FileWriteRequest,
    mode: u32,
    owner: Option<(u32, u32)>,
    rd: &mut FrameReader,
) -> Result<(), FileError> {
    let tmp_s = tmp.display().to_string();
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .await
        .map_err(|e| io_err("create", &tmp_s, e))?;
    // The umask may have narrowed the mode given to open.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| io_err("chmod", &tmp_s, e))?;
    if let Some((uid, gid)) = owner {
        let std_file = file
            .try_clone()
            .await
            .map_err(|e| io_err("dup", &tmp_s, e))?;
        let std_file = std_file.into_std().await;
        std::os::unix::fs::fchown(&std_file, Some(uid), Some(gid))
            .map_err(|e| io_err("chown", &tmp_s, e))?;
    }
    let want = req.size as u64;
    let mut got = 0u64;
    while got < want {
        match rd.next().await {
            Some(Ok(f)) if f.ty == FrameType::Stdin => {
                let room = (want - got) as usize;
                let data = &f.payload[..f.payload.len().min(room)];
                file.write_all(data)
                    .await
                    .map_err(|e| io_err("write", &tmp_s, e))?;
                got += data.len() as u64;
            }
            // Other frames during an upload are ignored, as in the original protocol.
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(FileError::ShortUpload { got, want }),
        }
    }
    file.flush().await.map_err(|e| io_err("write", &tmp_s, e))?;
    file.sync_all()
        .await
        .map_err(|e| io_err("fsync", &tmp_s, e))?;
    Ok(())
}

/// `<dir>/.<name>.bhatti-tmp-<unique>`: same directory (so rename is atomic), unique per writer
/// (so concurrent writers of one path never share a temp file).
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.bhatti-tmp-{}-{n}", std::process::id()))
}

/// Creates missing parent directories (0755), owned by the sandbox user.
async fn create_parents(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if tokio::fs::metadata(d).await.is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match tokio::fs::create_dir(&d).await {
            Ok(()) => {
                tokio::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).await?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&d, Some(uid), Some(gid))?;
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// FILE_STAT_REQ (follows symlinks).
pub async fn stat(path: &str) -> Result<FileInfo, FileError> {
    let p = absolute(path)?;
    let md = tokio::fs::metadata(p)
        .await
        .map_err(|e| io_err("stat", path, e))?;
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    Ok(info(name, &md))
}

/// FILE_LS_REQ: entries sorted by name (lstat, links not followed), capped at
/// [`MAX_LS_ENTRIES`] plus a sentinel entry that gives the real total.
pub async fn ls(path: &str) -> Result<Vec<FileInfo>, FileError> {
    let p = absolute(path)?.to_path_buf();
    let path_s = path.to_string();
    tokio::task::spawn_blocking(move || {
        let md = std::fs::metadata(&p).map_err(|e| io_err("stat", &path_s, e))?;
        if !md.is_dir() {
            return Err(FileError::NotDirectory(path_s));
        }
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&p)
            .map_err(|e| io_err("readdir", &path_s, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        let total = names.len();
        let mut out = Vec::with_capacity(total.min(MAX_LS_ENTRIES) + 1);
        for name in names.into_iter().take(MAX_LS_ENTRIES) {
            if let Ok(md) = std::fs::symlink_metadata(p.join(&name)) {
                out.push(info(name.to_string_lossy().into_owned(), &md));
            }
        }
        if total > MAX_LS_ENTRIES {
            out.push(FileInfo {
                name: format!("... truncated at {MAX_LS_ENTRIES} entries ({total} total)"),
                size: 0,
                mode: "0000".into(),
                is_dir: false,
                mtime: 0,
            });
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| {
        Err(FileError::Io {
            op: "ls",
            path: path.into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}
