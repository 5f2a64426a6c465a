//! The public proxy (no key): path mode, Host mode (plain and TLS, HTTP/1.1 only), WebSocket,
//! unpublish → 404 at once, rate limits that trip and recover. The "sandbox" is a test-mode
//! lohar whose forward port dials an axum app on the host's loopback.

use std::sync::Arc;
use std::time::Duration;

use bhatti_server::public_proxy::DomainConfig;
use bhatti_server::rate_limit::BucketConfig;
use bhatti_server::store::{events, Store};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{err_of, spawn_with, test_config};
use crate::ops::Lohar;
use crate::proxy::upstream;
use crate::test_engine::TestEngine;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for `*.apps.test` and `api.test` (openssl CLI); (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=api.test",
        ])
        .args(["-addext", "subjectAltName=DNS:*.apps.test,DNS:api.test"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    (cert, key)
}

#[tokio::test]
async fn public_proxy_path_and_host_modes_tls_ws_unpublish_rate_limits() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (cert, key) = self_signed(dir.path());
    let (path_port, plain_port, tls_port) = (free_port(), free_port(), free_port());
    let mut cfg = test_config(&dir);
    cfg.public_proxy_listen = Some(format!("127.0.0.1:{path_port}"));
    cfg.domain = Some(DomainConfig {
        api_host: "api.test".into(),
        proxy_zone: "apps.test".into(),
        listen: Some(format!("127.0.0.1:{plain_port}")),
        ..Default::default()
    });
    cfg.public_proxy.per_ip = BucketConfig {
        burst: 40,
        per_minute: 600,
    };
    // The same store, TLS on: a second daemon would need its own data dir, so the TLS listener
    // is checked with a second app below.
    let engine = Arc::new(TestEngine::default());
    let app = spawn_with(dir.clone(), cfg.clone(), engine.clone()).await;
    let lohar = Lohar::start().await;
    *app.engine.agent.lock().unwrap() = Some(lohar.endpoint.clone());
    let alice = app.user("alice");
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&alice),
            Some(json!({"name": "dev"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let port = upstream().await;
    let (s, r) = app
        .call(
            Method::POST,
            "/sandboxes/dev/publish",
            Some(&alice),
            Some(json!({"port": port, "alias": "site"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["url"], "https://site.apps.test");

    let http = reqwest::Client::new();
    // Path mode, no key.
    let v: Value = http
        .get(format!("http://127.0.0.1:{path_port}/site/hello?x=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["uri"], "/hello?x=1");
    assert_eq!(v["host"], format!("localhost:{port}"));
    assert_eq!(v["xff"], "127.0.0.1");
    assert_eq!(v["xfp"], "http");
    let r = http
        .get(format!("http://127.0.0.1:{path_port}/nope/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Host mode: alias, API, unknown host.
    let plain = format!("http://127.0.0.1:{plain_port}");
    let v: Value = http
        .post(format!("{plain}/x?y=2"))
        .header("host", "site.apps.test")
        .body("b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["uri"].as_str(), v["body"].as_str()),
        (Some("/x?y=2"), Some("b"))
    );
    assert_eq!(v["xfh"], "site.apps.test");
    let r = http
        .get(format!("{plain}/sandboxes"))
        .header("host", "api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "API behind api_host needs a key"
    );
    let r = http
        .get(format!("{plain}/sandboxes"))
        .header("host", "api.test")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, body) = {
        let r = http
            .get(format!("{plain}/"))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err_of(&body), "unknown host");

    // WebSocket through path mode.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{path_port}/site/ws"))
            .await
            .unwrap();
    ws.send(Message::Text("hi".into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Text("echo:hi".into()));
    ws.close(None).await.unwrap();

    // Unpublish → 404 at once in both modes.
    let r = app
        .req(
            Method::DELETE,
            &format!("/sandboxes/dev/publish/{port}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(format!("http://127.0.0.1:{path_port}/site/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{plain}/"))
        .header("host", "site.apps.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;

    // TLS (ring, HTTP/1.1 only) and a small per-IP bucket, on a second daemon.
    let dir2 = Arc::new(tempfile::tempdir().unwrap());
    let mut cfg2 = test_config(&dir2);
    cfg2.public_proxy_listen = Some(format!("127.0.0.1:{path_port}"));
    cfg2.domain = Some(DomainConfig {
        api_host: "api.test".into(),
        proxy_zone: "apps.test".into(),
        listen: Some(format!("127.0.0.1:{tls_port}")),
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
    });
    cfg2.public_proxy.per_ip = BucketConfig {
        burst: 5,
        per_minute: 300,
    };
    let app = spawn_with(dir2.clone(), cfg2, Arc::new(TestEngine::default())).await;
    *app.engine.agent.lock().unwrap() = Some(lohar.endpoint.clone());
    let alice = app.user("alice");
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&alice),
            Some(json!({"name": "dev"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes/dev/publish",
            Some(&alice),
            Some(json!({"port": port, "alias": "site"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let tls_http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(
            "site.apps.test",
            format!("127.0.0.1:{tls_port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let v: Value = tls_http
        .get(format!("https://site.apps.test:{tls_port}/tls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["uri"], "/tls", "{v}");
    assert_eq!(v["xfp"], "https");
    // ALPN offers h2 and http/1.1; the server picks http/1.1.
    {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap())
            .unwrap();
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
            .await
            .unwrap();
        let s = tokio_rustls::TlsConnector::from(Arc::new(c))
            .connect("site.apps.test".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    // Per-IP limit: the burst (5, one already used) then 429 with Retry-After; recovers.
    let url = format!("http://127.0.0.1:{path_port}/site/");
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = http.get(&url).send().await.unwrap();
        let code = r.status().as_u16();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(
                err_of(&r.json::<Value>().await.unwrap()),
                "rate limit exceeded"
            );
        }
        codes.push(code);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 4, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 4, "{codes:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    // An unknown alias is 404 before any rate limiting.
    assert_eq!(
        http.get(format!("http://127.0.0.1:{path_port}/zz/"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn proxy_failures_are_events_and_orphan_rules_go_at_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path_port = free_port();
    let mut cfg = test_config(&dir);
    cfg.public_proxy_listen = Some(format!("127.0.0.1:{path_port}"));
    let engine = Arc::new(TestEngine::default());
    let app = spawn_with(dir.clone(), cfg.clone(), engine.clone()).await;
    let lohar = Lohar::start().await;
    *app.engine.agent.lock().unwrap() = Some(lohar.endpoint.clone());
    let alice = app.user("alice");
    let (s, _) = app
        .call(
            Method::POST,
            "/sandboxes",
            Some(&alice),
            Some(json!({"name": "dev"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Nothing listens on this port.
    let dead = free_port();
    let (s, r) = app
        .call(
            Method::POST,
            "/sandboxes/dev/publish",
            Some(&alice),
            Some(json!({"port": dead, "alias": "dead"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://127.0.0.1:{path_port}/dead/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/sandboxes/dev/proxy/{dead}/"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);

    let dir = app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    let ev = store.with(|c| events::by_type(c, "proxy.error")).unwrap();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().any(|e| e.2["alias"] == "dead"));
    assert!(ev.iter().all(|e| e.2["port"] == dead));
    // A rule whose sandbox is gone (as after a crash between the two deletes).
    store
        .with(|c| {
            c.execute(
                "INSERT INTO publish_rules (id, sandbox_id, user_id, port, alias, created_at) \
                 VALUES ('pub_x', 'gone', 'u', 80, 'ghost', '2026-01-01T00:00:00Z')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    drop(store);
    let app = spawn_with(dir.clone(), cfg, engine).await;
    app.stop().await;
    let store = Store::open(&dir.path().join("data/state.db")).unwrap();
    let aliases: Vec<String> = store
        .with(|c| {
            let mut q = c.prepare("SELECT alias FROM publish_rules ORDER BY alias")?;
            let v = q
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(v)
        })
        .unwrap();
    assert_eq!(aliases, ["dead"], "the orphan went, the live rule stayed");
}
