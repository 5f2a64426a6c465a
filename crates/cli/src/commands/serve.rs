//! `bhatti serve`: runs the daemon until SIGTERM/SIGINT.
//!
//! Config: `BHATTI_CONFIG`, else `/etc/bhatti/config.yaml`, else defaults; `--data-dir`
//! overrides its `data_dir`. On first start (empty data dir) the server creates an `admin`
//! user, prints its key once and writes it to the invoking user's `~/.bhatti/config.yaml`.

use std::sync::Arc;

use anyhow::{Context, Result};
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
    let engine = open_engine(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(bhatti_server::serve(config, engine))?;
    Ok(())
}

/// The engine the daemon drives, by `config.engine`.
///
/// `none` always gives an engine that refuses to run sandboxes (the CLI's integration tests use
/// it so the daemon starts instantly and needs no root). For now every other name is also
/// [`Unavailable`]: the daemon serves users, keys, secrets and records, and sandbox creation
/// fails with a clear error. The real engines replace the second arm.
fn open_engine(config: &ServerConfig) -> Arc<dyn Engine> {
    match config.engine.as_str() {
        "none" => Arc::new(Unavailable {
            engine: "none".into(),
            reason: "the daemon was configured with `engine: none`".into(),
        }),
        _ => Arc::new(Unavailable {
            engine: config.engine.clone(),
            reason: "the namespace engine is not built yet".into(),
        }),
    }
}
