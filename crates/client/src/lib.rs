//! Typed Rust client of the bhatti HTTP API.
//!
//! The `bhatti` CLI is built on it, and it is the Rust SDK:
//!
//! ```no_run
//! # async fn demo() -> Result<(), bhatti_client::ClientError> {
//! let client = bhatti_client::Client::new("http://localhost:8080", Some("bht_…".into()))?;
//! for sb in client.list_sandboxes(&[]).await? {
//!     println!("{} {}", sb.name, sb.status);
//! }
//! # Ok(()) }
//! ```
//!
//! Every sandbox method takes a sandbox ID **or name**: the server resolves either in
//! `/sandboxes/:id`, so one request suffices.

mod client;
mod error;
mod exec;
mod files;
mod publish;
mod sandboxes;
mod secrets;
mod sessions;
mod shell;

pub use bhatti_api as api;
pub use client::{Client, Timing};
pub use error::ClientError;
pub use exec::ExecStream;
pub use files::{FileDownload, FileStat};
pub use shell::{ShellEvent, ShellReader, ShellWriter};
