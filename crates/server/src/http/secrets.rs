//! `/secrets` handlers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bhatti_api::{ErrorBody, SecretInfo, SetSecretRequest, StatusResponse};

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthUser};
use crate::service::secrets as svc;
use crate::state::AppState;

/// Creates or updates a secret (value encrypted at rest, never returned).
#[utoipa::path(post, path = "/secrets", tag = "secrets", request_body = SetSecretRequest,
    responses(
        (status = 201, description = "Stored", body = SecretInfo),
        (status = 400, description = "Missing or invalid name/value", body = ErrorBody),
        (status = 401, description = "Unauthenticated", body = ErrorBody),
    ))]
pub async fn set_secret(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(req): ApiJson<SetSecretRequest>,
) -> Result<(StatusCode, Json<SecretInfo>), ApiError> {
    let info = svc::set(&st, &user, req).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Lists the caller's secrets: names and timestamps only.
#[utoipa::path(get, path = "/secrets", tag = "secrets",
    responses(
        (status = 200, description = "Secrets", body = [SecretInfo]),
        (status = 401, description = "Unauthenticated", body = ErrorBody),
    ))]
pub async fn list_secrets(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    Ok(Json(svc::list(&st, &user).await?))
}

/// Deletes one of the caller's secrets.
#[utoipa::path(delete, path = "/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses(
        (status = 200, description = "Deleted", body = StatusResponse),
        (status = 404, description = "No such secret", body = ErrorBody),
    ))]
pub async fn delete_secret(
    State(st): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    svc::delete(&st, &user, name).await?;
    Ok(Json(StatusResponse::new("deleted")))
}
