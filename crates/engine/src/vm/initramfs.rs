//! The guest's initramfs: lohar as `/init`, the kernel modules the guest needs to reach its
//! disks and network (dependencies resolved with the kernel's `modules.dep`), and the list
//! lohar loads them from. Built once and cached, keyed by a hash of lohar, the kernel and the
//! module list, so a new lohar or kernel gets a new initramfs and an unchanged one is reused.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Modules the guest needs by default (virtio PCI transport, disks, network).
pub const DEFAULT_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_net"];

/// Where lohar reads the module list (must match lohar's `boot::initramfs::MODULES_LIST`).
const MODULES_LIST: &str = "bhatti/modules.list";

/// Errors building the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A module is not in `modules.dep`.
    #[error(
        "kernel module {0} not found in modules.dep (is it built in, or the wrong modules dir?)"
    )]
    UnknownModule(String),
    /// lohar cannot load compressed modules itself.
    #[error("kernel module {0} is compressed; use a kernel with uncompressed modules")]
    Compressed(String),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InitramfsError + 'a {
    move |source| InitramfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A module's name as modprobe sees it: file name without `.ko*`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// Parses `modules.dep` into module name → (path, dependency paths).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let (path, deps) = l.split_once(':')?;
            let path = path.trim();
            if path.is_empty() {
                return None;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            Some((module_name(path), (path.to_string(), deps)))
        })
        .collect()
}

/// The module files to load, dependencies before the modules needing them, each once.
pub fn resolve(
    deps: &BTreeMap<String, (String, Vec<String>)>,
    wanted: &[String],
) -> Result<Vec<String>, InitramfsError> {
    fn visit(
        deps: &BTreeMap<String, (String, Vec<String>)>,
        name: &str,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), InitramfsError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, ds) = deps
            .get(name)
            .ok_or_else(|| InitramfsError::UnknownModule(name.to_string()))?;
        for d in ds {
            visit(deps, &module_name(d), seen, out)?;
        }
        out.push(path.clone());
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(deps, &module_name(w), &mut seen, &mut out)?;
    }
    Ok(out)
}

/// FNV-1a, 64 bit: a stable content hash for the cache key (not a security boundary: the
/// inputs are the operator's own files).
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// One entry of a `newc` cpio archive.
pub enum CpioEntry<'a> {
    /// A directory.
    Dir(&'a str),
    /// A regular file with its mode bits.
    File(&'a str, u32, &'a [u8]),
    /// A character device (mode bits, major, minor).
    Char(&'a str, u32, u32, u32),
}

/// Writes a `newc` cpio archive (the format the kernel unpacks as an initramfs).
pub fn write_cpio(out: &mut impl Write, entries: &[CpioEntry<'_>]) -> std::io::Result<()> {
    let mut ino = 1u32;
    let mut header = |out: &mut dyn Write,
                      name: &str,
                      mode: u32,
                      size: usize,
                      rdev: (u32, u32)|
     -> std::io::Result<()> {
        let namesize = name.len() + 1;
        let h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0
        );
        ino += 1;
        out.write_all(h.as_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&[0])?;
        let pad = (4 - (110 + namesize) % 4) % 4;
        out.write_all(&[0u8; 4][..pad])
    };
    let pad_data = |out: &mut dyn Write, len: usize| out.write_all(&[0u8; 4][..(4 - len % 4) % 4]);
    for e in entries {
        match e {
            CpioEntry::Dir(n) => header(out, n, 0o040_755, 0, (0, 0))?,
            CpioEntry::File(n, mode, data) => {
                header(out, n, 0o100_000 | mode, data.len(), (0, 0))?;
                out.write_all(data)?;
                pad_data(out, data.len())?;
            }
            CpioEntry::Char(n, mode, major, minor) => {
                header(out, n, 0o020_000 | mode, 0, (*major, *minor))?
            }
        }
    }
    header(out, "TRAILER!!!", 0, 0, (0, 0))
}

/// Builds (or reuses) the initramfs in `cache_dir`; returns its path.
pub fn ensure(
    cache_dir: &Path,
    lohar: &Path,
    kernel: &Path,
    modules_dir: &Path,
    modules: &[String],
) -> Result<PathBuf, InitramfsError> {
    let lohar_bytes = std::fs::read(lohar).map_err(io("read lohar", lohar))?;
    let kernel_bytes = std::fs::read(kernel).map_err(io("read kernel", kernel))?;
    let mut h = Fnv::default();
    h.update(&lohar_bytes);
    h.update(&kernel_bytes);
    h.update(modules_dir.as_os_str().as_encoded_bytes());
    for m in modules {
        h.update(m.as_bytes());
        h.update(b"\0");
    }
    let path = cache_dir.join(format!("initramfs-{:016x}.cpio", h.finish()));
    if path.is_file() {
        return Ok(path);
    }
    let dep_path = modules_dir.join("modules.dep");
    let dep_text = std::fs::read_to_string(&dep_path).map_err(io("read", &dep_path))?;
    let files = resolve(&parse_modules_dep(&dep_text), modules)?;
    let mut blobs = Vec::new();
    for f in &files {
        if !f.ends_with(".ko") {
            return Err(InitramfsError::Compressed(f.clone()));
        }
        let p = modules_dir.join(f);
        let data = std::fs::read(&p).map_err(io("read module", &p))?;
        blobs.push((format!("bhatti/modules/{}.ko", module_name(f)), data));
    }
    let list: String = blobs.iter().map(|(n, _)| format!("/{n}\n")).collect();
    let mut entries = vec![
        CpioEntry::Dir("dev"),
        CpioEntry::Char("dev/console", 0o600, 5, 1),
        CpioEntry::Dir("bhatti"),
        CpioEntry::Dir("bhatti/modules"),
        CpioEntry::File("init", 0o755, &lohar_bytes),
    ];
    for (n, d) in &blobs {
        entries.push(CpioEntry::File(n, 0o644, d));
    }
    entries.push(CpioEntry::File(MODULES_LIST, 0o644, list.as_bytes()));
    std::fs::create_dir_all(cache_dir).map_err(io("create", cache_dir))?;
    let tmp = cache_dir.join(format!(".initramfs-{}.tmp", std::process::id()));
    let mut buf = Vec::new();
    write_cpio(&mut buf, &entries).map_err(io("write", &tmp))?;
    std::fs::write(&tmp, &buf).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    // Older initramfs files are kept: a cold VM restores with the kernel and initramfs it
    // booted with (QEMU loads them again, and the memory image must match).
    tracing::info!(path = %path.display(), modules = files.len(), "built VM initramfs");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/foo-bar.ko.xz:
";

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/fs/foo-bar.ko.xz"), "foo_bar");
        assert_eq!(module_name("virtio_net"), "virtio_net");
    }

    #[test]
    fn resolves_dependencies_first_once() {
        let d = parse_modules_dep(DEP);
        let order = resolve(&d, &["virtio_pci".into(), "virtio-net".into()]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_pci_legacy_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert!(matches!(
            resolve(&d, &["nope".into()]),
            Err(InitramfsError::UnknownModule(_))
        ));
    }

    #[test]
    fn cpio_layout() {
        let mut out = Vec::new();
        write_cpio(
            &mut out,
            &[CpioEntry::Dir("d"), CpioEntry::File("d/f", 0o644, b"hello")],
        )
        .unwrap();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("d/f\0"));
        assert!(s.contains("hello"));
        assert!(s.contains("TRAILER!!!"));
        // Second header starts 4-aligned after the first (110 + "d\0" = 112).
        assert_eq!(&out[112..118], b"070701");
    }
}
