//! Publish rules: alias rules, conflicts, idempotence, cross-user, list URLs, destroy, restart.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{err_of, spawn_with, test_config, TestApp};
use crate::test_engine::TestEngine;

async fn create(app: &TestApp, key: &str, name: &str) {
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(key),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn publish_rules_conflicts_and_lifecycle() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let engine = Arc::new(TestEngine::default());
    let mut cfg = test_config(&dir);
    cfg.public_proxy_listen = Some("127.0.0.1:18443".into());
    let app = spawn_with(dir.clone(), cfg.clone(), engine.clone()).await;
    let alice = app.user("alice");
    let bob = app.user("bob");
    create(&app, &alice, "My_App").await;
    create(&app, &alice, "other").await;

    // Auto alias: sanitised name + 6 hex; 201 with the documented shape.
    let (s, r) = app
        .call(
            Method::POST,
            "/sandboxes/My_App/publish",
            Some(&alice),
            Some(json!({"port": 3000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let alias = r["alias"].as_str().unwrap().to_string();
    assert!(alias.starts_with("my-app-") && alias.len() == 13, "{alias}");
    assert!(alias[7..].chars().all(|c| c.is_ascii_hexdigit()), "{alias}");
    let id = r["id"].as_str().unwrap();
    assert!(id.starts_with("pub_") && id.len() == 20, "{id}");
    assert_eq!(r["port"], 3000);
    assert_eq!(r["url"], format!("http://127.0.0.1:18443/{alias}/"));
    assert!(r["created_at"].is_string() && r["sandbox_id"].is_string());

    // Same port again (no alias, or the same alias) → 200 + X-Bhatti-Existing, same rule.
    for body in [json!({"port": 3000}), json!({"port": 3000, "alias": alias})] {
        let resp = app
            .req(
                Method::POST,
                "/sandboxes/My_App/publish",
                Some(&alice),
                Some(body),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-bhatti-existing"], "true");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["id"], r["id"]);
    }
    // Same port, another alias → 409.
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/My_App/publish",
            Some(&alice),
            Some(json!({"port": 3000, "alias": "zzz"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Explicit alias; taken by anyone (another sandbox, another user) → 409.
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/other/publish",
            Some(&alice),
            Some(json!({"port": 80, "alias": "web"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    create(&app, &bob, "bobs").await;
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/bobs/publish",
            Some(&bob),
            Some(json!({"port": 80, "alias": "web"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(err_of(&v).contains("already in use"), "{v}");

    // Validation: port and alias rules, reserved words → 400.
    for (body, want) in [
        (json!({"port": 0}), "port must be between 1 and 65535"),
        (json!({"port": 70000}), "port must be between 1 and 65535"),
        (json!({"port": 80, "alias": "Web"}), "invalid alias"),
        (json!({"port": 80, "alias": "-web"}), "invalid alias"),
        (
            json!({"port": 80, "alias": "a".repeat(64)}),
            "invalid alias",
        ),
        (json!({"port": 80, "alias": "api"}), "reserved"),
        (json!({"port": 80, "alias": "_acme-challenge"}), "reserved"),
    ] {
        let (s, v) = app
            .call(
                Method::POST,
                "/sandboxes/bobs/publish",
                Some(&bob),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(err_of(&v).contains(want), "{body}: {v}");
    }

    // Cross-user: bob can neither publish, list nor unpublish alice's sandbox.
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes/My_App/publish",
            Some(&bob),
            Some(json!({"port": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(Method::GET, "/sandboxes/My_App/publish", Some(&bob), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(
            Method::DELETE,
            "/sandboxes/My_App/publish/3000",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // list shows urls; GET …/publish lists the rules.
    let (_, list) = app
        .call(Method::GET, "/sandboxes", Some(&alice), None)
        .await;
    let urls: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["urls"].clone()))
        .collect();
    assert!(
        urls.contains(&(
            "My_App".into(),
            json!([format!("http://127.0.0.1:18443/{alias}/")])
        )),
        "{urls:?}"
    );
    let (s, rules) = app
        .call(Method::GET, "/sandboxes/other/publish", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rules.as_array().unwrap().len(), 1);
    assert_eq!(rules[0]["alias"], "web");

    // Rules survive a restart.
    let dir = app.stop().await;
    let app = spawn_with(dir.clone(), cfg.clone(), engine.clone()).await;
    let (_, rules) = app
        .call(Method::GET, "/sandboxes/My_App/publish", Some(&alice), None)
        .await;
    assert_eq!(rules[0]["alias"], alias.as_str());

    // Unpublish: 204, then 404.
    let resp = app
        .req(
            Method::DELETE,
            "/sandboxes/My_App/publish/3000",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (s, v) = app
        .call(
            Method::DELETE,
            "/sandboxes/My_App/publish/3000",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Destroy deletes the sandbox's rules: the alias is free again.
    let (s, _) = app
        .call(Method::DELETE, "/sandboxes/other", Some(&alice), None)
        .await;
    assert!(s.is_success());
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/bobs/publish",
            Some(&bob),
            Some(json!({"port": 80, "alias": "web"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn publish_and_unpublish_are_recorded_as_events() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let engine = Arc::new(TestEngine::default());
    let app = spawn_with(dir.clone(), test_config(&dir), engine).await;
    let alice = app.user("alice");
    create(&app, &alice, "web").await;
    let (s, r) = app
        .call(
            Method::POST,
            "/sandboxes/web/publish",
            Some(&alice),
            Some(json!({"port": 8000, "alias": "web-evt"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, _) = app
        .call(
            Method::DELETE,
            "/sandboxes/web/publish/8000",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let dir = app.stop().await;
    let store = bhatti_server::store::Store::open(&dir.path().join("data/state.db")).unwrap();
    let created = store
        .with(|c| bhatti_server::store::events::by_type(c, "publish.created"))
        .unwrap();
    let deleted = store
        .with(|c| bhatti_server::store::events::by_type(c, "publish.deleted"))
        .unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].2["alias"], "web-evt");
    assert_eq!(created[0].2["port"], 8000);
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].2["port"], 8000);
}
