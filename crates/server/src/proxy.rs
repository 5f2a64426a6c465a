//! HTTP/1.1 reverse proxying over one tunnel to a port inside a sandbox (lohar's forward port).
//!
//! Shared by the authenticated proxy (`/sandboxes/:id/proxy/:port/…`) and the public proxy.
//! One fresh tunnel per request; hyper's client connection speaks HTTP/1.1 over it. Bodies are
//! streamed both ways (each response chunk is written as it arrives, so SSE works). WebSocket
//! (any `Upgrade`) requests are upgraded on both sides and relayed raw both ways.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bhatti_api::ErrorBody;
use bhatti_engine::agent::BoxedStream;
use hyper_util::rt::TokioIo;

/// An upgraded (WebSocket) connection idle this long in both directions is closed.
pub const UPGRADE_IDLE: Duration = Duration::from_secs(600);

/// Where a proxied request came from, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The client's address (`X-Forwarded-For`).
    pub client: Option<SocketAddr>,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The Host the client asked for (`X-Forwarded-Host`).
    pub host: Option<HeaderValue>,
}

/// Marks a response as the proxy's own failure (not the sandbox's answer), with the reason.
#[derive(Debug, Clone)]
pub struct ProxyFailure(pub String);

/// 502 `{"error":"bad gateway: …"}`, marked with [`ProxyFailure`].
pub fn bad_gateway(msg: impl std::fmt::Display) -> Response {
    let msg = msg.to_string();
    let mut r = (
        StatusCode::BAD_GATEWAY,
        Json(ErrorBody::new(format!("bad gateway: {msg}"))),
    )
        .into_response();
    r.extensions_mut().insert(ProxyFailure(msg));
    r
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), plus any the
/// `Connection` header names.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers (and those listed in `Connection`).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// The `Upgrade` header value if the request asks for a protocol upgrade.
fn upgrade_of(h: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if conn_upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Records `proxy.error` when `resp` is the proxy's own failure (the sandbox's own 502s are
/// not events).
pub fn record_failure(
    st: &crate::state::AppState,
    row: &crate::store::sandboxes::SandboxRow,
    port: u16,
    alias: Option<&str>,
    resp: &Response,
) {
    if let Some(ProxyFailure(why)) = resp.extensions().get::<ProxyFailure>() {
        st.record(crate::store::events::NewEvent::new(
            "proxy.error",
            &row.created_by,
            &row.id,
            serde_json::json!({"name": row.name, "port": port, "alias": alias, "error": why}),
        ));
    }
}

/// Sends `req` (rewritten to `path_and_query`, Host `localhost:<port>`) over `tunnel` and answers
/// with the sandbox's response, streamed. `drop_headers` are removed from the request first
/// (e.g. the bhatti API key). `busy` is held until the response body ends or an upgraded
/// connection closes, so a sandbox serving a long stream or a WebSocket stays hot meanwhile.
pub async fn forward(
    tunnel: BoxedStream,
    port: u16,
    mut req: Request,
    path_and_query: &str,
    fwd: Forwarded,
    drop_headers: &[HeaderName],
    busy: crate::thermal::Busy,
) -> Response {
    let upgrade = upgrade_of(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (parts, body) = req.into_parts();
    let uri: Uri = match path_and_query.parse() {
        Ok(u) => u,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(ErrorBody::new("invalid path")),
            )
                .into_response()
        }
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    for h in drop_headers {
        headers.remove(h);
    }
    let orig_host = fwd
        .host
        .clone()
        .or_else(|| headers.get(header::HOST).cloned());
    if let Ok(v) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(header::HOST, v);
    }
    if let Some(c) = fwd.client {
        let ip = c.ip().to_string();
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(fwd.proto));
    if let Some(h) = orig_host {
        headers.insert("x-forwarded-host", h);
    }
    if let Some(up) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up.clone());
    }

    let mut out = axum::http::Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tunnel)).await
    {
        Ok(x) => x,
        Err(e) => return bad_gateway(e),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxy connection ended");
        }
    });
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(e),
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_up) = client_upgrade else {
            return bad_gateway("unexpected 101 Switching Protocols");
        };
        let server_up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (c, s) = match tokio::join!(client_up, server_up) {
                (Ok(c), Ok(s)) => (c, s),
                (c, s) => {
                    tracing::debug!(client = c.is_ok(), sandbox = s.is_ok(), "upgrade failed");
                    return;
                }
            };
            relay(TokioIo::new(c), TokioIo::new(s)).await;
            drop(busy);
        });
        let (mut p, _) = resp.into_parts();
        let up = p.headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut p.headers);
        p.headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(up) = up {
            p.headers.insert(header::UPGRADE, up);
        }
        return Response::from_parts(p, Body::empty());
    }

    let (mut p, body) = resp.into_parts();
    strip_hop_by_hop(&mut p.headers);
    let body = http_body_util::BodyExt::map_frame(body, move |f| {
        let _held = &busy;
        f
    });
    Response::from_parts(p, Body::new(body))
}

/// Copies both ways until both sides finish or nothing moves for [`UPGRADE_IDLE`].
async fn relay<A, B>(a: A, b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; }
                Ok(n) => if bw.write_all(&abuf[..n]).await.is_err() { return; },
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; }
                Ok(n) => if aw.write_all(&bbuf[..n]).await.is_err() { return; },
            },
            _ = tokio::time::sleep(UPGRADE_IDLE) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(upgrade_of(&h).is_none());
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_of(&h).unwrap(), "websocket");
    }
}
