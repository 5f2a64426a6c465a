//! envd's `filesystem.Filesystem` service and `/files` on lohar's file operations.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bhatti_proto::msg::{FsEntry, FsOp, FsRequest, WatchRequest};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connect::{self, Code, RpcError};
use super::{envd_sandbox, rpc_of_agent, ApiErr, E2bState, Sbx, Target};

/// Largest upload accepted on `/files`.
const MAX_UPLOAD: usize = 100 * 1024 * 1024;
/// MiB of upload bodies the facade holds in memory at once (see `E2bState::uploads`).
pub const UPLOAD_BUDGET_MIB: u32 = 256;
/// How long an upload waits for room in that budget before a 503.
const UPLOAD_WAIT: Duration = Duration::from_secs(30);

/// The MiB of the upload budget a body of `content_length` bytes takes (unknown: the most an
/// upload may be); a declared length over [`MAX_UPLOAD`] is refused at once.
pub fn upload_mib(content_length: Option<u64>) -> Result<u32, ApiErr> {
    let max_mib = MAX_UPLOAD.div_ceil(1 << 20) as u32;
    match content_length {
        Some(n) if n > MAX_UPLOAD as u64 => Err(ApiErr(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload larger than {MAX_UPLOAD} bytes"),
        )),
        Some(n) => Ok((n.div_ceil(1 << 20) as u32).max(1)),
        None => Ok(max_mib),
    }
}
/// Events a polled watcher keeps between polls.
const MAX_WATCH_EVENTS: usize = 10_000;
/// Watchers (polled, and open WatchDir streams) one sandbox may have: each holds one of
/// lohar's 50 control connections (and an inotify instance) until RemoveWatcher, the stream's
/// end or the sandbox's end, and the sandbox's other operations need the rest.
pub const MAX_WATCHERS: usize = 16;

/// Polled watchers (CreateWatcher / GetWatcherEvents / RemoveWatcher) of one sandbox.
#[derive(Default)]
pub struct Watchers {
    inner: Mutex<HashMap<String, Arc<Watcher>>>,
    /// Open WatchDir streams (they hold a lohar connection each too).
    streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// One open WatchDir stream, counted while it lives.
struct StreamSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct Watcher {
    events: Mutex<Vec<Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watchers {
    /// How many watchers there are.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len() + self.open_streams()
    }

    fn open_streams(&self) -> usize {
        self.streams.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a new WatchDir stream, unless the sandbox has all the watchers it may have.
    fn stream_slot(&self) -> Option<StreamSlot> {
        let n = self
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slot = StreamSlot(self.streams.clone());
        let polled = self.inner.lock().unwrap_or_else(|e| e.into_inner()).len();
        (n + polled < MAX_WATCHERS).then_some(slot)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// E2B's `EntryInfo` of an entry.
fn entry_json(e: &FsEntry) -> Value {
    let ty = match e.kind.as_str() {
        "dir" => "FILE_TYPE_DIRECTORY",
        "file" => "FILE_TYPE_FILE",
        "symlink" => "FILE_TYPE_SYMLINK",
        _ => "FILE_TYPE_UNSPECIFIED",
    };
    let mtime = chrono::DateTime::from_timestamp(e.mtime, e.mtime_nsec)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let mut v = json!({
        "name": e.name,
        "type": ty,
        "path": e.path,
        "size": e.size.to_string(),
        "mode": e.mode,
        "permissions": e.permissions,
        "owner": e.owner,
        "group": e.group,
        "modifiedTime": mtime,
        "isSymlink": e.symlink_target.is_some(),
    });
    if let Some(t) = &e.symlink_target {
        v["symlinkTarget"] = json!(t);
    }
    v
}

/// A path as E2B gives it: absolute, or relative to the user's home.
pub fn resolve(home: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else if path.is_empty() {
        home.to_string()
    } else {
        format!(
            "{}/{}",
            home.trim_end_matches('/'),
            path.trim_start_matches("./")
        )
    }
}

fn str_field<'a>(req: &'a Value, k: &str) -> Result<&'a str, RpcError> {
    req.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(Code::InvalidArgument, format!("{k} required")))
}

async fn fs_op(
    st: &E2bState,
    sbx: &Sbx,
    op: FsOp,
    path: String,
    dest: Option<String>,
    depth: Option<u32>,
) -> Result<bhatti_proto::msg::FsResponse, RpcError> {
    let (agent, _busy) = sbx.agent(st).await?;
    agent
        .fs(&FsRequest {
            op,
            path,
            dest,
            depth,
        })
        .await
        .map_err(rpc_of_agent)
}

fn first(resp: bhatti_proto::msg::FsResponse) -> Result<Value, RpcError> {
    resp.entries
        .first()
        .map(entry_json)
        .ok_or_else(|| RpcError::new(Code::Internal, "no entry in answer"))
}

/// One Connect RPC of `filesystem.Filesystem`.
pub(super) async fn rpc(
    State(st): State<E2bState>,
    Path(method): Path<String>,
    axum::Extension(target): axum::Extension<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let streaming = method == "WatchDir";
    let result = async {
        let json: &[u8] = if streaming {
            connect::first_envelope(&body)?
        } else {
            &body
        };
        let req: Value = connect::parse(json)?;
        let sbx = envd_sandbox(&st, &headers, &target, None).await?;
        let home = sbx.meta.tpl.home.clone();
        let path = || str_field(&req, "path").map(|p| resolve(&home, p));
        let v = match method.as_str() {
            "Stat" => {
                json!({"entry": first(fs_op(&st, &sbx, FsOp::Stat, path()?, None, None).await?)?})
            }
            "ListDir" => {
                let depth = req.get("depth").and_then(Value::as_u64).unwrap_or(1).max(1) as u32;
                let r = fs_op(&st, &sbx, FsOp::List, path()?, None, Some(depth)).await?;
                json!({"entries": r.entries.iter().map(entry_json).collect::<Vec<_>>()})
            }
            "MakeDir" => {
                let p = path()?;
                let r = fs_op(&st, &sbx, FsOp::Mkdir, p.clone(), None, None).await?;
                if !r.created {
                    return Err(RpcError::new(
                        Code::AlreadyExists,
                        format!("directory {p} already exists"),
                    ));
                }
                json!({"entry": first(r)?})
            }
            "Move" => {
                let src = resolve(&home, str_field(&req, "source")?);
                let dst = resolve(&home, str_field(&req, "destination")?);
                json!({"entry": first(fs_op(&st, &sbx, FsOp::Move, src, Some(dst), None).await?)?})
            }
            "Remove" => {
                fs_op(&st, &sbx, FsOp::Remove, path()?, None, None).await?;
                json!({})
            }
            "CreateWatcher" => {
                let recursive = req
                    .get("recursive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let id = create_watcher(&st, &sbx, path()?, recursive).await?;
                json!({"watcherId": id})
            }
            "GetWatcherEvents" => {
                let id = str_field(&req, "watcherId")?;
                let w = sbx
                    .meta
                    .watchers
                    .inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(id)
                    .cloned()
                    .ok_or_else(|| {
                        RpcError::new(Code::NotFound, format!("watcher {id} not found"))
                    })?;
                let events =
                    std::mem::take(&mut *w.events.lock().unwrap_or_else(|e| e.into_inner()));
                json!({"events": events})
            }
            "RemoveWatcher" => {
                let id = str_field(&req, "watcherId")?;
                sbx.meta
                    .watchers
                    .inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
                json!({})
            }
            "WatchDir" => {
                let recursive = req
                    .get("recursive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                return watch_stream(&st, &sbx, path()?, recursive).await;
            }
            m => {
                return Err(RpcError::new(
                    Code::Unimplemented,
                    format!("filesystem.Filesystem/{m} is not implemented"),
                ))
            }
        };
        Ok(axum::Json(v).into_response())
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) if streaming => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/connect+json")],
            connect::end_stream(Some(&e)),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn watch_event_json(ev: &bhatti_proto::msg::WatchEvent) -> Option<Value> {
    let ty = match ev.op.as_str() {
        "create" => "EVENT_TYPE_CREATE",
        "write" => "EVENT_TYPE_WRITE",
        "remove" => "EVENT_TYPE_REMOVE",
        "rename" => "EVENT_TYPE_RENAME",
        "chmod" => "EVENT_TYPE_CHMOD",
        _ => return None,
    };
    Some(json!({"name": ev.name, "type": ty}))
}

async fn create_watcher(
    st: &E2bState,
    sbx: &Sbx,
    path: String,
    recursive: bool,
) -> Result<String, RpcError> {
    let full = || {
        RpcError::new(
            Code::ResourceExhausted,
            format!("at most {MAX_WATCHERS} watchers per sandbox: remove one first"),
        )
    };
    if sbx.meta.watchers.len() >= MAX_WATCHERS {
        return Err(full());
    }
    let (agent, _busy) = sbx.agent(st).await?;
    let mut ws = agent
        .watch(&WatchRequest { path, recursive })
        .await
        .map_err(rpc_of_agent)?;
    let id = crate::ids::random_hex(8);
    let (w_tx, w_rx) = tokio::sync::oneshot::channel::<Arc<Watcher>>();
    let task = tokio::spawn(async move {
        let Ok(w) = w_rx.await else { return };
        let w = Arc::downgrade(&w);
        while let Ok(Some(ev)) = ws.next().await {
            let Some(w) = w.upgrade() else { return };
            if let Some(v) = watch_event_json(&ev) {
                let mut evs = w.events.lock().unwrap_or_else(|e| e.into_inner());
                if evs.len() < MAX_WATCH_EVENTS {
                    evs.push(v);
                }
            }
        }
    });
    let w = Arc::new(Watcher {
        events: Mutex::new(Vec::new()),
        task,
    });
    let _ = w_tx.send(w.clone());
    let mut map = sbx
        .meta
        .watchers
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Checked again under the lock: concurrent creates cannot pass the cap together.
    if map.len() + sbx.meta.watchers.open_streams() >= MAX_WATCHERS {
        return Err(full());
    }
    map.insert(id.clone(), w);
    Ok(id)
}

async fn watch_stream(
    st: &E2bState,
    sbx: &Sbx,
    path: String,
    recursive: bool,
) -> Result<Response, RpcError> {
    let slot = sbx.meta.watchers.stream_slot().ok_or_else(|| {
        RpcError::new(
            Code::ResourceExhausted,
            format!("at most {MAX_WATCHERS} watchers per sandbox: end one first"),
        )
    })?;
    let (agent, _busy) = sbx.agent(st).await?;
    let mut ws = agent
        .watch(&WatchRequest { path, recursive })
        .await
        .map_err(rpc_of_agent)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let _slot = slot;
        if tx
            .send(Ok(connect::message(&json!({"start": {}}))))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                ev = ws.next() => match ev {
                    Ok(Some(ev)) => {
                        if let Some(v) = watch_event_json(&ev) {
                            if tx.send(Ok(connect::message(&json!({"filesystem": v})))).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => {
                        let _ = tx.send(Ok(connect::end_stream(None))).await;
                        return;
                    }
                },
                _ = tokio::time::sleep(Duration::from_secs(20)) => {
                    if tx.send(Ok(connect::message(&json!({"keepalive": {}})))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/connect+json")],
        Body::from_stream(super::process::tokio_stream_of(rx)),
    )
        .into_response())
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn files_sandbox(
    st: &E2bState,
    headers: &HeaderMap,
    target: &Target,
    q: &HashMap<String, String>,
    operation: &'static str,
) -> Result<Sbx, ApiErr> {
    let signed = q.get("signature").map(|sig| super::SignedUrl {
        path: q.get("path").cloned().unwrap_or_default(),
        operation,
        user: q.get("username").cloned().unwrap_or_default(),
        signature: sig.clone(),
        expiration: q.get("signature_expiration").and_then(|e| e.parse().ok()),
    });
    envd_sandbox(st, headers, target, signed.as_ref())
        .await
        .map_err(api_of_rpc)
}

fn api_of_rpc(e: RpcError) -> ApiErr {
    let status = match e.code {
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::BAD_GATEWAY,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiErr(status, e.message)
}

/// `GET /files?path=…`: the raw content.
pub(super) async fn download(
    State(st): State<E2bState>,
    axum::Extension(target): axum::Extension<Target>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = query_map(q.as_deref());
    let r = async {
        let sbx = files_sandbox(&st, &headers, &target, &q, "read").await?;
        let path = resolve(
            &sbx.meta.tpl.home,
            q.get("path").map(String::as_str).unwrap_or(""),
        );
        let (agent, busy) = sbx.agent(&st).await.map_err(api_of_rpc)?;
        let reader = agent
            .read_file(&bhatti_proto::msg::FileReadRequest {
                path: path.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| api_of_rpc(rpc_of_agent(e)))?;
        let size = reader.header.size;
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        tokio::spawn(async move {
            let _busy = busy;
            let mut reader = reader;
            loop {
                match reader.next_chunk().await {
                    Ok(Some(c)) => {
                        if tx.send(Ok(c)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        let name = path.rsplit('/').next().unwrap_or("file").replace('"', "");
        Ok::<_, ApiErr>(
            (
                StatusCode::OK,
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "application/octet-stream".to_string(),
                    ),
                    (axum::http::header::CONTENT_LENGTH, size.to_string()),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        format!("inline; filename=\"{name}\""),
                    ),
                ],
                Body::from_stream(super::process::tokio_stream_of(rx)),
            )
                .into_response(),
        )
    };
    match r.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// `filename=` of the part, if any.
    pub filename: Option<String>,
    /// The content.
    pub data: &'a [u8],
}

/// Splits a `multipart/form-data` body (whole, in memory) into its parts.
pub fn parse_multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("multipart body without boundary")?;
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut pos = find(body, d, 0).ok_or("multipart boundary not found")? + d.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        // Skip the CRLF after the boundary line.
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without headers")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let next = find(body, format!("\r\n{delim}").as_bytes(), data_start)
            .ok_or("unterminated multipart part")?;
        let filename = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| {
                l.split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix("filename="))
                    .map(|f| f.trim_matches('"').to_string())
            });
        parts.push(Part {
            filename,
            data: &body[data_start..next],
        });
        pos = next + 2 + d.len();
    }
}

/// `POST /files?path=…`: multipart (one or more files) or `application/octet-stream`.
pub(super) async fn upload(
    State(st): State<E2bState>,
    axum::Extension(target): axum::Extension<Target>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let q = query_map(q.as_deref());
    let r = async {
        let sbx = files_sandbox(&st, &headers, &target, &q, "write").await?;
        super::limit(&st, &sbx.user, crate::rate_limit::RequestClass::Exec)?;
        if headers
            .get(axum::http::header::CONTENT_ENCODING)
            .is_some_and(|v| v != "identity")
        {
            return Err(ApiErr(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "compressed uploads are not supported by bhatti".into(),
            ));
        }
        let length = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mib = upload_mib(length)?;
        let _room = tokio::time::timeout(UPLOAD_WAIT, st.uploads.acquire_many(mib))
            .await
            .map_err(|_| {
                ApiErr(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many uploads in progress; retry later".into(),
                )
            })?
            .map_err(|_| ApiErr(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()))?;
        let body = axum::body::to_bytes(body, MAX_UPLOAD).await.map_err(|_| {
            ApiErr(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("upload larger than {MAX_UPLOAD} bytes"),
            )
        })?;
        let ct = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let home = sbx.meta.tpl.home.clone();
        let qpath = q.get("path").cloned();
        // A signed URL grants its own path only: the file names in a multipart body cannot
        // widen it.
        let signed_path = (!headers.contains_key("x-access-token") && q.contains_key("signature"))
            .then(|| resolve(&home, qpath.as_deref().unwrap_or("")));
        let files: Vec<(String, Bytes)> = if ct.starts_with("multipart/") {
            let parts =
                parse_multipart(&ct, &body).map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e))?;
            let single = parts.len() == 1;
            parts
                .into_iter()
                .map(|p| {
                    let path = match (&qpath, single, p.filename) {
                        (Some(q), true, _) => q.clone(),
                        (_, _, Some(f)) => f,
                        (Some(q), _, None) => q.clone(),
                        (None, _, None) => String::new(),
                    };
                    (resolve(&home, &path), body.slice_ref(p.data))
                })
                .collect()
        } else {
            let p = qpath.ok_or_else(|| ApiErr(StatusCode::BAD_REQUEST, "path required".into()))?;
            vec![(resolve(&home, &p), body.clone())]
        };
        let (agent, _busy) = sbx.agent(&st).await.map_err(api_of_rpc)?;
        let mut out = Vec::new();
        for (path, _) in &files {
            if path.ends_with('/') || *path == home {
                return Err(ApiErr(
                    StatusCode::BAD_REQUEST,
                    format!("path {path:?} is not a file path"),
                ));
            }
            if signed_path.as_ref().is_some_and(|p| p != path) {
                return Err(ApiErr(
                    StatusCode::FORBIDDEN,
                    format!("this signed URL may write only its own path, not {path:?}"),
                ));
            }
        }
        for (path, data) in files {
            agent
                .write_file_bytes(&path, 0o644, &data)
                .await
                .map_err(|e| api_of_rpc(rpc_of_agent(e)))?;
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            out.push(json!({"name": name, "type": "file", "path": path}));
        }
        Ok::<_, ApiErr>(axum::Json(out).into_response())
    };
    match r.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(resolve("/home/user", "/etc/x"), "/etc/x");
        assert_eq!(resolve("/home/user", "a/b"), "/home/user/a/b");
        assert_eq!(resolve("/home/user/", "./a"), "/home/user/a");
        assert_eq!(resolve("/home/user", ""), "/home/user");
    }

    #[test]
    fn upload_budget() {
        assert_eq!(upload_mib(Some(0)).unwrap(), 1);
        assert_eq!(upload_mib(Some(1)).unwrap(), 1);
        assert_eq!(upload_mib(Some(1 << 20)).unwrap(), 1);
        assert_eq!(upload_mib(Some((1 << 20) + 1)).unwrap(), 2);
        assert_eq!(upload_mib(None).unwrap(), 100);
        assert_eq!(upload_mib(Some(MAX_UPLOAD as u64)).unwrap(), 100);
        let e = upload_mib(Some(MAX_UPLOAD as u64 + 1)).unwrap_err();
        assert_eq!(e.0, StatusCode::PAYLOAD_TOO_LARGE);
        // Even the largest uploads leave room for others.
        assert!(UPLOAD_BUDGET_MIB >= 2 * upload_mib(None).unwrap());
    }

    #[test]
    fn multipart() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n\x00\x01\r\n\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].filename.as_deref(), Some("/tmp/a.txt"));
        assert_eq!(parts[0].data, b"hello");
        assert_eq!(parts[1].data, b"\x00\x01\r\n");
        assert!(parse_multipart("multipart/form-data", body).is_err());
        assert!(parse_multipart("multipart/form-data; boundary=nope", body).is_err());
        let empty =
            parse_multipart("multipart/form-data; boundary=\"XyZ\"", b"--XyZ--\r\n").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn entry_shape() {
        let e = FsEntry {
            name: "a".into(),
            path: "/a".into(),
            kind: "dir".into(),
            size: 4096,
            mode: 0o755,
            permissions: "drwxr-xr-x".into(),
            owner: "user".into(),
            group: "user".into(),
            mtime: 0,
            mtime_nsec: 0,
            symlink_target: None,
        };
        let v = entry_json(&e);
        assert_eq!(v["type"], "FILE_TYPE_DIRECTORY");
        assert_eq!(v["size"], "4096");
        assert_eq!(v["modifiedTime"], "1970-01-01T00:00:00Z");
        assert!(v.get("symlinkTarget").is_none());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn multipart_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_multipart("multipart/form-data; boundary=b", &body);
        }

        #[test]
        fn multipart_round_trips(data in proptest::collection::vec(any::<u8>(), 0..200), name in "[a-z/._]{1,20}") {
            let boundary = "----bhattiBoundary7x";
            let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").into_bytes();
            body.extend_from_slice(&data);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let parts = parse_multipart(&format!("multipart/form-data; boundary={boundary}"), &body).unwrap();
            prop_assert_eq!(parts.len(), 1);
            prop_assert_eq!(parts[0].filename.as_deref(), Some(name.as_str()));
            prop_assert_eq!(parts[0].data, &data[..]);
        }

        #[test]
        fn resolved_paths_are_absolute(p in "\\PC{0,30}") {
            prop_assert!(resolve("/home/user", &p).starts_with('/'));
        }
    }
}
