//! Authentication (Bearer API keys only), per-user rate limits and the access log: one
//! middleware, applied before routing.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::ids;
use crate::rate_limit::RequestClass;
use crate::state::AppState;
use crate::store::events::NewEvent;
use crate::store::users;

/// Paths served without a key, compared after normalisation.
const PUBLIC_PATHS: &[&str] = &["/health"];

/// The web shell (`/_shell/<id>` and `/_shell/<id>/ws`) authenticates with its share token.
fn is_public(clean: &str) -> bool {
    PUBLIC_PATHS.contains(&clean) || clean.starts_with("/_shell/")
}

/// Lexical path normalisation like Go's `path.Clean`: collapses `//`, resolves `.` and `..`.
pub fn clean_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The key from `Authorization: Bearer <key>`; query strings are never consulted.
fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Bearer ")?.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// Authenticates, rate-limits and logs every request.
pub async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = clean_path(req.uri().path());
    let client_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();

    let mut user_id = String::new();
    let response = if is_public(&path) {
        next.run(req).await
    } else {
        match authorize(&st, bearer(&req), &client_ip).await {
            Err(e) => e.into_response(),
            Ok(user) => {
                user_id = user.id.clone();
                match st
                    .limiter
                    .check(&user.id, RequestClass::of(method.as_str(), &path))
                {
                    Err(wait) => ApiError::RateLimited {
                        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    }
                    .into_response(),
                    Ok(()) => {
                        req.extensions_mut().insert(AuthUser(user));
                        next.run(req).await
                    }
                }
            }
        }
    };
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        user = %user_id,
        "request"
    );
    response
}

async fn authorize(
    st: &AppState,
    key: Option<String>,
    client_ip: &str,
) -> Result<users::UserRow, ApiError> {
    let Some(key) = key else {
        return Err(ApiError::Unauthorized("authorization required"));
    };
    let hash = ids::hash_key(&key);
    let found = st
        .store
        .call(move |c| users::by_key_hash(c, &hash))
        .await
        .map_err(|e| ApiError::Service(e.into()))?;
    match found {
        Some(user) => Ok(user),
        None => {
            // Record who tried, never what they presented.
            st.record(NewEvent::new(
                "auth.failed",
                "",
                "",
                json!({ "ip": client_ip }),
            ));
            Err(ApiError::Unauthorized("invalid api key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn clean() {
        assert_eq!(clean_path("/health"), "/health");
        assert_eq!(clean_path("//health"), "/health");
        assert_eq!(clean_path("/health/"), "/health");
        assert_eq!(clean_path("//health/../sandboxes"), "/sandboxes");
        assert_eq!(clean_path("/sandboxes/./x"), "/sandboxes/x");
        assert_eq!(clean_path("/../../health"), "/health");
        assert_eq!(clean_path(""), "/");
    }
}

#[cfg(test)]
mod props {
    use super::clean_path;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn clean_is_canonical(p in "[/a-z.]{0,40}") {
            let c = clean_path(&p);
            prop_assert!(c.starts_with('/'));
            prop_assert!(!c.contains("//"));
            prop_assert!(!c.split('/').any(|s| s == ".." || s == "."));
            prop_assert_eq!(clean_path(&c), c.clone());
        }

        #[test]
        fn only_health_itself_is_public(p in "[/a-z.]{0,40}") {
            // Whatever the raw path, it is public only if it means /health.
            if clean_path(&p) == "/health" {
                prop_assert!(p.contains("health"));
            }
        }
    }
}
