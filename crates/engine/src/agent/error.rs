use thiserror::Error;

/// Errors talking to a sandbox's lohar.
#[derive(Debug, Error)]
pub enum AgentError {
    /// Could not connect to the agent.
    #[error("connect to agent: {0}")]
    Connect(#[source] std::io::Error),
    /// The operation did not finish in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The agent answered with an ERROR frame.
    #[error("{0}")]
    Remote(String),
    /// The connection broke or carried bad frames.
    #[error("agent protocol: {0}")]
    Protocol(#[from] bhatti_proto::ProtoError),
    /// The agent sent a frame that does not fit the exchange.
    #[error("agent sent unexpected {0}")]
    Unexpected(String),
}

impl AgentError {
    /// Whether the agent reported that a path or session does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AgentError::Remote(m) if m.contains("not found") || m.contains("no such file"))
    }
}
