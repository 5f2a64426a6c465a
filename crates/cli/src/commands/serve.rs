//! `bhatti serve`: runs the daemon until SIGTERM/SIGINT.
//!
//! Config: `BHATTI_CONFIG`, else `/etc/bhatti/config.yaml`, else defaults; `--data-dir`
//! overrides its `data_dir`. On first start (empty data dir) the server creates an `admin`
//! user, prints its key once and writes it to the invoking user's `~/.bhatti/config.yaml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bhatti_engine::namespace::{NamespaceConfig, NamespaceEngine};
use bhatti_engine::net::NetConfig;
use bhatti_engine::{Engine, Unavailable};
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
        let engine = open_engine(&config).await?;
        bhatti_server::serve(config, engine).await?;
        Ok(())
    })
}

/// The engine the daemon drives, by `config.engine`. A host that cannot run it stops the
/// daemon with a message saying what is missing.
///
/// `none` gives an engine that refuses to run sandboxes (the CLI's integration tests use it so
/// the daemon starts instantly and needs no root).
async fn open_engine(config: &ServerConfig) -> Result<Arc<dyn Engine>> {
    match config.engine.as_str() {
        "none" => Ok(Arc::new(Unavailable {
            engine: "none".into(),
            reason: "the daemon was configured with `engine: none`".into(),
        })),
        "namespace" => {
            let cfg = namespace_config(config)?;
            let engine = NamespaceEngine::new(cfg)
                .await
                .map_err(|e| anyhow::anyhow!("cannot start the namespace engine: {e}"))?;
            if config.namespace.build_default_image
                && !engine.images().exists(bhatti_engine::image::DEFAULT_IMAGE)
            {
                tracing::info!("image `minimal` is missing: building it (about 2 minutes)");
                let store = engine.images().clone();
                tokio::task::spawn_blocking(move || {
                    super::image::build_named(&store, bhatti_engine::image::DEFAULT_IMAGE, false)
                })
                .await
                .context("image build task")?
                .context(
                    "build the default image (disable with namespace.build_default_image: false)",
                )?;
                tracing::info!("image `minimal` built");
            }
            Ok(Arc::new(engine))
        }
        other => bail!("unknown engine {other:?} (this build supports `namespace` and `none`)"),
    }
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
            ..NetConfig::default()
        },
        dns: ns.dns.clone(),
        ready_timeout: Duration::from_secs(ns.ready_timeout_secs),
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
