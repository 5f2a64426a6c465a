//! Auth, error shapes and headers.

use bhatti_server::store::{events, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{err_of, spawn_app};

#[tokio::test]
async fn health_is_public_and_versioned() {
    let app = spawn_app().await;
    let r = app.req(Method::GET, "/health", None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-bhatti-version"].to_str().unwrap(),
        bhatti_api::VERSION
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert!(v["uptime"].as_str().unwrap().ends_with('s'));
    app.stop().await;
}

#[tokio::test]
async fn missing_malformed_wrong_and_query_keys_are_rejected() {
    let app = spawn_app().await;
    let key = app.user("alice");

    let (s, v) = app.call(Method::GET, "/sandboxes", None, None).await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::UNAUTHORIZED, "authorization required")
    );

    for bad in ["Basic abc", "Bearer", "Bearer ", "bearer x", &key] {
        let r = app
            .http
            .get(format!("{}/sandboxes", app.url))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(err_of(&v), "authorization required", "{bad}");
    }

    let (s, v) = app
        .call(Method::GET, "/sandboxes", Some("bht_0000"), None)
        .await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::UNAUTHORIZED, "invalid api key")
    );

    for q in ["token", "access_token", "api_key", "key"] {
        let (s, v) = app
            .call(Method::GET, &format!("/sandboxes?{q}={key}"), None, None)
            .await;
        assert_eq!(
            (s, err_of(&v)),
            (StatusCode::UNAUTHORIZED, "authorization required"),
            "{q}"
        );
    }

    let (s, _) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);

    // The failed attempt is an event with the client IP, and the presented key is nowhere.
    let dir = app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    let ev = store.with(|c| events::by_type(c, "auth.failed")).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].2["ip"], "127.0.0.1");
    assert!(!ev[0].2.to_string().contains("bht_0000"));
}

#[tokio::test]
async fn path_tricks_do_not_reach_health() {
    let app = spawn_app().await;
    for p in [
        "//health/../sandboxes",
        "/health/../sandboxes",
        "/health/..%2fsandboxes",
        "/./sandboxes",
    ] {
        let (s, v) = app.call(Method::GET, p, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}: {v}");
    }
    // Unknown routes need a key too (no probing), then are JSON 404s.
    let (s, _) = app.call(Method::GET, "/nope", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn json_404_405_and_version_header_on_errors() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let r = app.req(Method::GET, "/nope", Some(&key), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers().contains_key("x-bhatti-version"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"error": "not found"}));

    let r = app.req(Method::PUT, "/sandboxes", Some(&key), None).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().contains_key("x-bhatti-version"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"error": "method not allowed"}));

    let r = app.req(Method::GET, "/sandboxes", None, None).await;
    assert!(r.headers().contains_key("x-bhatti-version"));
    app.stop().await;
}

#[tokio::test]
async fn body_cap_and_bad_json() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let big = format!(
        "{{\"name\":\"x\",\"init\":\"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let r = app
        .http
        .post(format!("{}/sandboxes", app.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.headers().contains_key("x-bhatti-version"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(err_of(&v).contains("too large"), "{v}");

    let r = app
        .http
        .post(format!("{}/secrets", app.url))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(err_of(&v).starts_with("invalid json: "), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn key_rotation_kills_old_key_at_once() {
    let app = spawn_app().await;
    let old = app.user("alice");
    let (s, _) = app.call(Method::GET, "/secrets", Some(&old), None).await;
    assert_eq!(s, StatusCode::OK);
    let new = bhatti_server::admin::rotate_key(&app.data_dir(), "alice").unwrap();
    let (s, v) = app.call(Method::GET, "/secrets", Some(&old), None).await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::UNAUTHORIZED, "invalid api key")
    );
    let (s, _) = app.call(Method::GET, "/secrets", Some(&new), None).await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn min_cli_header_when_configured() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut cfg = crate::helpers::test_config(&dir);
    cfg.min_cli_version = Some("0.0.9".into());
    let app = crate::helpers::spawn_with(dir, cfg, Default::default()).await;
    let r = app.req(Method::GET, "/health", None, None).await;
    assert_eq!(r.headers()["x-bhatti-min-cli"], "0.0.9");
    app.stop().await;
}

/// HTTP clients normalise `..` before sending, so drive the router in-process with raw URIs.
#[tokio::test]
async fn raw_path_tricks_via_oneshot() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::helpers::test_config(&dir);
    let server = bhatti_server::Server::bind(
        cfg,
        std::sync::Arc::new(crate::test_engine::TestEngine::default()),
    )
    .await
    .unwrap();
    for (uri, want) in [
        ("//health/../sandboxes", StatusCode::UNAUTHORIZED),
        ("/health/../sandboxes", StatusCode::UNAUTHORIZED),
        ("/health/../secrets?token=x", StatusCode::UNAUTHORIZED),
        ("/health", StatusCode::OK),
    ] {
        let req = axum::http::Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = server.router().oneshot(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), want.as_u16(), "{uri}");
        assert!(resp.headers().contains_key("x-bhatti-version"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(v, json!({"error": "authorization required"}));
        }
    }
}
