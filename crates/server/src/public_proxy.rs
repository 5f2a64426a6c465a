//! The public proxy: published ports without a key, by alias (path mode on
//! `public_proxy_listen`, Host mode under `domain.proxy_zone`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rate_limit::BucketConfig;

/// Domain mode: `<alias>.<proxy_zone>` by Host header; `api_host` is the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    /// Host name of the API (e.g. `api.example.com`).
    pub api_host: String,
    /// Published apps live at `<alias>.<proxy_zone>`.
    pub proxy_zone: String,
    /// PEM certificate chain (e.g. a wildcard for the zone and the API host); with `tls_key`,
    /// the domain listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Listen address of the domain listener (default `:443`).
    pub listen: Option<String>,
}

/// Limits of the public proxy (reference §2.11 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicProxyConfig {
    /// All public requests together.
    pub global: BucketConfig,
    /// Per source IP.
    pub per_ip: BucketConfig,
    /// Per alias.
    pub per_alias: BucketConfig,
    /// IPs / aliases tracked at once (least recently seen evicted beyond).
    pub max_tracked: usize,
    /// Whole-request deadline in seconds (headers through the last body byte).
    pub request_timeout_secs: u64,
    /// Seconds a client gets to send its request headers.
    pub header_timeout_secs: u64,
    /// Cap of request bodies in bytes.
    pub max_body_bytes: u64,
    /// Open connections at once on a public listener.
    pub max_connections: usize,
}

impl Default for PublicProxyConfig {
    fn default() -> Self {
        Self {
            global: BucketConfig {
                burst: 10_000,
                per_minute: 10_000,
            },
            per_ip: BucketConfig {
                burst: 500,
                per_minute: 1500,
            },
            per_alias: BucketConfig {
                burst: 2000,
                per_minute: 5000,
            },
            max_tracked: 10_000,
            request_timeout_secs: 300,
            header_timeout_secs: 10,
            max_body_bytes: 50 * 1024 * 1024,
            max_connections: 4096,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bhatti_api::ErrorBody;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::proxy::{self, Forwarded};
use crate::rate_limit::{KeyedBuckets, TokenBucket};
use crate::state::AppState;
use crate::store::{publish, sandboxes};

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(ErrorBody::new(msg))).into_response()
}

/// The public proxy's rate limits: global, then per source IP, then per alias.
pub struct PublicLimiter {
    cfg: PublicProxyConfig,
    global: Mutex<TokenBucket>,
    ips: KeyedBuckets,
    aliases: KeyedBuckets,
}

impl PublicLimiter {
    /// Full buckets.
    pub fn new(cfg: PublicProxyConfig) -> Self {
        let now = Instant::now();
        Self {
            global: Mutex::new(TokenBucket::new(cfg.global, now)),
            ips: KeyedBuckets::new(cfg.max_tracked),
            aliases: KeyedBuckets::new(cfg.max_tracked),
            cfg,
        }
    }

    /// Takes a token from each bucket in turn; `Err(retry_after)` at the first empty one.
    pub fn check(&self, ip: &str, alias: &str, now: Instant) -> Result<(), Duration> {
        self.global
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_take(self.cfg.global, now)?;
        self.ips.take(ip, self.cfg.per_ip, now)?;
        self.aliases.take(alias, self.cfg.per_alias, now)
    }

    /// Keys tracked (IPs, aliases).
    pub fn tracked(&self) -> (usize, usize) {
        (self.ips.len(), self.aliases.len())
    }
}

/// What a public listener serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `/<alias>/<rest>`.
    Path,
    /// By Host header; `tls` says whether the listener speaks TLS.
    Domain { tls: bool },
}

struct Public {
    st: AppState,
    /// Cancelled at shutdown: open (keep-alive) connections end too.
    stop: tokio_util::sync::CancellationToken,
    limiter: PublicLimiter,
    api: Router,
}

/// Where a domain-mode request goes, from its Host (port stripped, case-insensitive).
#[derive(Debug, PartialEq, Eq)]
pub enum HostRoute {
    /// The API.
    Api,
    /// A published alias.
    Alias(String),
    /// 404 `unknown host`.
    Unknown,
}

/// Routes a Host header value in domain mode.
pub fn route_host(host: &str, d: &DomainConfig) -> HostRoute {
    let h = host.trim().to_ascii_lowercase();
    let h = match h.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || port.chars().all(|c| c.is_ascii_digit()) => {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name.to_string()
            } else {
                h.clone()
            }
        }
        _ => h.clone(),
    };
    let h = h.trim_end_matches('.');
    let api = d.api_host.trim().to_ascii_lowercase();
    if h == "localhost" || h == "127.0.0.1" || (!api.is_empty() && h == api) {
        return HostRoute::Api;
    }
    let zone = d.proxy_zone.trim().trim_matches('.').to_ascii_lowercase();
    if !zone.is_empty() {
        if let Some(alias) = h.strip_suffix(&format!(".{zone}")) {
            if !alias.is_empty() && !alias.contains('.') {
                return HostRoute::Alias(alias.to_string());
            }
        }
    }
    HostRoute::Unknown
}

/// `("alias", "/rest?query")` of a path-mode request; `None` for `/`.
pub fn split_path(uri: &axum::http::Uri) -> Option<(String, String)> {
    let p = uri.path().strip_prefix('/')?;
    let (alias, rest) = match p.split_once('/') {
        Some((a, r)) => (a, format!("/{r}")),
        None => (p, "/".to_string()),
    };
    if alias.is_empty() {
        return None;
    }
    let mut target = rest;
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    Some((alias.to_string(), target))
}

impl Public {
    async fn handle(self: Arc<Self>, mode: Mode, peer: SocketAddr, mut req: Request) -> Response {
        req.extensions_mut().insert(ConnectInfo(peer));
        let (alias, target, proto) = match mode {
            Mode::Path => match split_path(req.uri()) {
                Some((a, t)) => (a, t, "http"),
                None => return error(StatusCode::NOT_FOUND, "not found"),
            },
            Mode::Domain { tls } => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| req.uri().host().map(str::to_string))
                    .unwrap_or_default();
                let Some(d) = self.st.config.domain.as_ref() else {
                    return error(StatusCode::NOT_FOUND, "unknown host");
                };
                match route_host(&host, d) {
                    HostRoute::Api => {
                        return match self.api.clone().oneshot(req).await {
                            Ok(r) => r,
                            Err(e) => match e {},
                        }
                    }
                    HostRoute::Unknown => return error(StatusCode::NOT_FOUND, "unknown host"),
                    HostRoute::Alias(a) => {
                        let t = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_else(|| "/".into());
                        (a, t, if tls { "https" } else { "http" })
                    }
                }
            }
        };
        self.serve_alias(peer, &alias, &target, proto, req).await
    }

    async fn serve_alias(
        &self,
        peer: SocketAddr,
        alias: &str,
        target: &str,
        proto: &'static str,
        req: Request,
    ) -> Response {
        let cfg = &self.st.config.public_proxy;
        // The store is read on every request (an indexed lookup): unpublish and destroy take
        // effect at once, with no cache to invalidate.
        let a = alias.to_string();
        let rule = match self.st.store.call(move |c| publish::by_alias(c, &a)).await {
            Ok(Some(r)) => r,
            Ok(None) => return error(StatusCode::NOT_FOUND, "not found"),
            Err(e) => {
                tracing::warn!(error = %e, "public proxy: store");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy, retry shortly",
                );
            }
        };
        if let Err(wait) = self
            .limiter
            .check(&peer.ip().to_string(), alias, Instant::now())
        {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        let too_big = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > cfg.max_body_bytes);
        if too_big {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", cfg.max_body_bytes),
            );
        }
        let (uid, sid) = (rule.user_id.clone(), rule.sandbox_id.clone());
        let row = match self
            .st
            .store
            .call(move |c| sandboxes::by_ref(c, &uid, &sid))
            .await
        {
            Ok(Some(r)) if r.status == "running" && !r.engine_id.is_empty() => r,
            Ok(_) => return error(StatusCode::BAD_GATEWAY, "sandbox unavailable"),
            Err(e) => {
                tracing::warn!(error = %e, "public proxy: store");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy, retry shortly",
                );
            }
        };
        let busy = match crate::thermal::ensure_hot(&self.st, &row).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(sandbox = %row.id, error = %e, "public proxy: wake failed");
                return error(StatusCode::BAD_GATEWAY, "sandbox unavailable");
            }
        };
        let agent = match self.st.engine.agent(&row.engine_id).await {
            Ok(ep) => bhatti_engine::agent::AgentClient::new(ep),
            Err(_) => return error(StatusCode::BAD_GATEWAY, "sandbox unavailable"),
        };
        let deadline = Duration::from_secs(cfg.request_timeout_secs.max(1));
        let cap = usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX);
        let fwd = Forwarded {
            client: Some(peer),
            proto,
            host: req.headers().get(header::HOST).cloned(),
        };
        let req = req.map(|b| Body::new(http_body_util::Limited::new(b, cap)));
        let port = rule.port;
        let target = target.to_string();
        let work = async move {
            let tunnel = match agent.forward(port).await {
                Ok(t) => t,
                Err(e) => return proxy::bad_gateway(e),
            };
            proxy::forward(tunnel, port, req, &target, fwd, &[], busy).await
        };
        // The deadline covers reaching the sandbox and its response head; a streamed body
        // (SSE, downloads) and upgraded connections then live on their own.
        let resp = match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => proxy::bad_gateway("the sandbox did not answer in time"),
        };
        proxy::record_failure(&self.st, &row, port, Some(alias), &resp);
        resp
    }
}

/// TLS settings for a certificate and key (PEM), HTTP/1.1 only in ALPN (no h2: WebSocket
/// upgrades break over h2 behind CDNs). The `ring` provider.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("tls: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Binds the configured public listeners (path mode on `public_proxy_listen`, domain mode on
/// `domain.listen`, default `:443`) and serves them until the returned tasks are aborted.
pub async fn spawn(st: AppState) -> Result<PublicListeners, (String, std::io::Error)> {
    let mut listeners = Vec::new();
    if let Some(l) = st
        .config
        .public_proxy_listen
        .as_deref()
        .filter(|l| !l.is_empty())
    {
        listeners.push((normalise(l), Mode::Path, None));
    }
    if let Some(d) = st.config.domain.as_ref() {
        let addr = normalise(d.listen.as_deref().unwrap_or(":443"));
        let tls = match (&d.tls_cert, &d.tls_key) {
            (Some(c), Some(k)) => {
                Some(tls_config(c, k).map_err(|e| (addr.clone(), std::io::Error::other(e)))?)
            }
            (None, None) => None,
            _ => {
                return Err((
                    addr,
                    std::io::Error::other("domain: tls_cert and tls_key go together"),
                ))
            }
        };
        listeners.push((addr, Mode::Domain { tls: tls.is_some() }, tls));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    if listeners.is_empty() {
        return Ok(PublicListeners {
            tasks: Vec::new(),
            stop,
        });
    }
    let public = Arc::new(Public {
        stop: stop.clone(),
        limiter: PublicLimiter::new(st.config.public_proxy.clone()),
        api: crate::routes::app(st.clone()),
        st: st.clone(),
    });
    let mut tasks = Vec::new();
    for (addr, mode, tls) in listeners {
        let l = TcpListener::bind(&addr)
            .await
            .map_err(|e| (addr.clone(), e))?;
        tracing::info!(listen = %addr, ?mode, "public proxy listening");
        tasks.push(tokio::spawn(accept_loop(public.clone(), l, mode, tls)));
    }
    Ok(PublicListeners { tasks, stop })
}

/// The running public listeners.
pub struct PublicListeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio_util::sync::CancellationToken,
}

impl PublicListeners {
    /// Stops accepting and ends open connections (in-flight requests get a graceful shutdown).
    pub fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.abort();
        }
    }
}

fn normalise(l: &str) -> String {
    if l.starts_with(':') {
        format!("0.0.0.0{l}")
    } else {
        l.to_string()
    }
}

async fn accept_loop(
    public: Arc<Public>,
    l: TcpListener,
    mode: Mode,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let cfg = public.st.config.public_proxy.clone();
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let header_timeout = Duration::from_secs(cfg.header_timeout_secs.max(1));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "public accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Full: the connection is closed at once rather than queued.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let public = public.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => match tokio::time::timeout(header_timeout, a.accept(tcp)).await {
                    Ok(Ok(s)) => serve_conn(public, s, peer, mode, header_timeout).await,
                    _ => tracing::debug!(%peer, "tls handshake failed or timed out"),
                },
                None => serve_conn(public, tcp, peer, mode, header_timeout).await,
            }
        });
    }
}

async fn serve_conn<IO>(
    public: Arc<Public>,
    io: IO,
    peer: SocketAddr,
    mode: Mode,
    header_timeout: Duration,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stop = public.stop.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let public = public.clone();
        async move { Ok::<_, Infallible>(public.handle(mode, peer, req.map(Body::new)).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(Duration::from_secs(5), conn.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "public connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom() -> DomainConfig {
        DomainConfig {
            api_host: "api.example.com".into(),
            proxy_zone: "apps.example.com".into(),
            ..Default::default()
        }
    }

    #[test]
    fn host_routing() {
        let d = dom();
        assert_eq!(route_host("api.example.com", &d), HostRoute::Api);
        assert_eq!(route_host("API.Example.com:443", &d), HostRoute::Api);
        assert_eq!(route_host("localhost:8080", &d), HostRoute::Api);
        assert_eq!(route_host("127.0.0.1", &d), HostRoute::Api);
        assert_eq!(
            route_host("my-app.apps.example.com:8443", &d),
            HostRoute::Alias("my-app".into())
        );
        assert_eq!(
            route_host("My-App.apps.example.com.", &d),
            HostRoute::Alias("my-app".into())
        );
        for h in [
            "a.b.apps.example.com",
            "apps.example.com",
            "evil.com",
            "",
            "x.example.com",
        ] {
            assert_eq!(route_host(h, &d), HostRoute::Unknown, "{h}");
        }
    }

    #[test]
    fn path_split() {
        let s = |u: &str| split_path(&u.parse().unwrap());
        assert_eq!(s("/"), None);
        assert_eq!(s("/web"), Some(("web".into(), "/".into())));
        assert_eq!(s("/web/"), Some(("web".into(), "/".into())));
        assert_eq!(s("/web/a/b?x=1"), Some(("web".into(), "/a/b?x=1".into())));
    }

    #[test]
    fn limiter_global_ip_alias_and_bounded() {
        let cfg = PublicProxyConfig {
            global: BucketConfig {
                burst: 100,
                per_minute: 60,
            },
            per_ip: BucketConfig {
                burst: 3,
                per_minute: 60,
            },
            per_alias: BucketConfig {
                burst: 5,
                per_minute: 60,
            },
            max_tracked: 4,
            ..Default::default()
        };
        let l = PublicLimiter::new(cfg);
        let t = Instant::now();
        for _ in 0..3 {
            l.check("1.1.1.1", "a", t).unwrap();
        }
        assert!(l.check("1.1.1.1", "a", t).is_err(), "per ip");
        l.check("2.2.2.2", "a", t).unwrap();
        l.check("2.2.2.2", "a", t).unwrap();
        let wait = l.check("3.3.3.3", "a", t).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "per alias: {wait:?}");
        // Recovers: one token a second.
        l.check("1.1.1.1", "b", t + Duration::from_secs(1)).unwrap();
        for i in 0..20 {
            let _ = l.check(&format!("9.9.9.{i}"), &format!("z{i}"), t);
        }
        let (ips, aliases) = l.tracked();
        assert!(ips <= 4 && aliases <= 4, "{ips} {aliases}");
    }
}
