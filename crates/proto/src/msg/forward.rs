use serde::{Deserialize, Serialize};

/// FWD_REQ: open a raw tunnel to `127.0.0.1:<port>` inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwdRequest {
    /// The TCP port inside the sandbox.
    pub port: u16,
}

/// FWD_RESP: `{"status":"ok"}` or `{"status":"error","message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwdResponse {
    /// `ok` or `error`.
    pub status: String,
    /// The reason, when `status` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FwdResponse {
    /// The success reply.
    pub fn ok() -> Self {
        FwdResponse {
            status: "ok".into(),
            message: None,
        }
    }

    /// A failure reply.
    pub fn error(msg: impl Into<String>) -> Self {
        FwdResponse {
            status: "error".into(),
            message: Some(msg.into()),
        }
    }

    /// Whether the tunnel was opened.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}
