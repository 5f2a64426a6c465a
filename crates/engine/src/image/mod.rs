//! Images: root filesystem directories that sandboxes overlay (read-only lower layers).
//!
//! Layout: `<images>/<name>/rootfs/` plus `<images>/<name>/image.json`. An image is built in a
//! temporary directory and renamed into place only when complete, so a half-built image is
//! never used.

mod build;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use build::{build_busybox, build_minimal, debian_mirror, MINIMAL_PACKAGES};

/// The default image.
pub const DEFAULT_IMAGE: &str = "minimal";
/// The tiny busybox image used by tests.
pub const TINY_IMAGE: &str = "tiny";

/// Metadata stored beside each image's rootfs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// How it was made (`debootstrap:bookworm`, `busybox`).
    pub source: String,
    /// Size of the rootfs in MiB (approximate).
    pub size_mb: u64,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// Errors of image operations.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No complete image by that name.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// Invalid image name.
    #[error("invalid image name {0:?}")]
    BadName(String),
    /// A tool the build needs is missing.
    #[error("{tool} not found: {hint}")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// A build step failed.
    #[error("{step}: {detail}")]
    Build {
        /// What was being done.
        step: String,
        /// Why it failed (command output tail or error).
        detail: String,
    },
}

/// The directory of images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// Image names follow the sandbox-name rule.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

impl ImageStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<ImageStore> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(ImageStore { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The rootfs of a complete image.
    pub fn rootfs(&self, name: &str) -> Result<PathBuf, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::BadName(name.into()));
        }
        let dir = self.root.join(name);
        if dir.join("image.json").is_file() && dir.join("rootfs").is_dir() {
            Ok(dir.join("rootfs"))
        } else {
            Err(ImageError::NotFound(name.into()))
        }
    }

    /// Whether a complete image exists.
    pub fn exists(&self, name: &str) -> bool {
        self.rootfs(name).is_ok()
    }

    /// Every complete image, by name.
    pub fn list(&self) -> Vec<ImageInfo> {
        let mut out: Vec<ImageInfo> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("image.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a: &ImageInfo, b| a.name.cmp(&b.name));
        out
    }

    /// A fresh staging directory for building `name` (removed by the caller on failure).
    pub(crate) fn staging(&self, name: &str) -> Result<PathBuf, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::BadName(name.into()));
        }
        let p = self
            .root
            .join(format!(".{name}.building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("rootfs")).map_err(|e| ImageError::Build {
            step: "create staging dir".into(),
            detail: e.to_string(),
        })?;
        Ok(p)
    }

    /// Moves a completed staging directory into place (replacing an older image of that name).
    pub(crate) fn commit(&self, staging: &Path, info: &ImageInfo) -> Result<(), ImageError> {
        let b = |step: &str, e: std::io::Error| ImageError::Build {
            step: step.into(),
            detail: e.to_string(),
        };
        let json = serde_json::to_vec_pretty(info).map_err(|e| ImageError::Build {
            step: "encode image.json".into(),
            detail: e.to_string(),
        })?;
        std::fs::write(staging.join("image.json"), json).map_err(|e| b("write image.json", e))?;
        let dest = self.root.join(&info.name);
        if dest.exists() {
            let old = self
                .root
                .join(format!(".{}.old-{}", info.name, std::process::id()));
            std::fs::rename(&dest, &old).map_err(|e| b("move old image aside", e))?;
            std::fs::rename(staging, &dest).map_err(|e| b("install image", e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(staging, &dest).map_err(|e| b("install image", e))?;
        }
        Ok(())
    }

    /// Removes staging leftovers of interrupted builds.
    pub fn clean_staging(&self) {
        for e in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && (n.contains(".building-") || n.contains(".old-")) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("minimal") && valid_name("a.b-c_1"));
        assert!(
            !valid_name("") && !valid_name("../x") && !valid_name(".hidden") && !valid_name("a/b")
        );
    }

    #[test]
    fn incomplete_images_are_invisible() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::new(d.path()).unwrap();
        let st = s.staging("x").unwrap();
        assert!(matches!(s.rootfs("x"), Err(ImageError::NotFound(_))));
        let info = ImageInfo {
            name: "x".into(),
            source: "test".into(),
            size_mb: 0,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        s.commit(&st, &info).unwrap();
        assert!(s.rootfs("x").unwrap().is_dir());
        assert_eq!(s.list(), vec![info]);
        s.clean_staging();
        assert!(s.exists("x"));
    }
}
