//! Published ports: public URLs by alias.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /sandboxes/:id/publish` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// Port inside the sandbox, 1-65535.
    #[serde(default)]
    pub port: i64,
    /// `^[a-z0-9][a-z0-9-]{0,62}$`, globally unique; omitted → `<name>-<6 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// A publish rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishRule {
    /// `pub_` + 16 hex.
    pub id: String,
    /// The sandbox's id.
    pub sandbox_id: String,
    /// Port inside the sandbox.
    pub port: u16,
    /// Public alias.
    pub alias: String,
    /// Public URL (or a placeholder when no public proxy is configured).
    pub url: String,
    /// RFC 3339.
    pub created_at: String,
}

/// `POST /sandboxes/:id/shell-token` answer: a web shell share link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShellToken {
    /// 64 hex chars; shown once (the server keeps only its hash).
    pub token: String,
    /// `…/_shell/<sandbox id>#token=<token>`: the token rides in the fragment, which browsers
    /// never send to servers.
    pub url: String,
}
