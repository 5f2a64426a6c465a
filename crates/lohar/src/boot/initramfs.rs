//! Stage 1 of a VM sandbox: lohar is `/init` of the initramfs the vm engine builds.
//!
//! It loads the virtio modules listed in the initramfs, finds the root and config disks by
//! their serials, configures `eth0`, mounts the root disk, hands the config to the later boot
//! as a root-only file on a fresh `/run` tmpfs, moves `/dev`, `/proc` and `/sys` across, empties
//! the initramfs (its memory is freed) and `switch_root`s — move mount + chroot, as busybox
//! does — then returns, so the same process goes on as the sandbox's PID 1.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

use crate::config::SandboxConfig;

/// Present only in bhatti's initramfs: the modules to load, one path per line, in order.
pub const MODULES_LIST: &str = "/bhatti/modules.list";
/// Serial of the root disk (virtio-blk `serial=`).
pub const ROOT_SERIAL: &str = "bhatti-root";
/// Serial of the read-only config disk.
pub const CONFIG_SERIAL: &str = "bhatti-config";
/// First bytes of the config disk; the JSON's length follows, then a newline and the JSON.
pub const CONFIG_MAGIC: &str = "BHATTI-CONFIG-1 ";
/// Where the config is handed to the rest of the boot (read and deleted there).
pub const CONFIG_HANDOFF: &str = "/run/bhatti-config.json";

const NEWROOT: &str = "/newroot";
const DEVICE_TIMEOUT: Duration = Duration::from_secs(20);

static BOOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process came up through bhatti's initramfs (it runs in a VM).
pub fn booted_from_initramfs() -> bool {
    BOOTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// When running as `/init` of bhatti's initramfs: does stage 1 and sets `LOHAR_CONFIG` to the
/// handed-off config. Anywhere else it does nothing. A failed stage 1 powers the VM off: a
/// guest without its root or config can only hang.
pub fn stage1_if_initramfs() {
    if std::process::id() != 1 || !Path::new(MODULES_LIST).exists() {
        return;
    }
    match stage1() {
        Ok(()) => {
            BOOTED.store(true, std::sync::atomic::Ordering::SeqCst);
            std::env::set_var("LOHAR_CONFIG", CONFIG_HANDOFF)
        }
        Err(e) => {
            eprintln!("lohar: stage 1 failed: {e}");
            let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
            std::process::exit(1);
        }
    }
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> std::io::Result<T> {
    r.map_err(|e| std::io::Error::other(format!("{what}: {e}")))
}

fn stage1() -> std::io::Result<()> {
    for d in ["/dev", "/proc", "/sys", NEWROOT] {
        std::fs::create_dir_all(d)?;
    }
    let nsne = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ctx(
        mount(
            Some("devtmpfs"),
            "/dev",
            Some("devtmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        "mount /dev",
    )?;
    ctx(
        mount(Some("proc"), "/proc", Some("proc"), nsne, None::<&str>),
        "mount /proc",
    )?;
    ctx(
        mount(Some("sysfs"), "/sys", Some("sysfs"), nsne, None::<&str>),
        "mount /sys",
    )?;

    let list = std::fs::read_to_string(MODULES_LIST)?;
    for m in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        load_module(Path::new(m))?;
    }

    let cfg_dev = wait_for_disk(CONFIG_SERIAL)?;
    let json = read_config_disk(&cfg_dev)?;
    let config: SandboxConfig = ctx(serde_json::from_slice(&json), "parse config")?;
    if let Some(n) = &config.network {
        let (ip, prefix, gw) = n.parse().map_err(std::io::Error::other)?;
        wait_for(|| Path::new("/sys/class/net/eth0").exists(), "eth0")?;
        ctx(
            super::net::configure("eth0", ip, prefix, gw),
            "configure eth0",
        )?;
    }

    let root_dev = wait_for_disk(ROOT_SERIAL)?;
    ctx(
        mount(
            Some(&root_dev),
            NEWROOT,
            Some("ext4"),
            MsFlags::empty(),
            None::<&str>,
        ),
        "mount root disk",
    )?;
    let run = format!("{NEWROOT}/run");
    std::fs::create_dir_all(&run)?;
    ctx(
        mount(
            Some("tmpfs"),
            run.as_str(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
        "mount /run",
    )?;
    let handoff = format!("{NEWROOT}{CONFIG_HANDOFF}");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&handoff)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &json))?;

    for d in ["/dev", "/proc", "/sys"] {
        let target = format!("{NEWROOT}{d}");
        std::fs::create_dir_all(&target)?;
        ctx(
            mount(
                Some(d),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_MOVE,
                None::<&str>,
            ),
            &format!("move {d}"),
        )?;
    }
    switch_root()
}

/// `finit_module` one module; one the kernel already has is fine.
fn load_module(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: finit_module reads the open file and an empty, NUL-terminated parameter string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(std::io::Error::other(format!(
                "load module {}: {e}",
                path.display()
            )));
        }
    }
    Ok(())
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> std::io::Result<()> {
    let t0 = Instant::now();
    while !ready() {
        if t0.elapsed() > DEVICE_TIMEOUT {
            return Err(std::io::Error::other(format!("{what} did not appear")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The `/dev/vdX` whose virtio serial is `serial`, once the kernel has it.
fn wait_for_disk(serial: &str) -> std::io::Result<PathBuf> {
    let mut found = None;
    wait_for(
        || {
            found = find_disk(serial);
            found.as_ref().is_some_and(|p| p.exists())
        },
        &format!("disk {serial}"),
    )?;
    found.ok_or_else(|| std::io::Error::other("disk vanished"))
}

fn find_disk(serial: &str) -> Option<PathBuf> {
    std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|e| {
            let s = std::fs::read_to_string(e.path().join("serial")).ok()?;
            (s.trim() == serial).then(|| Path::new("/dev").join(e.file_name()))
        })
}

fn read_config_disk(dev: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; 64];
    let mut f = std::fs::File::open(dev)?;
    f.read_exact(&mut head)?;
    let (len, skip) = parse_config_header(&head)
        .ok_or_else(|| std::io::Error::other("config disk has no bhatti header"))?;
    let mut all = vec![0u8; skip + len];
    all[..head.len().min(skip + len)].copy_from_slice(&head[..head.len().min(skip + len)]);
    if skip + len > head.len() {
        f.read_exact(&mut all[head.len()..])?;
    }
    Ok(all[skip..].to_vec())
}

/// Parses `BHATTI-CONFIG-1 <len>\n` at the start of the config disk: (JSON length, header
/// length).
pub fn parse_config_header(head: &[u8]) -> Option<(usize, usize)> {
    let rest = head.strip_prefix(CONFIG_MAGIC.as_bytes())?;
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let len: usize = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    Some((len, CONFIG_MAGIC.len() + nl + 1))
}

/// Empties the initramfs, moves the new root over `/` and chroots into it.
fn switch_root() -> std::io::Result<()> {
    let root_dev = std::fs::metadata("/")?.dev();
    delete_tree_on(Path::new("/"), root_dev);
    std::env::set_current_dir(NEWROOT)?;
    ctx(
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>),
        "move new root",
    )?;
    ctx(nix::unistd::chroot("."), "chroot")?;
    std::env::set_current_dir("/")?;
    let _ = std::fs::set_permissions(CONFIG_HANDOFF, std::fs::Permissions::from_mode(0o600));
    Ok(())
}

/// Deletes everything under `dir` that lives on device `dev` (the initramfs), never crossing
/// into mounts (the new root, /dev, /proc, /sys).
fn delete_tree_on(dir: &Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.dev() != dev {
            continue;
        }
        if md.is_dir() {
            delete_tree_on(&p, dev);
            let _ = std::fs::remove_dir(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_header() {
        assert_eq!(
            parse_config_header(b"BHATTI-CONFIG-1 42\n{...}"),
            Some((42, 19))
        );
        assert_eq!(parse_config_header(b"BHATTI-CONFIG-1 x\n"), None);
        assert_eq!(parse_config_header(b"\0\0\0\0"), None);
        assert_eq!(parse_config_header(b"BHATTI-CONFIG-1 12"), None);
    }
}
