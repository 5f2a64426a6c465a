//! Several engines in one daemon: `engine` in the create request picks one (400 when it is not
//! enabled), the sandbox's engine and its capabilities show in its view, and every later
//! operation goes to that engine.

use std::sync::Arc;

use bhatti_engine::{Engine, Router, Unavailable};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{err_of, spawn_engine, test_config};
use crate::test_engine::TestEngine;

#[tokio::test]
async fn create_picks_an_enabled_engine() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let test = Arc::new(TestEngine::default());
    let other: Arc<dyn Engine> = Arc::new(Unavailable {
        engine: "unavailable".into(),
        reason: "not on this host".into(),
    });
    let router = Router::new(vec![test.clone(), other], "test").unwrap();
    let app = spawn_engine(
        dir.clone(),
        test_config(&dir),
        Arc::new(router),
        test.clone(),
    )
    .await;
    let key = app.user("alice");

    let (s, body) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "a", "engine": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        err_of(&body),
        "engine \"nope\" is not enabled on this daemon (enabled: test, unavailable)"
    );

    // Default engine: routed to the test engine, which the view names with its capabilities.
    let (s, sb) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "b"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sb}");
    assert_eq!(test.last_spec().engine, "test");
    let (s, sb) = app
        .call(Method::GET, "/sandboxes/b", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sb["engine_meta"]["engine"], "test");
    assert_eq!(sb["engine_meta"]["capabilities"]["pause"], true);
    // Operations on it reach the test engine through the router.
    let (s, _) = app
        .call(Method::POST, "/sandboxes/b/stop", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // The other engine is asked for by name, and its failure is reported, not hidden.
    let (s, body) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "c", "engine": "unavailable"})),
        )
        .await;
    assert!(s.is_server_error(), "{s} {body}");
    assert!(err_of(&body).contains("not on this host"), "{body}");
    let (s, list) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
