//! `bhatti image build|list`: images live in the daemon's data dir, so these work locally
//! (as root, like `bhatti serve`), without a running daemon.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bhatti_engine::image::{self, ImageStore};
use bhatti_server::ServerConfig;

use super::Ctx;
use crate::args::{ImageBuildArgs, ImageCommand};
use crate::output;

pub fn run(ctx: &Ctx, cmd: ImageCommand) -> Result<()> {
    let dir = match &cmd {
        ImageCommand::Build(ImageBuildArgs { dir: Some(d), .. }) => d.clone(),
        _ => images_dir(ctx)?,
    };
    let store = ImageStore::new(dir).context("open the images directory")?;
    match cmd {
        ImageCommand::List => list(ctx, &store),
        ImageCommand::Build(args) => build(ctx, &store, &args),
    }
}

/// The images directory of the local daemon's config (`--data-dir` overrides its data dir).
pub fn images_dir(ctx: &Ctx) -> Result<PathBuf> {
    let mut config = ServerConfig::load()?;
    if let Some(d) = &ctx.global.data_dir {
        config.data_dir = d.clone();
    }
    Ok(serve_images_dir(&config))
}

/// Where the daemon keeps images for this config.
pub fn serve_images_dir(config: &ServerConfig) -> PathBuf {
    config
        .namespace
        .images_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("images"))
}

fn list(ctx: &Ctx, store: &ImageStore) -> Result<()> {
    let images = store.list();
    if ctx.global.json {
        output::print_json(&images)?;
        return Ok(());
    }
    if images.is_empty() {
        println!("No images. Build the default one with: sudo bhatti image build minimal");
        return Ok(());
    }
    let mut t = output::Table::new(&[("NAME", 12), ("SOURCE", 22), ("SIZE", 8), ("CREATED", 0)]);
    for i in &images {
        t.row(vec![
            i.name.clone(),
            i.source.clone(),
            format!("{} MB", i.size_mb),
            i.created_at.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn build(ctx: &Ctx, store: &ImageStore, args: &ImageBuildArgs) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "building images needs root (sudo bhatti image build {})",
            args.name
        );
    }
    if store.exists(&args.name) && !args.force {
        println!(
            "image {} already exists (use --force to rebuild)",
            args.name
        );
        return Ok(());
    }
    let info = build_named(store, &args.name, std::io::stderr().is_terminal())?;
    if ctx.global.json {
        output::print_json(&info)?;
    } else {
        println!("image {} built ({} MB)", info.name, info.size_mb);
    }
    Ok(())
}

/// Builds `minimal` or `tiny`, showing progress on stderr (a spinner on a terminal, plain lines
/// otherwise).
pub fn build_named(store: &ImageStore, name: &str, interactive: bool) -> Result<image::ImageInfo> {
    match name {
        "tiny" => Ok(image::build_busybox(store, "tiny")?),
        "minimal" => {
            let bar = interactive.then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            });
            let result = image::build_minimal(store, "minimal", |line| match &bar {
                Some(pb) => pb.set_message(truncate(line, 100)),
                None => eprintln!("image minimal: {line}"),
            });
            if let Some(pb) = bar {
                pb.finish_and_clear();
            }
            Ok(result?)
        }
        other => bail!("unknown image {other:?}: bhatti can build `minimal` and `tiny`"),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
