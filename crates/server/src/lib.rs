//! The bhatti daemon: HTTP API, auth, limits and rate limits, store, secrets.
//!
//! Entry points: [`ServerConfig::load`], [`Server::bind`] → [`Server::run`] (or [`serve`]),
//! [`init_logging`], and the DB-direct user functions in [`admin`].

pub mod admin;
pub mod auth;
pub mod config;
pub mod e2b;
pub mod error;
pub mod extract;
pub mod first_start;
pub mod http;
pub mod ids;
pub mod logging;
pub mod proxy;
pub mod public_proxy;
pub mod rate_limit;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod thermal;
pub mod validate;

pub use config::{ConfigError, ServerConfig};
pub use logging::init_logging;
pub use server::{serve, shutdown_signal, Server, ServerError};
