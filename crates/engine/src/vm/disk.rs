//! The VM's disks: a base ext4 per image (built once with `mkfs.ext4 -d`), a qcow2 overlay per
//! sandbox over it (create copies nothing), and the read-only config disk.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::initramfs::Fnv;

/// First bytes of the config disk (must match lohar's `boot::initramfs::CONFIG_MAGIC`).
pub const CONFIG_MAGIC: &str = "BHATTI-CONFIG-1 ";

fn run(cmd: &mut Command, what: &str) -> std::io::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| std::io::Error::other(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The base ext4 of `image` in `cache_dir`, built from `rootfs` when missing. The name carries
/// a hash of the image's `image.json` (which records when it was built), so a rebuilt image gets
/// a new base while existing overlays keep theirs.
pub fn ensure_base(
    cache_dir: &Path,
    image: &str,
    image_json: &[u8],
    rootfs: &Path,
    size_mb: u64,
) -> std::io::Result<PathBuf> {
    let path = base_path(cache_dir, image, image_json, size_mb);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache_dir)?;
    let tmp = cache_dir.join(format!(".{image}-{}.ext4.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::fs::File::create(&tmp)?.set_len(size_mb << 20)?;
    // Inode tables and journal initialised now, once, so no guest spends CPU (and overlay
    // space) zeroing them in the background.
    let r = run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .args(["-J", "size=16", "-L", "bhatti-root", "-d"])
            .arg(rootfs)
            .arg(&tmp),
        "mkfs.ext4 -d",
    );
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)?;
    tracing::info!(image, path = %path.display(), "built VM base disk");
    Ok(path)
}

/// Where the base ext4 of `image` (as described by its `image.json`) lives.
pub fn base_path(cache_dir: &Path, image: &str, image_json: &[u8], size_mb: u64) -> PathBuf {
    let mut h = Fnv::default();
    h.update(image_json);
    h.update(&size_mb.to_le_bytes());
    cache_dir.join(format!("{image}-{:016x}.ext4", h.finish()))
}

/// Deletes base disks in `cache_dir` that are neither in `keep` (the current bases of existing
/// images, and those overlays still sit on) nor being built.
pub fn remove_unused_bases(cache_dir: &Path, keep: &std::collections::HashSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ext4") && !name.starts_with('.') && !keep.contains(&e.path()) {
            tracing::info!(path = %e.path().display(), "removing unused VM base disk");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Creates the sandbox's copy-on-write overlay over `base`.
pub fn create_overlay(base: &Path, overlay: &Path) -> std::io::Result<()> {
    run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(base)
            .arg(overlay),
        "qemu-img create",
    )
}

/// The config disk's content: header line, JSON, zero padding to whole 4 KiB.
pub fn config_disk_bytes(json: &[u8]) -> Vec<u8> {
    let mut v = format!("{CONFIG_MAGIC}{}\n", json.len()).into_bytes();
    v.extend_from_slice(json);
    let len = v.len().div_ceil(4096) * 4096;
    v.resize(len, 0);
    v
}

/// Writes the config disk (root-only: it holds the token and secrets).
pub fn write_config_disk(path: &Path, json: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&config_disk_bytes(json))?;
    f.sync_all()
}

/// Overwrites the config disk with zeros (same size: a restored VM expects the same device),
/// once lohar has read it, so secrets do not stay on the host's disk.
pub fn scrub_config_disk(path: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(path)?.len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(&vec![0u8; len as usize])?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_bases_removed() {
        let d = tempfile::tempdir().unwrap();
        let cur = base_path(d.path(), "tiny", b"{\"v\":2}", 1024);
        let old = base_path(d.path(), "tiny", b"{\"v\":1}", 1024);
        let used = base_path(d.path(), "minimal", b"{}", 1024);
        assert_ne!(cur, old);
        for p in [&cur, &old, &used] {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::write(d.path().join(".tiny-1.ext4.tmp"), b"x").unwrap();
        let keep = [cur.clone(), used.clone()].into_iter().collect();
        remove_unused_bases(d.path(), &keep);
        assert!(cur.exists() && used.exists() && !old.exists());
        assert!(d.path().join(".tiny-1.ext4.tmp").exists());
    }

    #[test]
    fn config_disk_layout() {
        let b = config_disk_bytes(b"{\"a\":1}");
        assert_eq!(b.len(), 4096);
        assert!(b.starts_with(b"BHATTI-CONFIG-1 7\n{\"a\":1}"));
        assert!(b[30..].iter().all(|x| *x == 0));
        assert_eq!(config_disk_bytes(&[b'x'; 5000]).len(), 8192);
    }
}
