//! `/sandboxes` handlers.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::{CreateSandboxRequest, ErrorBody, Sandbox, StatusResponse, X_BHATTI_EXISTING};

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthUser};
use crate::service::sandboxes::{self as svc, Created};
use crate::state::AppState;

/// Creates a sandbox, or returns the caller's live sandbox with the same name.
#[utoipa::path(post, path = "/sandboxes", tag = "sandboxes", request_body = CreateSandboxRequest,
    responses(
        (status = 201, description = "Created", body = Sandbox),
        (status = 200, description = "A live sandbox with this name exists (X-Bhatti-Existing: true)", body = Sandbox),
        (status = 400, description = "Invalid request or over a per-sandbox limit", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 429, description = "Sandbox limit or rate limit reached", body = ErrorBody),
        (status = 500, description = "Internal error (with request_id)", body = ErrorBody),
        (status = 503, description = "Engine unavailable on this host", body = ErrorBody),
    ))]
pub async fn create_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(req): ApiJson<CreateSandboxRequest>,
) -> Result<Response, ApiError> {
    Ok(match svc::create(&st, &user, req).await? {
        Created::New(s) => (StatusCode::CREATED, Json(s)).into_response(),
        Created::Existing(s) => (
            StatusCode::OK,
            [(
                HeaderName::from_static(X_BHATTI_EXISTING),
                HeaderValue::from_static("true"),
            )],
            Json(s),
        )
            .into_response(),
    })
}

/// Lists the caller's sandboxes, newest first; `?label=k=v` (repeatable) filters.
#[utoipa::path(get, path = "/sandboxes", tag = "sandboxes",
    params(("label" = Option<String>, Query, description = "Label filter key=value; repeatable")),
    responses(
        (status = 200, description = "Sandboxes", body = [Sandbox]),
        (status = 400, description = "Bad label filter", body = ErrorBody),
    ))]
pub async fn list_sandboxes(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Sandbox>>, ApiError> {
    let filters = svc::parse_label_filters(query.as_deref())?;
    let mut list = svc::list(&st, &user, filters).await?;
    crate::service::publish::fill_urls(&st, &user, &mut list).await?;
    Ok(Json(list))
}

/// One sandbox by id or name, status refreshed from the engine.
#[utoipa::path(get, path = "/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Sandbox", body = Sandbox),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn get_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Sandbox>, ApiError> {
    Ok(Json(svc::get(&st, &user, &id).await?))
}

/// Destroys a sandbox and its record.
#[utoipa::path(delete, path = "/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Destroyed", body = StatusResponse),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn destroy_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    svc::destroy(&st, &user, &id).await?;
    Ok(Json(StatusResponse::new("destroyed")))
}

/// Renames, relabels or changes `keep_hot` (`true` also wakes it now).
#[utoipa::path(patch, path = "/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id or name")),
    request_body = bhatti_api::sandbox::UpdateSandboxRequest,
    responses(
        (status = 200, description = "Updated", body = Sandbox),
        (status = 400, description = "Invalid name or label", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
    ))]
pub async fn update_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<bhatti_api::sandbox::UpdateSandboxRequest>,
) -> Result<Json<Sandbox>, ApiError> {
    Ok(Json(svc::update(&st, &user, &id, req).await?))
}

/// Stops a sandbox: processes and memory released, filesystem kept. Idempotent.
#[utoipa::path(post, path = "/sandboxes/{id}/stop", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Stopped", body = Sandbox),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Not in a state that can stop", body = ErrorBody),
    ))]
pub async fn stop_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Sandbox>, ApiError> {
    Ok(Json(svc::stop(&st, &user, &id).await?))
}

/// Starts a stopped sandbox over its kept filesystem (`init` runs again). Idempotent.
#[utoipa::path(post, path = "/sandboxes/{id}/start", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Running", body = Sandbox),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Not in a state that can start", body = ErrorBody),
    ))]
pub async fn start_sandbox(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Sandbox>, ApiError> {
    Ok(Json(svc::start(&st, &user, &id).await?))
}
