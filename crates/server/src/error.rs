//! The one place where errors become HTTP responses: status + `{"error": "…"}`.
//! Internal failures are logged with a request id and answered with that id only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::ErrorBody;
use bhatti_engine::agent::AgentError;
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
        ServiceError::NotRunning(m) => body(StatusCode::CONFLICT, m),
        ServiceError::WakeFailed(m) => body(StatusCode::SERVICE_UNAVAILABLE, m),
        ServiceError::TooLarge(m) => body(StatusCode::PAYLOAD_TOO_LARGE, m),
        ServiceError::LengthRequired(m) => body(StatusCode::LENGTH_REQUIRED, m),
        ServiceError::Agent(e) => agent_response(e),
        ServiceError::Engine(e) => internal(&e),
        ServiceError::Store(e) => internal(&e),
        ServiceError::Secrets(e) => internal(&e),
        e @ ServiceError::Task(_) => internal(&e),
    }
}

/// Agent failures: the agent's own message when it describes the caller's mistake (missing
/// path, directory, too large …), a plain status for transport problems, else a sanitised 500.
fn agent_response(e: AgentError) -> Response {
    match agent_status(&e) {
        Some(status) => body(status, e.to_string()),
        None => internal(&e),
    }
}

/// The status an agent error maps to, when it is not an internal failure.
pub fn agent_status(e: &AgentError) -> Option<StatusCode> {
    match e {
        AgentError::Remote(m) => {
            let m = m.to_lowercase();
            if e.is_not_found() {
                Some(StatusCode::NOT_FOUND)
            } else if m.contains("too large") {
                Some(StatusCode::PAYLOAD_TOO_LARGE)
            } else if m.contains("limit exceeded") {
                Some(StatusCode::TOO_MANY_REQUESTS)
            } else if m.contains("session is attached") {
                Some(StatusCode::CONFLICT)
            } else if [
                "is a directory",
                "not a directory",
                "not a regular file",
                "must be absolute",
                "invalid size",
                "upload ended",
                "no such program",
                "not executable",
                "permission denied",
            ]
            .iter()
            .any(|p| m.contains(p))
            {
                Some(StatusCode::BAD_REQUEST)
            } else {
                None
            }
        }
        AgentError::Connect(_) => Some(StatusCode::BAD_GATEWAY),
        // The agent went away mid-exchange (it died, or its sandbox did): not our bug.
        AgentError::Protocol(
            bhatti_proto::ProtoError::Io(_) | bhatti_proto::ProtoError::UnexpectedEof,
        ) => Some(StatusCode::BAD_GATEWAY),
        AgentError::Timeout(_) => Some(StatusCode::GATEWAY_TIMEOUT),
        AgentError::Protocol(_) | AgentError::Unexpected(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_errors_map_to_gateway_statuses_or_internal() {
        let reset = AgentError::Protocol(bhatti_proto::ProtoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(agent_status(&reset), Some(StatusCode::BAD_GATEWAY));
        let eof = AgentError::Protocol(bhatti_proto::ProtoError::UnexpectedEof);
        assert_eq!(agent_status(&eof), Some(StatusCode::BAD_GATEWAY));
        let bad = AgentError::Protocol(bhatti_proto::ProtoError::EmptyFrame);
        assert_eq!(agent_status(&bad), None);
        let missing = AgentError::Remote("open /x: no such file or directory".into());
        assert_eq!(agent_status(&missing), Some(StatusCode::NOT_FOUND));
    }
}
