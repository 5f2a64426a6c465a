//! The daemon under test: `bhatti serve` with the namespace engine in a temp data dir, plus the
//! gvisor and vm engines when this host can run them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bhatti_client::Client;

/// A running daemon and a client for its admin user.
pub struct Daemon {
    child: Child,
    /// Temp dir holding config and data (removed on drop).
    _dir: tempfile::TempDir,
    /// API client (admin key).
    pub client: Client,
    /// The API base URL.
    pub url: String,
    /// The admin key.
    pub token: String,
    /// The `bhatti` binary.
    pub bin: PathBuf,
    /// Where the images are.
    pub images: PathBuf,
    /// The daemon's cgroup parent group.
    pub cgroup_parent: String,
    /// Whether the vm engine is enabled (QEMU and a guest kernel were found).
    pub vm: bool,
    /// Why the gvisor engine is not enabled (`None`: it is; runsc was found).
    pub gvisor_skip: Option<String>,
}

impl Daemon {
    /// Starts the daemon and waits until it answers.
    pub async fn start() -> Result<Daemon> {
        let bin = PathBuf::from(
            std::env::var("BHATTI_BIN").context("BHATTI_BIN not set (use bench/run)")?,
        );
        let lohar = std::env::var("LOHAR_BIN").context("LOHAR_BIN not set (use bench/run)")?;
        let images = PathBuf::from(
            std::env::var("BHATTI_TEST_IMAGES")
                .unwrap_or_else(|_| "/var/tmp/bhatti-test-images".into()),
        );
        if !images.join("tiny/image.json").exists() {
            bail!(
                "image `tiny` missing in {} (bhatti image build tiny --dir …)",
                images.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let port = 18181;
        let config = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\nlog_level: warn\nfirst_start_cli_config: {home}/cli.yaml\n\
             admin: {{max_sandboxes: 500, max_cpus: 4, max_memory_mb: 4096}}\n\
             rate_limits:\n  create: {{burst: 100000, per_minute: 1000000}}\n  exec: {{burst: 100000, per_minute: 1000000}}\n  other: {{burst: 100000, per_minute: 1000000}}\n\
             thermal: {{tick_ms: 100, warm_after_ms: 500, cold_after_ms: 1000, wake_timeout_ms: 30000}}\n\
             public_proxy_listen: 127.0.0.1:{public_port}\n\
             namespace:\n  lohar_path: {lohar}\n  images_dir: {images}\n  cgroup_parent: {parent}\n  build_default_image: false\n  uid_base: 40000000\n",
            data = dir.path().join("data").display(),
            home = dir.path().display(),
            images = images.display(),
            parent = cgroup_parent(),
            public_port = PUBLIC_PORT,
        );
        // The gvisor engine too, when runsc is installed, and the vm engine, when this host has
        // QEMU and a guest kernel (scripts/vm-kernel).
        let gvisor_skip = gvisor_skip_reason();
        let vm_kernel = vm_kernel();
        let mut engines = Vec::new();
        let mut config = config;
        if gvisor_skip.is_none() {
            engines.push("gvisor");
            config.push_str(&format!(
                "gvisor:\n  platform: {GVISOR_PLATFORM}\n  cgroup_parent: {}\n",
                gvisor_cgroup_parent()
            ));
        }
        if let Some(k) = &vm_kernel {
            engines.push("vm");
            config.push_str(&format!(
                "vm:\n  kernel: {}\n  cgroup_parent: {}\n  disk_size_mb: 1024\n",
                k.display(),
                vm_cgroup_parent()
            ));
        }
        if !engines.is_empty() {
            config.push_str(&format!("engines: [{}]\n", engines.join(", ")));
        }
        std::fs::write(dir.path().join("config.yaml"), config)?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        let child = Command::new(&bin)
            .arg("serve")
            .env("BHATTI_CONFIG", dir.path().join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start bhatti serve")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let token = loop {
            if let Ok(text) = std::fs::read_to_string(dir.path().join("cli.yaml")) {
                if let Some(t) = text.lines().find_map(|l| l.strip_prefix("auth_token: ")) {
                    break t.trim().to_string();
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "daemon did not start; log: {}",
                    std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = Client::new(&url, Some(token.clone()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.health().await.is_err() {
            if Instant::now() > deadline {
                bail!("daemon /health did not answer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Daemon {
            child,
            _dir: dir,
            client,
            url,
            token,
            bin,
            images,
            cgroup_parent: cgroup_parent(),
            vm: vm_kernel.is_some(),
            gvisor_skip,
        })
    }
}

/// The public (path-mode) proxy's port.
pub const PUBLIC_PORT: u16 = 18443;

/// The guest kernel for the vm scenarios: `BHATTI_VM_KERNEL`, else one unpacked by
/// scripts/vm-kernel; `None` (vm scenarios skipped) without it or without QEMU.
fn vm_kernel() -> Option<PathBuf> {
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        return None;
    }
    if let Some(k) = std::env::var_os("BHATTI_VM_KERNEL") {
        return Some(PathBuf::from(k));
    }
    std::fs::read_dir("/var/tmp/bhatti-vm-kernel/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

/// The runsc platform of the gvisor scenarios (the one that works everywhere).
pub const GVISOR_PLATFORM: &str = "ptrace";

/// Why the gvisor engine cannot run here (`runsc --version` fails), if it cannot.
pub fn gvisor_skip_reason() -> Option<String> {
    let ok = Command::new("runsc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "runsc not installed (Debian package `runsc`)".to_string())
}

/// The gvisor engine's cgroup parent for this run.
fn gvisor_cgroup_parent() -> String {
    format!("bhatti-bench-g-{}", std::process::id())
}

/// The vm engine's cgroup parent for this run.
fn vm_cgroup_parent() -> String {
    format!("bhatti-bench-vm-{}", std::process::id())
}

/// This run's cgroup parent (removed when the daemon stops).
fn cgroup_parent() -> String {
    format!("bhatti-bench-{}", std::process::id())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        // Every sandbox was destroyed; only the (empty) parent groups are left to remove.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join(cgroup_parent()));
                let _ = std::fs::remove_dir(c.path().join(vm_cgroup_parent()));
                let _ = std::fs::remove_dir(c.path().join(gvisor_cgroup_parent()));
            }
        }
    }
}
