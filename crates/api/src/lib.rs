//! The bhatti HTTP API contract: serde (+ OpenAPI schema) types shared by the daemon and its
//! clients. No HTTP framework types live here.

pub mod error;
pub mod headers;
pub mod health;
pub mod ops;
pub mod publish;
pub mod sandbox;
pub mod secrets;
pub mod users;

pub use error::ErrorBody;
pub use headers::{X_BHATTI_EXISTING, X_BHATTI_MIN_CLI, X_BHATTI_VERSION};
pub use health::{Health, StatusResponse};
pub use ops::{
    ExecEvent, ExecRequest, ExecResult, FileEntry, Port, Session, MAX_FILE_WRITE_BYTES, NDJSON,
};
pub use publish::{PublishRequest, PublishRule, ShellToken};
pub use sandbox::{CreateSandboxRequest, FileSpec, Sandbox};
pub use secrets::{SecretInfo, SetSecretRequest};
pub use users::User;

/// Version of this crate, which is the version of the server and of the API it speaks.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_optional_fields_are_omitted() {
        let s = Sandbox {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            template_id: String::new(),
            engine_id: String::new(),
            status: "running".into(),
            ip: String::new(),
            engine_meta: serde_json::json!({}),
            created_by: "usr_1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            stopped_at: None,
            keep_hot: false,
            cpus: 1.0,
            memory_mb: 1024,
            disk_size_mb: 0,
            image: "minimal".into(),
            labels: None,
            thermal: None,
            urls: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        for k in ["stopped_at", "labels", "thermal", "urls"] {
            assert!(v.get(k).is_none(), "{k}");
        }
        assert_eq!(serde_json::from_value::<Sandbox>(v).unwrap(), s);
    }

    #[test]
    fn create_request_all_optional_and_errors_shape() {
        let r: CreateSandboxRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r, CreateSandboxRequest::default());
        assert_eq!(serde_json::to_string(&r).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("x")).unwrap(),
            r#"{"error":"x"}"#
        );
    }

    #[test]
    fn secret_value_not_in_debug() {
        let r = SetSecretRequest {
            name: "A".into(),
            value: "hunter2".into(),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
