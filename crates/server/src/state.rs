//! Shared state of the HTTP layer: one `Clone` struct of `Arc`s.

use std::sync::Arc;
use std::time::Instant;

use bhatti_engine::Engine;
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::rate_limit::RateLimiter;
use crate::secrets::SecretBox;
use crate::store::events::NewEvent;
use crate::store::Store;

/// Everything handlers and services need.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The sandbox engine.
    pub engine: Arc<dyn Engine>,
    /// Secret encryption.
    pub secrets: Arc<SecretBox>,
    /// Per-user rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// When the daemon started (for `/health`).
    pub started: Instant,
    /// Non-blocking event queue (for events raised outside a store transaction).
    pub events: mpsc::Sender<NewEvent>,
    /// Thermal state of running sandboxes.
    pub thermal: Arc<crate::thermal::Thermal>,
    /// Live web shells (`/_shell/<id>`).
    pub web_shells: Arc<crate::service::webshell::WebShells>,
}

impl AppState {
    /// Queues an event without waiting; dropped (and logged) if the queue is full, so a flood of
    /// e.g. failed logins cannot stall request handling on the database.
    pub fn record(&self, event: NewEvent) {
        if let Err(e) = self.events.try_send(event) {
            tracing::warn!(error = %e, "event queue full; event dropped");
        }
    }
}
