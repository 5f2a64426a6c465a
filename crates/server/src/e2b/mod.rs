//! E2B-compatible endpoints: a facade on its own listener (`e2b.listen`, off by default) that
//! lets the unmodified `e2b` SDKs drive bhatti. See docs/e2b.md.
//!
//! One listener serves both of E2B's planes:
//! - the control plane (`/sandboxes…`, `X-API-KEY` = a bhatti API key) → `service::sandboxes`;
//! - the in-sandbox "envd" API (Connect protocol, JSON codec; `/files`; `/health`), addressed by
//!   `E2b-Sandbox-Id`/`E2b-Sandbox-Port` headers or a `<port>-<sandboxID>.<domain>` Host, and
//!   authenticated by the sandbox's `X-Access-Token` → lohar operations (protocol v2).
//!
//! Requests for a sandbox port other than envd's (49983) are proxied to that port in the
//! sandbox. Per-sandbox E2B state (template, metadata, timeout, E2B processes) lives in memory
//! here; the sandbox itself is an ordinary bhatti sandbox.

pub mod connect;
mod control;
mod filesystem;
mod process;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::state::AppState;
use crate::store::sandboxes::SandboxRow;
use crate::store::users::UserRow;

/// The port E2B's SDKs address envd on.
pub const ENVD_PORT: u16 = 49983;
/// The envd version reported to the SDKs (features of later versions are not claimed).
pub const ENVD_VERSION: &str = "0.5.7";

/// How a template maps to bhatti.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateConfig {
    /// bhatti image.
    pub image: String,
    /// User name reported to processes (`USER`).
    pub user: String,
    /// Home directory (`HOME` and default cwd), created owned by the sandbox user.
    pub home: String,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            image: "minimal".into(),
            user: "user".into(),
            home: "/home/user".into(),
        }
    }
}

/// `e2b:` in the daemon config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct E2bConfig {
    /// Listen address of the facade; absent: no facade.
    pub listen: Option<String>,
    /// Domain of `<port>-<sandboxID>.<domain>` Hosts (and the `domain` given to the SDK).
    pub domain: String,
    /// Templates by E2B name; an unknown template is used as an image name directly.
    pub templates: BTreeMap<String, TemplateConfig>,
    /// Longest sandbox timeout accepted (seconds).
    pub max_timeout_secs: u64,
    /// Serve `get_host` ports without a token (E2B's default public sandboxes). Off: a request
    /// for a sandbox port needs `e2b-traffic-access-token` (the SDK's
    /// `sandbox.traffic_access_token`) or the sandbox's `X-Access-Token`.
    pub public_ports: bool,
}

impl Default for E2bConfig {
    fn default() -> Self {
        let mut templates = BTreeMap::new();
        templates.insert("base".into(), TemplateConfig::default());
        E2bConfig {
            listen: None,
            domain: "e2b.localhost".into(),
            templates,
            max_timeout_secs: 24 * 3600,
            public_ports: false,
        }
    }
}

impl E2bConfig {
    /// The template's settings (an unknown name is an image of that name, same user/home).
    pub fn template(&self, name: &str) -> TemplateConfig {
        self.templates.get(name).cloned().unwrap_or(TemplateConfig {
            image: name.into(),
            ..TemplateConfig::default()
        })
    }
}

/// What the facade knows about one sandbox beyond bhatti's record.
pub struct BoxMeta {
    /// E2B template id it was created from.
    pub template: String,
    /// E2B metadata.
    pub metadata: BTreeMap<String, String>,
    /// Environment given at create (applied to every process).
    pub envs: BTreeMap<String, String>,
    /// User name and home of the template.
    pub tpl: TemplateConfig,
    /// Lifetime: the sandbox is killed at this instant (unix ms); 0 = never.
    pub end_at_ms: std::sync::atomic::AtomicI64,
    /// Paused by E2B (frozen until connect or another operation).
    pub paused: std::sync::atomic::AtomicBool,
    /// At the timeout, pause instead of kill (E2B's `autoPause`).
    pub auto_pause: std::sync::atomic::AtomicBool,
    /// E2B processes.
    pub procs: process::ProcTable,
    /// Polled directory watchers.
    pub watchers: filesystem::Watchers,
}

/// Shared state of the facade.
#[derive(Clone)]
pub struct E2bState {
    /// The daemon's state.
    pub app: AppState,
    /// Facade settings.
    pub cfg: Arc<E2bConfig>,
    boxes: Arc<Mutex<HashMap<String, Arc<BoxMeta>>>>,
    /// `<data_dir>/e2b.json`: template, metadata, timeout and pause state survive restarts.
    state_file: Arc<std::path::PathBuf>,
    save_lock: Arc<tokio::sync::Mutex<()>>,
    /// MiB of upload bodies held in memory at once, across all sandboxes (uploads are parsed
    /// whole): without it, concurrent 100 MB uploads could exhaust the daemon's memory.
    uploads: Arc<tokio::sync::Semaphore>,
}

/// What `e2b.json` keeps of one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    template: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    end_at_ms: i64,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    auto_pause: bool,
}

impl E2bState {
    fn new(app: AppState) -> E2bState {
        let cfg = Arc::new(app.config.e2b.clone());
        let state_file = Arc::new(app.config.data_dir.join("e2b.json"));
        let st = E2bState {
            app,
            cfg,
            boxes: Arc::new(Mutex::new(HashMap::new())),
            state_file,
            save_lock: Arc::new(tokio::sync::Mutex::new(())),
            uploads: Arc::new(tokio::sync::Semaphore::new(
                filesystem::UPLOAD_BUDGET_MIB as usize,
            )),
        };
        st.load();
        st
    }

    fn load(&self) {
        let saved: HashMap<String, Saved> = match std::fs::read(&*self.state_file) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "e2b: ignoring unreadable e2b.json");
                    return;
                }
            },
            Err(_) => return,
        };
        let mut map = self.map();
        for (id, s) in saved {
            let m = new_meta(
                s.template.clone(),
                self.cfg.template(&s.template),
                s.metadata,
                BTreeMap::new(),
                s.end_at_ms,
            );
            m.paused
                .store(s.paused, std::sync::atomic::Ordering::SeqCst);
            m.auto_pause
                .store(s.auto_pause, std::sync::atomic::Ordering::SeqCst);
            map.insert(id, Arc::new(m));
        }
    }

    /// Writes the E2B state of every sandbox (atomically; failures are logged).
    pub async fn save(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let _g = self.save_lock.lock().await;
        let snapshot: BTreeMap<String, Saved> = self
            .map()
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    Saved {
                        template: m.template.clone(),
                        metadata: m.metadata.clone(),
                        end_at_ms: m.end_at_ms.load(SeqCst),
                        paused: m.paused.load(SeqCst),
                        auto_pause: m.auto_pause.load(SeqCst),
                    },
                )
            })
            .collect();
        let path = self.state_file.clone();
        let res = tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("json.tmp");
            let bytes = serde_json::to_vec_pretty(&snapshot).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &*path)
        })
        .await;
        if let Ok(Err(e)) | Err(e) = res.map_err(std::io::Error::other) {
            tracing::warn!(error = %e, "e2b: could not write e2b.json");
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BoxMeta>>> {
        self.boxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The facade's record of a sandbox, created with defaults for sandboxes made elsewhere
    /// (no timeout, template = image).
    pub fn meta(&self, row: &SandboxRow) -> Arc<BoxMeta> {
        self.map()
            .entry(row.id.clone())
            .or_insert_with(|| {
                let template = self
                    .cfg
                    .templates
                    .iter()
                    .find(|(_, t)| t.image == row.image)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_else(|| row.image.clone());
                Arc::new(new_meta(
                    template.clone(),
                    self.cfg.template(&template),
                    BTreeMap::new(),
                    BTreeMap::new(),
                    0,
                ))
            })
            .clone()
    }

    fn insert(&self, id: &str, meta: BoxMeta) -> Arc<BoxMeta> {
        let m = Arc::new(meta);
        self.map().insert(id.to_string(), m.clone());
        m
    }

    fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

fn new_meta(
    template: String,
    tpl: TemplateConfig,
    metadata: BTreeMap<String, String>,
    envs: BTreeMap<String, String>,
    end_at_ms: i64,
) -> BoxMeta {
    BoxMeta {
        template,
        metadata,
        envs,
        tpl,
        end_at_ms: std::sync::atomic::AtomicI64::new(end_at_ms),
        paused: std::sync::atomic::AtomicBool::new(false),
        auto_pause: std::sync::atomic::AtomicBool::new(false),
        procs: process::ProcTable::default(),
        watchers: filesystem::Watchers::default(),
    }
}

/// The envd access token of a sandbox: derived from its (secret) agent token, so it survives
/// daemon restarts without being stored.
pub fn access_token(row: &SandboxRow) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"bhatti-e2b-envd:");
    h.update(row.agent_token.as_bytes());
    hex::encode(&h.finalize()[..24])
}

/// The traffic access token of a sandbox (for its proxied ports), derived like
/// [`access_token`].
pub fn traffic_token(row: &SandboxRow) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"bhatti-e2b-traffic:");
    h.update(row.agent_token.as_bytes());
    hex::encode(&h.finalize()[..24])
}

/// An E2B control-plane error: `{"code": N, "message": …}` with status N.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(serde_json::json!({"code": self.0.as_u16(), "message": self.1})),
        )
            .into_response()
    }
}

impl From<crate::service::ServiceError> for ApiErr {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        let status = match &e {
            S::Invalid(_) => StatusCode::BAD_REQUEST,
            S::NotFound(_) => StatusCode::NOT_FOUND,
            S::Conflict(_) | S::NotRunning(_) => StatusCode::CONFLICT,
            S::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
            S::WakeFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            S::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            S::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
            S::Engine(bhatti_engine::EngineError::ImageNotFound(_)) => StatusCode::BAD_REQUEST,
            S::Engine(bhatti_engine::EngineError::NotFound(_)) => StatusCode::NOT_FOUND,
            S::Agent(a) => crate::error::agent_status(a).unwrap_or(StatusCode::BAD_GATEWAY),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "e2b: internal error");
            return ApiErr(status, "internal error".into());
        }
        ApiErr(status, e.to_string())
    }
}

/// The user of a control-plane request (`X-API-KEY`, or `Authorization: Bearer`).
pub async fn api_user(st: &E2bState, headers: &HeaderMap) -> Result<UserRow, ApiErr> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiErr(StatusCode::UNAUTHORIZED, "missing X-API-KEY".into()))?;
    let hash = crate::ids::hash_key(&key);
    let found = st
        .app
        .store
        .call(move |c| crate::store::users::by_key_hash(c, &hash))
        .await
        .map_err(|e| ApiErr::from(crate::service::ServiceError::from(e)))?;
    let user = found.ok_or_else(|| ApiErr(StatusCode::UNAUTHORIZED, "invalid API key".into()))?;
    limit(st, &user, crate::rate_limit::RequestClass::Other)?;
    Ok(user)
}

/// The user's API rate limit (the same buckets as bhatti's own API): 429 when exhausted.
pub fn limit(
    st: &E2bState,
    user: &UserRow,
    class: crate::rate_limit::RequestClass,
) -> Result<(), ApiErr> {
    st.app.limiter.check(&user.id, class).map_err(|wait| {
        ApiErr(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit exceeded; retry in {} s",
                wait.as_secs_f64().ceil().max(1.0)
            ),
        )
    })
}

/// Which sandbox (and port) an in-sandbox request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Sandbox id.
    pub sandbox_id: String,
    /// Port in the sandbox (49983: envd).
    pub port: u16,
}

/// `<port>-<sandboxID>.<anything>` → target.
pub fn target_from_host(host: &str) -> Option<Target> {
    let first = host.split('.').next()?;
    let (port, id) = first.split_once('-')?;
    let port: u16 = port.parse().ok()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) || !host.contains('.') {
        return None;
    }
    Some(Target {
        sandbox_id: id.to_string(),
        port,
    })
}

/// The target of a request: `E2b-Sandbox-Id` (+ `E2b-Sandbox-Port`) headers, else the Host.
pub fn target_of(headers: &HeaderMap) -> Option<Target> {
    if let Some(id) = headers.get("e2b-sandbox-id").and_then(|v| v.to_str().ok()) {
        let port = headers
            .get("e2b-sandbox-port")
            .and_then(|v| v.to_str().ok())
            .and_then(|p| p.parse().ok())
            .unwrap_or(ENVD_PORT);
        return Some(Target {
            sandbox_id: id.to_string(),
            port,
        });
    }
    headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(target_from_host)
}

/// An authenticated in-sandbox request: the sandbox, its owner and the facade's record.
pub struct Sbx {
    /// The sandbox.
    pub row: SandboxRow,
    /// Its owner.
    pub user: UserRow,
    /// Facade state.
    pub meta: Arc<BoxMeta>,
}

/// A sandbox that is not destroyed, by id (E2B never names sandboxes), and its owner:
/// requests that carry a sandbox's token rather than a user's key start here.
pub async fn sandbox_and_owner(
    st: &E2bState,
    id: &str,
) -> Result<Option<(SandboxRow, UserRow)>, crate::store::StoreError> {
    let id = id.to_string();
    st.app
        .store
        .call(move |c| {
            let owner: Option<String> = rusqlite::OptionalExtension::optional(c.query_row(
                "SELECT u.name FROM sandboxes s JOIN users u ON u.id = s.created_by \
                 WHERE s.id = ?1 AND s.status != 'destroyed'",
                [&id],
                |r| r.get(0),
            ))?;
            let Some(name) = owner else { return Ok(None) };
            let Some(user) = crate::store::users::by_name(c, &name)? else {
                return Ok(None);
            };
            let row = crate::store::sandboxes::by_ref(c, &user.id, &id)?;
            Ok(row.filter(|r| r.id == id).map(|r| (r, user)))
        })
        .await
}

/// Resolves and authenticates the sandbox of an envd request (`X-Access-Token`).
pub async fn envd_sandbox(
    st: &E2bState,
    headers: &HeaderMap,
    target: &Target,
    signed: Option<&SignedUrl>,
) -> Result<Sbx, connect::RpcError> {
    use connect::{Code, RpcError};
    let found = sandbox_and_owner(st, &target.sandbox_id)
        .await
        .map_err(|e| RpcError::new(Code::Internal, e.to_string()))?;
    let not_found = || {
        RpcError::new(
            Code::NotFound,
            format!("sandbox {} not found", target.sandbox_id),
        )
    };
    let (row, user) = found.ok_or_else(not_found)?;
    let token = headers.get("x-access-token").and_then(|v| v.to_str().ok());
    let want = access_token(&row);
    let ok = match (token, signed) {
        (Some(t), _) => subtle_eq::ct_eq(t.as_bytes(), want.as_bytes()),
        (None, Some(s)) => s.verify(&want, chrono::Utc::now().timestamp()),
        (None, None) => false,
    };
    if !ok {
        return Err(RpcError::new(
            Code::Unauthenticated,
            "missing or invalid X-Access-Token",
        ));
    }
    let meta = st.meta(&row);
    Ok(Sbx { row, user, meta })
}

/// A signed `/files` URL (the SDKs' `download_url`/`upload_url`): `v1_` + unpadded base64 of
/// SHA-256 of `path:operation:user:token[:expiration]`.
#[derive(Debug, Clone)]
pub struct SignedUrl {
    /// `path` as in the query.
    pub path: String,
    /// `read` or `write`.
    pub operation: &'static str,
    /// `username` as in the query (empty: default user).
    pub user: String,
    /// `signature`.
    pub signature: String,
    /// `signature_expiration` (unix seconds).
    pub expiration: Option<i64>,
}

impl SignedUrl {
    /// The signature for `token`.
    pub fn expected(&self, token: &str) -> String {
        use base64::Engine as _;
        let raw = match self.expiration {
            None => format!("{}:{}:{}:{token}", self.path, self.operation, self.user),
            Some(e) => format!("{}:{}:{}:{token}:{e}", self.path, self.operation, self.user),
        };
        let digest = sha2::Sha256::digest(raw.as_bytes());
        format!(
            "v1_{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// Whether the signature is valid for `token` and not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> bool {
        self.expiration.is_none_or(|e| e >= now)
            && subtle_eq::ct_eq(self.signature.as_bytes(), self.expected(token).as_bytes())
    }
}

mod subtle_eq {
    /// Constant-time equality of two byte strings (length is not secret).
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Sbx {
    /// A client of the sandbox's agent and the hold that keeps it hot while used (wakes it; an
    /// E2B pause ends here, as E2B auto-resumes on use).
    pub async fn agent(
        &self,
        st: &E2bState,
    ) -> Result<(bhatti_engine::agent::AgentClient, crate::thermal::Busy), connect::RpcError> {
        let (_, a, busy) = crate::service::agent::open(&st.app, &self.user, &self.row.id)
            .await
            .map_err(rpc_of_service)?;
        if self
            .meta
            .paused
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            st.save().await;
        }
        Ok((a, busy))
    }
}

/// Maps a service error to a Connect error.
pub fn rpc_of_service(e: crate::service::ServiceError) -> connect::RpcError {
    let ApiErr(status, msg) = ApiErr::from(e);
    let code = match status.as_u16() {
        400 => connect::Code::InvalidArgument,
        404 => connect::Code::NotFound,
        409 => connect::Code::FailedPrecondition,
        429 => connect::Code::ResourceExhausted,
        502..=504 => connect::Code::Unavailable,
        _ => connect::Code::Internal,
    };
    connect::RpcError::new(code, msg)
}

/// Maps an agent error to a Connect error by its message (lohar reports errno-like text).
pub fn rpc_of_agent(e: bhatti_engine::agent::AgentError) -> connect::RpcError {
    use connect::{Code, RpcError};
    let msg = e.to_string();
    let code = if msg.contains("no such file") || msg.contains("not found") {
        Code::NotFound
    } else if [
        "must be absolute",
        "not a directory",
        "is a directory",
        "is not a regular file",
        "too many entries",
        "unexpected NUL byte",
        "Invalid cross-device link",
    ]
    .iter()
    .any(|m| msg.contains(m))
    {
        Code::InvalidArgument
    } else if msg.contains("File exists") || msg.contains("already exists") {
        Code::AlreadyExists
    } else if msg.contains("Permission denied") || msg.contains("Operation not permitted") {
        Code::PermissionDenied
    } else if msg.contains("connection limit exceeded") {
        // lohar's cap on concurrent operations (each E2B process and watcher holds one).
        return RpcError::new(
            Code::ResourceExhausted,
            "too many processes, watchers and operations open in this sandbox; end some first",
        );
    } else {
        match e {
            bhatti_engine::agent::AgentError::Connect(_)
            | bhatti_engine::agent::AgentError::Timeout(_) => Code::Unavailable,
            _ => Code::Internal,
        }
    };
    RpcError::new(code, msg)
}

/// The facade's application.
pub fn app(st: E2bState) -> Router {
    let envd = Router::new()
        .route("/health", get(|| async { StatusCode::NO_CONTENT }))
        .route("/files", get(filesystem::download).post(filesystem::upload))
        .route("/process.Process/{method}", post(process::rpc))
        .route("/filesystem.Filesystem/{method}", post(filesystem::rpc))
        .fallback(|| async {
            connect::RpcError::new(connect::Code::Unimplemented, "not implemented by bhatti")
        })
        .with_state(st.clone());
    let control = control::routes()
        .fallback(|req: Request| async move {
            ApiErr(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{} {} is not supported by bhatti's E2B facade",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .with_state(st.clone());
    // A fallback (not a `/{*rest}` route) so that no path parameters leak into the inner
    // routers' extractors.
    Router::new()
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(st.clone(), log_requests))
        .with_state(Planes { st, envd, control })
}

#[derive(Clone)]
struct Planes {
    st: E2bState,
    envd: Router,
    control: Router,
}

/// Routes a request to the control plane, envd, or a proxied sandbox port.
async fn dispatch(State(p): State<Planes>, req: Request) -> Response {
    use tower::ServiceExt;
    let Some(target) = target_of(req.headers()) else {
        return match p.control.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
    };
    // Like E2B's edge proxy: a sandbox that does not exist (killed, timed out) is a 502 whose
    // message the SDKs recognise ("… was not found"), for envd and other ports alike.
    match sandbox_exists(&p.st, &target.sandbox_id).await {
        Ok(true) => {}
        Ok(false) => {
            return ApiErr(
                StatusCode::BAD_GATEWAY,
                format!("The sandbox {} was not found", target.sandbox_id),
            )
            .into_response()
        }
        Err(e) => return e.into_response(),
    }
    if target.port == ENVD_PORT {
        let mut req = req;
        req.extensions_mut().insert(target);
        return match p.envd.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
    }
    proxy_port(&p.st, target, req).await
}

async fn sandbox_exists(st: &E2bState, id: &str) -> Result<bool, ApiErr> {
    let id = id.to_string();
    st.app
        .store
        .call(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM sandboxes WHERE id = ?1 AND status = 'running'",
                [&id],
                |r| r.get::<_, i64>(0),
            )? > 0)
        })
        .await
        .map_err(|e| ApiErr::from(crate::service::ServiceError::from(e)))
}

/// Proxies a request for another port of the sandbox (E2B's `get_host(port)`), with the
/// sandbox's traffic token unless `e2b.public_ports` is set.
async fn proxy_port(st: &E2bState, target: Target, req: Request) -> Response {
    let (row, user) = match sandbox_and_owner(st, &target.sandbox_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return ApiErr(
                StatusCode::BAD_GATEWAY,
                format!("The sandbox {} was not found", target.sandbox_id),
            )
            .into_response()
        }
        Err(e) => return ApiErr::from(crate::service::ServiceError::from(e)).into_response(),
    };
    if !st.cfg.public_ports {
        let h = req.headers();
        let given = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let ok = given("e2b-traffic-access-token")
            .is_some_and(|t| subtle_eq::ct_eq(t.as_bytes(), traffic_token(&row).as_bytes()))
            || given("x-access-token")
                .is_some_and(|t| subtle_eq::ct_eq(t.as_bytes(), access_token(&row).as_bytes()));
        if !ok {
            return ApiErr(
                StatusCode::FORBIDDEN,
                "this sandbox's ports need the e2b-traffic-access-token header (sandbox.traffic_access_token), or set e2b.public_ports".into(),
            )
            .into_response();
        }
    }
    let (tunnel, busy) = match crate::service::proxy::tunnel(
        &st.app,
        &user,
        &target.sandbox_id,
        target.port,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            let ApiErr(_, m) = ApiErr::from(e);
            return ApiErr(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The sandbox is running but port is not open (port {}: {m})",
                    target.port
                ),
            )
            .into_response();
        }
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let fwd = crate::proxy::Forwarded {
        client: req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        proto: "http",
        host: None,
    };
    let drop = [
        axum::http::HeaderName::from_static("x-access-token"),
        axum::http::HeaderName::from_static("e2b-sandbox-id"),
        axum::http::HeaderName::from_static("e2b-sandbox-port"),
        axum::http::HeaderName::from_static("e2b-traffic-access-token"),
    ];
    crate::proxy::forward(tunnel, target.port, req, &pq, fwd, &drop, busy).await
}

/// Whether a request presented any credential (API key, access token, URL signature).
fn presents_credentials(req: &Request) -> bool {
    let h = req.headers();
    ["x-api-key", "authorization", "x-access-token"]
        .iter()
        .any(|k| h.contains_key(*k))
        || req
            .uri()
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "signature"))
}

async fn log_requests(State(st): State<E2bState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let presented = presents_credentials(&req);
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let resp = next.run(req).await;
    // As on bhatti's own API: a refused credential is an event with the client's address,
    // never with what it presented.
    if presented && resp.status() == StatusCode::UNAUTHORIZED {
        st.app.record(crate::store::events::NewEvent::new(
            "auth.failed",
            "",
            "",
            serde_json::json!({ "ip": ip, "via": "e2b" }),
        ));
    }
    tracing::info!(
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "e2b request"
    );
    resp
}

/// A running facade listener.
pub struct Facade {
    task: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl Facade {
    /// Stops serving (in-flight streams are cut).
    pub fn stop(self) {
        self.task.abort();
        self.reaper.abort();
    }
}

/// Binds and serves the facade when `e2b.listen` is set.
pub async fn spawn(app: AppState) -> Result<Option<Facade>, (String, std::io::Error)> {
    let Some(listen) = app.config.e2b.listen.clone() else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| (listen.clone(), e))?;
    let addr = listener.local_addr().map_err(|e| (listen.clone(), e))?;
    let st = E2bState::new(app);
    let reaper = tokio::spawn(control::reap_expired(st.clone()));
    let router = self::app(st);
    tracing::info!(listen = %addr, "e2b facade listening");
    let task = tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!(error = %e, "e2b facade stopped");
        }
    });
    Ok(Some(Facade { task, reaper, addr }))
}

/// Sleeps for `d`, capped so a huge value cannot overflow timers.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            target_from_host("49983-0123456789abcdef.e2b.localhost:8080"),
            Some(Target {
                sandbox_id: "0123456789abcdef".into(),
                port: ENVD_PORT
            })
        );
        assert_eq!(
            target_from_host("8000-abc.example.com").map(|t| t.port),
            Some(8000)
        );
        assert_eq!(target_from_host("127.0.0.1:9000"), None);
        assert_eq!(target_from_host("localhost"), None);
        assert_eq!(target_from_host("x-abc.example.com"), None);
        let mut h = HeaderMap::new();
        h.insert("e2b-sandbox-id", "abc".parse().unwrap());
        assert_eq!(target_of(&h).map(|t| t.port), Some(ENVD_PORT));
        h.insert("e2b-sandbox-port", "3000".parse().unwrap());
        assert_eq!(target_of(&h).map(|t| t.port), Some(3000));
    }

    #[test]
    fn templates_and_config() {
        let c = E2bConfig::default();
        // Off unless configured; ports are not public by default.
        assert_eq!(c.listen, None);
        assert!(!c.public_ports);
        assert_eq!(c.template("base").image, "minimal");
        assert_eq!(c.template("base").home, "/home/user");
        assert_eq!(c.template("tiny").image, "tiny");
        let c: E2bConfig = serde_yaml::from_str(
            "listen: 127.0.0.1:0\ntemplates:\n  py: {image: python, user: app, home: /app}\n",
        )
        .unwrap();
        assert_eq!(c.template("py").user, "app");
        assert!(serde_yaml::from_str::<E2bConfig>("lisen: x\n").is_err());
    }

    #[test]
    fn signed_urls() {
        // Computed with the Python SDK's e2b.sandbox.signature.get_signature.
        let s = SignedUrl {
            path: "/tmp/a.txt".into(),
            operation: "read",
            user: String::new(),
            signature: "v1_tRlsooM2hvGDgtWWsmSPYkbHGF1tnIIlZnLHK/9lpTk".into(),
            expiration: None,
        };
        assert!(s.verify("tok", 0));
        assert!(!s.verify("other", 0));
        let w = SignedUrl {
            operation: "write",
            ..s.clone()
        };
        assert!(!w.verify("tok", 0));
        let e = SignedUrl {
            expiration: Some(100),
            signature: SignedUrl {
                expiration: Some(100),
                ..s.clone()
            }
            .expected("tok"),
            ..s
        };
        assert!(e.verify("tok", 100));
        assert!(!e.verify("tok", 101));
    }

    #[test]
    fn agent_errors() {
        use bhatti_engine::agent::AgentError;
        let e = rpc_of_agent(AgentError::Remote("connection limit exceeded".into()));
        assert_eq!(e.code, connect::Code::ResourceExhausted);
        let e = rpc_of_agent(AgentError::Remote(
            "stat /x: no such file or directory".into(),
        ));
        assert_eq!(e.code, connect::Code::NotFound);
        let e = rpc_of_agent(AgentError::Remote(
            "listing of / has too many entries (more than 10000, or 900 KiB): use a smaller depth"
                .into(),
        ));
        assert_eq!(e.code, connect::Code::InvalidArgument);
        // Bad paths are the caller's error, not the server's (were 500s).
        for m in [
            "/tmp is a directory",
            "/dev/zero is not a regular file",
            "stat /tmp/\\u0000x: file name contained an unexpected NUL byte",
            "move /tmp: Invalid cross-device link (os error 18)",
        ] {
            let e = rpc_of_agent(AgentError::Remote(m.into()));
            assert_eq!(e.code, connect::Code::InvalidArgument, "{m}");
        }
        let e = rpc_of_agent(AgentError::Remote(
            "remove /proc/1: Operation not permitted (os error 1)".into(),
        ));
        assert_eq!(e.code, connect::Code::PermissionDenied);
    }

    #[test]
    fn constant_time_eq() {
        assert!(subtle_eq::ct_eq(b"abc", b"abc"));
        assert!(!subtle_eq::ct_eq(b"abc", b"abd"));
        assert!(!subtle_eq::ct_eq(b"abc", b"ab"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn host_parsing_never_panics(h in "\\PC{0,60}") {
            if let Some(t) = target_from_host(&h) {
                prop_assert!(!t.sandbox_id.is_empty());
                prop_assert!(t.sandbox_id.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }
    }
}
