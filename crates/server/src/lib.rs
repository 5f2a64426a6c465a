//! The bhatti daemon: HTTP API, auth, limits and rate limits, store, secrets.
//!
//! Entry points: [`ServerConfig::load`], [`Server::bind`] → [`Server::run`] (or [`serve`]),
//! [`init_logging`], and the DB-direct user functions in [`admin`].

pub mod admin;
pub mod config;
pub mod ids;
pub mod rate_limit;
pub mod secrets;
pub mod store;
pub mod validate;

pub use config::ServerConfig;
