//! The public proxy: published ports without a key, by alias (path mode on
//! `public_proxy_listen`, Host mode under `domain.proxy_zone`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rate_limit::BucketConfig;

/// Domain mode: `<alias>.<proxy_zone>` by Host header; `api_host` is the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    /// Host name of the API (e.g. `api.example.com`).
    pub api_host: String,
    /// Published apps live at `<alias>.<proxy_zone>`.
    pub proxy_zone: String,
    /// PEM certificate chain (e.g. a wildcard for the zone and the API host); with `tls_key`,
    /// the domain listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Listen address of the domain listener (default `:443`).
    pub listen: Option<String>,
}

/// Limits of the public proxy (reference §2.11 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicProxyConfig {
    /// All public requests together.
    pub global: BucketConfig,
    /// Per source IP.
    pub per_ip: BucketConfig,
    /// Per alias.
    pub per_alias: BucketConfig,
    /// IPs / aliases tracked at once (least recently seen evicted beyond).
    pub max_tracked: usize,
    /// Whole-request deadline in seconds (headers through the last body byte).
    pub request_timeout_secs: u64,
    /// Seconds a client gets to send its request headers.
    pub header_timeout_secs: u64,
    /// Cap of request bodies in bytes.
    pub max_body_bytes: u64,
    /// Open connections at once on a public listener.
    pub max_connections: usize,
}

impl Default for PublicProxyConfig {
    fn default() -> Self {
        Self {
            global: BucketConfig {
                burst: 10_000,
                per_minute: 10_000,
            },
            per_ip: BucketConfig {
                burst: 500,
                per_minute: 1500,
            },
            per_alias: BucketConfig {
                burst: 2000,
                per_minute: 5000,
            },
            max_tracked: 10_000,
            request_timeout_secs: 300,
            header_timeout_secs: 10,
            max_body_bytes: 50 * 1024 * 1024,
            max_connections: 4096,
        }
    }
}
