//! `POST /sandboxes/:id/exec`.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::{ErrorBody, ExecEvent, ExecRequest, ExecResult, NDJSON};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthUser};
use crate::service::exec::{self as svc, ExecOutcome};
use crate::state::AppState;

/// Runs a command in the sandbox.
///
/// * Buffered (default): `{exit_code, stdout, stderr}` once it exits (non-zero exits are still
///   200). Non-UTF-8 output adds `stdout_b64`/`stderr_b64` with the exact bytes; output over
///   10 MiB is cut (`truncated: true`, marker on stderr).
/// * Streaming (`Accept: application/x-ndjson`): one JSON event per line, flushed as produced:
///   `stdout`/`stderr` (`data`, plus `data_b64` for non-UTF-8 chunks), then `exit`
///   (`exit_code`), or `error` (`data`).
/// * Detached (`detach: true`): `{pid, output_file, detached: true}` at once.
///
/// Timeout (`timeout_sec`, 1..=86400, default 300): the process group is killed; exit code 124,
/// `timed_out: true`, and a note on stderr. `stdin` (base64) is written then closed.
#[utoipa::path(post, path = "/sandboxes/{id}/exec", tag = "exec", request_body = ExecRequest,
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Result, NDJSON stream of ExecEvent, or detached process", body = ExecResult),
        (status = 400, description = "cmd required, bad timeout_sec, cwd, env or stdin; invalid json", body = ErrorBody),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 502, description = "Sandbox agent unreachable", body = ErrorBody),
    ))]
pub async fn exec(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ExecRequest>,
) -> Result<Response, ApiError> {
    let stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)));
    Ok(match svc::exec(&st, &user, &id, req, stream).await? {
        ExecOutcome::Done(r) | ExecOutcome::Detached(r) => Json(r).into_response(),
        ExecOutcome::Stream(rx) => ndjson(rx),
    })
}

/// One line per event, each sent as its own chunk (hyper flushes them as they come).
fn ndjson(rx: mpsc::Receiver<ExecEvent>) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(NDJSON)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
