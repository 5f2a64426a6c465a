//! Health and simple status bodies.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Daemon uptime, e.g. `1h2m3s`.
    pub uptime: String,
}

/// `{"status": "…"}`, e.g. `destroyed` or `deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// What happened.
    pub status: String,
}

impl StatusResponse {
    /// A status body.
    pub fn new(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
        }
    }
}
