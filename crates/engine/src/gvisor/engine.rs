//! The `gvisor` engine itself: create, destroy, pause/resume, memory snapshots (cold, wake),
//! stop/start, agent endpoint.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::agent::AgentClient;
use crate::cgroups::{Cgroup, Cgroups, Limits};
use crate::error::io;
use crate::idle_meter::IdleMeter;
use crate::image::ImageStore;
use crate::namespace::{CONTROL_PORT, FORWARD_PORT};
use crate::net::{AttachRequest, Network};
use crate::sandbox_dir::valid_key;
use crate::spec::{AgentEndpoint, Capabilities, Created, RunState, SandboxSpec};
use crate::{Engine, EngineError};

use super::cgroups::remove_runsc_cgroups;
use super::config::{runsc_version, unavailable, GvisorConfig};
use super::fs::prepare_fs;
use super::runsc::{self, Runsc};

#[path = "recover.rs"]
mod recover;

/// What the engine persists about a sandbox (`state.json`, and `Created::meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GvisorMeta {
    /// Owner's subnet index.
    pub subnet_index: u32,
    /// Its IP (kept while cold or stopped: the restored netstack has it).
    pub ip: Ipv4Addr,
    /// The image it overlays.
    pub image: String,
    /// runsc platform it runs on.
    pub platform: String,
}

/// Where a known sandbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Paused,
    /// Checkpointed to disk (thermal cold).
    Cold,
    /// Checkpointed (or, if that failed, just killed) by `stop`.
    Stopped,
}

struct Sb {
    meta: GvisorMeta,
    token: String,
    phase: Mutex<Phase>,
    /// Serialises pause, snapshot, wake, stop and destroy of this sandbox.
    gate: tokio::sync::Mutex<()>,
    /// The spec it was created (or recovered) with, to boot it again if a snapshot fails.
    spec: SandboxSpec,
    /// Its CPU use net of the sentry's idle cost (`None` until the first reading).
    meter: Mutex<Option<IdleMeter>>,
}

impl Sb {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self, p: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

/// Share of one CPU an idle sandbox's sentry and gofer use anyway (ptrace platform: ~1 %
/// measured here); only CPU beyond it counts as the sandbox being busy, so that idle gvisor
/// sandboxes cool with the default `thermal.busy_cpu_percent`.
const IDLE_ALLOWANCE: f64 = 0.05;
/// How long a restore's lohar gets before the restore is tried once more (it answers in well
/// under a second when all is well).
const RESTORE_READY: Duration = Duration::from_secs(4);
const COLD_MARKER: &str = "cold";
const STOPPED_MARKER: &str = "stopped";

/// The engine.
pub struct GvisorEngine {
    cfg: GvisorConfig,
    runsc: Runsc,
    images: ImageStore,
    cgroups: Cgroups,
    net: Network,
    own_net: bool,
    sandboxes: Mutex<HashMap<String, Arc<Sb>>>,
}

/// The netns to run runsc in, if it still exists (a half-created sandbox may have none).
fn netns_opt(p: &Path) -> Option<&Path> {
    runsc::is_mounted(p).then_some(p)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io("engine task", e))?
}

impl GvisorEngine {
    /// Checks the host (root, runsc, lohar) and starts its own network.
    pub async fn new(cfg: GvisorConfig) -> Result<GvisorEngine, EngineError> {
        Self::build(cfg, None).await
    }

    /// Like [`GvisorEngine::new`], on a network started by another engine of this daemon.
    pub async fn with_network(
        cfg: GvisorConfig,
        net: Network,
    ) -> Result<GvisorEngine, EngineError> {
        Self::build(cfg, Some(net)).await
    }

    /// The network its sandboxes are attached to.
    pub fn network(&self) -> Network {
        self.net.clone()
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    async fn build(cfg: GvisorConfig, net: Option<Network>) -> Result<GvisorEngine, EngineError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(unavailable("bhatti serve must run as root"));
        }
        let version = runsc_version(&cfg.runsc)?;
        if !cfg.lohar.is_file() {
            return Err(unavailable(format!(
                "lohar binary not found at {}",
                cfg.lohar.display()
            )));
        }
        let sandboxes = cfg.dir.join("sandboxes");
        let root = cfg.dir.join("runsc");
        for d in [&sandboxes, &root] {
            std::fs::create_dir_all(d).map_err(|e| io(format!("create {}", d.display()), e))?;
        }
        let images = ImageStore::new(&cfg.images_dir).map_err(|e| io("create images dir", e))?;
        let cgroups =
            Cgroups::detect(&cfg.cgroup_parent).map_err(|e| unavailable(e.to_string()))?;
        let own_net = net.is_none();
        let net = match net {
            Some(n) => n,
            None => Network::start(cfg.net.clone())
                .await
                .map_err(|e| unavailable(format!("networking: {e}")))?,
        };
        tracing::info!(runsc = %version, platform = %cfg.platform, "gvisor engine ready");
        Ok(GvisorEngine {
            runsc: Runsc {
                bin: cfg.runsc.clone(),
                root,
                platform: cfg.platform.clone(),
                debug_log_dir: cfg.debug_log_dir.clone(),
                debug_strace: cfg.debug_strace.clone(),
            },
            cfg,
            images,
            cgroups,
            net,
            own_net,
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.dir.join("sandboxes").join(id)
    }

    fn get(&self, id: &str) -> Option<Arc<Sb>> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn endpoint(ip: Ipv4Addr, token: &str) -> AgentEndpoint {
        AgentEndpoint::Tcp {
            control: SocketAddr::from((ip, CONTROL_PORT)),
            forward: SocketAddr::from((ip, FORWARD_PORT)),
            token: Some(token.to_string()),
        }
    }

    /// The cgroup of a sandbox (tests look at its memory).
    pub fn cgroup(&self, id: &str) -> Option<Cgroup> {
        self.cgroups.open(id)
    }

    /// Whether the sandbox's checkpoint is on disk (cold or stopped).
    pub fn is_cold(&self, id: &str) -> bool {
        self.dir(id).join(COLD_MARKER).exists()
    }

    /// The host pid of the sandbox's runsc-sandbox process (its user-space kernel).
    pub fn sandbox_pid(&self, id: &str) -> Option<i32> {
        self.runsc.pid(id, &self.dir(id).join("netns"))
    }

    fn save_state(&self, id: &str, meta: &GvisorMeta) -> std::io::Result<()> {
        crate::sandbox_dir::save_state(&self.dir(id), meta)
    }

    fn load_state(&self, id: &str) -> Option<GvisorMeta> {
        crate::sandbox_dir::load_state(&self.dir(id))
    }

    /// Attaches (or re-attaches, with the same IP) the sandbox's veth in its netns. runsc takes
    /// the address off `eth0` when it starts, so a restore needs it put back: a fresh veth.
    async fn attach(
        &self,
        id: &str,
        subnet_index: u32,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, EngineError> {
        let netns = self.dir(id).join("netns");
        if !runsc::is_mounted(&netns) {
            let p = netns.clone();
            blocking(move || runsc::create_netns(&p)).await?;
        }
        if let Some(ip) = want {
            // Same veth, same MAC (the restored netstack remembers its peers by it): only the
            // address and route runsc took off eth0 go back.
            match self.net.readdress(subnet_index, &netns, ip).await {
                Ok(()) => return Ok(ip),
                Err(e) => {
                    tracing::debug!(sandbox = %id, error = %e, "re-address failed; new veth");
                    let _ = self.net.detach(subnet_index, id).await;
                }
            }
        }
        let a = self
            .net
            .attach(AttachRequest {
                subnet_index,
                key: id,
                netns: &netns,
                ip: want,
            })
            .await
            .map_err(|e| io("attach network", e))?;
        Ok(a.ip)
    }

    /// `runsc run` (fresh boot over the kept filesystem) or `runsc restore` (from the
    /// checkpoint), then waits for lohar.
    async fn launch(
        &self,
        id: &str,
        meta: &GvisorMeta,
        token: &str,
        restore: bool,
        reattach: bool,
    ) -> Result<(), EngineError> {
        self.launch_with(id, meta, token, restore, reattach, self.cfg.ready_timeout)
            .await
    }

    /// `runsc <args>` about sandbox `id` on a blocking thread: inside its network namespace
    /// while it has one (runsc reaches a sandbox through a socket in it), output in its
    /// `runsc.log`.
    async fn runsc_in(&self, id: &str, args: &[&str]) -> Result<(), EngineError> {
        let (r, d) = (self.runsc.clone(), self.dir(id));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            r.run(&args, netns_opt(&d.join("netns")), &d.join("runsc.log"))
        })
        .await
    }

    async fn launch_with(
        &self,
        id: &str,
        meta: &GvisorMeta,
        token: &str,
        restore: bool,
        reattach: bool,
        ready: Duration,
    ) -> Result<(), EngineError> {
        let d = self.dir(id);
        // A stale container of this id (crashed, or stopped by a checkpoint) blocks the new one.
        let _ = self.runsc_in(id, &["delete", "-force", id]).await;
        if reattach {
            self.attach(id, meta.subnet_index, Some(meta.ip)).await?;
        }
        let (r, idc) = (self.runsc.clone(), id.to_string());
        let (bundle, ckpt, netns, log) = (
            d.join("bundle"),
            d.join("checkpoint"),
            d.join("netns"),
            d.join("runsc.log"),
        );
        blocking(move || {
            let bundle = bundle.to_string_lossy().into_owned();
            if restore {
                let ckpt = ckpt.to_string_lossy().into_owned();
                r.run(
                    &[
                        "restore",
                        "-bundle",
                        &bundle,
                        "-image-path",
                        &ckpt,
                        "-detach",
                        &idc,
                    ],
                    Some(&netns),
                    &log,
                )
            } else {
                r.run(
                    &["run", "-bundle", &bundle, "-detach", &idc],
                    Some(&netns),
                    &log,
                )
            }
        })
        .await?;
        if restore {
            // While the sandbox was down the host's neighbour entry for its address went
            // FAILED (nothing answered ARP); connects then fail with EHOSTUNREACH until the
            // entry ages out. Forget it so the first connect resolves the restored netstack.
            let ip = meta.ip.to_string();
            let _ = blocking(move || {
                let _ = std::process::Command::new("ip")
                    .args(["-4", "neigh", "flush", "to", &ip])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                Ok(())
            })
            .await;
        }
        let client = AgentClient::new(Self::endpoint(meta.ip, token));
        client
            .wait_ready(ready)
            .await
            .map_err(|e| io("wait for lohar", e))
    }

    /// Boots a sandbox over its (existing or new) directory; registers it.
    async fn boot(
        &self,
        spec: &SandboxSpec,
        want_ip: Option<Ipv4Addr>,
    ) -> Result<Created, EngineError> {
        let image_rootfs = self.images.rootfs(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(n) => EngineError::ImageNotFound(n),
            other => io("resolve image", other),
        })?;
        let limits = Limits {
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            pids_max: self.cfg.pids_max,
        };
        if self.cgroups.open(&spec.id).is_none() {
            self.cgroups
                .create(&spec.id, &limits)
                .map_err(|e| io("create cgroup", e))?;
        }
        let (cfg, s, img) = (self.cfg.clone(), spec.clone(), image_rootfs);
        blocking(move || prepare_fs(&cfg, &s, &img)).await?;
        let netns = self.dir(&spec.id).join("netns");
        if !runsc::is_mounted(&netns) {
            let p = netns.clone();
            blocking(move || runsc::create_netns(&p)).await?;
        }
        let a = self
            .net
            .attach(AttachRequest {
                subnet_index: spec.subnet_index,
                key: &spec.id,
                netns: &netns,
                ip: want_ip,
            })
            .await
            .map_err(|e| io("attach network", e))?;
        let meta = GvisorMeta {
            subnet_index: spec.subnet_index,
            ip: a.ip,
            image: spec.image.clone(),
            platform: self.cfg.platform.clone(),
        };
        let _ = std::fs::remove_dir_all(self.dir(&spec.id).join("checkpoint"));
        let _ = std::fs::remove_file(self.dir(&spec.id).join(COLD_MARKER));
        self.launch(&spec.id, &meta, &spec.agent_token, false, false)
            .await?;
        self.save_state(&spec.id, &meta)
            .map_err(|e| io("save sandbox state", e))?;
        self.register(spec, meta.clone(), Phase::Running);
        Ok(Created {
            engine_id: spec.id.clone(),
            ip: Some(meta.ip),
            meta: serde_json::to_value(&meta).unwrap_or_default(),
        })
    }

    fn register(&self, spec: &SandboxSpec, meta: GvisorMeta, phase: Phase) -> Arc<Sb> {
        let mut spec = spec.clone();
        // A later boot over the kept filesystem must not write the create-time files again.
        spec.files.clear();
        let sb = Arc::new(Sb {
            meta,
            token: spec.agent_token.clone(),
            phase: Mutex::new(phase),
            gate: tokio::sync::Mutex::new(()),
            spec,
            meter: Mutex::new(None),
        });
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sb.spec.id.clone(), sb.clone());
        sb
    }

    /// Removes everything of a sandbox; each step runs even if an earlier one failed.
    async fn teardown(&self, id: &str, subnet_index: Option<u32>) -> Result<(), EngineError> {
        let d = self.dir(id);
        // runsc's log goes there: without the directory runsc would not even be started.
        let _ = std::fs::create_dir_all(&d);
        let _ = self.runsc_in(id, &["delete", "-force", id]).await;
        let mut first_err = None;
        if let Some(cg) = self.cgroups.open(id) {
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cg.destroy()).await {
                first_err.get_or_insert(io("destroy cgroup", e));
            }
        }
        let (parent, idc) = (self.cfg.cgroup_parent.clone(), id.to_string());
        let _ = tokio::task::spawn_blocking(move || remove_runsc_cgroups(&parent, &idc)).await;
        let subnet = subnet_index.or_else(|| self.load_state(id).map(|m| m.subnet_index));
        if let Some(s) = subnet {
            if let Err(e) = self.net.detach(s, id).await {
                first_err.get_or_insert(io("detach network", e));
            }
        }
        let dd = d.clone();
        let r = tokio::task::spawn_blocking(move || {
            runsc::unmount(&dd.join("rootfs"));
            runsc::unmount(&dd.join("netns"));
            if runsc::is_mounted(&dd.join("rootfs")) {
                // Never delete through a live overlay: that would write whiteouts, or worse.
                return Err(std::io::Error::other("rootfs still mounted"));
            }
            match std::fs::remove_dir_all(&dd) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        })
        .await;
        if let Ok(Err(e)) = r {
            first_err.get_or_insert(io("remove sandbox directory", e));
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Checkpoints a sandbox to disk; its processes end. On failure runsc has already taken
    /// the sandbox down.
    async fn checkpoint(&self, id: &str) -> Result<(), EngineError> {
        let d = self.dir(id);
        let ckpt = d.join("checkpoint");
        let dir = ckpt.clone();
        blocking(move || {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| io("create checkpoint dir", e))
        })
        .await?;
        let c = ckpt.to_string_lossy().into_owned();
        self.runsc_in(id, &["checkpoint", "-image-path", &c, id])
            .await?;
        // The container is stopped now; its id must be free for the restore.
        let _ = self.runsc_in(id, &["delete", "-force", id]).await;
        std::fs::write(d.join(COLD_MARKER), b"").map_err(|e| io("mark cold", e))
    }

    /// After a failed checkpoint (sandbox down): boots it again over its filesystem so it is
    /// usable, and returns the error that explains what was lost.
    async fn recover_failed_snapshot(&self, sb: &Sb, err: EngineError) -> EngineError {
        tracing::warn!(sandbox = %sb.spec.id, error = %err, "memory snapshot failed; booting the sandbox again");
        let _ = std::fs::remove_dir_all(self.dir(&sb.spec.id).join("checkpoint"));
        let _ = std::fs::remove_file(self.dir(&sb.spec.id).join(COLD_MARKER));
        match self
            .launch(&sb.spec.id, &sb.meta, &sb.token, false, true)
            .await
        {
            Ok(()) => {
                sb.set(Phase::Running);
                io(
                    "memory snapshot",
                    format!("{err}; the sandbox was booted again over its files (its processes were lost)"),
                )
            }
            Err(e2) => io(
                "memory snapshot",
                format!("{err}; booting it again also failed: {e2}"),
            ),
        }
    }

    /// Cold → hot: restore from the checkpoint.
    async fn wake_cold(&self, sb: &Sb) -> Result<(), EngineError> {
        let id = &sb.spec.id;
        if !self
            .dir(id)
            .join("checkpoint")
            .join("checkpoint.img")
            .is_file()
        {
            return Err(io(
                "restore",
                "the checkpoint is missing (bhatti stop/start boots it again)",
            ));
        }
        // If lohar does not answer soon, restore once more from the image still on disk. (The
        // known cause of dead restores, lohar crashing on a stale epoll event, is avoided in
        // lohar itself and made every restore of that image fail the same way; this retry only
        // covers a restore that fails for a passing reason.)
        let first = self
            .launch_with(id, &sb.meta, &sb.token, true, true, RESTORE_READY)
            .await;
        if let Err(e) = first {
            tracing::warn!(sandbox = %id, error = %e, "restore did not come up; restoring again");
            self.launch(id, &sb.meta, &sb.token, true, true)
                .await
                .map_err(|e| io("restore from checkpoint", e))?;
        }
        let _ = std::fs::remove_file(self.dir(id).join(COLD_MARKER));
        let ckpt = self.dir(id).join("checkpoint");
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(ckpt)).await;
        sb.set(Phase::Running);
        Ok(())
    }
}

#[async_trait]
impl Engine for GvisorEngine {
    fn name(&self) -> &'static str {
        "gvisor"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            snapshot_memory: true,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        if !valid_key(&spec.id) {
            return Err(io("create", format!("invalid sandbox id {:?}", spec.id)));
        }
        // Resolve the image first: an unknown image must leave nothing behind.
        self.images.rootfs(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(n) => EngineError::ImageNotFound(n),
            other => io("resolve image", other),
        })?;
        if self.dir(&spec.id).exists() {
            return Err(io("create", format!("sandbox {} already exists", spec.id)));
        }
        match self.boot(spec, None).await {
            Ok(c) => Ok(c),
            Err(e) => {
                self.sandboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&spec.id);
                let _ = self.teardown(&spec.id, Some(spec.subnet_index)).await;
                Err(e)
            }
        }
    }

    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
        if !valid_key(engine_id) {
            return Ok(());
        }
        let sb = self.get(engine_id);
        let _g = match &sb {
            Some(sb) => Some(sb.gate.lock().await),
            None => None,
        };
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        self.teardown(engine_id, sb.as_ref().map(|s| s.meta.subnet_index))
            .await
    }

    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
        let Some(sb) = self.get(engine_id) else {
            return Ok(if valid_key(engine_id) && self.dir(engine_id).is_dir() {
                RunState::Stopped
            } else {
                RunState::Missing
            });
        };
        Ok(match sb.phase() {
            // Cold is a deeper warm: the sandbox is there and an operation wakes it.
            Phase::Paused | Phase::Cold => RunState::Paused,
            Phase::Stopped => RunState::Stopped,
            Phase::Running => {
                let (r, id, ns) = (
                    self.runsc.clone(),
                    engine_id.to_string(),
                    self.dir(engine_id).join("netns"),
                );
                match blocking(move || Ok(r.status(&id, &ns))).await?.as_deref() {
                    Some("running") => RunState::Running,
                    Some("paused") => RunState::Paused,
                    _ => RunState::Stopped,
                }
            }
        })
    }

    async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
        let sb = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        let _g = sb.gate.lock().await;
        match sb.phase() {
            Phase::Paused | Phase::Cold => return Ok(()),
            Phase::Stopped => return Err(io("pause", "sandbox is stopped")),
            Phase::Running => {}
        }
        self.runsc_in(engine_id, &["pause", engine_id]).await?;
        sb.set(Phase::Paused);
        Ok(())
    }

    async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
        let sb = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        let _g = sb.gate.lock().await;
        match sb.phase() {
            Phase::Running => Ok(()),
            Phase::Stopped => Err(io("resume", "sandbox is stopped")),
            Phase::Cold => self.wake_cold(&sb).await,
            Phase::Paused => {
                self.runsc_in(engine_id, &["resume", engine_id]).await?;
                sb.set(Phase::Running);
                Ok(())
            }
        }
    }

    async fn snapshot(&self, engine_id: &str) -> Result<(), EngineError> {
        let sb = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        let _g = sb.gate.lock().await;
        match sb.phase() {
            Phase::Cold => return Ok(()),
            Phase::Stopped => return Err(io("snapshot", "sandbox is stopped")),
            // Cold is reached from warm only (e.g. not again right after a failed snapshot
            // booted the sandbox afresh, before it has been idle again).
            Phase::Running => return Err(io("snapshot", "sandbox is not paused")),
            Phase::Paused => {}
        }
        match self.checkpoint(engine_id).await {
            Ok(()) => {
                sb.set(Phase::Cold);
                Ok(())
            }
            Err(e) => Err(self.recover_failed_snapshot(&sb, e).await),
        }
    }

    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        let sb = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        Ok(Self::endpoint(sb.meta.ip, &sb.token))
    }

    async fn stop(&self, engine_id: &str) -> Result<(), EngineError> {
        let Some(sb) = self.get(engine_id) else {
            return if valid_key(engine_id) && self.dir(engine_id).is_dir() {
                Ok(())
            } else {
                Err(EngineError::NotFound(engine_id.into()))
            };
        };
        let _g = sb.gate.lock().await;
        if sb.phase() == Phase::Running {
            // Checkpoint from paused, as the thermal path does: nothing runs while it saves.
            if self
                .runsc_in(engine_id, &["pause", engine_id])
                .await
                .is_ok()
            {
                sb.set(Phase::Paused);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if matches!(sb.phase(), Phase::Running | Phase::Paused) {
            if let Err(e) = self.checkpoint(engine_id).await {
                // Stop must stop: without a checkpoint the next start boots afresh.
                tracing::warn!(sandbox = %engine_id, error = %e, "stop: checkpoint failed; processes not kept");
                let d = self.dir(engine_id);
                let _ = std::fs::remove_dir_all(d.join("checkpoint"));
                let _ = std::fs::remove_file(d.join(COLD_MARKER));
                let _ = self
                    .runsc_in(engine_id, &["delete", "-force", engine_id])
                    .await;
            }
        }
        let _ = std::fs::write(self.dir(engine_id).join(STOPPED_MARKER), b"");
        sb.set(Phase::Stopped);
        Ok(())
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let id = &spec.id;
        let meta = self
            .load_state(id)
            .ok_or_else(|| io("start", "no saved state (sandbox directory missing)"))?;
        let sb = match self.get(id) {
            Some(sb) => sb,
            None => self.register(spec, meta.clone(), Phase::Stopped),
        };
        let _g = sb.gate.lock().await;
        if matches!(sb.phase(), Phase::Running | Phase::Paused) {
            return Err(io("start", "sandbox is running"));
        }
        let restored = if self.is_cold(id) {
            match self.wake_cold(&sb).await {
                Ok(()) => true,
                Err(e) => {
                    // Start must start: without the processes, over the kept files.
                    tracing::warn!(sandbox = %id, error = %e, "start: restore failed; booting afresh (processes not kept)");
                    let d = self.dir(id);
                    let _ = std::fs::remove_dir_all(d.join("checkpoint"));
                    let _ = std::fs::remove_file(d.join(COLD_MARKER));
                    false
                }
            }
        } else {
            false
        };
        let r = if restored {
            Ok(())
        } else {
            // Never checkpointed (or the checkpoint failed): a fresh boot over its files.
            let image = self
                .images
                .rootfs(&spec.image)
                .map_err(|e| io("resolve image", e))?;
            let (cfg, s) = (self.cfg.clone(), sb.spec.clone());
            blocking(move || prepare_fs(&cfg, &s, &image)).await?;
            let r = self.launch(id, &meta, &sb.token, false, true).await;
            if r.is_ok() {
                sb.set(Phase::Running);
            }
            r
        };
        r?;
        let _ = std::fs::remove_file(self.dir(id).join(STOPPED_MARKER));
        Ok(Created {
            engine_id: id.clone(),
            ip: Some(meta.ip),
            meta: serde_json::to_value(&meta).unwrap_or_default(),
        })
    }

    async fn usage(&self, engine_id: &str) -> Option<u64> {
        let raw = self.cgroups.open(engine_id)?.cpu_usage_usec().ok()?;
        let sb = self.get(engine_id)?;
        let mut m = sb.meter.lock().unwrap_or_else(|e| e.into_inner());
        let meter = m.get_or_insert_with(|| IdleMeter::new(raw));
        Some(meter.observe(raw, std::time::Instant::now(), IDLE_ALLOWANCE))
    }

    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        self.recover_all(sandboxes).await
    }
}
