//! `bhatti serve`: runs the daemon until SIGTERM/SIGINT.
//!
//! Config: `BHATTI_CONFIG`, else `/etc/bhatti/config.yaml`, else defaults; `--data-dir`
//! overrides its `data_dir`. On first start (empty data dir) the server creates an `admin`
//! user, prints its key once and writes it to the invoking user's `~/.bhatti/config.yaml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bhatti_engine::gvisor::{GvisorConfig, GvisorEngine};
use bhatti_engine::image::ImageStore;
use bhatti_engine::namespace::{NamespaceConfig, NamespaceEngine};
use bhatti_engine::net::{NetConfig, Network};
use bhatti_engine::vm::{VmConfig, VmEngine};
use bhatti_engine::{Engine, Router, Unavailable};
use bhatti_server::ServerConfig;

use super::Ctx;

pub fn run(ctx: &Ctx) -> Result<()> {
    let mut config = ServerConfig::load()?;
    if let Some(d) = &ctx.global.data_dir {
        config.data_dir = d.clone();
    }
    // First start writes the admin key where this CLI will read it: honour `BHATTI_HOME`.
    if config.first_start_cli_config.is_none()
        && std::env::var_os(crate::config::HOME_ENV).is_some_and(|v| !v.is_empty())
    {
        config.first_start_cli_config = Some(crate::config::config_path(&crate::config::invoker()));
    }
    bhatti_server::init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let (engine, net) = open_engine(&config).await?;
        bhatti_server::serve(config, engine).await?;
        // Sandboxes left running keep their bridges; bridges lingering after their user's
        // last sandbox go now rather than wait for the next start's reconcile.
        if let Some(net) = net {
            match net.remove_idle_bridges().await {
                Ok(gone) if !gone.is_empty() => {
                    tracing::info!(bridges = ?gone, "idle bridges removed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "removing idle bridges failed"),
            }
        }
        Ok(())
    })
}

/// The engines the daemon drives: `config.engine` (the default) and any others listed in
/// `config.engines`, behind a [`Router`] when there are several. A host that cannot run one
/// stops the daemon with a message saying what is missing.
///
/// `none` gives an engine that refuses to run sandboxes (the CLI's integration tests use it so
/// the daemon starts instantly and needs no root). Also returns the engines' shared network,
/// if one started.
async fn open_engine(config: &ServerConfig) -> Result<(Arc<dyn Engine>, Option<Network>)> {
    let names = config.enabled_engines();
    // The first engine (the default) starts the network; the others share it, so one IP
    // allocator serves each user's bridge.
    let mut net: Option<Network> = None;
    let mut engines = Vec::with_capacity(names.len());
    for name in &names {
        engines.push(open_one(config, name, &mut net).await?);
    }
    if engines.len() == 1 {
        return Ok((engines.remove(0), net));
    }
    let router = Router::new(engines, &config.engine).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(router), net))
}

/// Opens one engine by name; `net` is the network shared between engines (set by the first).
async fn open_one(
    config: &ServerConfig,
    name: &str,
    net: &mut Option<Network>,
) -> Result<Arc<dyn Engine>> {
    match name {
        "none" => Ok(Arc::new(Unavailable {
            engine: "none".into(),
            reason: "the daemon was configured with `engine: none`".into(),
        })),
        "namespace" => {
            let cfg = namespace_config(config)?;
            let engine = match net.clone() {
                Some(n) => NamespaceEngine::with_network(cfg, n).await,
                None => NamespaceEngine::new(cfg).await,
            }
            .map_err(|e| anyhow::anyhow!("cannot start the namespace engine: {e}"))?;
            net.get_or_insert_with(|| engine.network());
            ensure_default_image(config, engine.images()).await?;
            Ok(Arc::new(engine))
        }
        "vm" => {
            let cfg = vm_config(config)?;
            let engine = match net.clone() {
                Some(n) => VmEngine::with_network(cfg, n).await,
                None => VmEngine::new(cfg).await,
            }
            .map_err(|e| anyhow::anyhow!("cannot start the vm engine: {e}"))?;
            net.get_or_insert_with(|| engine.network());
            ensure_default_image(config, engine.images()).await?;
            Ok(Arc::new(engine))
        }
        "gvisor" => {
            let cfg = gvisor_config(config)?;
            let engine = match net.clone() {
                Some(n) => GvisorEngine::with_network(cfg, n).await,
                None => GvisorEngine::new(cfg).await,
            }
            .map_err(|e| anyhow::anyhow!("cannot start the gvisor engine: {e}"))?;
            net.get_or_insert_with(|| engine.network());
            ensure_default_image(config, engine.images()).await?;
            Ok(Arc::new(engine))
        }
        other => {
            bail!(
                "unknown engine {other:?} (this build supports `namespace`, `gvisor`, `vm` and `none`)"
            )
        }
    }
}

/// Builds the `minimal` image on first start when it is missing (and the config asks for it).
async fn ensure_default_image(config: &ServerConfig, images: &ImageStore) -> Result<()> {
    if !config.namespace.build_default_image || images.exists(bhatti_engine::image::DEFAULT_IMAGE) {
        return Ok(());
    }
    tracing::info!("image `minimal` is missing: building it (about 2 minutes)");
    let store = images.clone();
    tokio::task::spawn_blocking(move || {
        super::image::build_named(&store, bhatti_engine::image::DEFAULT_IMAGE, false)
    })
    .await
    .context("image build task")?
    .context("build the default image (disable with namespace.build_default_image: false)")?;
    tracing::info!("image `minimal` built");
    Ok(())
}

/// Maps the daemon config to the namespace engine's.
fn namespace_config(config: &ServerConfig) -> Result<NamespaceConfig> {
    let ns = &config.namespace;
    let base = ns
        .subnet
        .parse()
        .with_context(|| format!("namespace.subnet {:?} is not an IPv4 network", ns.subnet))?;
    Ok(NamespaceConfig {
        sandboxes_dir: config.data_dir.join("sandboxes"),
        images_dir: super::image::serve_images_dir(config),
        lohar: ns.lohar_path.clone().unwrap_or_else(default_lohar),
        // /proc/self/exe stays valid even if the binary is replaced by an upgrade.
        helper: vec!["/proc/self/exe".into(), "__nsinit".into()],
        uid_base: ns.uid_base,
        max_sandboxes: ns.max_sandboxes,
        cgroup_parent: ns.cgroup_parent.clone(),
        pids_max: ns.pids_max,
        net: NetConfig {
            base,
            egress_interface: ns.egress_interface.clone(),
            bridge_linger: Duration::from_secs(ns.bridge_linger_secs),
            ..NetConfig::default()
        },
        dns: ns.dns.clone(),
        ready_timeout: Duration::from_secs(ns.ready_timeout_secs),
    })
}

/// Maps the daemon config to the vm engine's (lohar, images, network and DNS from the
/// namespace settings).
fn vm_config(config: &ServerConfig) -> Result<VmConfig> {
    let ns = namespace_config(config)?;
    let vm = &config.vm;
    let vm_dir = config.data_dir.join("vm");
    let kernel = match &vm.kernel {
        Some(k) => k.clone(),
        None => bhatti_engine::vm::find_kernel(&[
            vm_dir.join("kernel"),
            PathBuf::from("/var/tmp/bhatti-vm-kernel"),
        ])
        .context(
            "no guest kernel for the vm engine: apt install linux-image-cloud-amd64, \
             or run scripts/vm-kernel, or set vm.kernel",
        )?,
    };
    let accel = match vm.accel.as_str() {
        "auto" => None,
        a => Some(
            a.parse()
                .map_err(|e: String| anyhow::anyhow!("vm.accel: {e}"))?,
        ),
    };
    let mut modules: Vec<String> = bhatti_engine::vm::initramfs::DEFAULT_MODULES
        .iter()
        .map(|m| m.to_string())
        .collect();
    modules.extend(vm.extra_modules.iter().cloned());
    Ok(VmConfig {
        sandboxes_dir: vm_dir.join("sandboxes"),
        cache_dir: vm_dir.clone(),
        images_dir: ns.images_dir,
        lohar: ns.lohar,
        kernel,
        modules_dir: vm.modules_dir.clone(),
        modules,
        qemu: vm.qemu.clone(),
        accel,
        disk_size_mb: vm.disk_size_mb,
        memory_overhead_mb: vm.memory_overhead_mb,
        tcg_tb_mb: vm.tcg_tb_mb,
        runas: Some(vm.runas.clone()).filter(|u| !u.is_empty()),
        uid_base: (vm.uid_base != 0).then_some(vm.uid_base),
        console_log: vm.console_log,
        cgroup_parent: vm.cgroup_parent.clone(),
        net: ns.net,
        dns: ns.dns,
        ready_timeout: Duration::from_secs(vm.ready_timeout_secs),
    })
}

/// Maps the daemon config to the gvisor engine's (lohar, images, network and DNS settings are
/// the namespace engine's).
fn gvisor_config(config: &ServerConfig) -> Result<GvisorConfig> {
    let ns = namespace_config(config)?;
    let g = &config.gvisor;
    Ok(GvisorConfig {
        dir: config.data_dir.join("gvisor"),
        images_dir: ns.images_dir,
        lohar: ns.lohar,
        runsc: g.runsc.clone(),
        platform: g.platform.clone(),
        cgroup_parent: g.cgroup_parent.clone(),
        pids_max: ns.pids_max,
        net: ns.net,
        dns: ns.dns,
        ready_timeout: Duration::from_secs(g.ready_timeout_secs),
        debug_log_dir: g.debug_log_dir.clone(),
        debug_strace: g.debug_strace.clone(),
    })
}

/// `lohar` beside the `bhatti` binary, else `/usr/local/lib/bhatti/lohar`.
fn default_lohar() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("lohar")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| Path::new("/usr/local/lib/bhatti/lohar").to_path_buf())
}
