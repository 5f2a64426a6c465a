//! Sandbox engines behind one trait, and the host side of the lohar protocol.
//!
//! The engine knows nothing of HTTP, users' API keys or SQLite: it is given a validated
//! [`SandboxSpec`] and returns where the sandbox's lohar can be reached.

pub mod agent;
pub mod cgroups;
pub mod error;
pub mod gvisor;
pub mod idle_meter;
pub mod image;
pub mod namespace;
pub mod net;
pub mod router;
mod sandbox_dir;
pub mod spec;
pub mod vm;

pub use error::EngineError;
pub use router::Router;
pub use spec::{AgentEndpoint, Capabilities, Created, RunState, SandboxSpec, SpecFile};

use async_trait::async_trait;

/// A way of running sandboxes (namespace launcher, gVisor, QEMU microVM …).
///
/// Everything above the engine — exec, sessions, files, ports, proxy — goes through lohar via
/// [`Engine::agent`], so all engines behave the same for users.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Short name used in config and `inspect` (`namespace`, `gvisor`, `vm`).
    fn name(&self) -> &'static str;

    /// What this engine can do beyond create/destroy; the server asks instead of assuming.
    fn capabilities(&self) -> Capabilities;

    /// Every engine behind this one with its capabilities (a [`Router`] has several); a
    /// sandbox's engine is one of these names.
    fn engines(&self) -> Vec<(&'static str, Capabilities)> {
        vec![(self.name(), self.capabilities())]
    }

    /// Creates and boots a sandbox; returns only once its lohar answers.
    async fn create(&self, spec: &SandboxSpec) -> Result<Created, EngineError>;

    /// Destroys a sandbox and every resource it held. Destroying an unknown id is not an error.
    async fn destroy(&self, engine_id: &str) -> Result<(), EngineError>;

    /// The sandbox's current run state as the engine sees it.
    async fn state(&self, engine_id: &str) -> Result<RunState, EngineError>;

    /// Freezes every process of the sandbox (warm). Requires `capabilities().pause`.
    async fn pause(&self, engine_id: &str) -> Result<(), EngineError>;

    /// Thaws a paused sandbox.
    async fn resume(&self, engine_id: &str) -> Result<(), EngineError>;

    /// Saves a paused sandbox's memory to disk and releases it (cold); [`Engine::resume`]
    /// brings it back with its processes. Requires `capabilities().snapshot_memory`.
    async fn snapshot(&self, _engine_id: &str) -> Result<(), EngineError> {
        Err(EngineError::NotSupported {
            engine: self.name(),
            what: "memory snapshots",
        })
    }

    /// Where and how to reach the sandbox's lohar.
    async fn agent(&self, engine_id: &str) -> Result<AgentEndpoint, EngineError>;

    /// Stops a sandbox: its processes and memory are released, its filesystem (and its id
    /// range / IP reservation, where the engine has them) kept for [`Engine::start`].
    async fn stop(&self, _engine_id: &str) -> Result<(), EngineError> {
        Err(EngineError::NotSupported {
            engine: self.name(),
            what: "stop",
        })
    }

    /// Starts a stopped sandbox again over its kept filesystem (the `init` session runs
    /// again). `spec.id` is the engine id.
    async fn start(&self, _spec: &SandboxSpec) -> Result<Created, EngineError> {
        Err(EngineError::NotSupported {
            engine: self.name(),
            what: "start",
        })
    }

    /// Total CPU time the sandbox's processes have used, in microseconds (the thermal manager
    /// compares it between ticks: real work keeps a sandbox hot). `None` when unknown.
    async fn usage(&self, _engine_id: &str) -> Option<u64> {
        None
    }

    /// After a daemon restart: adopts each listed sandbox whose processes still run, starts the
    /// others again over their kept filesystem, and removes whatever the engine holds for
    /// sandboxes not listed (a crashed daemon's leftovers). `spec.id` is the engine id.
    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        sandboxes
            .into_iter()
            .map(|s| {
                (
                    s.id,
                    Err(EngineError::NotSupported {
                        engine: self.name(),
                        what: "recovery after a restart",
                    }),
                )
            })
            .collect()
    }
}

/// An engine that cannot run sandboxes on this host, with the reason. The daemon still serves
/// users, keys, secrets and records; sandbox operations fail with a clear error.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The configured engine name.
    pub engine: String,
    /// Why it cannot run here.
    pub reason: String,
}

impl Unavailable {
    fn err(&self) -> EngineError {
        EngineError::Unavailable {
            engine: self.engine.clone(),
            reason: self.reason.clone(),
        }
    }
}

#[async_trait]
impl Engine for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn create(&self, _spec: &SandboxSpec) -> Result<Created, EngineError> {
        Err(self.err())
    }
    async fn destroy(&self, _engine_id: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn state(&self, _engine_id: &str) -> Result<RunState, EngineError> {
        Ok(RunState::Missing)
    }
    async fn pause(&self, _engine_id: &str) -> Result<(), EngineError> {
        Err(self.err())
    }
    async fn resume(&self, _engine_id: &str) -> Result<(), EngineError> {
        Err(self.err())
    }
    async fn agent(&self, _engine_id: &str) -> Result<AgentEndpoint, EngineError> {
        Err(self.err())
    }
    async fn recover(
        &self,
        sandboxes: Vec<SandboxSpec>,
    ) -> Vec<(String, Result<Created, EngineError>)> {
        sandboxes
            .into_iter()
            .map(|s| (s.id, Err(self.err())))
            .collect()
    }
}
