//! The one place where errors become HTTP responses: status + `{"error": "…"}`.
//! Internal failures are logged with a request id and answered with that id only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::ErrorBody;
use bhatti_engine::EngineError;

use crate::ids;
use crate::service::ServiceError;

/// Every error an HTTP handler or middleware can return.
#[derive(Debug)]
pub enum ApiError {
    /// 401 with `authorization required` or `invalid api key`.
    Unauthorized(&'static str),
    /// 429 `rate limit exceeded` with `Retry-After` seconds.
    RateLimited {
        /// Seconds until a token is available.
        retry_after_secs: u64,
    },
    /// 404 `not found` (unknown route).
    RouteNotFound,
    /// 405 `method not allowed`.
    MethodNotAllowed,
    /// 413: the body exceeds the cap (bytes).
    PayloadTooLarge(usize),
    /// 400 `invalid json: …`.
    BadJson(String),
    /// A service error.
    Service(ServiceError),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

fn body(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(msg))).into_response()
}

/// 500 with a fresh request id; the cause goes only to the log.
fn internal(cause: &dyn std::error::Error) -> Response {
    let request_id = ids::request_id();
    let mut chain = cause.to_string();
    let mut src = cause.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    tracing::error!(request_id = %request_id, error = %chain, "internal error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(ErrorBody {
            error: "internal error".into(),
            request_id: Some(request_id),
        }),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized(msg) => body(StatusCode::UNAUTHORIZED, msg),
            ApiError::RateLimited { retry_after_secs } => {
                let mut r = body(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            ApiError::RouteNotFound => body(StatusCode::NOT_FOUND, "not found"),
            ApiError::MethodNotAllowed => {
                body(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            ApiError::PayloadTooLarge(max) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large (max {max} bytes)"),
            ),
            ApiError::BadJson(msg) => body(StatusCode::BAD_REQUEST, format!("invalid json: {msg}")),
            ApiError::Service(e) => service_response(e),
        }
    }
}

fn service_response(e: ServiceError) -> Response {
    match e {
        ServiceError::Invalid(m) => body(StatusCode::BAD_REQUEST, m),
        ServiceError::NotFound(m) => body(StatusCode::NOT_FOUND, m),
        ServiceError::Conflict(m) => body(StatusCode::CONFLICT, m),
        ServiceError::LimitReached(m) => body(StatusCode::TOO_MANY_REQUESTS, m),
        // The operator chose an engine this host cannot run: say so plainly.
        ServiceError::Engine(e @ EngineError::Unavailable { .. }) => {
            body(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        ServiceError::Engine(EngineError::NotFound(_)) => body(StatusCode::NOT_FOUND, "not found"),
        ServiceError::Engine(e @ EngineError::ImageNotFound(_)) => {
            body(StatusCode::NOT_FOUND, e.to_string())
        }
        ServiceError::Engine(e @ EngineError::NotSupported { .. }) => {
            body(StatusCode::NOT_IMPLEMENTED, e.to_string())
        }
        ServiceError::Engine(e) => internal(&e),
        ServiceError::Store(e) => internal(&e),
        ServiceError::Secrets(e) => internal(&e),
        e @ ServiceError::Task(_) => internal(&e),
    }
}
