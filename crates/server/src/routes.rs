//! Every route and layer, in one place.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use bhatti_api::{X_BHATTI_MIN_CLI, X_BHATTI_VERSION};

use crate::auth;
use crate::error::ApiError;
use crate::http::{
    exec, files, health, openapi, proxy, publish, sandboxes, secrets, sessions, shell, webshell,
};
use crate::state::AppState;

/// `(method, path)` of every route, as OpenAPI spells them (tests check the document covers them).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/sandboxes"),
    ("post", "/sandboxes"),
    ("get", "/sandboxes/{id}"),
    ("delete", "/sandboxes/{id}"),
    ("patch", "/sandboxes/{id}"),
    ("post", "/sandboxes/{id}/stop"),
    ("post", "/sandboxes/{id}/start"),
    ("post", "/sandboxes/{id}/exec"),
    ("get", "/sandboxes/{id}/exec/ws"),
    ("get", "/sandboxes/{id}/files"),
    ("put", "/sandboxes/{id}/files"),
    ("head", "/sandboxes/{id}/files"),
    ("get", "/sandboxes/{id}/sessions"),
    ("delete", "/sandboxes/{id}/sessions/{sid}"),
    ("get", "/sandboxes/{id}/ports"),
    ("get", "/sandboxes/{id}/ws"),
    ("get", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("post", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("put", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("patch", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("delete", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("head", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("options", "/sandboxes/{id}/proxy/{port}/{path}"),
    ("post", "/sandboxes/{id}/publish"),
    ("get", "/sandboxes/{id}/publish"),
    ("delete", "/sandboxes/{id}/publish/{port}"),
    ("post", "/sandboxes/{id}/shell-token"),
    ("delete", "/sandboxes/{id}/shell-token"),
    ("get", "/secrets"),
    ("post", "/secrets"),
    ("delete", "/secrets/{name}"),
];

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(health::health))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/sandboxes",
            get(sandboxes::list_sandboxes).post(sandboxes::create_sandbox),
        )
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get_sandbox)
                .delete(sandboxes::destroy_sandbox)
                .patch(sandboxes::update_sandbox),
        )
        .route("/sandboxes/{id}/stop", post(sandboxes::stop_sandbox))
        .route("/sandboxes/{id}/start", post(sandboxes::start_sandbox))
        .route("/sandboxes/{id}/exec", post(exec::exec))
        .route("/sandboxes/{id}/exec/ws", get(shell::piped_ws))
        .route(
            "/sandboxes/{id}/files",
            get(files::get_file)
                .put(files::put_file)
                .head(files::head_file),
        )
        .route("/sandboxes/{id}/sessions", get(sessions::list_sessions))
        .route(
            "/sandboxes/{id}/sessions/{sid}",
            delete(sessions::kill_session),
        )
        .route("/sandboxes/{id}/ports", get(sessions::list_ports))
        .route("/sandboxes/{id}/ws", get(shell::shell_ws))
        .route("/sandboxes/{id}/proxy/{port}", any(proxy::proxy))
        .route("/sandboxes/{id}/proxy/{port}/", any(proxy::proxy))
        .route("/sandboxes/{id}/proxy/{port}/{*path}", any(proxy::proxy))
        .route(
            "/sandboxes/{id}/publish",
            get(publish::list_published).post(publish::publish),
        )
        .route("/sandboxes/{id}/publish/{port}", delete(publish::unpublish))
        .route(
            "/sandboxes/{id}/shell-token",
            post(webshell::create_token).delete(webshell::revoke_token),
        )
        .route("/_shell/{id}", get(webshell::page))
        .route("/_shell/{id}/ws", get(webshell::ws))
        .route(
            "/secrets",
            get(secrets::list_secrets).post(secrets::set_secret),
        )
        .route("/secrets/{name}", delete(secrets::delete_secret))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        // Auth runs before routing, so unknown paths need a key too (no route probing).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Outermost: every response, errors included, carries the version headers.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            version_headers,
        ))
        .with_state(state)
}

async fn version_headers(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await.into_response();
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static(X_BHATTI_VERSION),
        HeaderValue::from_static(bhatti_api::VERSION),
    );
    if let Some(v) = st
        .config
        .min_cli_version
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert(HeaderName::from_static(X_BHATTI_MIN_CLI), v);
    }
    resp
}
