//! Values passed into and out of engines.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything an engine needs to create one sandbox. Validated by the server before it gets here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The server's sandbox id (16 hex); engines derive their own resource names from it.
    pub id: String,
    /// Sandbox name; becomes the hostname.
    pub name: String,
    /// Owning user's id (`usr_…`).
    pub user_id: String,
    /// Owning user's subnet index (1, 2, …) → bridge and /24.
    pub subnet_index: u32,
    /// Image name (e.g. `minimal`).
    pub image: String,
    /// CPUs (fractions allowed).
    pub cpus: f64,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Environment for every process, secrets already decrypted and merged.
    pub env: BTreeMap<String, String>,
    /// Files lohar writes at boot.
    pub files: Vec<SpecFile>,
    /// Script run as the `init` session.
    pub init: Option<String>,
    /// Per-sandbox token lohar requires on every connection.
    pub agent_token: String,
    /// The engine that runs it (`namespace`, `gvisor`, `vm`); empty: the daemon's default.
    #[serde(default)]
    pub engine: String,
}

/// A file written into the sandbox at boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecFile {
    /// Absolute path in the sandbox.
    pub path: String,
    /// Content bytes.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// What a successful create returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    /// The engine's own id for the sandbox (names its directory and resources).
    pub engine_id: String,
    /// The sandbox's IP on its user's network, if it has one.
    pub ip: Option<Ipv4Addr>,
    /// Engine-specific state the server persists for recovery.
    pub meta: serde_json::Value,
}

/// The run state of a sandbox as its engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Processes running.
    Running,
    /// Processes frozen (warm).
    Paused,
    /// No processes; filesystem kept.
    Stopped,
    /// The engine does not know this sandbox.
    Missing,
}

/// Optional abilities of an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Can freeze and thaw processes (warm state).
    pub pause: bool,
    /// Can save process memory to disk and restore it (cold state keeps processes).
    pub snapshot_memory: bool,
}

/// How to reach a sandbox's lohar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// TCP to the sandbox's IP (ports 1024 control, 1025 forward).
    Tcp {
        /// Control address.
        control: SocketAddr,
        /// Forward address.
        forward: SocketAddr,
        /// Token sent as the AUTH frame.
        token: Option<String>,
    },
    /// Unix sockets (lohar's test mode).
    Unix {
        /// Control socket path.
        control: PathBuf,
        /// Forward socket path.
        forward: PathBuf,
        /// Token sent as the AUTH frame.
        token: Option<String>,
    },
}

impl SandboxSpec {
    /// What lohar reads at boot (every engine delivers the same document; an engine may add
    /// keys of its own, e.g. the vm engine's `network`).
    pub(crate) fn lohar_config(&self, dns: &[String]) -> serde_json::Value {
        use base64::Engine as _;
        let files: serde_json::Map<String, serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    serde_json::json!({
                        "content": base64::engine::general_purpose::STANDARD.encode(&f.content),
                        "mode": format!("{:04o}", f.mode),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "sandbox_id": self.id,
            "hostname": self.name,
            "token": self.agent_token,
            "env": self.env,
            "files": files,
            "init": self.init.clone().unwrap_or_default(),
            "dns": dns,
            "user": "lohar",
        })
    }
}
