//! Secrets: names and timestamps only; values go in and never come out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A secret as listed (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    /// Environment-variable style name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `POST /secrets` body (create or update).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetSecretRequest {
    /// `^[A-Za-z_][A-Za-z0-9_]*$`.
    #[serde(default)]
    pub name: String,
    /// Plaintext value; encrypted at rest.
    #[serde(default)]
    pub value: String,
}

// Hand-written so a secret value never lands in a log line through `{:?}`.
impl std::fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}
