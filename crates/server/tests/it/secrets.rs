//! Secrets: API behaviour, isolation, encryption at rest.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{err_of, spawn_app};

#[tokio::test]
async fn set_list_update_delete() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let (s, v) = app
        .call(
            Method::POST,
            "/secrets",
            Some(&key),
            Some(json!({"name": "GH_TOKEN", "value": "v1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["name"], "GH_TOKEN");
    assert!(v.get("value").is_none());
    let created = v["created_at"].clone();

    let (s, v) = app
        .call(
            Method::POST,
            "/secrets",
            Some(&key),
            Some(json!({"name": "GH_TOKEN", "value": "v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["created_at"], created);

    let (s, list) = app.call(Method::GET, "/secrets", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let text = list.to_string();
    assert!(!text.contains("v1") && !text.contains("v2"), "{text}");
    assert_eq!(
        list[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["created_at", "name", "updated_at"]
    );

    for (body, want) in [
        (json!({"name": "X"}), "name and value required"),
        (json!({"value": "x"}), "name and value required"),
        (json!({"name": "1BAD", "value": "x"}), "invalid secret name"),
        (json!({"name": "A-B", "value": "x"}), "invalid secret name"),
    ] {
        let (s, v) = app
            .call(Method::POST, "/secrets", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(err_of(&v).contains(want), "{body}: {v}");
    }

    let (s, v) = app
        .call(Method::DELETE, "/secrets/GH_TOKEN", Some(&key), None)
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "deleted"})));
    let (s, v) = app
        .call(Method::DELETE, "/secrets/GH_TOKEN", Some(&key), None)
        .await;
    assert_eq!(
        (s, err_of(&v)),
        (StatusCode::NOT_FOUND, "secret \"GH_TOKEN\" not found")
    );
    app.stop().await;
}

#[tokio::test]
async fn secrets_are_per_user() {
    let app = spawn_app().await;
    let alice = app.user("alice");
    let bob = app.user("bob");
    app.call(
        Method::POST,
        "/secrets",
        Some(&alice),
        Some(json!({"name": "A", "value": "x"})),
    )
    .await;
    assert_eq!(
        app.call(Method::GET, "/secrets", Some(&bob), None).await.1,
        json!([])
    );
    assert_eq!(
        app.call(Method::DELETE, "/secrets/A", Some(&bob), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, "/secrets", Some(&alice), None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A user with secrets cannot be deleted.
    let e = bhatti_server::admin::delete_user(&app.data_dir(), "alice").unwrap_err();
    assert!(e.to_string().contains("has 1 secrets"), "{e}");
    app.stop().await;
}

#[tokio::test]
async fn values_are_encrypted_at_rest() {
    let app = spawn_app().await;
    let key = app.user("alice");
    let plaintext = "PLAINTEXT-canary-8c1f2e";
    let (s, _) = app
        .call(
            Method::POST,
            "/secrets",
            Some(&key),
            Some(json!({"name": "CANARY", "value": plaintext})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let data = app.data_dir();
    // Check the files as they are while the daemon runs (WAL not yet checkpointed) …
    let scan = |when: &str| {
        for f in ["state.db", "state.db-wal"] {
            if let Ok(bytes) = std::fs::read(data.join(f)) {
                assert!(
                    !bytes
                        .windows(plaintext.len())
                        .any(|w| w == plaintext.as_bytes()),
                    "plaintext found in {f} ({when})"
                );
            }
        }
    };
    scan("running");
    let key_mode = std::fs::metadata(data.join("age.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // … and after shutdown.
    app.stop().await;
    scan("stopped");
}
