//! Engine errors.

use thiserror::Error;

use crate::agent::AgentError;

/// Errors of engine operations.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The configured engine cannot run on this host.
    #[error("engine {engine} is unavailable: {reason}")]
    Unavailable {
        /// Engine name.
        engine: String,
        /// Why.
        reason: String,
    },
    /// No complete image by that name.
    #[error("image \"{0}\" not found")]
    ImageNotFound(String),
    /// The engine does not know this sandbox.
    #[error("sandbox {0} not found in engine")]
    NotFound(String),
    /// The engine cannot do this (e.g. memory snapshots).
    #[error("not supported by the {engine} engine: {what}")]
    NotSupported {
        /// Engine name.
        engine: &'static str,
        /// The operation.
        what: &'static str,
    },
    /// Talking to lohar failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Any other failure, with the step that failed.
    #[error("{step}: {source}")]
    Io {
        /// What the engine was doing.
        step: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An [`EngineError::Io`] for `step` from any error: the engines' common failure.
pub(crate) fn io(step: impl Into<String>, e: impl std::fmt::Display) -> EngineError {
    EngineError::Io {
        step: step.into(),
        source: std::io::Error::other(e.to_string()),
    }
}
