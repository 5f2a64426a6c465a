//! The shareable web shell (reference §2.12): `POST/DELETE /sandboxes/:id/shell-token`
//! (authenticated), the page `GET /_shell/<id>` and its WebSocket `GET /_shell/<id>/ws`
//! (no API key: the share token authenticates, sent as the socket's first message).
//!
//! WebSocket protocol: the client's first message, within 10 s, is
//! `{"type":"auth","token":"…"}`; any failure answers `{"type":"error","error":"unauthorized"}`
//! (the same for an unknown sandbox, sharing off or a wrong token, so nothing can be probed).
//! Then `{"type":"connected","sandbox":<name>,"status":<status>}` and a new login shell relayed
//! as on `/sandboxes/:id/ws`. At most 5 web shells per sandbox (`too many sessions`); revoking
//! ends them all (close 1008). The shell is ended when its socket closes: a shared link never
//! leaves processes behind.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::{ErrorBody, ShellToken};
use futures_util::StreamExt;
use serde::Deserialize;

use super::shell::{close, pump, send, PumpEnd};
use super::webshell_page;
use crate::error::ApiError;
use crate::extract::{AuthUser, Ws};
use crate::service::shell as shell_svc;
use crate::service::webshell as svc;
use crate::state::AppState;
use crate::store::events::NewEvent;

/// How long the client has to authenticate after the upgrade.
const AUTH_WITHIN: Duration = Duration::from_secs(10);

/// Creates a share link for the sandbox's web shell (replacing any previous one).
#[utoipa::path(post, path = "/sandboxes/{id}/shell-token", tag = "shell",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "A new token; the previous one stops working", body = ShellToken),
        (status = 404, description = "No such sandbox", body = ErrorBody),
    ))]
pub async fn create_token(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ShellToken>, ApiError> {
    let (row, token) = svc::issue(&st, &user, &id).await?;
    let api_host = st.config.domain.as_ref().map(|d| d.api_host.as_str());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let url = svc::share_url(api_host, &format!("http://{host}"), &row.id, &token);
    st.record(NewEvent::new(
        "shell.shared",
        &user.id,
        &row.id,
        serde_json::json!({"name": row.name}),
    ));
    Ok(Json(ShellToken { token, url }))
}

/// Turns sharing off and disconnects every live web shell of the sandbox.
#[utoipa::path(delete, path = "/sandboxes/{id}/shell-token", tag = "shell",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such sandbox", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    svc::revoke(&st, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The web shell page (any id: the page itself reveals nothing).
pub async fn page(Path(_id): Path<String>) -> Response {
    webshell_page::render()
}

/// The web shell's WebSocket.
pub async fn ws(State(st): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    if let Err(wait) = st.web_shells.attempt(&ip, Instant::now()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(ErrorBody::new("rate limit exceeded")),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let (mut parts, _) = req.into_parts();
    match Ws::from_request_parts(&mut parts, &st).await {
        Ok(Ws(ws)) => ws.on_upgrade(move |socket| serve(st, id, ip, socket)),
        Err(rejection) => rejection,
    }
}

#[derive(Deserialize)]
struct Auth {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

fn json_msg(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn refuse(ws: &mut WebSocket, error: &str) {
    let _ = send(
        ws,
        json_msg(serde_json::json!({"type": "error", "error": error})),
    )
    .await;
    let _ = send(ws, close(1008, "refused")).await;
}

/// The token from the first message, if it is a well-formed auth message in time.
async fn read_auth(ws: &mut WebSocket) -> Option<String> {
    let first = tokio::time::timeout(AUTH_WITHIN, ws.recv())
        .await
        .ok()??
        .ok()?;
    let text = match first {
        Message::Text(t) => t.as_str().to_string(),
        Message::Binary(b) => String::from_utf8(b.to_vec()).ok()?,
        _ => return None,
    };
    let auth: Auth = serde_json::from_str(&text).ok()?;
    (auth.kind == "auth").then_some(auth.token)
}

async fn serve(st: AppState, sandbox_id: String, ip: String, mut ws: WebSocket) {
    let row = match read_auth(&mut ws).await {
        Some(token) => svc::authorize(&st, &sandbox_id, &token).await,
        None => None,
    };
    let Some(row) = row else {
        refuse(&mut ws, "unauthorized").await;
        return;
    };
    let Some(seat) = st.web_shells.join(&row.id) else {
        refuse(&mut ws, "too many sessions").await;
        return;
    };
    let hello = serde_json::json!({"type": "connected", "sandbox": row.name, "status": row.status});
    if !send(&mut ws, json_msg(hello)).await {
        return;
    }
    let (agent, _busy) = match open_agent(&st, &row).await {
        Some(a) => a,
        None => {
            refuse(&mut ws, "sandbox unavailable").await;
            return;
        }
    };
    let shell = match shell_svc::open(&agent, None, true).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(sandbox = %row.id, error = %e, "web shell: open failed");
            refuse(&mut ws, "sandbox unavailable").await;
            return;
        }
    };
    let started = Instant::now();
    let session_id = shell.session_id.clone();
    let (mut tx, mut rx) = ws.split();
    let end = pump(&mut tx, &mut rx, shell.channel, Some(seat.revoked.clone())).await;
    drop(seat);
    if end != PumpEnd::Shell {
        // A shared link leaves nothing running behind it.
        if let Err(e) = agent.kill_session(&session_id).await {
            tracing::debug!(sandbox = %row.id, error = %e, "web shell: kill session");
        }
    }
    st.record(NewEvent::new(
        "shell.web_session",
        &row.created_by,
        &row.id,
        serde_json::json!({
            "sandbox": row.name,
            "ip": ip,
            "duration_s": started.elapsed().as_secs(),
            "revoked": end == PumpEnd::Stopped,
        }),
    ));
}

/// The running sandbox's agent, woken if it was cooling, and the hold that keeps it hot while
/// the web shell is open.
async fn open_agent(
    st: &AppState,
    row: &crate::store::sandboxes::SandboxRow,
) -> Option<(bhatti_engine::agent::AgentClient, crate::thermal::Busy)> {
    if row.status != "running" || row.engine_id.is_empty() {
        return None;
    }
    let busy = match crate::thermal::ensure_hot(st, row).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(sandbox = %row.id, error = %e, "web shell: wake failed");
            return None;
        }
    };
    let ep = st.engine.agent(&row.engine_id).await.ok()?;
    Some((bhatti_engine::agent::AgentClient::new(ep), busy))
}
