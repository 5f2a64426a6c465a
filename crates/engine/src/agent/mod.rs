//! The host side of the lohar protocol: one connection per operation, with timeouts.

mod error;

pub use error::AgentError;
