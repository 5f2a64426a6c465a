//! Typed messages between the daemon and the re-exec'd launcher (`bhatti __nsinit`), one JSON
//! object per line over a socketpair.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the launcher needs to build one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The sandbox's directory (holds `upper/`, `work/`, `lower/`, `merged/`).
    pub dir: PathBuf,
    /// The image's root filesystem (overlay lower layer, seen through an idmapped mount).
    pub image_rootfs: PathBuf,
    /// The static lohar binary, bind-mounted read-only into the sandbox.
    pub lohar: PathBuf,
    /// First host uid/gid of the sandbox's 65 536-id range (sandbox uid 0 ↦ this).
    pub uid_base: u32,
    /// The sandbox hostname.
    pub hostname: String,
    /// lohar's config JSON (contains secrets: it only ever lives in the sandbox's tmpfs).
    pub lohar_config: String,
}

/// Launcher → daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum FromLauncher {
    /// The launcher has entered its new namespaces: attach its network.
    Unshared,
    /// The sandbox's PID 1 exists (host pid); it is about to exec lohar.
    Started {
        /// Host pid of the sandbox's init (lohar).
        pid: i32,
    },
    /// A step failed.
    Failed {
        /// What the launcher was doing.
        step: String,
        /// The error.
        error: String,
    },
}

/// Daemon → launcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToLauncher {
    /// The spec, first message.
    Launch(Box<LaunchSpec>),
    /// The network is attached: go on.
    Proceed,
}

/// The sandbox's uid/gid map line: 65 536 ids from `uid_base`.
pub fn id_map(uid_base: u32) -> String {
    format!("0 {uid_base} {ID_RANGE}\n")
}

/// Ids per sandbox.
pub const ID_RANGE: u32 = 65_536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = FromLauncher::Started { pid: 42 };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"msg":"started","pid":42}"#);
        let t: ToLauncher = serde_json::from_str(r#"{"msg":"proceed"}"#).unwrap();
        assert!(matches!(t, ToLauncher::Proceed));
        assert_eq!(id_map(1_000_000), "0 1000000 65536\n");
    }
}
