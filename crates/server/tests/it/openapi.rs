//! The OpenAPI document covers every route.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_lists_every_route_and_error_shape() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let (s, doc) = app
        .call(Method::GET, "/openapi.json", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in bhatti_server::routes::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from OpenAPI"
        );
    }
    let n: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        n,
        bhatti_server::routes::ROUTES.len(),
        "document has routes the router lacks"
    );
    for schema in [
        "ErrorBody",
        "Sandbox",
        "CreateSandboxRequest",
        "SecretInfo",
        "SetSecretRequest",
        "Health",
        "StatusResponse",
        "User",
        "ExecRequest",
        "ExecResult",
        "ExecEvent",
        "Session",
        "Port",
        "FileEntry",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every authenticated route documents the middleware's answers (found missing by the API
    // contract test).
    for (method, path) in bhatti_server::routes::ROUTES {
        if *path == "/health" {
            continue;
        }
        let responses = &doc["paths"][path][method]["responses"];
        for code in ["401", "429"] {
            assert!(responses[code].is_object(), "{method} {path} lacks {code}");
        }
        assert!(responses["429"]["headers"]["Retry-After"].is_object());
        if path.ends_with("/ws") {
            assert!(responses["400"].is_object(), "{method} {path} lacks 400");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn websocket_routes_refuse_plain_requests_with_a_json_error() {
    let app = spawn_app().await;
    let key = app.user("alice");
    for path in [
        "/sandboxes/dev/ws",
        "/sandboxes/dev/exec/ws",
        "/_shell/0123456789abcdef/ws",
    ] {
        let (s, v) = app.call(Method::GET, path, Some(&key), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
}
