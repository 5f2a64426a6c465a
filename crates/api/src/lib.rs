//! The bhatti HTTP API contract: serde (+ OpenAPI schema) types shared by the daemon and its
//! clients. No HTTP framework types live here.

pub mod error;
pub mod headers;
pub mod health;
pub mod sandbox;
pub mod secrets;
pub mod users;

pub use error::ErrorBody;
pub use headers::{X_BHATTI_EXISTING, X_BHATTI_MIN_CLI, X_BHATTI_VERSION};
pub use health::{Health, StatusResponse};
pub use sandbox::{CreateSandboxRequest, FileSpec, Sandbox};
pub use secrets::{SecretInfo, SetSecretRequest};
pub use users::User;

/// Version of this crate, which is the version of the server and of the API it speaks.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
