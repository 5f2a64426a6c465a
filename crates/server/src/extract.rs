//! Request extractors: the authenticated caller and JSON bodies with the API's error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::users::UserRow;

/// The user whose key authenticated this request (put there by the auth middleware).
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserRow);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or(ApiError::Unauthorized("authorization required"))
    }
}

/// A JSON body: over the cap → 413, malformed → 400 `invalid json: …`; an empty body is `{}`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(state.config.max_body_bytes)
            } else {
                ApiError::BadJson(rej.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadJson(e.to_string()))
    }
}

/// A WebSocket upgrade whose rejection (not an upgrade request, wrong version…) is the API's
/// JSON error rather than axum's text/plain.
pub struct Ws(pub axum::extract::ws::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for Ws {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Ws)
            .map_err(|rej| {
                let msg = rej.body_text();
                (rej.status(), axum::Json(bhatti_api::ErrorBody::new(msg))).into_response()
            })
    }
}
