//! v2 filesystem operations (FS_REQ): stat with owner, permissions and symlink target, list
//! with depth, mkdir -p, move, recursive remove; and directory watches (WATCH_REQ, inotify).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bhatti_proto::msg::{FsEntry, FsOp, FsRequest, FsResponse, WatchEvent, WatchRequest};
use bhatti_proto::FrameType;
use futures_util::StreamExt;

use crate::files::FileError;
use crate::wire::{FrameReader, FrameWriter};
use crate::Agent;

/// Most entries one list returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Most JSON bytes of entries one list returns: the answer is one FS_RESP frame (1 MiB).
pub const MAX_LIST_BYTES: usize = 900 * 1024;
/// Deepest list accepted.
pub const MAX_DEPTH: u32 = 64;

fn io_err(op: &'static str, path: &str, e: std::io::Error) -> FileError {
    if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) {
        FileError::NotFound {
            op,
            path: path.into(),
        }
    } else {
        FileError::Io {
            op,
            path: path.into(),
            source: e,
        }
    }
}

fn absolute(path: &str) -> Result<PathBuf, FileError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Err(FileError::NotAbsolute(path.into()))
    }
}

/// `ls -l` style permission string of a full `st_mode`.
pub fn permissions_string(st_mode: u32) -> String {
    let kind = match st_mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = st_mode & bit != 0;
        let special = match i {
            2 => st_mode & 0o4000 != 0,
            5 => st_mode & 0o2000 != 0,
            8 => st_mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

/// Maps ids to names from `/etc/passwd`-style text (`name:x:id:...`).
pub fn parse_id_names(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let id = it.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

/// Names of users and groups, read once per request.
struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn load() -> Names {
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        Names {
            users: parse_id_names(&read("/etc/passwd")),
            groups: parse_id_names(&read("/etc/group")),
        }
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

/// The entry of `path` (lstat; a symlink gets its target and, when it resolves, its kind).
fn entry(path: &Path, names: &Names) -> std::io::Result<FsEntry> {
    let md = std::fs::symlink_metadata(path)?;
    let (kind, symlink_target) = if md.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
        let kind = std::fs::metadata(path)
            .map(|m| kind_of(m.file_type()))
            .unwrap_or("symlink");
        (kind, target)
    } else {
        (kind_of(md.file_type()), None)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    Ok(FsEntry {
        name,
        path: path.to_string_lossy().into_owned(),
        kind: kind.into(),
        size: md.len(),
        mode: md.permissions().mode() & 0o7777,
        permissions: permissions_string(md.mode()),
        owner: names
            .users
            .get(&md.uid())
            .cloned()
            .unwrap_or_else(|| md.uid().to_string()),
        group: names
            .groups
            .get(&md.gid())
            .cloned()
            .unwrap_or_else(|| md.gid().to_string()),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
        symlink_target,
    })
}

/// What a list has gathered, and whether it outgrew one answer.
#[derive(Default)]
struct Listing {
    entries: Vec<FsEntry>,
    bytes: usize,
    too_large: bool,
}

/// Lists `dir` down to `depth` levels, sorted by path, without following symlinked dirs; stops
/// (setting `too_large`) beyond [`MAX_LIST_ENTRIES`] or [`MAX_LIST_BYTES`].
fn list(dir: &Path, depth: u32, names: &Names, out: &mut Listing) -> std::io::Result<()> {
    let mut kids: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    kids.sort();
    for k in kids {
        let Ok(e) = entry(&k, names) else { continue };
        out.bytes += serde_json::to_vec(&e).map(|v| v.len() + 1).unwrap_or(0);
        if out.entries.len() >= MAX_LIST_ENTRIES || out.bytes > MAX_LIST_BYTES {
            out.too_large = true;
            return Ok(());
        }
        let descend = depth > 1 && e.kind == "dir" && e.symlink_target.is_none();
        out.entries.push(e);
        if descend {
            // An unreadable subdirectory is listed but not entered.
            let _ = list(&k, depth - 1, names, out);
            if out.too_large {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn mkdir_all(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => return Ok(false),
        Ok(_) => return Err(std::io::Error::from(ErrorKind::AlreadyExists)),
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(parent) = path.parent() {
        mkdir_all(parent, owner)?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn handle_blocking(req: FsRequest, owner: Option<(u32, u32)>) -> Result<FsResponse, FileError> {
    let path = absolute(&req.path)?;
    let p = req.path.as_str();
    let names = Names::load();
    match req.op {
        FsOp::Stat => Ok(FsResponse {
            entries: vec![entry(&path, &names).map_err(|e| io_err("stat", p, e))?],
            created: false,
        }),
        FsOp::List => {
            let depth = req.depth.unwrap_or(1).clamp(1, MAX_DEPTH);
            let md = std::fs::metadata(&path).map_err(|e| io_err("stat", p, e))?;
            if !md.is_dir() {
                return Err(FileError::NotDirectory(p.into()));
            }
            let mut out = Listing::default();
            list(&path, depth, &names, &mut out).map_err(|e| io_err("readdir", p, e))?;
            if out.too_large {
                // A cut listing would look complete to the caller: refuse it clearly instead.
                return Err(FileError::TooManyEntries {
                    path: p.into(),
                    max: MAX_LIST_ENTRIES,
                });
            }
            Ok(FsResponse {
                entries: out.entries,
                created: false,
            })
        }
        FsOp::Mkdir => {
            let created = mkdir_all(&path, owner).map_err(|e| io_err("mkdir", p, e))?;
            Ok(FsResponse {
                entries: vec![entry(&path, &names).map_err(|e| io_err("stat", p, e))?],
                created,
            })
        }
        FsOp::Move => {
            let dest_s = req.dest.as_deref().unwrap_or_default();
            let dest = absolute(dest_s)?;
            std::fs::symlink_metadata(&path).map_err(|e| io_err("move", p, e))?;
            if let Some(parent) = dest.parent() {
                mkdir_all(parent, owner).map_err(|e| io_err("mkdir", dest_s, e))?;
            }
            std::fs::rename(&path, &dest).map_err(|e| io_err("move", p, e))?;
            Ok(FsResponse {
                entries: vec![entry(&dest, &names).map_err(|e| io_err("stat", dest_s, e))?],
                created: false,
            })
        }
        FsOp::Remove => {
            let md = std::fs::symlink_metadata(&path).map_err(|e| io_err("remove", p, e))?;
            if md.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .map_err(|e| io_err("remove", p, e))?;
            Ok(FsResponse::default())
        }
    }
}

/// FS_REQ: runs the operation off the async threads.
pub async fn handle(agent: &Agent, req: FsRequest) -> Result<FsResponse, FileError> {
    agent.activity.touch();
    let owner = agent.ctx.run_as;
    let path = req.path.clone();
    tokio::task::spawn_blocking(move || handle_blocking(req, owner))
        .await
        .unwrap_or_else(|e| {
            Err(FileError::Io {
                op: "fs",
                path,
                source: std::io::Error::other(e.to_string()),
            })
        })
}

/// An inotify instance with its watch descriptors; closed on drop.
struct Inotify {
    fd: std::os::fd::OwnedFd,
    dirs: HashMap<i32, PathBuf>,
}

const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF;

impl Inotify {
    fn new() -> std::io::Result<Inotify> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Inotify {
            fd,
            dirs: HashMap::new(),
        })
    }

    fn add(&mut self, dir: &Path, recursive: bool) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
        // SAFETY: fd is valid; c is a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), WATCH_MASK) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.dirs.insert(wd, dir.to_path_buf());
        if recursive {
            for e in std::fs::read_dir(dir)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = self.add(&e.path(), true);
                }
            }
        }
        Ok(())
    }
}

/// Decodes a buffer of `inotify_event`s into (wd, mask, name).
pub fn decode_inotify(buf: &[u8]) -> Vec<(i32, u32, String)> {
    let mut out = Vec::new();
    let head = std::mem::size_of::<libc::inotify_event>();
    let mut off = 0;
    while off + head <= buf.len() {
        let wd = i32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default());
        let mask = u32::from_ne_bytes(buf[off + 4..off + 8].try_into().unwrap_or_default());
        let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap_or_default());
        let name_start = off + head;
        let name_end = (name_start + len as usize).min(buf.len());
        let raw = &buf[name_start..name_end];
        let name = raw.split(|b| *b == 0).next().unwrap_or_default();
        out.push((wd, mask, String::from_utf8_lossy(name).into_owned()));
        off = name_end;
    }
    out
}

fn op_of(mask: u32) -> Option<&'static str> {
    if mask & libc::IN_CREATE != 0 || mask & libc::IN_MOVED_TO != 0 {
        Some("create")
    } else if mask & (libc::IN_MODIFY | libc::IN_CLOSE_WRITE) != 0 {
        Some("write")
    } else if mask & libc::IN_DELETE != 0 {
        Some("remove")
    } else if mask & libc::IN_MOVED_FROM != 0 {
        Some("rename")
    } else if mask & libc::IN_ATTRIB != 0 {
        Some("chmod")
    } else {
        None
    }
}

/// WATCH_REQ: `{"op":"start"}`, then one WATCH_EVENT per change, until the host hangs up or
/// the directory goes away.
pub async fn watch(req: WatchRequest, mut rd: FrameReader, wr: &FrameWriter) {
    let root = match absolute(&req.path) {
        Ok(p) => p,
        Err(e) => {
            let _ = wr.error(e.to_string()).await;
            return;
        }
    };
    match std::fs::metadata(&root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            let _ = wr
                .error(FileError::NotDirectory(req.path.clone()).to_string())
                .await;
            return;
        }
        Err(e) => {
            let _ = wr.error(io_err("watch", &req.path, e).to_string()).await;
            return;
        }
    }
    let mut ino = match Inotify::new().and_then(|mut i| i.add(&root, req.recursive).map(|_| i)) {
        Ok(i) => i,
        Err(e) => {
            let _ = wr.error(io_err("watch", &req.path, e).to_string()).await;
            return;
        }
    };
    let send = |op: &str, name: String| {
        let ev = WatchEvent {
            op: op.into(),
            name,
        };
        async move { wr.send_json(FrameType::WatchEvent, &ev).await }
    };
    if send("start", String::new()).await.is_err() {
        return;
    }
    let registered = ino.fd.try_clone().and_then(|fd| {
        // SAFETY: the duplicated fd is owned by the AsyncFd and stays open while registered.
        unsafe { Ok(tokio::io::unix::AsyncFd::register(fd)?) }
    });
    let afd = match registered {
        Ok(a) => a,
        Err(e) => {
            let _ = wr.error(format!("watch: {e}")).await;
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            // Anything from the host (or its hang-up) ends the watch.
            _ = rd.next() => return,
            ready = afd.readable() => {
                let Ok(mut guard) = ready else { return };
                use std::os::fd::AsRawFd;
                // SAFETY: fd valid, buffer writable for its length.
                let n = unsafe {
                    libc::read(afd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == ErrorKind::WouldBlock {
                        guard.clear_ready();
                        continue;
                    }
                    return;
                }
                for (wd, mask, name) in decode_inotify(&buf[..n as usize]) {
                    if mask & libc::IN_DELETE_SELF != 0 && ino.dirs.get(&wd) == Some(&root) {
                        return;
                    }
                    let Some(dir) = ino.dirs.get(&wd).cloned() else { continue };
                    let full = dir.join(&name);
                    if req.recursive && mask & libc::IN_ISDIR != 0
                        && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0
                    {
                        let _ = ino.add(&full, true);
                    }
                    let Some(op) = op_of(mask) else { continue };
                    let rel = full
                        .strip_prefix(&root)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or(name);
                    if send(op, rel).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_strings() {
        assert_eq!(permissions_string(0o100644), "-rw-r--r--");
        assert_eq!(permissions_string(0o040755), "drwxr-xr-x");
        assert_eq!(permissions_string(0o120777), "lrwxrwxrwx");
        assert_eq!(permissions_string(0o104755), "-rwsr-xr-x");
        assert_eq!(permissions_string(0o041777), "drwxrwxrwt");
        assert_eq!(permissions_string(0o100000), "----------");
    }

    #[test]
    fn id_names() {
        let m =
            parse_id_names("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:\nbad\n");
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&1000).map(String::as_str), Some("user"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn ops_on_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().into_owned();
        let req = |op, path: String, dest: Option<String>, depth| FsRequest {
            op,
            path,
            dest,
            depth,
        };
        let r =
            handle_blocking(req(FsOp::Mkdir, format!("{root}/a/b/c"), None, None), None).unwrap();
        assert!(r.created);
        assert_eq!(r.entries[0].kind, "dir");
        let again =
            handle_blocking(req(FsOp::Mkdir, format!("{root}/a/b/c"), None, None), None).unwrap();
        assert!(!again.created);
        std::fs::write(format!("{root}/a/f"), b"hi").unwrap();
        std::os::unix::fs::symlink(format!("{root}/a/f"), format!("{root}/a/l")).unwrap();
        let one = handle_blocking(req(FsOp::List, format!("{root}/a"), None, None), None).unwrap();
        let names: Vec<_> = one.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b", "f", "l"]);
        let deep =
            handle_blocking(req(FsOp::List, format!("{root}/a"), None, Some(3)), None).unwrap();
        assert_eq!(deep.entries.len(), 4);
        let l = handle_blocking(req(FsOp::Stat, format!("{root}/a/l"), None, None), None)
            .unwrap()
            .entries
            .remove(0);
        assert_eq!(l.kind, "file");
        assert_eq!(l.symlink_target, Some(format!("{root}/a/f")));
        let m = handle_blocking(
            req(
                FsOp::Move,
                format!("{root}/a/f"),
                Some(format!("{root}/x/g")),
                None,
            ),
            None,
        )
        .unwrap();
        assert_eq!(m.entries[0].path, format!("{root}/x/g"));
        handle_blocking(req(FsOp::Remove, format!("{root}/a"), None, None), None).unwrap();
        let err = handle_blocking(req(FsOp::Stat, format!("{root}/a"), None, None), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        assert!(handle_blocking(req(FsOp::Stat, "rel".into(), None, None), None).is_err());
    }

    #[test]
    fn a_listing_too_large_for_one_frame_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().into_owned();
        // Long names: the byte budget binds long before the entry count.
        for i in 0..4000 {
            std::fs::write(t.path().join(format!("{i:0>200}")), b"").unwrap();
        }
        let req = FsRequest {
            op: FsOp::List,
            path: root.clone(),
            dest: None,
            depth: None,
        };
        let err = handle_blocking(req, None).unwrap_err().to_string();
        assert!(err.contains("too many entries"), "{err}");
        // What fits is answered, and fits in a frame.
        for i in 1000..4000 {
            std::fs::remove_file(t.path().join(format!("{i:0>200}"))).unwrap();
        }
        let req = FsRequest {
            op: FsOp::List,
            path: root,
            dest: None,
            depth: None,
        };
        let ok = handle_blocking(req, None).unwrap();
        assert_eq!(ok.entries.len(), 1000);
        let frame = bhatti_proto::msg::json_frame(FrameType::FsResp, &ok);
        assert!(frame.payload.len() < bhatti_proto::MAX_PAYLOAD_LEN);
    }

    #[test]
    fn inotify_decoding() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [(1i32, libc::IN_CREATE, "abc"), (2, libc::IN_DELETE, "")] {
            let padded = if name.is_empty() { 0 } else { 16 };
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(padded, 0);
            buf.extend_from_slice(&n);
        }
        let ev = decode_inotify(&buf);
        assert_eq!(ev[0], (1, libc::IN_CREATE, "abc".to_string()));
        assert_eq!(ev[1], (2, libc::IN_DELETE, String::new()));
        assert_eq!(op_of(libc::IN_MOVED_FROM), Some("rename"));
    }
}
