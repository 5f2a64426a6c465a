//! `spawn_app`: a daemon on port 0 in a temp data dir, plus small request helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bhatti_engine::Engine;
use bhatti_server::admin::{self, NewUser};
use bhatti_server::{Server, ServerConfig, ServerError};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::test_engine::TestEngine;

pub struct TestApp {
    pub addr: SocketAddr,
    pub url: String,
    pub http: reqwest::Client,
    pub admin_key: Option<String>,
    pub dir: Arc<TempDir>,
    pub engine: Arc<TestEngine>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

pub fn test_config(dir: &TempDir) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        write_cli_config: false,
        shutdown_grace_secs: 5,
        ..ServerConfig::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cfg = test_config(&dir);
    spawn_with(dir, cfg, Arc::new(TestEngine::default())).await
}

pub async fn spawn_with(dir: Arc<TempDir>, cfg: ServerConfig, engine: Arc<TestEngine>) -> TestApp {
    spawn_engine(dir, cfg, engine.clone(), engine).await
}

pub async fn spawn_engine(
    dir: Arc<TempDir>,
    cfg: ServerConfig,
    engine: Arc<dyn Engine>,
    test_engine: Arc<TestEngine>,
) -> TestApp {
    let server = Server::bind(cfg, engine).await.expect("bind");
    let addr = server.local_addr();
    let admin_key = server.first_start_key().map(str::to_string);
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        admin_key,
        dir,
        engine: test_engine,
        stop: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a user DB-direct (as `bhatti user create` does) and returns its key.
    pub fn user(&self, name: &str) -> String {
        self.user_with(NewUser::with_defaults(name))
    }

    pub fn user_with(&self, new: NewUser) -> String {
        admin::create_user(&self.data_dir(), new)
            .expect("create user")
            .1
    }

    /// Sends a request with an optional bearer key and JSON body.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("send")
    }

    /// Same, returning status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.req(method, path, key, body).await;
        let status = r.status();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// `POST /sandboxes` with `body` as `key`, which must answer 201; the new sandbox.
    pub async fn create(&self, key: &str, body: Value) -> Value {
        let (s, v) = self
            .call(Method::POST, "/sandboxes", Some(key), Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Stops the daemon gracefully; the data dir stays.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("run");
        }
        self.dir.clone()
    }
}

pub fn err_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<no error field>")
}
