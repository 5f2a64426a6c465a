//! `/sandboxes/:id/sessions` and `/sandboxes/:id/ports`.

use axum::extract::{Path, State};
use axum::Json;
use bhatti_api::{ErrorBody, Port, Session, StatusResponse};

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::service::sessions as svc;
use crate::state::AppState;

/// The sandbox's sessions (shells, piped sessions, the init script).
#[utoipa::path(get, path = "/sandboxes/{id}/sessions", tag = "sessions",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Sessions", body = [Session]),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
    ))]
pub async fn list_sessions(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Session>>, ApiError> {
    Ok(Json(svc::list(&st, &user, &id).await?))
}

/// Ends a session: SIGKILL to its process group (an extension of the original API).
#[utoipa::path(delete, path = "/sandboxes/{id}/sessions/{sid}", tag = "sessions",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("sid" = String, Path, description = "Session id"),
    ),
    responses(
        (status = 200, description = "Killed", body = StatusResponse),
        (status = 404, description = "No such sandbox or session", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
    ))]
pub async fn kill_session(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<StatusResponse>, ApiError> {
    svc::kill(&st, &user, &id, &sid).await?;
    Ok(Json(StatusResponse::new("killed")))
}

/// Listening TCP ports inside the sandbox (from `/proc/net/tcp*`; the agent's own excluded).
#[utoipa::path(get, path = "/sandboxes/{id}/ports", tag = "sessions",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Ports", body = [Port]),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
    ))]
pub async fn list_ports(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Port>>, ApiError> {
    Ok(Json(svc::ports(&st, &user, &id).await?))
}
