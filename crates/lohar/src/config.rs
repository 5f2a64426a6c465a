//! The sandbox configuration lohar receives at boot: a JSON file it reads, applies and deletes.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Default control port (TCP), as in the original.
pub const DEFAULT_CONTROL_PORT: u16 = 1024;
/// Default forward port (TCP).
pub const DEFAULT_FORWARD_PORT: u16 = 1025;

/// One file to write at boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Base64 content.
    #[serde(default)]
    pub content: String,
    /// Octal mode string (`0644` when absent or unparsable).
    #[serde(default)]
    pub mode: String,
}

/// The sandbox configuration (keys compatible with the original's config drive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The server's sandbox id.
    #[serde(default)]
    pub sandbox_id: String,
    /// Hostname (the sandbox name at creation).
    #[serde(default)]
    pub hostname: String,
    /// Token every connection must present; empty means no auth.
    #[serde(default)]
    pub token: String,
    /// Environment for every process (user env + decrypted secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files to write at boot, by absolute path.
    #[serde(default)]
    pub files: BTreeMap<String, ConfigFile>,
    /// Script for the `init` session.
    #[serde(default)]
    pub init: String,
    /// Nameservers for resolv.conf.
    #[serde(default)]
    pub dns: Vec<String>,
    /// User processes run as (`lohar` unless `root`).
    #[serde(default)]
    pub user: String,
    /// TCP control port (default 1024).
    #[serde(default)]
    pub control_port: Option<u16>,
    /// TCP forward port (default 1025).
    #[serde(default)]
    pub forward_port: Option<u16>,
    /// `sync()` after every exec before reporting the exit, for engines that snapshot right after.
    #[serde(default)]
    pub sync_on_exit: bool,
    /// Keep TCP connections, pipes and terminals out of epoll (threads serve them): the gvisor
    /// engine's restores need it (see `io_mode`).
    #[serde(default)]
    pub epoll_free_io: bool,
    /// `eth0`'s address, for engines whose sandbox configures its own interface (the vm engine:
    /// the host cannot reach into a guest kernel's network stack the way it can into a netns).
    #[serde(default)]
    pub network: Option<NetworkConfig>,
}

/// Static IPv4 configuration of `eth0`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Address with prefix length, e.g. `10.0.1.2/24`.
    pub address: String,
    /// Default gateway, e.g. `10.0.1.1`.
    pub gateway: String,
}

impl NetworkConfig {
    /// Parses `address` and `gateway` into (ip, prefix length, gateway).
    pub fn parse(&self) -> Result<(std::net::Ipv4Addr, u8, std::net::Ipv4Addr), String> {
        let (ip, prefix) = self
            .address
            .split_once('/')
            .ok_or_else(|| format!("address {:?} has no /prefix", self.address))?;
        let ip = ip
            .parse()
            .map_err(|_| format!("bad address {:?}", self.address))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("bad prefix in {:?}", self.address))?;
        let gw = self
            .gateway
            .parse()
            .map_err(|_| format!("bad gateway {:?}", self.gateway))?;
        Ok((ip, prefix, gw))
    }
}

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid config JSON.
    #[error("parse config {path}: {source}")]
    Parse {
        /// The path.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
}

impl SandboxConfig {
    /// Reads the config at `path` and deletes the file, so secrets are not left on disk.
    pub fn read_and_delete(path: &Path) -> Result<SandboxConfig, ConfigError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        // Delete before parsing so even a malformed file does not linger.
        let _ = std::fs::remove_file(path);
        serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse { path: p, source })
    }

    /// Whether user processes run as root (only when the config says so).
    pub fn run_as_root(&self) -> bool {
        self.user == "root"
    }
}

/// Decodes a config file's content and mode.
pub fn decode_file(f: &ConfigFile) -> Result<(Vec<u8>, u32), base64::DecodeError> {
    let content = base64::engine::general_purpose::STANDARD.decode(f.content.as_bytes())?;
    Ok((content, parse_mode(&f.mode).unwrap_or(0o644)))
}

/// Parses an octal permission string such as `0644` or `755`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode(""), None);
        assert_eq!(parse_mode("77777"), None);
    }

    #[test]
    fn network_parses() {
        let n = NetworkConfig {
            address: "10.0.1.2/24".into(),
            gateway: "10.0.1.1".into(),
        };
        let (ip, p, gw) = n.parse().unwrap();
        assert_eq!(
            (ip.to_string(), p, gw.to_string()),
            ("10.0.1.2".into(), 24, "10.0.1.1".into())
        );
        let bad = NetworkConfig {
            address: "10.0.1.2".into(),
            gateway: "10.0.1.1".into(),
        };
        assert!(bad.parse().is_err());
        let bad = NetworkConfig {
            address: "10.0.1.2/33".into(),
            gateway: "10.0.1.1".into(),
        };
        assert!(bad.parse().is_err());
    }

    #[test]
    fn read_and_delete_removes_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, br#"{"hostname":"dev","env":{"A":"1"},"token":"t"}"#).unwrap();
        let c = SandboxConfig::read_and_delete(&p).unwrap();
        assert_eq!(c.hostname, "dev");
        assert_eq!(c.env["A"], "1");
        assert!(!p.exists());
    }
}
