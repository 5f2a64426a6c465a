//! lohar, bhatti's guest agent.
//!
//! A frame's path through the agent: [`server::listen`] accepts a connection →
//! [`server::conn`] checks the token ([`server::auth`]) and dispatches the first frame by type →
//! [`exec`] (processes and sessions), [`files`], [`forward`] or [`activity`] do the work and
//! answer on the same connection.

pub mod activity;
pub mod boot;
pub mod bridged;
pub mod config;
pub mod exec;
pub mod files;
pub mod forward;
pub mod fsops;
pub mod io_mode;
pub mod pipe_threads;
pub mod server;
pub mod tcp_threads;

mod agent;
pub mod wire;

pub use agent::{run, Agent, Mode};
