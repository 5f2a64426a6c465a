//! The host side of the lohar protocol: one connection per operation, with timeouts.
//!
//! [`AgentClient`] dials the sandbox's lohar (TCP or, in tests, Unix sockets), authenticates
//! with the sandbox token and runs exactly one operation per connection, as the protocol
//! requires. Long-lived exchanges (streaming exec, sessions) return an [`AgentChannel`].

mod channel;
mod client;
mod error;
mod files;
mod v2;

pub use channel::{AgentChannel, AgentEvent, ChannelReader, ChannelWriter};
pub use client::{AgentClient, ExecOutput, MAX_BUFFERED_OUTPUT, TRUNCATION_MARKER};
pub use error::AgentError;
pub use files::FileReader;
pub use v2::WatchStream;

/// Any byte stream to the agent.
pub trait AgentStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> AgentStream for T {}

/// A boxed stream to the agent (also what [`AgentClient::forward`] returns).
pub type BoxedStream = Box<dyn AgentStream>;
