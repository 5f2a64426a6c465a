//! The `vm` engine itself: create, destroy, warm (vCPUs stopped) and cold (memory on disk,
//! no VMM process) states, stop/start. Recovery after a daemon restart is in `recover.rs`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::cache::{remove_unused_bases, remove_unused_initramfs};
use super::config::{check_host, modules_dir_for, VmConfig};
use super::vmm::{probe_kvm, Accel, Qemu, VmLaunch, Vmm};
use super::{disk, initramfs};
#[path = "recover.rs"]
mod recover;
use crate::agent::AgentClient;
use crate::cgroups::{Cgroup, Cgroups, Limits};
use crate::error::io;
use crate::idle_meter::IdleMeter;
use crate::image::ImageStore;
use crate::namespace::{CONTROL_PORT, FORWARD_PORT};
use crate::net::Network;
use crate::sandbox_dir::valid_key;
use crate::spec::{AgentEndpoint, Capabilities, Created, RunState, SandboxSpec};
use crate::{Engine, EngineError};

/// The engine's record of one VM (`vm.json` in its directory; also `Created::meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmMeta {
    /// Owner's subnet index.
    pub subnet_index: u32,
    /// The guest's IP.
    pub ip: Ipv4Addr,
    /// Guest MAC.
    pub mac: String,
    /// The image it was created from.
    pub image: String,
    /// The base disk its overlay sits on.
    pub base: PathBuf,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mb: u64,
    /// CPU limit (fractions allowed) of QEMU's cgroup.
    pub cpus: f64,
    /// Accelerator it runs with.
    pub accel: Accel,
    /// Kernel it booted (a cold wake must use the same).
    pub kernel: PathBuf,
    /// Initramfs it booted.
    pub initrd: PathBuf,
    /// The uid (and gid) its QEMU runs as, when the engine gives each VM its own.
    #[serde(default)]
    pub uid: Option<u32>,
}

struct Running {
    meta: VmMeta,
    token: String,
    cgroup: Cgroup,
}

/// The engine.
pub struct VmEngine {
    cfg: VmConfig,
    accel: Accel,
    initrd: PathBuf,
    vmm: Arc<dyn Vmm>,
    images: ImageStore,
    cgroups: Cgroups,
    net: Network,
    own_net: bool,
    sandboxes: Mutex<HashMap<String, Arc<Running>>>,
    /// Serialises base-disk builds (two creates of a new image build it once).
    base_lock: tokio::sync::Mutex<()>,
    /// Per-sandbox lock: a wake, a cold snapshot and a destroy never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per-VM CPU accounting net of an idle guest's own cost (see [`IdleMeter`]).
    usage: Mutex<HashMap<String, IdleMeter>>,
    /// QEMU uids in use (with `uid_base`).
    uids: Mutex<HashSet<u32>>,
}

/// Share of one CPU an idle guest's QEMU uses anyway (timer interrupts, device polling):
/// measured ~2 % under TCG here, far less under KVM.
const IDLE_ALLOWANCE_TCG: f64 = 0.05;
const IDLE_ALLOWANCE_KVM: f64 = 0.01;

pub(super) fn unavailable(reason: impl Into<String>) -> EngineError {
    EngineError::Unavailable {
        engine: "vm".into(),
        reason: reason.into(),
    }
}

pub(super) const META_FILE: &str = "vm.json";
const OVERLAY: &str = "root.qcow2";
const CONFIG_DISK: &str = "config.img";
const SNAPSHOT: &str = "memory.snap";
/// Present while the VM is cold (memory in [`SNAPSHOT`], no QEMU).
const COLD_MARKER: &str = "cold";
/// Present while the VM is stopped (no QEMU, filesystem kept).
const STOPPED_MARKER: &str = "stopped";

/// A locally administered MAC derived from the engine id (stable across wakes).
pub fn mac_for(id: &str) -> String {
    let b = id.as_bytes();
    let hx = |i: usize| std::str::from_utf8(&b[i..i + 2]).unwrap_or("00");
    format!("52:54:00:{}:{}:{}", hx(0), hx(2), hx(4))
}

impl VmEngine {
    /// Checks the host, builds (or reuses) the initramfs, sets up cgroups and its own
    /// networking.
    pub async fn new(cfg: VmConfig) -> Result<VmEngine, EngineError> {
        check_host(&cfg)?;
        let net = Network::start(cfg.net.clone())
            .await
            .map_err(|e| unavailable(format!("networking: {e}")))?;
        Self::build(cfg, net, true).await
    }

    /// Like [`VmEngine::new`] but sharing a [`Network`] with other engines (one address pool
    /// per bridge); the owner of the network reconciles it.
    pub async fn with_network(cfg: VmConfig, net: Network) -> Result<VmEngine, EngineError> {
        check_host(&cfg)?;
        Self::build(cfg, net, false).await
    }

    async fn build(cfg: VmConfig, net: Network, own_net: bool) -> Result<VmEngine, EngineError> {
        let accel = match cfg.accel {
            Some(a) => a,
            None if probe_kvm() => Accel::Kvm,
            None => {
                tracing::warn!(
                    "vm engine: no usable KVM on this host; guests run under TCG software \
                     emulation (slow: for testing, not production)"
                );
                Accel::Tcg
            }
        };
        for d in [&cfg.sandboxes_dir, &cfg.cache_dir] {
            std::fs::create_dir_all(d).map_err(|e| io(format!("create {}", d.display()), e))?;
        }
        let modules_dir = cfg
            .modules_dir
            .clone()
            .or_else(|| modules_dir_for(&cfg.kernel))
            .ok_or_else(|| {
                unavailable("cannot tell the kernel's modules dir; set vm.modules_dir")
            })?;
        let (c, l, k, m) = (
            cfg.cache_dir.clone(),
            cfg.lohar.clone(),
            cfg.kernel.clone(),
            cfg.modules.clone(),
        );
        let initrd =
            tokio::task::spawn_blocking(move || initramfs::ensure(&c, &l, &k, &modules_dir, &m))
                .await
                .map_err(|e| io("build initramfs", e))?
                .map_err(|e| unavailable(format!("initramfs: {e}")))?;
        remove_unused_initramfs(&cfg.cache_dir, &initrd, &cfg.sandboxes_dir);
        let images = ImageStore::new(&cfg.images_dir).map_err(|e| io("create images dir", e))?;
        remove_unused_bases(&cfg, &images);
        // uids of existing VMs (running, cold or stopped) stay theirs.
        let uids: HashSet<u32> = std::fs::read_dir(&cfg.sandboxes_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join(META_FILE)).ok())
            .filter_map(|b| serde_json::from_slice::<VmMeta>(&b).ok()?.uid)
            .collect();
        let cgroups =
            Cgroups::detect(&cfg.cgroup_parent).map_err(|e| unavailable(e.to_string()))?;
        tracing::info!(accel = accel.as_str(), initrd = %initrd.display(), "vm engine ready");
        Ok(VmEngine {
            vmm: Arc::new(Qemu {
                binary: cfg.qemu.clone(),
            }),
            cfg,
            accel,
            initrd,
            images,
            cgroups,
            net,
            own_net,
            sandboxes: Mutex::new(HashMap::new()),
            base_lock: tokio::sync::Mutex::new(()),
            locks: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            uids: Mutex::new(uids),
        })
    }

    /// The accelerator guests run with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// The engine's record of a running VM.
    pub fn meta(&self, engine_id: &str) -> Option<VmMeta> {
        self.get(engine_id).map(|r| r.meta.clone())
    }

    /// QEMU's pid for a VM, if it runs.
    pub fn qemu_pid(&self, engine_id: &str) -> Option<i32> {
        self.vmm.pid(&self.dir(engine_id))
    }

    /// The cgroup QEMU runs in.
    pub fn cgroup(&self, engine_id: &str) -> Option<Cgroup> {
        self.get(engine_id).map(|r| r.cgroup.clone())
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The network it attaches VMs to (to share with engines started after it).
    pub fn network(&self) -> Network {
        self.net.clone()
    }

    /// The gateway address of a user's subnet.
    pub fn gateway(&self, subnet_index: u32) -> Ipv4Addr {
        self.net.gateway(subnet_index)
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

    fn lock_for(&self, engine_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(engine_id.to_string())
            .or_default()
            .clone()
    }

    fn endpoint(ip: Ipv4Addr, token: &str) -> AgentEndpoint {
        AgentEndpoint::Tcp {
            control: SocketAddr::from((ip, CONTROL_PORT)),
            forward: SocketAddr::from((ip, FORWARD_PORT)),
            token: Some(token.to_string()),
        }
    }

    fn lohar_config(&self, spec: &SandboxSpec, ip: Ipv4Addr, gateway: Ipv4Addr) -> Vec<u8> {
        let mut c = spec.lohar_config(&self.cfg.dns);
        c["network"] = serde_json::json!({
            "address": format!("{ip}/{}", crate::net::ipam::USER_PREFIX_LEN),
            "gateway": gateway.to_string(),
        });
        c.to_string().into_bytes()
    }

    fn cmdline(&self) -> String {
        // No secrets here: the guest's /proc/cmdline is world-readable. `panic=-1` with
        // `-no-reboot` turns a guest panic (lohar exiting) into QEMU exiting.
        let mut c = String::from("panic=-1 quiet loglevel=1 i8042.noaux i8042.nokbd");
        if self.cfg.console_log {
            c.push_str(" console=ttyS0");
        }
        c
    }

    fn limits(&self, meta: &VmMeta) -> Limits {
        let tb = if meta.accel == Accel::Tcg {
            self.cfg.tcg_tb_mb
        } else {
            0
        };
        Limits {
            cpus: meta.cpus,
            memory_mb: meta.memory_mb + self.cfg.memory_overhead_mb + tb,
            pids_max: 256,
        }
    }

    fn launch_spec(&self, engine_id: &str, meta: &VmMeta, incoming: Option<PathBuf>) -> VmLaunch {
        let dir = self.dir(engine_id);
        VmLaunch {
            accel: meta.accel,
            vcpus: meta.vcpus,
            memory_mb: meta.memory_mb,
            kernel: meta.kernel.clone(),
            initrd: meta.initrd.clone(),
            cmdline: self.cmdline(),
            root_disk: dir.join(OVERLAY),
            config_disk: dir.join(CONFIG_DISK),
            tap: crate::net::host_iface_name(&self.cfg.net.veth_prefix, engine_id),
            mac: meta.mac.clone(),
            console_log: self.cfg.console_log,
            incoming,
            runas: match meta.uid {
                Some(u) => Some(format!("{u}:{u}")),
                None => self.cfg.runas.clone(),
            },
            tcg_tb_mb: self.cfg.tcg_tb_mb,
            dir,
        }
    }

    /// The lowest free per-VM uid (none without `uid_base`).
    fn take_uid(&self) -> Result<Option<u32>, EngineError> {
        let Some(base) = self.cfg.uid_base else {
            return Ok(None);
        };
        let mut used = self.uids.lock().unwrap_or_else(|e| e.into_inner());
        let uid = (0..65_536u32)
            .map(|n| base.saturating_add(n))
            .find(|u| !used.contains(u))
            .ok_or_else(|| io("allocate a QEMU uid", "all 65536 uids in use"))?;
        used.insert(uid);
        Ok(Some(uid))
    }

    fn release_uid(&self, uid: Option<u32>) {
        if let Some(u) = uid {
            self.uids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&u);
        }
    }

    fn save_meta(&self, engine_id: &str, meta: &VmMeta) -> std::io::Result<()> {
        let dir = self.dir(engine_id);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.join(META_FILE))
    }

    fn load_meta(&self, engine_id: &str) -> Option<VmMeta> {
        serde_json::from_slice(&std::fs::read(self.dir(engine_id).join(META_FILE)).ok()?).ok()
    }

    fn is_cold(&self, engine_id: &str) -> bool {
        self.dir(engine_id).join(COLD_MARKER).exists()
    }

    async fn blocking<T: Send + 'static>(
        step: &str,
        f: impl FnOnce() -> Result<T, super::vmm::VmmError> + Send + 'static,
    ) -> Result<T, EngineError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| io(step, e))?
            .map_err(|e| io(step, e))
    }

    /// Boots a VM over its overlay: cgroup, TAP, config disk, QEMU, lohar. On error the caller
    /// tears down.
    async fn boot(
        &self,
        spec: &SandboxSpec,
        mut meta: VmMeta,
        want_ip: Option<Ipv4Addr>,
    ) -> Result<Created, EngineError> {
        let id = spec.id.clone();
        let dir = self.dir(&id);
        // A fresh boot takes this daemon's kernel and initramfs (a start after an upgrade gets
        // the new lohar).
        meta.kernel = self.cfg.kernel.clone();
        meta.initrd = self.initrd.clone();
        let cgroup = self
            .cgroups
            .create(&id, &self.limits(&meta))
            .map_err(|e| io("create cgroup", e))?;
        let att = self
            .net
            .attach_tap(spec.subnet_index, &id, want_ip)
            .await
            .map_err(|e| io("attach network", e))?;
        meta.ip = att.ip;
        disk::write_config_disk(
            &dir.join(CONFIG_DISK),
            &self.lohar_config(spec, att.ip, att.gateway),
        )
        .map_err(|e| io("write config disk", e))?;
        let vm = self.launch_spec(&id, &meta, None);
        let vmm = self.vmm.clone();
        let pid = Self::blocking("start qemu", move || vmm.launch(&vm)).await?;
        cgroup
            .add_pid(pid)
            .map_err(|e| io("move qemu into its cgroup", e))?;
        let (vmm, d) = (self.vmm.clone(), dir.clone());
        Self::blocking("start vcpus", move || vmm.resume(&d)).await?;
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                Arc::new(Running {
                    meta: meta.clone(),
                    token: spec.agent_token.clone(),
                    cgroup,
                }),
            );
        let client = AgentClient::new(Self::endpoint(att.ip, &spec.agent_token));
        if let Err(e) = client.wait_ready(self.cfg.ready_timeout).await {
            self.sandboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(io("wait for lohar", e));
        }
        // lohar has read its config: the token and secrets need not stay on the host's disk.
        if let Err(e) = disk::scrub_config_disk(&dir.join(CONFIG_DISK)) {
            tracing::warn!(sandbox = %id, error = %e, "could not scrub the config disk");
        }
        if let Err(e) = self.save_meta(&id, &meta) {
            tracing::warn!(sandbox = %id, error = %e, "could not persist VM state");
        }
        Ok(Created {
            engine_id: id,
            ip: Some(att.ip),
            meta: serde_json::to_value(&meta).unwrap_or_default(),
        })
    }

    /// Removes everything a VM holds; each step runs even if an earlier one failed.
    async fn teardown(&self, engine_id: &str, subnet_index: Option<u32>, remove_dir: bool) {
        let dir = self.dir(engine_id);
        let (vmm, d) = (self.vmm.clone(), dir.clone());
        let _ = tokio::task::spawn_blocking(move || vmm.kill(&d)).await;
        if let Some(cg) = self.cgroups.open(engine_id) {
            let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
        }
        if let Some(s) = subnet_index {
            if let Err(e) = self.net.detach(s, engine_id).await {
                tracing::warn!(sandbox = %engine_id, error = %e, "detach network failed");
            }
        }
        if remove_dir {
            let _ = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await;
        }
    }

    /// Cold: the VM's memory and device state go to `memory.snap` in its directory (verified),
    /// then QEMU exits and its memory is freed. [`Engine::resume`] restores it.
    pub async fn hibernate(&self, engine_id: &str) -> Result<(), EngineError> {
        let lock = self.lock_for(engine_id);
        let _g = lock.lock().await;
        self.hibernate_locked(engine_id).await
    }

    /// [`VmEngine::hibernate`] with the sandbox's lock held.
    async fn hibernate_locked(&self, engine_id: &str) -> Result<(), EngineError> {
        if self.get(engine_id).is_none() {
            return Err(EngineError::NotFound(engine_id.into()));
        }
        if self.is_cold(engine_id) {
            return Ok(());
        }
        let dir = self.dir(engine_id);
        let (vmm, d) = (self.vmm.clone(), dir.clone());
        Self::blocking("snapshot memory", move || {
            vmm.snapshot(&d, &d.join(SNAPSHOT))?;
            // The marker is written before QEMU goes: a crash in between leaves a cold VM
            // whose snapshot is complete (verified above).
            std::fs::write(d.join(COLD_MARKER), b"")?;
            vmm.kill(&d);
            Ok(())
        })
        .await
    }

    async fn wake_cold(&self, engine_id: &str, r: &Running) -> Result<(), EngineError> {
        let dir = self.dir(engine_id);
        let vm = self.launch_spec(engine_id, &r.meta, Some(dir.join(SNAPSHOT)));
        let vmm = self.vmm.clone();
        let pid = Self::blocking("restore memory", move || vmm.launch(&vm)).await?;
        r.cgroup
            .add_pid(pid)
            .map_err(|e| io("move qemu into its cgroup", e))?;
        let (vmm, d) = (self.vmm.clone(), dir.clone());
        Self::blocking("resume vcpus", move || vmm.resume(&d)).await?;
        let _ = std::fs::remove_file(dir.join(COLD_MARKER));
        let _ = std::fs::remove_file(dir.join(SNAPSHOT));
        Ok(())
    }

    /// Start of a stopped VM whose memory is on disk: its address and TAP (the restored guest
    /// has them configured; remade after a daemon restart), a cgroup, the restore, lohar.
    async fn restore_stopped(
        &self,
        spec: &SandboxSpec,
        meta: &VmMeta,
    ) -> Result<Created, EngineError> {
        let id = &spec.id;
        let cgroup = match self.cgroups.open(id) {
            Some(c) => c,
            None => self
                .cgroups
                .create(id, &self.limits(meta))
                .map_err(|e| io("create cgroup", e))?,
        };
        let att = self
            .net
            .attach_tap(meta.subnet_index, id, Some(meta.ip))
            .await
            .map_err(|e| io("attach network", e))?;
        let r = Arc::new(Running {
            meta: meta.clone(),
            token: spec.agent_token.clone(),
            cgroup,
        });
        self.wake_cold(id, &r).await?;
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), r);
        let client = AgentClient::new(Self::endpoint(att.ip, &spec.agent_token));
        if let Err(e) = client.wait_ready(self.cfg.ready_timeout).await {
            self.sandboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            return Err(io("wait for lohar", e));
        }
        Ok(Created {
            engine_id: id.clone(),
            ip: Some(att.ip),
            meta: serde_json::to_value(meta).unwrap_or_default(),
        })
    }
}

#[async_trait]
impl Engine for VmEngine {
    fn name(&self) -> &'static str {
        "vm"
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
        let rootfs = self.images.rootfs(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(n) => EngineError::ImageNotFound(n),
            other => io("resolve image", other),
        })?;
        let dir = self.dir(&spec.id);
        if dir.exists() {
            return Err(io("create", format!("sandbox {} already exists", spec.id)));
        }
        let image_json = std::fs::read(self.images.root().join(&spec.image).join("image.json"))
            .unwrap_or_default();
        let base = {
            let _g = self.base_lock.lock().await;
            let (cache, image, size) = (
                self.cfg.cache_dir.join("images"),
                spec.image.clone(),
                self.cfg.disk_size_mb,
            );
            tokio::task::spawn_blocking(move || {
                disk::ensure_base(&cache, &image, &image_json, &rootfs, size)
            })
            .await
            .map_err(|e| io("build base disk", e))?
            .map_err(|e| io("build base disk", e))?
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("create sandbox dir", e))?;
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let meta = VmMeta {
            subnet_index: spec.subnet_index,
            ip: Ipv4Addr::UNSPECIFIED,
            mac: mac_for(&spec.id),
            image: spec.image.clone(),
            base: base.clone(),
            vcpus: spec.cpus.ceil().max(1.0) as u32,
            memory_mb: spec.memory_mb,
            cpus: spec.cpus,
            accel: self.accel,
            kernel: self.cfg.kernel.clone(),
            initrd: self.initrd.clone(),
            uid: self.take_uid()?,
        };
        let meta_uid = meta.uid;
        let lock = self.lock_for(&spec.id);
        let _g = lock.lock().await;
        let r = async {
            let overlay = dir.join(OVERLAY);
            tokio::task::spawn_blocking(move || disk::create_overlay(&base, &overlay))
                .await
                .map_err(|e| io("create overlay", e))?
                .map_err(|e| io("create overlay", e))?;
            self.boot(spec, meta, None).await
        }
        .await;
        if r.is_err() {
            self.teardown(&spec.id, Some(spec.subnet_index), true).await;
            self.release_uid(meta_uid);
        }
        r
    }

    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError> {
        let lock = self.lock_for(engine_id);
        let _g = lock.lock().await;
        let running = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        let meta = running
            .as_ref()
            .map(|r| r.meta.clone())
            .or_else(|| self.load_meta(engine_id));
        self.teardown(engine_id, meta.as_ref().map(|m| m.subnet_index), true)
            .await;
        self.release_uid(meta.and_then(|m| m.uid));
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        Ok(())
    }

    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError> {
        if self.dir(engine_id).join(STOPPED_MARKER).exists() {
            return Ok(RunState::Stopped);
        }
        if self.get(engine_id).is_none() {
            return Ok(if self.dir(engine_id).is_dir() {
                RunState::Stopped
            } else {
                RunState::Missing
            });
        }
        if self.is_cold(engine_id) {
            return Ok(RunState::Paused);
        }
        let (vmm, d) = (self.vmm.clone(), self.dir(engine_id));
        let paused = tokio::task::spawn_blocking(move || vmm.paused(&d))
            .await
            .ok()
            .flatten();
        Ok(match paused {
            None => RunState::Stopped,
            Some(true) => RunState::Paused,
            Some(false) => RunState::Running,
        })
    }

    async fn pause(&self, engine_id: &str) -> Result<(), EngineError> {
        let lock = self.lock_for(engine_id);
        let _g = lock.lock().await;
        if self.get(engine_id).is_none() {
            return Err(EngineError::NotFound(engine_id.into()));
        }
        if self.is_cold(engine_id) {
            return Ok(());
        }
        let (vmm, d) = (self.vmm.clone(), self.dir(engine_id));
        Self::blocking("pause", move || vmm.pause(&d)).await
    }

    async fn resume(&self, engine_id: &str) -> Result<(), EngineError> {
        let lock = self.lock_for(engine_id);
        let _g = lock.lock().await;
        let r = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        if self.is_cold(engine_id) {
            return self.wake_cold(engine_id, &r).await;
        }
        let (vmm, d) = (self.vmm.clone(), self.dir(engine_id));
        Self::blocking("resume", move || vmm.resume(&d)).await
    }

    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        let r = self
            .get(engine_id)
            .ok_or_else(|| EngineError::NotFound(engine_id.into()))?;
        Ok(Self::endpoint(r.meta.ip, &r.token))
    }

    async fn snapshot(&self, engine_id: &str) -> Result<(), EngineError> {
        self.hibernate(engine_id).await
    }

    async fn stop(&self, engine_id: &str) -> Result<(), EngineError> {
        let lock = self.lock_for(engine_id);
        let _g = lock.lock().await;
        let dir = self.dir(engine_id);
        let running = self.get(engine_id);
        if running.is_none() && !dir.is_dir() {
            return Err(EngineError::NotFound(engine_id.into()));
        }
        // As in the original: the memory goes to disk as for cold, so `start` brings back the
        // processes and sessions. Should the snapshot fail, the VM is simply ended (its files
        // stay and `start` boots it afresh).
        let snapped = if self.is_cold(engine_id) {
            true
        } else if running.is_some() && self.vmm.pid(&dir).is_some() {
            match self.hibernate_locked(engine_id).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(sandbox = %engine_id, error = %e, "snapshot at stop failed; ending the VM");
                    false
                }
            }
        } else {
            false
        };
        let _ = std::fs::write(dir.join(STOPPED_MARKER), b"");
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(engine_id);
        if snapped {
            // QEMU is gone; the TAP and the address stay (the saved guest has them), the empty
            // cgroup goes (made again at start).
            if let Some(cg) = self.cgroups.open(engine_id) {
                let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
            }
        } else {
            let subnet = running
                .as_ref()
                .map(|r| r.meta.subnet_index)
                .or_else(|| self.load_meta(engine_id).map(|m| m.subnet_index));
            self.teardown(engine_id, subnet, false).await;
            let _ = std::fs::remove_file(dir.join(SNAPSHOT));
            let _ = std::fs::remove_file(dir.join(COLD_MARKER));
        }
        Ok(())
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<Created, EngineError> {
        let lock = self.lock_for(&spec.id);
        let _g = lock.lock().await;
        if self.qemu_pid(&spec.id).is_some() {
            return Err(io("start", "sandbox is running"));
        }
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&spec.id);
        let meta = self
            .load_meta(&spec.id)
            .ok_or_else(|| EngineError::NotFound(spec.id.clone()))?;
        if self.is_cold(&spec.id) {
            match self.restore_stopped(spec, &meta).await {
                Ok(c) => {
                    let _ = std::fs::remove_file(self.dir(&spec.id).join(STOPPED_MARKER));
                    return Ok(c);
                }
                Err(e) => {
                    // The files are intact; a fresh boot over them beats no sandbox.
                    tracing::warn!(sandbox = %spec.id, error = %e, "restore at start failed; booting afresh");
                    self.teardown(&spec.id, None, false).await;
                    let dir = self.dir(&spec.id);
                    let _ = std::fs::remove_file(dir.join(SNAPSHOT));
                    let _ = std::fs::remove_file(dir.join(COLD_MARKER));
                }
            }
        }
        // The old address only if nobody took it while the VM was stopped; else any free one
        // (the guest is configured afresh at boot, and the store records the new one).
        let want = self
            .net
            .ip_available(spec.subnet_index, &spec.id, meta.ip)
            .then_some(meta.ip);
        let r = self.boot(spec, meta, want).await;
        match &r {
            Ok(_) => {
                let _ = std::fs::remove_file(self.dir(&spec.id).join(STOPPED_MARKER));
            }
            Err(_) => {
                self.teardown(&spec.id, Some(spec.subnet_index), false)
                    .await
            }
        }
        r
    }

    async fn usage(&self, engine_id: &str) -> Option<u64> {
        let raw = self.get(engine_id)?.cgroup.cpu_usage_usec().ok()?;
        let allowance = match self.accel {
            Accel::Tcg => IDLE_ALLOWANCE_TCG,
            Accel::Kvm => IDLE_ALLOWANCE_KVM,
        };
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let e = u
            .entry(engine_id.to_string())
            .or_insert_with(|| IdleMeter::new(raw));
        Some(e.observe(raw, std::time::Instant::now(), allowance))
    }

    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        self.recover_all(sandboxes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_keys() {
        assert_eq!(mac_for("0123456789abcdef"), "52:54:00:01:23:45");
        assert!(valid_key("0123456789abcdef"));
        assert!(!valid_key("../x"));
    }
}
