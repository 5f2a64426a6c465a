//! Daemon configuration (`/etc/bhatti/config.yaml`, or the file named by `BHATTI_CONFIG`).
//!
//! Every path, address, limit and timing lives here so tests can run many daemons side by side.
//! Unknown keys are rejected so a typo does not silently fall back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rate_limit::{BucketConfig, RateLimitConfig};

/// Default config file path.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bhatti/config.yaml";
/// Environment variable naming an explicit config file.
pub const CONFIG_ENV: &str = "BHATTI_CONFIG";
/// Environment variable overriding `log_level`.
pub const LOG_LEVEL_ENV: &str = "BHATTI_LOG_LEVEL";

/// Errors loading the config.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid config YAML (including unknown keys).
    #[error("parse config {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_yaml::Error,
    },
}

/// Limits given to the `admin` user created on first start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Maximum live sandboxes.
    pub max_sandboxes: u32,
    /// Maximum CPUs per sandbox.
    pub max_cpus: u32,
    /// Maximum memory per sandbox (MiB).
    pub max_memory_mb: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            max_sandboxes: 50,
            max_cpus: 4,
            max_memory_mb: 4096,
        }
    }
}

/// Settings of the `namespace` engine (all optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceOptions {
    /// The static lohar binary; default: `lohar` beside the `bhatti` binary, else
    /// `/usr/local/lib/bhatti/lohar`.
    pub lohar_path: Option<PathBuf>,
    /// Where images live (default `<data_dir>/images`).
    pub images_dir: Option<PathBuf>,
    /// Range all users' /24 subnets are carved from (user n gets the n-th /24).
    pub subnet: String,
    /// Interface for egress NAT (default: the default route's).
    pub egress_interface: Option<String>,
    /// Seconds a user's bridge outlives their last sandbox (0: removed with it); a destroy
    /// then skips the bridge's slow deletion and the user's next create its setup. Idle
    /// bridges are removed when the daemon stops.
    pub bridge_linger_secs: u64,
    /// First host uid/gid of sandbox id ranges (65 536 ids per sandbox).
    pub uid_base: u32,
    /// Most sandboxes (id ranges) on this host.
    pub max_sandboxes: u32,
    /// cgroup parent group.
    pub cgroup_parent: String,
    /// Per-sandbox process limit.
    pub pids_max: u64,
    /// Nameservers written into sandboxes (empty: keep the image's resolv.conf).
    pub dns: Vec<String>,
    /// Seconds create waits for lohar to answer.
    pub ready_timeout_secs: u64,
    /// Build the `minimal` image on first start when it is missing.
    pub build_default_image: bool,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        Self {
            lohar_path: None,
            images_dir: None,
            subnet: "10.0.0.0/8".into(),
            egress_interface: None,
            bridge_linger_secs: 60,
            uid_base: 1_000_000,
            max_sandboxes: 1000,
            cgroup_parent: "bhatti".into(),
            pids_max: 4096,
            dns: Vec::new(),
            ready_timeout_secs: 30,
            build_default_image: true,
        }
    }
}

/// Settings of the `gvisor` engine (all optional). It shares lohar, images, networking and
/// DNS with the namespace engine's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GvisorOptions {
    /// The `runsc` binary (Debian package `runsc`, 0.0~20221219 or newer).
    pub runsc: PathBuf,
    /// runsc platform: `ptrace` (works everywhere), `kvm` or `systrap` where the build and host
    /// allow.
    pub platform: String,
    /// cgroup parent group of gvisor sandboxes.
    pub cgroup_parent: String,
    /// Seconds create and wake wait for lohar to answer.
    pub ready_timeout_secs: u64,
    /// Directory for runsc's debug logs (off when absent).
    pub debug_log_dir: Option<PathBuf>,
    /// With `debug_log_dir`: also log the sandboxes' system calls (`runsc --strace`), all of
    /// them or those named here, comma-separated (`"*"` for all). Slow; for diagnosis.
    pub debug_strace: Option<String>,
}

impl Default for GvisorOptions {
    fn default() -> Self {
        Self {
            runsc: PathBuf::from("runsc"),
            platform: "ptrace".into(),
            cgroup_parent: "bhatti-gvisor".into(),
            ready_timeout_secs: 30,
            debug_log_dir: None,
            debug_strace: None,
        }
    }
}

/// Settings of the `vm` engine (all optional). It shares lohar, images, networking and DNS
/// with the namespace engine's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmOptions {
    /// Guest kernel (bzImage). Absent: the newest `/boot/vmlinuz-*-cloud-amd64` (Debian's
    /// `linux-image-cloud-amd64`), else one unpacked by `scripts/vm-kernel` under
    /// `<data_dir>/vm/kernel` or `/var/tmp/bhatti-vm-kernel`.
    pub kernel: Option<PathBuf>,
    /// The kernel's modules directory (with `modules.dep`). Absent: `lib/modules/<version>`
    /// beside the kernel's `boot/`, else `/lib/modules/<version>`.
    pub modules_dir: Option<PathBuf>,
    /// Extra kernel modules lohar loads in the guest, besides virtio_pci/blk/net.
    pub extra_modules: Vec<String>,
    /// The QEMU binary (Debian package `qemu-system-x86`).
    pub qemu: PathBuf,
    /// `auto` (KVM when this host's KVM can run ordinary guests, else TCG emulation with a
    /// warning), `kvm` or `tcg`.
    pub accel: String,
    /// Size of every VM's root filesystem (sparse; the base ext4 of each image).
    pub disk_size_mb: u64,
    /// Memory QEMU may use beyond guest RAM (its cgroup's cap is RAM + this).
    pub memory_overhead_mb: u64,
    /// TCG translation cache in MiB (added to the cap under TCG).
    pub tcg_tb_mb: u64,
    /// First of the uids QEMUs drop to once their devices are open: each VM gets its own
    /// (`uid_base + n`, gid the same, no capabilities). 0: use `runas` instead.
    pub uid_base: u32,
    /// With `uid_base: 0`, the user every QEMU drops to; empty keeps root.
    pub runas: String,
    /// Keep each VM's serial console in `<sandbox dir>/console.log` (debugging).
    pub console_log: bool,
    /// cgroup parent group of the QEMU processes.
    pub cgroup_parent: String,
    /// Seconds create (boot) waits for lohar to answer.
    pub ready_timeout_secs: u64,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            kernel: None,
            modules_dir: None,
            extra_modules: Vec::new(),
            qemu: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            accel: "auto".into(),
            disk_size_mb: 4096,
            memory_overhead_mb: 256,
            tcg_tb_mb: 64,
            uid_base: 1_500_000_000,
            runas: String::new(),
            console_log: false,
            cgroup_parent: "bhatti-vm".into(),
            ready_timeout_secs: 120,
        }
    }
}

impl ServerConfig {
    /// The engines to run, the default first and each once.
    pub fn enabled_engines(&self) -> Vec<String> {
        let mut out = vec![self.engine.clone()];
        for e in &self.engines {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    }
}

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// API listen address. Default `127.0.0.1:8080`: loopback only, so a fresh install is not
    /// exposed to the network until the operator chooses to (`0.0.0.0:8080`).
    pub listen: String,
    /// All state (`state.db`, `age.key`, images, sandboxes). Created 0700.
    pub data_dir: PathBuf,
    /// Default engine: `namespace` (default), `gvisor`, `vm`, or `none`.
    pub engine: String,
    /// Every engine this daemon runs (`create --engine NAME` picks one); empty: just
    /// `engine`. `engine` is added when missing.
    pub engines: Vec<String>,
    /// Settings of the `namespace` engine (lohar, images and networking are shared by all).
    pub namespace: NamespaceOptions,
    /// Settings of the `gvisor` engine.
    pub gvisor: GvisorOptions,
    /// Settings of the `vm` engine.
    pub vm: VmOptions,
    /// Path-mode public proxy listen address (`http://<addr>/<alias>/…`).
    pub public_proxy_listen: Option<String>,
    /// Domain mode: Host routing (`<alias>.<proxy_zone>`, `api_host`), optional TLS.
    pub domain: Option<crate::public_proxy::DomainConfig>,
    /// Public proxy limits (rate limits per IP, alias and global; timeouts; body cap).
    pub public_proxy: crate::public_proxy::PublicProxyConfig,
    /// Sent as `X-Bhatti-Min-CLI` when set.
    pub min_cli_version: Option<String>,
    /// Log level (`debug`, `info`, `warn`, `error`) or a tracing filter.
    pub log_level: String,
    /// Per-user API rate limits.
    pub rate_limits: RateLimitConfig,
    /// Limits of the first-start `admin` user.
    pub admin: AdminConfig,
    /// Whether first start writes the admin key into the invoking user's `~/.bhatti/config.yaml`.
    pub write_cli_config: bool,
    /// Where first start writes the CLI config instead of the invoking user's home (tests).
    pub first_start_cli_config: Option<PathBuf>,
    /// Maximum JSON request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Thermal manager timings (hot → warm → cold).
    pub thermal: crate::thermal::ThermalConfig,
    /// E2B-compatible facade (off unless `e2b.listen` is set).
    pub e2b: crate::e2b::E2bConfig,
    /// CLI-side key, accepted (the file may be shared with the CLI) and ignored by the daemon.
    pub api_url: Option<String>,
    /// CLI-side key, accepted and ignored by the daemon.
    pub auth_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("/var/lib/bhatti"),
            engine: "namespace".into(),
            engines: Vec::new(),
            namespace: NamespaceOptions::default(),
            gvisor: GvisorOptions::default(),
            vm: VmOptions::default(),
            public_proxy_listen: None,
            domain: None,
            public_proxy: crate::public_proxy::PublicProxyConfig::default(),
            min_cli_version: None,
            log_level: "info".into(),
            rate_limits: RateLimitConfig::default(),
            admin: AdminConfig::default(),
            write_cli_config: true,
            first_start_cli_config: None,
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 30,
            thermal: crate::thermal::ThermalConfig::default(),
            e2b: crate::e2b::E2bConfig::default(),
            api_url: None,
            auth_token: None,
        }
    }
}

impl ServerConfig {
    /// `BHATTI_CONFIG` if set, else `/etc/bhatti/config.yaml` if present, else defaults;
    /// then `BHATTI_LOG_LEVEL`, if set, overrides `log_level`.
    pub fn load() -> Result<Self, ConfigError> {
        let mut cfg = if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            Self::from_file(Path::new(&p))?
        } else if Path::new(DEFAULT_CONFIG_PATH).exists() {
            Self::from_file(Path::new(DEFAULT_CONFIG_PATH))?
        } else {
            Self::default()
        };
        if let Some(level) = std::env::var(LOG_LEVEL_ENV).ok().filter(|l| !l.is_empty()) {
            cfg.log_level = level;
        }
        Ok(cfg)
    }

    /// Reads one YAML file; missing keys take their defaults, unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses YAML text (an empty document means all defaults).
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            create: BucketConfig {
                burst: 10,
                per_minute: 30,
            },
            exec: BucketConfig {
                burst: 30,
                per_minute: 600,
            },
            other: BucketConfig {
                burst: 60,
                per_minute: 1200,
            },
            max_users: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial() {
        let c = ServerConfig::from_yaml("").unwrap();
        assert_eq!(c, ServerConfig::default());
        let c = ServerConfig::from_yaml(
            "listen: 127.0.0.1:0\ndata_dir: /tmp/x\nrate_limits:\n  create: {burst: 2, per_minute: 5}\n",
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.rate_limits.create.burst, 2);
        assert_eq!(c.rate_limits.exec.burst, 30);
        assert_eq!(c.admin.max_sandboxes, 50);
    }

    #[test]
    fn unknown_key_rejected() {
        let e = ServerConfig::from_yaml("lisen: x\n").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn several_engines() {
        let c = ServerConfig::from_yaml(
            "engine: gvisor\nengines: [namespace, gvisor]\ngvisor: {platform: kvm}\n",
        )
        .unwrap();
        assert_eq!(c.enabled_engines(), ["gvisor", "namespace"]);
        assert_eq!(c.gvisor.platform, "kvm");
        assert_eq!(ServerConfig::default().enabled_engines(), ["namespace"]);
        let c = ServerConfig::from_yaml("engines: [vm]\nvm: {accel: tcg, runas: \"\"}\n").unwrap();
        assert_eq!(c.enabled_engines(), ["namespace", "vm"]);
        assert_eq!(c.vm.accel, "tcg");
        assert_eq!(c.vm.disk_size_mb, 4096);
    }

    #[test]
    fn cli_keys_accepted() {
        let c = ServerConfig::from_yaml("api_url: http://x\nauth_token: t\n").unwrap();
        assert_eq!(c.api_url.as_deref(), Some("http://x"));
    }
}
