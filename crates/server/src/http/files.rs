//! `/sandboxes/:id/files`: GET (read or `ls=true`), PUT (atomic write), HEAD (stat).

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::ops::{X_FILE_ISDIR, X_FILE_MODE, X_FILE_SIZE};
use bhatti_api::{ErrorBody, FileEntry, StatusResponse};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::service::files::{self as svc, FileDownload};
use crate::state::AppState;

/// Reads a file (raw bytes, streamed), or lists a directory with `ls=true`.
///
/// Read: `Content-Type: application/octet-stream`, `X-File-Size` (whole file) and
/// `Content-Length` unless in line mode (`limit` or `max_bytes` > 0, from 1-based line `offset`).
/// Missing → 404, directory or non-regular file → 400.
/// List: `[{name,size,mode,is_dir,mtime}]`, at most 10 000 entries plus a sentinel entry.
#[utoipa::path(get, path = "/sandboxes/{id}/files", tag = "files",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("path" = String, Query, description = "Absolute path in the sandbox"),
        ("ls" = Option<bool>, Query, description = "List the directory instead of reading"),
        ("offset" = Option<u64>, Query, description = "Line mode: first line (1-based)"),
        ("limit" = Option<u64>, Query, description = "Line mode: at most this many lines"),
        ("max_bytes" = Option<u64>, Query, description = "Line mode: at most this many bytes"),
    ),
    responses(
        (status = 200, description = "File content (application/octet-stream) or listing", body = [FileEntry]),
        (status = 400, description = "Path missing or relative; a directory (read) or not a directory (ls)", body = ErrorBody),
        (status = 404, description = "No such sandbox or path", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
    ))]
pub async fn get_file(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = svc::parse_query(query.as_deref())?;
    if q.ls {
        return Ok(Json(svc::ls(&st, &user, &id, &q).await?).into_response());
    }
    let dl = svc::read(&st, &user, &id, &q).await?;
    Ok(download(dl))
}

fn download(dl: FileDownload) -> Response {
    let FileDownload {
        size,
        line_mode,
        reader,
        busy,
    } = dl;
    // A whole-file answer never exceeds the announced length, even if the file grows meanwhile.
    let cap = (!line_mode).then_some(size);
    let body =
        futures_util::stream::unfold((reader, cap, busy), |(mut r, left, busy)| async move {
            if left == Some(0) {
                return None;
            }
            match r.next_chunk().await {
                Ok(Some(mut c)) => {
                    let left = left.map(|l| {
                        if (c.len() as u64) > l {
                            c.truncate(l as usize);
                        }
                        l - c.len() as u64
                    });
                    Some((Ok::<Bytes, std::io::Error>(c), (r, left, busy)))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "file read failed mid-stream");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (r, Some(0), busy),
                    ))
                }
            }
        });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        HeaderName::from_static(X_FILE_SIZE),
        HeaderValue::from(size),
    );
    if !line_mode {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    resp
}

/// Writes a file atomically (temp file, fsync, rename), creating parent directories.
///
/// `Content-Length` is required (411 without it); over 100 MiB → 413 before anything is sent
/// to the sandbox. `mode` is octal (default `0644`). The body is streamed to the sandbox.
#[utoipa::path(put, path = "/sandboxes/{id}/files", tag = "files",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("path" = String, Query, description = "Absolute path in the sandbox"),
        ("mode" = Option<String>, Query, description = "Octal permission bits (default 0644)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Written", body = StatusResponse),
        (status = 400, description = "Bad path or mode; a directory; body ended early", body = ErrorBody),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
        (status = 411, description = "Content-Length missing", body = ErrorBody),
        (status = 413, description = "Over 100 MiB", body = ErrorBody),
    ))]
pub async fn put_file(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StatusResponse>, ApiError> {
    let q = svc::parse_query(query.as_deref())?;
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|_| !chunked);
    let reader = tokio_util::io::StreamReader::new(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    );
    svc::write(&st, &user, &id, &q, length, reader).await?;
    Ok(Json(StatusResponse::new("ok")))
}

/// Stat: `X-File-Size`, `X-File-Mode` (`0644`), `X-File-IsDir` (`true|false`); 404 if missing.
#[utoipa::path(head, path = "/sandboxes/{id}/files", tag = "files",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("path" = String, Query, description = "Absolute path in the sandbox"),
    ),
    responses(
        (status = 200, description = "Exists (see headers)"),
        (status = 400, description = "Path missing or relative"),
        (status = 404, description = "No such sandbox or path"),
    ))]
pub async fn head_file(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = svc::parse_query(query.as_deref())?;
    let info = svc::stat(&st, &user, &id, &q).await?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static(X_FILE_SIZE),
        HeaderValue::from(info.size),
    );
    if let Ok(v) = HeaderValue::from_str(&info.mode) {
        h.insert(HeaderName::from_static(X_FILE_MODE), v);
    }
    h.insert(
        HeaderName::from_static(X_FILE_ISDIR),
        HeaderValue::from_static(if info.is_dir { "true" } else { "false" }),
    );
    Ok(resp)
}
