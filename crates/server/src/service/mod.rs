//! Domain logic behind the HTTP handlers; no axum types here.

pub mod agent;
pub mod exec;
pub mod files;
pub mod proxy;
pub mod publish;
pub mod recovery;
pub mod sandboxes;
pub mod secrets;
pub mod sessions;
pub mod shell;
pub mod webshell;

use bhatti_engine::agent::AgentError;
use bhatti_engine::EngineError;
use thiserror::Error;

use crate::secrets::SecretsError;
use crate::store::StoreError;

/// Errors of service operations; `crate::error` maps them to HTTP once.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// Invalid input (400).
    #[error("{0}")]
    Invalid(String),
    /// No such thing for this caller (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A per-user limit is reached (429).
    #[error("{0}")]
    LimitReached(String),
    /// The sandbox is not running (409).
    #[error("{0}")]
    NotRunning(String),
    /// A warm or cold sandbox could not be woken (503).
    #[error("{0}")]
    WakeFailed(String),
    /// A body over a cap (413).
    #[error("{0}")]
    TooLarge(String),
    /// A streamed upload without `Content-Length` (411).
    #[error("{0}")]
    LengthRequired(String),
    /// The sandbox's agent failed or refused.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Secret encryption failed.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A background task failed.
    #[error("task failed: {0}")]
    Task(String),
}
