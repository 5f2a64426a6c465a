//! `/sandboxes/:id/publish`: public URLs for sandbox ports.

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::{ErrorBody, PublishRequest, PublishRule, X_BHATTI_EXISTING};

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthUser};
use crate::service::publish::{self as svc, Published};
use crate::state::AppState;

/// Publishes a port at a public URL (201); re-publishing the same port answers the existing
/// rule with 200 and `X-Bhatti-Existing: true`.
#[utoipa::path(post, path = "/sandboxes/{id}/publish", tag = "publish",
    params(("id" = String, Path, description = "Sandbox id or name")),
    request_body = PublishRequest,
    responses(
        (status = 201, description = "Published", body = PublishRule),
        (status = 200, description = "Already published (X-Bhatti-Existing: true)", body = PublishRule),
        (status = 400, description = "Invalid port or alias", body = ErrorBody),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Alias in use, or the port is published under another alias", body = ErrorBody),
    ))]
pub async fn publish(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<Response, ApiError> {
    Ok(match svc::create(&st, &user, &id, req).await? {
        Published::New(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Published::Existing(r) => (
            StatusCode::OK,
            [(
                HeaderName::from_static(X_BHATTI_EXISTING),
                HeaderValue::from_static("true"),
            )],
            Json(r),
        )
            .into_response(),
    })
}

/// The sandbox's publish rules.
#[utoipa::path(get, path = "/sandboxes/{id}/publish", tag = "publish",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Rules", body = [PublishRule]),
        (status = 404, description = "No such sandbox", body = ErrorBody),
    ))]
pub async fn list_published(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<PublishRule>>, ApiError> {
    Ok(Json(svc::list(&st, &user, &id).await?))
}

/// Unpublishes a port; its URL answers 404 at once.
#[utoipa::path(delete, path = "/sandboxes/{id}/publish/{port}", tag = "publish",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("port" = u16, Path, description = "Published port"),
    ),
    responses(
        (status = 204, description = "Unpublished"),
        (status = 400, description = "Invalid port", body = ErrorBody),
        (status = 404, description = "No such sandbox, or the port is not published", body = ErrorBody),
    ))]
pub async fn unpublish(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, port)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    svc::delete(&st, &user, &id, &port).await?;
    Ok(StatusCode::NO_CONTENT)
}
