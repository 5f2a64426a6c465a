//! A sandbox's filesystem before runsc starts it: the overlay over its image, lohar's config
//! and the OCI bundle.

use std::path::{Path, PathBuf};

use crate::error::io;
use crate::spec::SandboxSpec;
use crate::EngineError;

use super::{oci, runsc, GvisorConfig};

/// Mounts the overlay and writes the bundle and lohar's config (blocking).
pub(super) fn prepare_fs(
    cfg: &GvisorConfig,
    spec: &SandboxSpec,
    image_rootfs: &Path,
) -> Result<(), EngineError> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = cfg.dir.join("sandboxes").join(&spec.id);
    for sub in ["upper", "work", "rootfs", "boot", "bundle"] {
        std::fs::create_dir_all(d.join(sub)).map_err(|e| io(format!("create {sub}"), e))?;
    }
    let rootfs = d.join("rootfs");
    if !runsc::is_mounted(&rootfs) {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            image_rootfs.display(),
            d.join("upper").display(),
            d.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| io("mount overlay", e))?;
    }
    // The mount point of lohar's read-only bind inside the bound `/run/bhatti`.
    std::fs::write(d.join("boot").join("lohar"), b"")
        .map_err(|e| io("create lohar mount point", e))?;
    let cfg_path = d.join("boot").join("config.json");
    let _ = std::fs::remove_file(&cfg_path);
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&cfg_path)
        .and_then(|mut f| {
            let mut c = spec.lohar_config(&cfg.dns);
            // runsc 2022 restores deleted epoll registrations: lohar must not use epoll for
            // anything it closes (lohar's io_mode).
            c["epoll_free_io"] = serde_json::json!(true);
            std::io::Write::write_all(&mut f, c.to_string().as_bytes())
        })
        .map_err(|e| io("write lohar config", e))?;
    let bundle = oci::build(&oci::BundleSpec {
        rootfs,
        boot_dir: d.join("boot"),
        lohar: cfg.lohar.clone(),
        hostname: spec.name.clone(),
        netns: d.join("netns"),
        cgroups_path: PathBuf::from(format!("/{}/{}", cfg.cgroup_parent, spec.id)),
    })
    .map_err(|e| io("build OCI spec", e))?;
    let json = serde_json::to_vec_pretty(&bundle).map_err(|e| io("write OCI spec", e))?;
    std::fs::write(d.join("bundle").join("config.json"), json).map_err(|e| io("write OCI spec", e))
}
