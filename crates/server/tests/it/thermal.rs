//! The thermal manager over the in-memory engine (fake CPU usage, recorded pause/resume), with a
//! real test-mode lohar where activity and exec matter. Timings are shortened through config.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bhatti_server::store::{events, Store};
use bhatti_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{err_of, spawn_with, test_config, TestApp};
use crate::test_engine::TestEngine;

fn fast(cfg: &mut ServerConfig) {
    cfg.thermal.tick_ms = 50;
    cfg.thermal.warm_after_ms = 300;
    cfg.thermal.cold_after_ms = 200;
    cfg.thermal.wake_timeout_ms = 2_000;
    cfg.rate_limits.exec.burst = 1000;
    cfg.rate_limits.other.burst = 1000;
}

/// An app with fast thermal timings, optionally a real lohar, a user and one sandbox `dev`
/// (created with `extra` merged into the body). Returns (app, key, engine id, lohar).
async fn setup(
    with_lohar: bool,
    extra: Value,
) -> (TestApp, String, String, Option<crate::ops::Lohar>) {
    setup_with(with_lohar, extra, |_| {}).await
}

/// [`setup`], with `tweak` applied to the config after the fast timings.
async fn setup_with(
    with_lohar: bool,
    extra: Value,
    tweak: impl FnOnce(&mut ServerConfig),
) -> (TestApp, String, String, Option<crate::ops::Lohar>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut cfg = test_config(&dir);
    fast(&mut cfg);
    tweak(&mut cfg);
    let engine = Arc::new(TestEngine::default());
    let l = if with_lohar {
        let l = crate::ops::Lohar::start().await;
        *engine.agent.lock().unwrap() = Some(l.endpoint.clone());
        Some(l)
    } else {
        None
    };
    let app = spawn_with(dir, cfg, engine).await;
    let key = app.user("alice");
    let mut body = json!({"name": "dev"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, v) = app
        .call(Method::POST, "/sandboxes", Some(&key), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let eid = v["engine_id"].as_str().unwrap().to_string();
    (app, key, eid, l)
}

/// `thermal` of `dev` as `GET /sandboxes` shows it (a metadata read: never wakes).
async fn thermal(app: &TestApp, key: &str) -> String {
    let (s, v) = app.call(Method::GET, "/sandboxes", Some(key), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap()[0]["thermal"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_thermal(app: &TestApp, key: &str, want: &str, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if thermal(app, key).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn exec_echo(app: &TestApp, key: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        "/sandboxes/dev/exec",
        Some(key),
        Some(json!({"cmd": ["echo", "awake"]})),
    )
    .await
}

async fn events_of(app: TestApp, kind: &str) -> Vec<(String, String, Value)> {
    let dir = app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    store.with(|c| events::by_type(c, kind)).unwrap()
}

#[tokio::test]
async fn idle_goes_warm_exec_wakes_and_events_are_recorded() {
    let (app, key, eid, _l) = setup(true, json!({})).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert!(
        wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await,
        "never went warm"
    );
    assert_eq!(app.engine.count("pause"), 1);
    // Metadata reads never wake.
    let (s, v) = app
        .call(Method::GET, "/sandboxes/dev", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["thermal"], "warm", "{v}");
    assert_eq!(app.engine.count("resume"), 0);

    // warm → cold is skipped on an engine that cannot snapshot memory, and says why.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, v) = app
        .call(Method::GET, "/sandboxes/dev", Some(&key), None)
        .await;
    assert_eq!(v["thermal"], "warm", "{v}");
    let reason = v["engine_meta"]["thermal_reason"].as_str().unwrap_or("");
    assert!(reason.contains("cannot snapshot memory"), "{v}");

    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stdout"], "awake\n");
    assert_eq!(app.engine.count("resume"), 1);
    assert_eq!(thermal(&app, &key).await, "hot");
    assert!(app
        .engine
        .calls
        .lock()
        .unwrap()
        .contains(&format!("resume:{eid}")));

    // And it cools again once idle.
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    let pauses = events_of(app, "thermal.pause").await;
    assert_eq!(pauses.len(), 2, "{pauses:?}");
    assert_eq!(pauses[0].2["name"], "dev");
}

#[tokio::test]
async fn snapshot_capable_engine_goes_cold_and_wakes_from_cold() {
    let (app, key, _eid, _l) = setup(true, json!({})).await;
    // Asked when the sandbox has been warm for cold_after_ms, well after this.
    app.engine.snapshots.store(true, Ordering::SeqCst);
    assert!(
        wait_thermal(&app, &key, "cold", Duration::from_secs(5)).await,
        "never went cold"
    );
    assert_eq!(app.engine.count("pause"), 1);
    assert_eq!(app.engine.count("snapshot"), 1);
    let (_, v) = app
        .call(Method::GET, "/sandboxes/dev", Some(&key), None)
        .await;
    assert!(v["engine_meta"]["thermal_reason"].is_null(), "{v}");
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stdout"], "awake\n");
    assert_eq!(app.engine.count("resume"), 1);
    let dir = app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    let cools = store.with(|c| events::by_type(c, "thermal.cool")).unwrap();
    assert_eq!(cools.len(), 1, "{cools:?}");
    assert_eq!(cools[0].2["to"], "cold");
    let wakes = store.with(|c| events::by_type(c, "thermal.wake")).unwrap();
    let wake = &wakes[0];
    assert_eq!(wake.2["from"], "cold", "{wake:?}");
}

#[tokio::test]
async fn wake_is_recorded_as_an_event() {
    let (app, key, _eid, _l) = setup(true, json!({})).await;
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    let (s, _) = app
        .call(Method::GET, "/sandboxes/dev/sessions", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.engine.count("resume"), 1);
    // Give the recorder a moment, then read the log.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let wakes = events_of(app, "thermal.wake").await;
    assert_eq!(wakes.len(), 1, "{wakes:?}");
}

#[tokio::test]
async fn cpu_busy_keeps_it_hot() {
    let (app, key, eid, _) = setup(false, json!({})).await;
    let engine = app.engine.clone();
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (e2, b2, id2) = (engine.clone(), busy.clone(), eid.clone());
    let burner = tokio::spawn(async move {
        while b2.load(Ordering::SeqCst) {
            // 20 ms of CPU every 10 ms: a busy background job.
            e2.add_cpu(&id2, 20_000);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert_eq!(engine.count("pause"), 0);
    busy.store(false, Ordering::SeqCst);
    burner.await.unwrap();
    assert!(
        wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await,
        "did not cool once the job ended"
    );
    app.stop().await;
}

#[tokio::test]
async fn attached_session_keeps_it_hot() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let (app, key, _eid, _l) = setup(true, json!({})).await;
    let url = format!("ws://{}/sandboxes/dev/exec/ws", app.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    ws.send(Message::Text(r#"{"cmd":["cat"]}"#.into()))
        .await
        .unwrap();
    // Keep reading so the connection stays healthy.
    let reader = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert_eq!(app.engine.count("pause"), 0);
    reader.abort();
    app.stop().await;
}

#[tokio::test]
async fn keep_hot_never_cools() {
    let (app, key, _eid, _) = setup(false, json!({"keep_hot": true})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert_eq!(app.engine.count("pause"), 0);
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_wake_it_once() {
    let (app, key, _eid, _l) = setup(true, json!({})).await;
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    app.engine.resume_delay_ms.store(200, Ordering::SeqCst);
    let app = Arc::new(app);
    let reqs = (0..50).map(|_| {
        let (app, key) = (app.clone(), key.clone());
        async move { exec_echo(&app, &key).await }
    });
    let results = futures_util::future::join_all(reqs).await;
    for (s, v) in &results {
        assert_eq!(*s, StatusCode::OK, "{v}");
        assert_eq!(v["stdout"], "awake\n");
    }
    assert_eq!(app.engine.count("resume"), 1);
}

#[tokio::test]
async fn wake_failure_is_a_clear_error_not_a_hang() {
    let (app, key, _eid, _l) = setup(true, json!({})).await;
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    app.engine.resume_fails.store(true, Ordering::SeqCst);
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(err_of(&v).contains("could not be woken"), "{v}");
    // Slow rather than failing: bounded by wake_timeout_ms.
    app.engine.resume_fails.store(false, Ordering::SeqCst);
    app.engine.resume_delay_ms.store(5_000, Ordering::SeqCst);
    let t0 = Instant::now();
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(err_of(&v).contains("did not wake"), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(4));
    app.stop().await;
}

// stop / start and PATCH (they share the thermal machinery: keep_hot, wake, stopped ≠ warm).

#[tokio::test]
async fn stop_start_round_trip_and_stopped_is_not_woken() {
    let (app, key, eid, _l) = setup(true, json!({})).await;
    let (s, v) = app
        .call(Method::POST, "/sandboxes/dev/stop", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "stopped");
    assert!(v["stopped_at"].is_string(), "{v}");
    assert_eq!(app.engine.count("stop"), 1);
    // Stopped is shown, not woken: operations get a clear 409.
    let (_, v) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
    assert_eq!(v[0]["status"], "stopped");
    assert!(v[0].get("thermal").is_none(), "{v}");
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(err_of(&v), r#"sandbox "dev" is stopped (bhatti start dev)"#);
    assert_eq!(app.engine.count("start") + app.engine.count("resume"), 0);
    // Stop again: no-op.
    let (s, _) = app
        .call(Method::POST, "/sandboxes/dev/stop", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.engine.count("stop"), 1);

    let (s, v) = app
        .call(Method::POST, "/sandboxes/dev/start", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "running");
    assert!(v.get("stopped_at").is_none(), "{v}");
    assert!(app
        .engine
        .calls
        .lock()
        .unwrap()
        .contains(&format!("start:{eid}")));
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dir = app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    for kind in ["sandbox.stopped", "sandbox.started"] {
        let ev = store.with(|c| events::by_type(c, kind)).unwrap();
        assert_eq!(ev.len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn patch_keep_hot_name_and_labels() {
    let (app, key, _eid, _) = setup(false, json!({"labels": {"team": "a", "old": "x"}})).await;
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    // keep_hot: true wakes it now and it stays hot.
    let (s, v) = app
        .call(
            Method::PATCH,
            "/sandboxes/dev",
            Some(&key),
            Some(json!({"keep_hot": true, "name": "dev2", "labels_add": {"env": "prod"}, "labels_remove": ["old"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["keep_hot"], true);
    assert_eq!(v["name"], "dev2");
    assert_eq!(v["labels"], json!({"team": "a", "env": "prod"}));
    assert_eq!(v["thermal"], "hot");
    assert_eq!(app.engine.count("resume"), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert_eq!(app.engine.count("pause"), 1);
    // allow-cold: cools again.
    let (s, _) = app
        .call(
            Method::PATCH,
            "/sandboxes/dev2",
            Some(&key),
            Some(json!({"keep_hot": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    // Rejections: bad name, reserved label, taken name.
    for (body, code) in [
        (json!({"name": "Bad Name!"}), StatusCode::BAD_REQUEST),
        (
            json!({"labels_add": {"bhatti.sh/x": "1"}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, v) = app
            .call(Method::PATCH, "/sandboxes/dev2", Some(&key), Some(body))
            .await;
        assert_eq!(s, code, "{v}");
    }
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&key),
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = app
        .call(
            Method::PATCH,
            "/sandboxes/other",
            Some(&key),
            Some(json!({"name": "dev2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let updated = events_of(app, "sandbox.updated").await;
    assert_eq!(updated.len(), 2, "{updated:?}");
}

#[tokio::test]
async fn a_quiet_running_exec_keeps_it_hot() {
    let (app, key, _eid, _l) = setup(true, json!({})).await;
    let (s, v) = app
        .call(
            Method::POST,
            "/sandboxes/dev/exec",
            Some(&key),
            Some(json!({"cmd": ["sh", "-c", "sleep 2.5; echo done"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stdout"], "done\n");
    assert_eq!(app.engine.count("pause"), 0, "paused during a running exec");
    // Idle afterwards: cools.
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    app.stop().await;
}

#[tokio::test]
async fn a_proxied_websocket_keeps_it_hot_until_closed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let (app, key, _eid, _l) = setup(true, json!({})).await;
    let port = crate::proxy::upstream().await;
    let url = format!("ws://{}/sandboxes/dev/proxy/{port}/ws", app.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    ws.send(Message::Text("hi".into())).await.unwrap();
    assert!(ws.next().await.unwrap().is_ok());
    // Silent for many idle periods: the open connection alone keeps the sandbox hot.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(thermal(&app, &key).await, "hot");
    assert_eq!(app.engine.count("pause"), 0);
    ws.close(None).await.unwrap();
    drop(ws);
    assert!(
        wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await,
        "cools once the connection is gone"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_slow_file_upload_keeps_it_hot() {
    let (app, key, _eid, l) = setup(true, json!({})).await;
    let l = l.unwrap();
    // Six chunks 300 ms apart: the upload lasts six idle periods, and lohar saw the write
    // start only once, at its beginning.
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((Ok::<_, std::io::Error>(vec![b'a' + i; 4]), i + 1))
    });
    let path = l.path("slow.txt");
    let r = app
        .http
        .put(format!("{}/sandboxes/dev/files?path={path}", app.url))
        .bearer_auth(&key)
        .header("content-length", "24")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "aaaabbbbccccddddeeeeffff"
    );
    assert_eq!(app.engine.count("pause"), 0, "paused during an upload");
    assert!(wait_thermal(&app, &key, "warm", Duration::from_secs(5)).await);
    app.stop().await;
}

#[tokio::test]
async fn a_sandbox_that_died_is_listed_as_stopped_without_an_inspect() {
    let (app, key, eid, _l) = setup(false, json!({})).await;
    // Its processes end on their own (the engine sees it; nobody asks through the API).
    app.engine.set_state(&eid, bhatti_engine::RunState::Stopped);
    let t0 = Instant::now();
    let mut status = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        let (s, v) = app.call(Method::GET, "/sandboxes", Some(&key), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        status = v[0]["status"].as_str().unwrap_or("").to_string();
        if status == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, "stopped");
    assert_eq!(app.engine.count("pause"), 0, "a dead sandbox is not paused");
    app.stop().await;
}

#[tokio::test]
async fn a_sandbox_found_frozen_after_a_restart_is_woken_by_the_first_request() {
    // No tick before the request: the request itself must notice the frozen sandbox.
    let slow_ticks = |c: &mut ServerConfig| c.thermal.tick_ms = 600_000;
    let (app, key, eid, _l) = setup_with(true, json!({}), slow_ticks).await;
    let engine = app.engine.clone();
    let dir = app.stop().await;
    // Frozen while no daemon ran (the previous one paused it, then stopped).
    engine.set_state(&eid, bhatti_engine::RunState::Paused);
    let mut cfg = test_config(&dir);
    fast(&mut cfg);
    slow_ticks(&mut cfg);
    let app = spawn_with(dir, cfg, engine.clone()).await;
    let (s, v) = exec_echo(&app, &key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(engine.count("resume"), 1, "the first request woke it");
    app.stop().await;
}
