//! Sandbox records and the create request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A sandbox as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sandbox {
    /// 16 lowercase hex.
    pub id: String,
    /// Unique per user among live sandboxes.
    pub name: String,
    /// Template it was created from, or empty.
    #[serde(default)]
    pub template_id: String,
    /// The engine's own id.
    #[serde(default)]
    pub engine_id: String,
    /// `creating`, `running`, `stopped`, `unknown`, `failed`.
    pub status: String,
    /// IP on the user's network, or empty.
    #[serde(default)]
    pub ip: String,
    /// Engine-specific state (opaque).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub engine_meta: serde_json::Value,
    /// Owning user id.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Never paused by the thermal manager.
    #[serde(default)]
    pub keep_hot: bool,
    /// CPUs (fractions allowed).
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk size in MiB (0 = image default).
    #[serde(default)]
    pub disk_size_mb: u64,
    /// Image name.
    pub image: String,
    /// User labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `hot`, `warm` or `cold`; list responses only, when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal: Option<String>,
    /// Published URLs; list responses only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// A file written into the sandbox at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileSpec {
    /// Absolute path in the sandbox.
    pub guest_path: String,
    /// Content, base64.
    pub content: String,
    /// Octal permission string, default `0644`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `POST /sandboxes` body; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSandboxRequest {
    /// Name; `sandbox-<6 hex>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image name; `minimal` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPUs; 1 when absent or 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MiB; 1024 when absent or 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Disk size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_mb: Option<u64>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Script run once at boot as the `init` session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Never pause this sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hot: Option<bool>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Names of the caller's secrets to inject as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Files written at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileSpec>>,
    /// Engine to run it (`namespace`, `gvisor`, `vm`), one of those the daemon enables;
    /// the daemon's default engine when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// `PATCH /sandboxes/:id` body; absent fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateSandboxRequest {
    /// Never cool (true also wakes it now) or allow cooling (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hot: Option<bool>,
    /// New name (does not change the guest hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels to add or overwrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_add: Option<BTreeMap<String, String>>,
    /// Label keys to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_remove: Option<Vec<String>>,
}
