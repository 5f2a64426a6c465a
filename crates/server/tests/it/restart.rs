//! Restart on the same data dir, crash-left state, first start.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use bhatti_server::store::{sandboxes, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_with, test_config};
use crate::test_engine::TestEngine;

#[tokio::test]
async fn restart_keeps_all_state() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let engine = Arc::new(TestEngine::default());
    let app = spawn_with(dir.clone(), test_config(&dir), engine.clone()).await;
    let admin_key = app.admin_key.clone().expect("first start creates admin");
    let key = app.user("alice");
    let (s, sb) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "keep", "labels": {"a": "b"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.call(
        Method::POST,
        "/secrets",
        Some(&key),
        Some(json!({"name": "S", "value": "persisted"})),
    )
    .await;
    let dir = app.stop().await;

    let app = spawn_with(dir.clone(), test_config(&dir), engine.clone()).await;
    assert!(app.admin_key.is_none(), "no second admin");
    let (s, again) = app
        .call(Method::GET, "/sandboxes/keep", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["id"], sb["id"]);
    assert_eq!(again["labels"], json!({"a": "b"}));
    assert_eq!(again["status"], "running");
    let (_, secrets) = app.call(Method::GET, "/secrets", Some(&key), None).await;
    assert_eq!(secrets[0]["name"], "S");
    assert_eq!(
        app.call(Method::GET, "/secrets", Some(&admin_key), None)
            .await
            .0,
        StatusCode::OK
    );
    // The secret still decrypts with the persisted identity.
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"secrets": ["S"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(engine.last_spec().env["S"], "persisted");
    let users = bhatti_server::admin::list_users(&app.data_dir()).unwrap();
    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        vec!["admin", "alice"]
    );
    app.stop().await;
}

#[tokio::test]
async fn interrupted_create_becomes_failed_and_can_be_destroyed() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(dir.clone(), test_config(&dir), Default::default()).await;
    let key = app.user("alice");
    let dir = app.stop().await;
    // Simulate a crash between reserving the row and the engine answering.
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    let uid = bhatti_server::admin::list_users(&dir.path().join("data"))
        .unwrap()
        .into_iter()
        .find(|u| u.name == "alice")
        .unwrap()
        .id;
    store
        .with(|c| {
            sandboxes::insert(
                c,
                &sandboxes::SandboxRow {
                    id: "00112233aabbccdd".into(),
                    name: "half".into(),
                    template_id: String::new(),
                    engine: "test".into(),
                    engine_id: String::new(),
                    status: "creating".into(),
                    ip: String::new(),
                    engine_meta: json!({}),
                    created_by: uid,
                    created_at: "2026-01-01T00:00:00Z".into(),
                    stopped_at: None,
                    agent_token: "t".into(),
                    keep_hot: false,
                    cpus: 1.0,
                    memory_mb: 1024,
                    disk_size_mb: 0,
                    image: "minimal".into(),
                    labels: Default::default(),
                    subnet_index: 1,
                    launch: Default::default(),
                },
            )
        })
        .unwrap();
    drop(store);

    let engine = Arc::new(TestEngine::default());
    let app = spawn_with(dir.clone(), test_config(&dir), engine.clone()).await;
    let (s, v) = app
        .call(Method::GET, "/sandboxes/half", Some(&key), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("failed")));
    let (s, _) = app
        .call(Method::DELETE, "/sandboxes/half", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        engine.destroyed.lock().unwrap().as_slice(),
        ["00112233aabbccdd"]
    );
    app.stop().await;
}

#[tokio::test]
async fn store_files_copied_mid_run_reopen_cleanly() {
    // Copying state.db + WAL while the daemon holds them open is what a kill -9 leaves behind.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(dir.clone(), test_config(&dir), Default::default()).await;
    let key = app.user("alice");
    for i in 0..3 {
        let (s, _) = app
            .call(
                Method::POST,
                "/sandboxes",
                Some(&key),
                Some(json!({"name": format!("s{i}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let crash = tempfile::tempdir().unwrap();
    for f in ["state.db", "state.db-wal"] {
        let src = app.data_dir().join(f);
        if src.exists() {
            std::fs::copy(&src, crash.path().join(f)).unwrap();
        }
    }
    app.stop().await;
    let store = Store::open(&crash.path().join("state.db")).unwrap();
    let n: u32 = store
        .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM sandboxes", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 3);
    let ok: String = store
        .with(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test]
async fn first_start_writes_cli_config() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut cfg = test_config(&dir);
    let cli = dir.path().join("home/.bhatti/config.yaml");
    cfg.write_cli_config = true;
    cfg.first_start_cli_config = Some(cli.clone());
    cfg.admin.max_sandboxes = 7;
    let app = spawn_with(dir.clone(), cfg.clone(), Default::default()).await;
    let key = app.admin_key.clone().unwrap();
    assert!(key.starts_with("bht_") && key.len() == 68);
    let text = std::fs::read_to_string(&cli).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["auth_token"].as_str(), Some(key.as_str()));
    assert_eq!(
        doc["api_url"].as_str().unwrap(),
        format!("http://127.0.0.1:{}", app.addr.port())
    );
    assert_eq!(
        std::fs::metadata(&cli).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let users = bhatti_server::admin::list_users(&app.data_dir()).unwrap();
    assert_eq!(
        (users[0].name.as_str(), users[0].max_sandboxes),
        ("admin", 7)
    );
    assert_eq!(
        app.call(Method::GET, "/sandboxes", Some(&key), None)
            .await
            .0,
        StatusCode::OK
    );
    let dir = app.stop().await;
    // A later start neither creates a user nor touches the file.
    std::fs::write(&cli, "api_url: http://elsewhere\nauth_token: bht_mine\n").unwrap();
    let app = spawn_with(dir, cfg, Default::default()).await;
    assert!(app.admin_key.is_none());
    assert!(std::fs::read_to_string(&cli).unwrap().contains("bht_mine"));
    app.stop().await;
}
