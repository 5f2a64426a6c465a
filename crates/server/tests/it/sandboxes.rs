//! Sandbox records: create/list/get/destroy, idempotency, limits, rate limits, isolation,
//! engine error mapping.

use std::sync::Arc;

use bhatti_server::admin::NewUser;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{err_of, spawn_app, spawn_engine, test_config};
use crate::test_engine::FailMode;

#[tokio::test]
async fn create_get_list_destroy() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let (s, sb) = app
        .call(Method::POST, "/sandboxes", Some(&key), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sb}");
    assert_eq!(sb["status"], "running");
    assert_eq!(sb["cpus"], 1.0);
    assert_eq!(sb["memory_mb"], 1024);
    assert_eq!(sb["image"], "minimal");
    assert_eq!(sb["ip"], "10.0.1.2");
    assert!(sb["name"].as_str().unwrap().starts_with("sandbox-"));
    assert_eq!(sb["id"].as_str().unwrap().len(), 16);
    assert!(sb.get("agent_token").is_none());
    let id = sb["id"].as_str().unwrap().to_string();

    let (s, sb2) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(
                json!({"name": "web", "cpus": 2, "memory_mb": 512, "labels": {"team": "a"},
                        "env": {"A": "1"}, "init": "echo hi",
                        "files": [{"guest_path": "/etc/motd", "content": "aGk=", "mode": "0600"}]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sb2}");
    let spec = app.engine.last_spec();
    assert_eq!(spec.name, "web");
    assert_eq!(spec.env["A"], "1");
    assert_eq!(spec.files[0].content, b"hi");
    assert_eq!(spec.files[0].mode, 0o600);
    assert_eq!(spec.init.as_deref(), Some("echo hi"));
    assert_eq!(spec.agent_token.len(), 32);

    let (s, list) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(names[0], "web", "newest first: {names:?}");
    assert_eq!(list[0]["thermal"], "hot");

    let (_, filtered) = app
        .call(Method::GET, "/sandboxes?label=team=a", Some(&key), None)
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let (s, v) = app
        .call(Method::GET, "/sandboxes?label=bad", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let (s, by_name) = app
        .call(Method::GET, "/sandboxes/web", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_name["labels"]["team"], "a");
    let (s, by_id) = app
        .call(Method::GET, &format!("/sandboxes/{id}"), Some(&key), None)
        .await;
    assert_eq!(
        (s, by_id["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );

    // Status refreshed from the engine and written back.
    app.engine.set_state(
        by_name["engine_id"].as_str().unwrap(),
        bhatti_engine::RunState::Stopped,
    );
    let (_, st) = app
        .call(Method::GET, "/sandboxes/web", Some(&key), None)
        .await;
    assert_eq!(st["status"], "stopped");
    assert!(st["stopped_at"].is_string());

    let (s, v) = app
        .call(Method::DELETE, "/sandboxes/web", Some(&key), None)
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "destroyed"})));
    assert_eq!(app.engine.destroyed.lock().unwrap().len(), 1);
    let (s, v) = app
        .call(Method::GET, "/sandboxes/web", Some(&key), None)
        .await;
    assert_eq!((s, err_of(&v)), (StatusCode::NOT_FOUND, "not found"));
    let (s, _) = app
        .call(Method::DELETE, "/sandboxes/web", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn validation_errors() {
    let app = spawn_app().await;
    let key = app.user("alice");
    for (body, want) in [
        (json!({"cpus": 5}), "max 4 CPUs per sandbox"),
        (json!({"memory_mb": 4097}), "max 4096 MB memory per sandbox"),
        (json!({"name": "bad name"}), "invalid sandbox name"),
        (json!({"env": {"1X": "y"}}), "invalid env var name"),
        (json!({"labels": {"bhatti.sh/x": "y"}}), "reserved"),
        (json!({"secrets": ["NOPE"]}), "secret \"NOPE\" not found"),
        (
            json!({"files": [{"guest_path": "", "content": ""}]}),
            "guest_path required",
        ),
        (json!({"cpus": "two"}), "invalid json"),
    ] {
        let (s, v) = app
            .call(Method::POST, "/sandboxes", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(err_of(&v).contains(want), "{body}: {v}");
    }
    let (_, list) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(list, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn idempotent_create_is_answered_before_the_count_limit() {
    let app = spawn_app().await;
    let key = app.user_with(NewUser {
        max_sandboxes: 1,
        ..NewUser::with_defaults("alice")
    });
    let (s, first) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "a"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let r = app
        .req(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "a"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-bhatti-existing"], "true");
    let again: serde_json::Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "b"})),
        )
        .await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "sandbox limit reached (1/1)")
    );
    let (s, v) = app
        .call(Method::POST, "/sandboxes", Some(&key), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn eleventh_rapid_create_is_rate_limited() {
    let app = spawn_app().await;
    let key = app.user_with(NewUser {
        max_sandboxes: 50,
        ..NewUser::with_defaults("alice")
    });
    for i in 0..10 {
        let (s, v) = app
            .call(Method::POST, "/sandboxes", Some(&key), Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "create {i}: {v}");
    }
    let r = app
        .req(Method::POST, "/sandboxes", Some(&key), Some(json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(r.headers().contains_key("x-bhatti-version"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"error": "rate limit exceeded"}));
    // Other classes and other users are unaffected.
    let (s, _) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);
    let bob = app.user("bob");
    let (s, _) = app
        .call(Method::POST, "/sandboxes", Some(&bob), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_are_configurable() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut cfg = test_config(&dir);
    cfg.rate_limits.other.burst = 2;
    let app = crate::helpers::spawn_with(dir, cfg, Default::default()).await;
    let key = app.user("alice");
    for _ in 0..2 {
        assert_eq!(
            app.call(Method::GET, "/secrets", Some(&key), None).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.call(Method::GET, "/secrets", Some(&key), None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

#[tokio::test]
async fn users_cannot_see_each_others_sandboxes() {
    let app = spawn_app().await;
    let alice = app.user("alice");
    let bob = app.user("bob");
    let (_, a) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&alice),
            Some(json!({"name": "shared"})),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        app.call(Method::GET, "/sandboxes", Some(&bob), None)
            .await
            .1,
        json!([])
    );
    for p in [format!("/sandboxes/{id}"), "/sandboxes/shared".to_string()] {
        assert_eq!(
            app.call(Method::GET, &p, Some(&bob), None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.call(Method::DELETE, &p, Some(&bob), None).await.0,
            StatusCode::NOT_FOUND
        );
    }
    // Same name is fine for another user (names are per user).
    let (s, b) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&bob),
            Some(json!({"name": "shared"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(b["id"], a["id"]);
    assert_eq!(
        app.call(Method::GET, &format!("/sandboxes/{id}"), Some(&alice), None)
            .await
            .0,
        StatusCode::OK
    );
    let users = bhatti_server::admin::list_users(&app.data_dir()).unwrap();
    assert!(users
        .iter()
        .filter(|u| u.name != "admin")
        .all(|u| u.sandbox_count == 1));
    app.stop().await;
}

#[tokio::test]
async fn unavailable_engine_is_503_with_its_reason() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = test_config(&dir);
    let engine = Arc::new(bhatti_engine::Unavailable {
        engine: "namespace".into(),
        reason: "needs root".into(),
    });
    let app = spawn_engine(dir, cfg, engine, Default::default()).await;
    let key = app.user("alice");
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err_of(&v), "engine namespace is unavailable: needs root");
    // The reserved row is gone again.
    assert_eq!(
        app.call(Method::GET, "/sandboxes", Some(&key), None)
            .await
            .1,
        json!([])
    );
    app.stop().await;
}

#[tokio::test]
async fn internal_errors_are_sanitised() {
    let app = spawn_app().await;
    let key = app.user("alice");
    app.engine.set_fail(FailMode::Io);
    let r = app
        .req(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.headers().contains_key("x-bhatti-version"));
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("fire") && !text.contains("secret/path"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"], "internal error");
    let rid = v["request_id"].as_str().unwrap();
    assert!(rid.starts_with("req_") && rid.len() == 20, "{rid}");
    assert_eq!(v.as_object().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn secrets_are_injected_into_the_environment() {
    let app = spawn_app().await;
    let key = app.user("alice");
    app.call(
        Method::POST,
        "/secrets",
        Some(&key),
        Some(json!({"name": "API_TOKEN", "value": "s3cr3t"})),
    )
    .await;
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"env": {"API_TOKEN": "plain", "B": "2"}, "secrets": ["API_TOKEN"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let spec = app.engine.last_spec();
    assert_eq!(spec.env["API_TOKEN"], "s3cr3t");
    assert_eq!(spec.env["B"], "2");
    // Another user cannot use alice's secret.
    let bob = app.user("bob");
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&bob),
            Some(json!({"secrets": ["API_TOKEN"]})),
        )
        .await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::BAD_REQUEST, "secret \"API_TOKEN\" not found")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_operation_on_a_sandbox_that_died_is_409_and_records_it() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let v = app.create(&key, json!({"name": "dev"})).await;
    let eid = v["engine_id"].as_str().unwrap().to_string();
    // Its agent is gone (nothing listens) and the engine sees its processes ended.
    let gone = app.dir.path().join("no-such-lohar.sock");
    *app.engine.agent.lock().unwrap() = Some(bhatti_engine::AgentEndpoint::Unix {
        control: gone.clone(),
        forward: gone,
        token: None,
    });
    app.engine.set_state(&eid, bhatti_engine::RunState::Stopped);
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/dev/exec",
            Some(&key),
            Some(json!({"cmd": ["true"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(err_of(&v).contains("its processes ended"), "{v}");
    // Recorded: the list says so without an inspect.
    let (_, list) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(list[0]["status"], "stopped", "{list}");
    app.stop().await;
}
