//! The `namespace` engine itself: create, destroy, pause/resume, agent endpoint.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::launch::{self, LaunchError};
use super::protocol::LaunchSpec;
use super::slots::Slots;

#[path = "recover.rs"]
mod recover;
use crate::agent::AgentClient;
use crate::cgroups::{Cgroup, Cgroups, Limits};
use crate::error::io;
use crate::image::ImageStore;
use crate::net::{AttachRequest, NetConfig, Network};
use crate::sandbox_dir::valid_key;
use crate::spec::{AgentEndpoint, Capabilities, Created, RunState, SandboxSpec};
use crate::{Engine, EngineError};

/// lohar's control port inside every sandbox.
pub const CONTROL_PORT: u16 = 1024;
/// lohar's forward port inside every sandbox.
pub const FORWARD_PORT: u16 = 1025;

/// Configuration of the namespace engine.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// Where sandbox directories live (`<dir>/<engine id>/`).
    pub sandboxes_dir: PathBuf,
    /// The image store directory.
    pub images_dir: PathBuf,
    /// The static lohar binary to bind into every sandbox.
    pub lohar: PathBuf,
    /// The launcher command (program + args), e.g. `["/proc/self/exe", "__nsinit"]`.
    pub helper: Vec<String>,
    /// First host uid of the first sandbox's id range.
    pub uid_base: u32,
    /// How many id ranges (sandboxes) may exist at once.
    pub max_sandboxes: u32,
    /// cgroup parent group name.
    pub cgroup_parent: String,
    /// Per-sandbox process limit.
    pub pids_max: u64,
    /// Networking.
    pub net: NetConfig,
    /// Nameservers written to every sandbox's resolv.conf (empty: leave the image's).
    pub dns: Vec<String>,
    /// How long create waits for lohar to answer.
    pub ready_timeout: Duration,
}

/// What the engine remembers of a running sandbox (and persists as `Created::meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxMeta {
    /// Host pid of the sandbox's lohar.
    pub pid: i32,
    /// Index of its id range.
    pub slot: u32,
    /// First host uid of its id range.
    pub uid_base: u32,
    /// Its owner's subnet index.
    pub subnet_index: u32,
    /// Its IP.
    pub ip: Ipv4Addr,
    /// The image it overlays.
    pub image: String,
}

struct Running {
    meta: SandboxMeta,
    token: String,
    cgroup: Cgroup,
}

/// The engine.
pub struct NamespaceEngine {
    cfg: NamespaceConfig,
    images: ImageStore,
    cgroups: Cgroups,
    net: Network,
    /// Whether this engine started `net` (and so reconciles it at recovery) or shares another
    /// engine's (and only reserves its sandboxes' addresses in it).
    own_net: bool,
    slots: Slots,
    sandboxes: Mutex<HashMap<String, Arc<Running>>>,
}

fn unavailable(reason: impl Into<String>) -> EngineError {
    EngineError::Unavailable {
        engine: "namespace".into(),
        reason: reason.into(),
    }
}

/// Checks what the engine needs from the host; the error says what is missing.
pub fn check_host(cfg: &NamespaceConfig) -> Result<(), EngineError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(unavailable("bhatti serve must run as root"));
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.trim_end().ends_with("overlay")) {
        return Err(unavailable(
            "the kernel has no overlayfs (modprobe overlay)",
        ));
    }
    let max_userns =
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max_userns.trim() == "0" {
        return Err(unavailable(
            "user namespaces are disabled (sysctl user.max_user_namespaces=0)",
        ));
    }
    if !cfg.lohar.is_file() {
        return Err(unavailable(format!(
            "lohar binary not found at {} (build it with ./scripts/build-lohar or set lohar_path)",
            cfg.lohar.display()
        )));
    }
    Ok(())
}

impl NamespaceEngine {
    /// Checks the host, sets up cgroups and networking.
    pub async fn new(cfg: NamespaceConfig) -> Result<NamespaceEngine, EngineError> {
        Self::build(cfg, None).await
    }

    /// Like [`NamespaceEngine::new`], on a network started by another engine of this daemon
    /// (one IP allocator per bridge); that engine reconciles it.
    pub async fn with_network(
        cfg: NamespaceConfig,
        net: Network,
    ) -> Result<NamespaceEngine, EngineError> {
        Self::build(cfg, Some(net)).await
    }

    /// The network its sandboxes are attached to (to share with another engine).
    pub fn network(&self) -> Network {
        self.net.clone()
    }

    async fn build(
        cfg: NamespaceConfig,
        net: Option<Network>,
    ) -> Result<NamespaceEngine, EngineError> {
        check_host(&cfg)?;
        std::fs::create_dir_all(&cfg.sandboxes_dir).map_err(|e| io("create sandboxes dir", e))?;
        let images = ImageStore::new(&cfg.images_dir).map_err(|e| io("create images dir", e))?;
        images.clean_staging();
        let cgroups =
            Cgroups::detect(&cfg.cgroup_parent).map_err(|e| unavailable(e.to_string()))?;
        let own_net = net.is_none();
        let net = match net {
            Some(n) => n,
            None => Network::start(cfg.net.clone())
                .await
                .map_err(|e| unavailable(format!("networking: {e}")))?,
        };
        Ok(NamespaceEngine {
            own_net,
            slots: Slots::new(cfg.max_sandboxes),
            cfg,
            images,
            cgroups,
            net,
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &NamespaceConfig {
        &self.cfg
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    fn dir(&self, engine_id: &str) -> PathBuf {
        self.cfg.sandboxes_dir.join(engine_id)
    }

    fn get(&self, engine_id: &str) -> Option<Arc<Running>> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(engine_id)
            .cloned()
    }

    fn lohar_config(&self, spec: &SandboxSpec) -> String {
        spec.lohar_config(&self.cfg.dns).to_string()
    }

    async fn launch(
        &self,
        engine_id: &str,
        spec: &SandboxSpec,
        slot: u32,
        image_rootfs: PathBuf,
        cgroup: &Cgroup,
        want_ip: Option<Ipv4Addr>,
    ) -> Result<(i32, Ipv4Addr), EngineError> {
        let uid_base = self.slots.uid_base(self.cfg.uid_base, slot);
        let launch_spec = LaunchSpec {
            dir: self.dir(engine_id),
            image_rootfs,
            lohar: self.cfg.lohar.clone(),
            uid_base,
            hostname: spec.name.clone(),
            lohar_config: self.lohar_config(spec),
        };
        let ip_cell: Mutex<Option<Ipv4Addr>> = Mutex::new(None);
        let net = &self.net;
        let pid = launch::launch(
            &self.cfg.helper,
            &launch_spec,
            |hpid| {
                cgroup.add_pid(hpid as i32).map_err(|e| LaunchError {
                    step: "join cgroup".into(),
                    error: e.to_string(),
                })
            },
            |hpid| {
                let netns = PathBuf::from(format!("/proc/{hpid}/ns/net"));
                let ip_cell = &ip_cell;
                async move {
                    let a = net
                        .attach(AttachRequest {
                            subnet_index: spec.subnet_index,
                            key: engine_id,
                            netns: &netns,
                            ip: want_ip,
                        })
                        .await
                        .map_err(|e| LaunchError {
                            step: "attach network".into(),
                            error: e.to_string(),
                        })?;
                    *ip_cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(a.ip);
                    Ok(())
                }
            },
        )
        .await
        .map_err(|e| io(format!("launch sandbox ({})", e.step), e.error))?;
        let ip = ip_cell
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| io("launch sandbox", "no IP assigned"))?;
        Ok((pid, ip))
    }

    /// Removes everything a sandbox holds; each step runs even if an earlier one failed.
    async fn teardown(
        &self,
        engine_id: &str,
        subnet_index: u32,
        slot: Option<u32>,
        cgroup: Option<&Cgroup>,
        remove_dir: bool,
    ) -> Result<(), EngineError> {
        let mut first_err = None;
        let t0 = std::time::Instant::now();
        if let Some(cg) = cgroup.cloned().or_else(|| self.cgroups.open(engine_id)) {
            // Killing the cgroup kills lohar and every process; the sandbox's mount namespace
            // (and with it the overlay) goes away with the last of them.
            let r = tokio::task::spawn_blocking(move || cg.destroy()).await;
            if let Ok(Err(e)) = r {
                first_err.get_or_insert(io("destroy cgroup", e));
            }
        }
        let t_cg = t0.elapsed();
        if let Err(e) = self.net.detach(subnet_index, engine_id).await {
            first_err.get_or_insert(io("detach network", e));
        }
        let t_net = t0.elapsed();
        if remove_dir {
            let dir = self.dir(engine_id);
            let r = tokio::task::spawn_blocking(move || remove_tree(&dir)).await;
            if let Ok(Err(e)) = r {
                first_err.get_or_insert(io("remove sandbox directory", e));
            }
        }
        if let Some(s) = slot {
            self.slots.release(s);
        }
        tracing::debug!(sandbox = %engine_id, cgroup = ?t_cg, network = ?(t_net - t_cg), total = ?t0.elapsed(), "teardown");
        first_err.map_or(Ok(()), Err)
    }
}

/// `rm -rf` that tolerates a missing directory.
fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Alive and not a zombie.
fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Present in the directory of a stopped sandbox.
const STOPPED_MARKER: &str = "stopped";

#[async_trait]
impl Engine for NamespaceEngine {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            snapshot_memory: false,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let image_rootfs = self.images.rootfs(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(n) => EngineError::ImageNotFound(n),
            other => io("resolve image", other),
        })?;
        // The engine id is the server's id, so a crash between our create and the server
        // recording its result still leaves resources the server can name (and destroy).
        if !valid_key(&spec.id) {
            return Err(io("create", format!("invalid sandbox id {:?}", spec.id)));
        }
        if self.dir(&spec.id).exists() {
            return Err(io("create", format!("sandbox {} already exists", spec.id)));
        }
        let engine_id = spec.id.clone();
        let slot = self
            .slots
            .acquire()
            .ok_or_else(|| io("allocate id range", "too many sandboxes on this host"))?;
        let limits = Limits {
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            pids_max: self.cfg.pids_max,
        };
        let cgroup = match self.cgroups.create(&engine_id, &limits) {
            Ok(c) => c,
            Err(e) => {
                self.slots.release(slot);
                return Err(io("create cgroup", e));
            }
        };
        match self.start(spec, slot, image_rootfs, &cgroup, None).await {
            Ok(created) => Ok(created),
            Err(e) => {
                let _ = self
                    .teardown(
                        &engine_id,
                        spec.subnet_index,
                        Some(slot),
                        Some(&cgroup),
                        true,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        self.recover_all(sandboxes).await
    }

    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
        let running = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        match running {
            Some(r) => {
                // SIGKILL to the sandbox's PID 1 ends its whole PID namespace at once; the
                // cgroup sweep that follows then finds (almost) nothing left to kill.
                if pid_alive(r.meta.pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(r.meta.pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                self.teardown(
                    engine_id,
                    r.meta.subnet_index,
                    Some(r.meta.slot),
                    Some(&r.cgroup),
                    true,
                )
                .await
            }
            None => {
                // Unknown to this process (a failed create, or a stopped sandbox): remove what
                // may exist, and give back a stopped sandbox's id range.
                if let Some(m) = self.load_state(engine_id) {
                    self.slots.release(m.slot);
                }
                let cg = self.cgroups.open(engine_id);
                if let Some(cg) = cg {
                    let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
                }
                let dir = self.dir(engine_id);
                let _ = tokio::task::spawn_blocking(move || remove_tree(&dir)).await;
                Ok(())
            }
        }
    }

    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
        let Some(r) = self.get(engine_id) else {
            return Ok(if self.dir(engine_id).is_dir() {
                RunState::Stopped
            } else {
                RunState::Missing
            });
        };
        if !pid_alive(r.meta.pid) {
            return Ok(RunState::Stopped);
        }
        match r.cgroup.is_frozen() {
            Ok(true) => Ok(RunState::Paused),
            _ => Ok(RunState::Running),
        }
    }

    async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
        let r = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        let cg = r.cgroup.clone();
        tokio::task::spawn_blocking(move || cg.freeze())
            .await
            .map_err(|e| io("freeze", e))?
            .map_err(|e| io("freeze", e))
    }

    async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
        let r = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        let cg = r.cgroup.clone();
        tokio::task::spawn_blocking(move || cg.thaw())
            .await
            .map_err(|e| io("thaw", e))?
            .map_err(|e| io("thaw", e))
    }

    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        let r = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        Ok(self.endpoint(r.meta.ip, &r.token))
    }

    async fn stop(&self, engine_id: &str) -> Result<(), EngineError> {
        let running = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        let Some(r) = running else {
            // Not running in this process: stopped already if its directory exists.
            return if self.dir(engine_id).is_dir() {
                if let Some(cg) = self.cgroups.open(engine_id) {
                    let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
                }
                Ok(())
            } else {
                Err(EngineError::NotFound(engine_id.into()))
            };
        };
        if pid_alive(r.meta.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(r.meta.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Processes, cgroup and veth go; the directory (the user's files) and the id range stay.
        // state.json stays too: `start` reads the slot and IP from it. The marker keeps a
        // daemon restart's orphan sweep (which only hears of running sandboxes) off it.
        let _ = std::fs::write(self.dir(engine_id).join(STOPPED_MARKER), b"");
        self.teardown(engine_id, r.meta.subnet_index, None, Some(&r.cgroup), false)
            .await
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        if self.get(&spec.id).is_some_and(|r| pid_alive(r.meta.pid)) {
            return Err(io("start", "sandbox is running"));
        }
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&spec.id);
        let meta = self.load_state(&spec.id);
        if let Some(m) = &meta {
            self.slots.reserve(m.slot);
        }
        let r = self.restart(spec, meta).await;
        if r.is_ok() {
            let _ = std::fs::remove_file(self.dir(&spec.id).join(STOPPED_MARKER));
        }
        r
    }

    async fn usage(&self, engine_id: &str) -> Option<u64> {
        self.get(engine_id)?.cgroup.cpu_usage_usec().ok()
    }
}

impl NamespaceEngine {
    fn endpoint(&self, ip: Ipv4Addr, token: &str) -> AgentEndpoint {
        AgentEndpoint::Tcp {
            control: SocketAddr::from((ip, CONTROL_PORT)),
            forward: SocketAddr::from((ip, FORWARD_PORT)),
            token: Some(token.to_string()),
        }
    }

    /// Launches the sandbox's processes in `cgroup`, registers it and waits for lohar. On error
    /// the caller tears down what exists.
    async fn start(
        &self,
        spec: &SandboxSpec,
        slot: u32,
        image_rootfs: PathBuf,
        cgroup: &Cgroup,
        want_ip: Option<Ipv4Addr>,
    ) -> Result<Created, EngineError> {
        let engine_id = spec.id.clone();
        let (pid, ip) = self
            .launch(&engine_id, spec, slot, image_rootfs, cgroup, want_ip)
            .await?;
        let meta = SandboxMeta {
            pid,
            slot,
            uid_base: self.slots.uid_base(self.cfg.uid_base, slot),
            subnet_index: spec.subnet_index,
            ip,
            image: spec.image.clone(),
        };
        let running = Arc::new(Running {
            meta: meta.clone(),
            token: spec.agent_token.clone(),
            cgroup: cgroup.clone(),
        });
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(engine_id.clone(), running);
        let client = AgentClient::new(self.endpoint(ip, &spec.agent_token));
        if let Err(e) = client.wait_ready(self.cfg.ready_timeout).await {
            self.sandboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&engine_id);
            return Err(io("wait for lohar", e));
        }
        if let Err(e) = self.save_state(&engine_id, &meta) {
            tracing::warn!(sandbox = %engine_id, error = %e, "could not persist sandbox state");
        }
        Ok(Created {
            engine_id,
            ip: Some(ip),
            meta: serde_json::to_value(&meta).unwrap_or_default(),
        })
    }

    /// The cgroup of a sandbox (for tests and the thermal manager's CPU accounting).
    pub fn cgroup(&self, engine_id: &str) -> Option<Cgroup> {
        self.get(engine_id).map(|r| r.cgroup.clone())
    }

    /// The gateway address of a user's subnet (the host side of its bridge).
    pub fn gateway(&self, subnet_index: u32) -> Ipv4Addr {
        self.net.gateway(subnet_index)
    }

    /// The engine's view of a sandbox (pid, ids, IP).
    pub fn meta(&self, engine_id: &str) -> Option<SandboxMeta> {
        self.get(engine_id).map(|r| r.meta.clone())
    }
}
