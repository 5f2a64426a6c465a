//! The error body every non-2xx response carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": "…"}`, plus a `request_id` on sanitised internal errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// `req_<16 hex>` for internal errors, so an operator can find the cause in the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// An error body with just a message.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            request_id: None,
        }
    }
}
