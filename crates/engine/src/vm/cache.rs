//! Sweeps of the vm engine's cache at start: initramfs files and base disks nothing uses any
//! more.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::config::VmConfig;
use super::disk;
use super::engine::{VmMeta, META_FILE};
use crate::image::ImageStore;

/// Deletes the cached initramfs files of earlier lohar or kernel versions, except those a VM
/// still names in its `vm.json` (a cold VM must restore with the initramfs it booted).
pub(super) fn remove_unused_initramfs(cache_dir: &Path, current: &Path, sandboxes_dir: &Path) {
    let mut used: HashSet<PathBuf> = HashSet::from([current.to_path_buf()]);
    if let Ok(rd) = std::fs::read_dir(sandboxes_dir) {
        for e in rd.flatten() {
            let meta = std::fs::read(e.path().join(META_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<VmMeta>(&b).ok());
            if let Some(m) = meta {
                used.insert(m.initrd);
            }
        }
    }
    let Ok(rd) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("initramfs-") && name.ends_with(".cpio") && !used.contains(&e.path()) {
            tracing::debug!(path = %e.path().display(), "removing unused initramfs");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Deletes base disks of images since rebuilt or removed, unless an overlay still sits on one.
pub(super) fn remove_unused_bases(cfg: &VmConfig, images: &ImageStore) {
    let cache = cfg.cache_dir.join("images");
    let mut keep: HashSet<PathBuf> = images
        .list()
        .into_iter()
        .filter_map(|i| {
            let json = std::fs::read(images.root().join(&i.name).join("image.json")).ok()?;
            Some(disk::base_path(&cache, &i.name, &json, cfg.disk_size_mb))
        })
        .collect();
    if let Ok(rd) = std::fs::read_dir(&cfg.sandboxes_dir) {
        for e in rd.flatten() {
            let meta = std::fs::read(e.path().join(META_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<VmMeta>(&b).ok());
            if let Some(m) = meta {
                keep.insert(m.base);
            }
        }
    }
    disk::remove_unused_bases(&cache, &keep);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::vm::Accel;

    #[test]
    fn unused_initramfs_removed_used_kept() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let sbx = d.path().join("sandboxes");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(sbx.join("0123456789abcdef")).unwrap();
        for n in [
            "initramfs-a.cpio",
            "initramfs-b.cpio",
            "initramfs-c.cpio",
            "other",
        ] {
            std::fs::write(cache.join(n), b"x").unwrap();
        }
        let meta = VmMeta {
            subnet_index: 1,
            ip: Ipv4Addr::new(10, 0, 1, 2),
            mac: "52:54:00:01:23:45".into(),
            image: "tiny".into(),
            base: "/b".into(),
            vcpus: 1,
            memory_mb: 256,
            cpus: 1.0,
            accel: Accel::Tcg,
            kernel: "/k".into(),
            initrd: cache.join("initramfs-b.cpio"),
            uid: None,
        };
        std::fs::write(
            sbx.join("0123456789abcdef").join(META_FILE),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        remove_unused_initramfs(&cache, &cache.join("initramfs-c.cpio"), &sbx);
        assert!(!cache.join("initramfs-a.cpio").exists());
        assert!(
            cache.join("initramfs-b.cpio").exists(),
            "a VM still uses it"
        );
        assert!(cache.join("initramfs-c.cpio").exists(), "current");
        assert!(cache.join("other").exists());
    }
}
