//! Daemon lifecycle: bind (data dir, store, recovery, first start, listener) → run → shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use bhatti_engine::Engine;
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, AdminError, NewUser};
use crate::config::ServerConfig;
use crate::first_start;
use crate::rate_limit::RateLimiter;
use crate::routes;
use crate::secrets::SecretBox;
use crate::state::AppState;
use crate::store::events::{self, NewEvent};
use crate::store::{sandboxes, users, Store, StoreError};

/// Errors starting or running the daemon.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The data directory could not be created or secured.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open or migrate.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Creating the first-start admin failed.
    #[error("first start: {0}")]
    FirstStart(#[from] AdminError),
    /// The listen address is not valid.
    #[error("invalid listen address {addr:?}: {reason}")]
    ListenAddr {
        /// As configured.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Binding the listener failed.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serve: {0}")]
    Serve(#[source] std::io::Error),
    /// A startup task failed.
    #[error("startup task failed: {0}")]
    Task(String),
}

/// A daemon bound to its address, not yet serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    events_rx: mpsc::Receiver<NewEvent>,
    first_start_key: Option<String>,
}

/// `:8080` (Go style) means all interfaces.
fn normalise_listen(listen: &str) -> String {
    if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    }
}

impl Server {
    /// Prepares the data dir (0700) and store, marks interrupted creates `failed`, creates the
    /// `admin` user on first start, and binds the listener (port 0 picks a free port).
    pub async fn bind(
        config: ServerConfig,
        engine: Arc<dyn Engine>,
    ) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.clone();
        let dd_err = |source| ServerError::DataDir {
            path: data_dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(dd_err)?;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(dd_err)?;

        let db_path = config.db_path();
        let admin_cfg = config.admin.clone();
        let (store, first_start_user, failed) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&db_path)?;
            // A crash between inserting a `creating` row and the engine answering leaves the row
            // behind; it is kept visible as `failed` so the user can see and destroy it.
            let failed = store.with(|c| sandboxes::fail_interrupted_creates(c))?;
            let first = if store.with(|c| users::count(c))? == 0 {
                let (user, key) = admin::create_user_in(
                    &store,
                    &NewUser {
                        name: "admin".into(),
                        max_sandboxes: admin_cfg.max_sandboxes,
                        max_cpus: admin_cfg.max_cpus,
                        max_memory_mb: admin_cfg.max_memory_mb,
                    },
                )?;
                Some((user, key))
            } else {
                None
            };
            Ok::<_, ServerError>((store, first, failed))
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
        if failed > 0 {
            tracing::warn!(
                count = failed,
                "sandboxes interrupted mid-create were marked failed"
            );
        }

        let listen = normalise_listen(&config.listen);
        let addr: SocketAddr = tokio::net::lookup_host(&listen)
            .await
            .map_err(|e| ServerError::ListenAddr {
                addr: config.listen.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ServerError::ListenAddr {
                addr: config.listen.clone(),
                reason: "resolves to no address".into(),
            })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen.clone(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: listen.clone(),
            source,
        })?;

        let first_start_key = first_start_user.map(|(user, key)| {
            announce_first_start(&config, local_addr, &user.name, &key);
            key
        });

        let (events_tx, events_rx) = mpsc::channel(1000);
        let state = AppState {
            store,
            engine,
            secrets: Arc::new(SecretBox::new(&config.data_dir)),
            limiter: Arc::new(RateLimiter::new(config.rate_limits.clone())),
            config: Arc::new(config),
            started: Instant::now(),
            events: events_tx,
            thermal: Arc::new(crate::thermal::Thermal::default()),
            web_shells: Arc::default(),
        };
        // The store is the truth: bring the engine in line before serving anything.
        match crate::service::recovery::recover(&state).await {
            Ok(r) if r.recovered + r.lost > 0 => {
                tracing::info!(
                    recovered = r.recovered,
                    lost = r.lost,
                    "sandbox recovery done"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "sandbox recovery failed"),
        }
        // After recovery: rules of sandboxes that are gone would hold their aliases forever.
        match state
            .store
            .call(|c| crate::store::publish::delete_orphans(c))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rules = n, "removed publish rules of missing sandboxes"),
            Err(e) => tracing::warn!(error = %e, "publish rule cleanup failed"),
        }
        Ok(Server {
            listener,
            local_addr,
            state,
            events_rx,
            first_start_key,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin key created by this start, if it was the first (tests use it).
    pub fn first_start_key(&self) -> Option<&str> {
        self.first_start_key.as_deref()
    }

    /// The HTTP application (for in-process tests with `oneshot`).
    pub fn router(&self) -> Router {
        routes::app(self.state.clone())
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for at most
    /// `shutdown_grace_secs` and flushes queued events.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            state,
            events_rx,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let recorder = tokio::spawn(record_events(
            state.store.clone(),
            events_rx,
            stop_rx.clone(),
        ));

        let thermal = tokio::spawn(crate::thermal::run(state.clone(), stop_rx.clone()));

        let engine_name = state.engine.name();
        let store = state.store.clone();
        store
            .call(move |c| {
                events::insert(
                    c,
                    &[NewEvent::new(
                        "daemon.started",
                        "",
                        "",
                        json!({"version": bhatti_api::VERSION, "listen": local_addr.to_string(), "engine": engine_name}),
                    )],
                )
            })
            .await?;
        tracing::info!(listen = %local_addr, version = bhatti_api::VERSION, engine = engine_name, "bhatti daemon listening");

        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let public = crate::public_proxy::spawn(state.clone())
            .await
            .map_err(|(addr, source)| ServerError::Bind { addr, source })?;
        let e2b = crate::e2b::spawn(state.clone())
            .await
            .map_err(|(addr, source)| ServerError::Bind { addr, source })?;
        let app = routes::app(state);
        let (signalled_tx, mut signalled_rx) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = signalled_tx.send(true);
        };
        // Without TCP_NODELAY a streamed response's first small chunk waits for the ACK of the
        // headers (up to 40 ms of delayed ACK): NDJSON exec would lose its time-to-first-byte.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        tokio::select! {
            r = serve => r.map_err(ServerError::Serve)?,
            _ = async {
                let _ = signalled_rx.wait_for(|v| *v).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; stopping anyway"),
        }

        public.stop();
        if let Some(f) = e2b {
            f.stop();
        }
        let _ = stop_tx.send(true);
        // A tick in progress is cut short; a half-done pause is seen as warm at the next start.
        thermal.abort();
        let _ = recorder.await;
        store
            .call(|c| events::insert(c, &[NewEvent::new("daemon.shutdown", "", "", json!({}))]))
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Writes queued events in batches (up to 100 per transaction) until told to stop, then drains.
async fn record_events(
    store: Store,
    mut rx: mpsc::Receiver<NewEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            ev = rx.recv() => ev,
            _ = stop.wait_for(|v| *v) => None,
        };
        let mut batch: Vec<NewEvent> = first.into_iter().collect();
        while batch.len() < 100 {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let done = batch.is_empty();
        if !done {
            if let Err(e) = store
                .call(move |c| {
                    let tx = c.transaction()?;
                    events::insert(&tx, &batch)?;
                    tx.commit()?;
                    Ok(())
                })
                .await
            {
                tracing::error!(error = %e, "writing events failed");
            }
        }
        if done && (*stop.borrow() || rx.is_closed()) {
            return;
        }
    }
}

fn announce_first_start(config: &ServerConfig, addr: SocketAddr, name: &str, key: &str) {
    // The key goes to the terminal once, never to the log.
    eprintln!("bhatti: first start: created user {name:?}");
    eprintln!("bhatti: API key (shown once, store it now): {key}");
    let url = first_start::api_url(addr);
    if let Some(target) = first_start::cli_config_target(config) {
        match first_start::write_cli_config(&target, &url, key) {
            Ok(true) => eprintln!(
                "bhatti: wrote api_url and auth_token to {}",
                target.path.display()
            ),
            Ok(false) => eprintln!(
                "bhatti: {} already has a token; left unchanged (run `bhatti setup` to switch)",
                target.path.display()
            ),
            Err(e) => eprintln!("bhatti: could not write {}: {e}", target.path.display()),
        }
    }
}

/// Binds and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServerConfig, engine: Arc<dyn Engine>) -> Result<(), ServerError> {
    let server = Server::bind(config, engine).await?;
    server.run(shutdown_signal()).await
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
