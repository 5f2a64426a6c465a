//! Accepting connections and dispatching their first frame.

pub mod auth;
pub mod conn;
pub mod listen;
