//! Users as shown by `bhatti user list --json`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user (tenant) and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// `usr_` + 8 hex.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Maximum live sandboxes.
    pub max_sandboxes: u32,
    /// Maximum CPUs per sandbox.
    pub max_cpus_per_sandbox: u32,
    /// Maximum memory per sandbox, MiB.
    pub max_memory_mb_per_sandbox: u64,
    /// Index of the user's /24 network.
    pub subnet_index: u32,
    /// RFC 3339.
    pub created_at: String,
    /// Live sandboxes the user owns.
    pub sandbox_count: u32,
}
