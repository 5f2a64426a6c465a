//! The authenticated proxy against a real test-mode lohar, whose forward port dials the host's
//! loopback: an axum app on 127.0.0.1 plays the sandbox's server.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as AMsg, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::routing::{any, get};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::err_of;
use crate::ops::setup;

/// The "sandbox's" app: `/echo` reports what arrived, `/sse` sends 3 events 300 ms apart,
/// `/ws` echoes WebSocket messages.
pub(crate) async fn upstream() -> u16 {
    async fn echo(
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::Json<Value> {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        axum::Json(json!({
            "method": method.as_str(),
            "uri": uri.to_string(),
            "host": h("host"),
            "xff": h("x-forwarded-for"),
            "xfp": h("x-forwarded-proto"),
            "xfh": h("x-forwarded-host"),
            "authorization": h("authorization"),
            "body": String::from_utf8_lossy(&body),
        }))
    }
    let app = Router::new()
        .route(
            "/sse",
            get(|| async {
                let s = futures_util::stream::unfold(0u32, |i| async move {
                    if i == 3 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Some((
                        Ok::<_, Infallible>(Event::default().data(format!("tick{i}"))),
                        i + 1,
                    ))
                });
                Sse::new(s)
            }),
        )
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut sock| async move {
                    while let Some(Ok(m)) = sock.recv().await {
                        if let AMsg::Text(t) = m {
                            let _ = sock
                                .send(AMsg::Text(format!("echo:{}", t.as_str()).into()))
                                .await;
                        }
                    }
                })
            }),
        )
        .fallback(any(echo));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

#[tokio::test]
async fn authenticated_proxy_http_sse_ws_and_errors() {
    let (app, _l, key) = setup("alice").await;
    let port = upstream().await;

    // Plain request: rewritten path + query, Host, X-Forwarded-*, key not forwarded, body.
    let r = app
        .http
        .post(format!(
            "{}/sandboxes/dev/proxy/{port}/a/b%20c?x=1&y=2",
            app.url
        ))
        .bearer_auth(&key)
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/a/b%20c?x=1&y=2");
    assert_eq!(v["host"], format!("localhost:{port}"));
    assert_eq!(v["xff"], "127.0.0.1");
    assert_eq!(v["xfp"], "http");
    assert_eq!(v["xfh"], app.addr.to_string());
    assert_eq!(v["authorization"], Value::Null);
    assert_eq!(v["body"], "hello body");

    // Bare proxy root.
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{port}/"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["uri"], "/");

    // SSE: the first event arrives well before the last is produced.
    let t0 = Instant::now();
    let r = app
        .req(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{port}/sse"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first_at = t0.elapsed();
    assert!(
        String::from_utf8_lossy(&first).contains("tick0"),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(c) = body.next().await {
        rest.extend_from_slice(&c.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("tick2"));
    assert!(
        first_at + Duration::from_millis(400) < t0.elapsed(),
        "first event at {first_at:?}, end at {:?}",
        t0.elapsed()
    );

    // WebSocket through the proxy.
    let mut req = format!("ws://{}/sandboxes/dev/proxy/{port}/ws", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for i in 0..3 {
        ws.send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text(format!("echo:m{i}").into()));
    }
    ws.close(None).await.unwrap();

    // Nothing listening → 502; bad ports → 400.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{closed}/"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(err_of(&v).starts_with("bad gateway: "), "{v}");
    for bad in ["0", "70000", "abc"] {
        let (s, v) = app
            .call(
                Method::GET,
                &format!("/sandboxes/dev/proxy/{bad}/"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(err_of(&v), "invalid port");
    }

    // No key → 401; another user → 404 (cannot proxy alice's sandbox).
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{port}/"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let bob = app.user("bob");
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{port}/"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}
