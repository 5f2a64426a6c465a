//! `ANY /sandboxes/:id/proxy/:port/*path`: the authenticated reverse proxy.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bhatti_api::ErrorBody;

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::proxy::{self, Forwarded};
use crate::service::proxy as svc;
use crate::state::AppState;

/// `(id, port, "/rest?query")` from the raw request URI (percent-encoding kept as sent).
fn split_target(uri: &axum::http::Uri) -> Option<(String, String, String)> {
    let mut it = uri.path().splitn(6, '/');
    let (_, _sandboxes, id, _proxy, port) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let rest = it.next().unwrap_or("");
    let mut target = format!("/{rest}");
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    Some((id.to_string(), port.to_string(), target))
}

/// Forwards the request to `127.0.0.1:<port>` inside the sandbox over a fresh tunnel, as
/// `/<path>?<query>` with Host `localhost:<port>` and `X-Forwarded-For/Proto/Host`; the API key
/// is not forwarded. Responses stream as they come; WebSocket upgrades are relayed both ways.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/sandboxes/{id}/proxy/{port}/{path}", tag = "proxy",
    params(
        ("id" = String, Path, description = "Sandbox id or name"),
        ("port" = u16, Path, description = "Port inside the sandbox (1-65535)"),
        ("path" = String, Path, description = "Path forwarded to the sandbox (may be empty)"),
    ),
    responses(
        (status = 200, description = "The sandbox's response, as it answered"),
        (status = 400, description = "Invalid port", body = ErrorBody),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "Sandbox not running", body = ErrorBody),
        (status = 502, description = "Nothing listens on the port, or the sandbox's server failed", body = ErrorBody),
    ))]
pub async fn proxy(State(st): State<AppState>, AuthUser(user): AuthUser, req: Request) -> Response {
    let Some((id, port, target)) = split_target(req.uri()) else {
        return ApiError::RouteNotFound.into_response();
    };
    let port = match svc::parse_port(&port) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (row, tunnel, busy) = match svc::sandbox_tunnel(&st, &user, &id, port).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tunnel = match tunnel {
        Ok(t) => t,
        Err(e) => {
            let resp = proxy::bad_gateway(e);
            proxy::record_failure(&st, &row, port, None, &resp);
            return resp;
        }
    };
    let fwd = Forwarded {
        client: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        proto: "http",
        host: req.headers().get(header::HOST).cloned(),
    };
    let resp = proxy::forward(
        tunnel,
        port,
        req,
        &target,
        fwd,
        &[header::AUTHORIZATION],
        busy,
    )
    .await;
    proxy::record_failure(&st, &row, port, None, &resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| split_target(&s.parse().unwrap()).unwrap();
        assert_eq!(
            t("/sandboxes/dev/proxy/8080/"),
            ("dev".into(), "8080".into(), "/".into())
        );
        assert_eq!(
            t("/sandboxes/dev/proxy/8080"),
            ("dev".into(), "8080".into(), "/".into())
        );
        assert_eq!(
            t("/sandboxes/dev/proxy/80/a/b%20c?x=1&y"),
            ("dev".into(), "80".into(), "/a/b%20c?x=1&y".into())
        );
    }
}
