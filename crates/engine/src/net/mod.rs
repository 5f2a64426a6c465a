//! Per-user networks: bridges, per-sandbox veth pairs, IP allocation and isolation rules.
//!
//! Each user (`subnet_index` n >= 1) gets a bridge `brbhatti-<n>` with gateway `.1` of the n-th
//! /24 inside the configured base (default `10.0.0.0/8`). Each sandbox gets a veth pair — host
//! end `bh-<key8>` on the bridge, `eth0` in the sandbox's netns — the lowest free address and a
//! default route. Sandboxes of one user reach each other; other users and the host (beyond
//! replies to host-initiated connections) are unreachable; egress is masqueraded.
//!
//! * [`network`] — [`Network`]: start, attach, detach, reconcile.
//! * [`ipam`] — subnet maths and the in-memory address pools (pure).
//! * [`bridge`], [`veth`] — the netlink work; [`firewall`] — the iptables rules.

mod bridge;
mod error;
pub mod firewall;
pub mod ipam;
mod netlink;
mod network;
mod tap;
mod veth;

use std::net::Ipv4Addr;
use std::path::Path;

pub use error::NetError;
pub use ipam::{user_subnet, Ipam};
pub use network::Network;

/// The host-side interface name (veth end or TAP) of sandbox `key`: the prefix plus the key's
/// first 8 characters (the key itself when it is shorter or unusual).
pub fn host_iface_name(prefix: &str, key: &str) -> String {
    veth::host_veth_name(prefix, key).unwrap_or_else(|_| format!("{prefix}{key}"))
}

/// How sandbox networking is laid out on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The range all user subnets are carved from; user n gets its n-th /24.
    pub base: ipnet::Ipv4Net,
    /// Bridge name prefix; user n's bridge is `<prefix><n>`.
    pub bridge_prefix: String,
    /// Host-side veth prefix; a sandbox's is `<prefix><first 8 chars of its key>`.
    pub veth_prefix: String,
    /// The MASQUERADE interface; `None` detects the default-route interface.
    pub egress_interface: Option<String>,
    /// How long a user's bridge outlives their last sandbox (zero: removed with it). Deleting
    /// a bridge waits for RCU grace periods (~60 ms here), which would otherwise be most of a
    /// destroy, and the user's next create would build it again.
    pub bridge_linger: std::time::Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            base: ipnet::Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
            bridge_prefix: "brbhatti-".to_string(),
            veth_prefix: "bh-".to_string(),
            egress_interface: None,
            bridge_linger: std::time::Duration::ZERO,
        }
    }
}

/// What [`Network::attach`] needs to wire one sandbox.
#[derive(Debug, Clone, Copy)]
pub struct AttachRequest<'a> {
    /// The owning user's subnet index (>= 1).
    pub subnet_index: u32,
    /// The sandbox's engine id (16 hex); its first 8 characters name the host veth.
    pub key: &'a str,
    /// The sandbox's network namespace, e.g. `/proc/<pid>/ns/net`.
    pub netns: &'a Path,
    /// Keep this address (re-attach after a restart); `None` takes the lowest free one.
    pub ip: Option<Ipv4Addr>,
}

/// How a sandbox was wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The sandbox's address on `eth0`.
    pub ip: Ipv4Addr,
    /// Its default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// Prefix length of its subnet (24).
    pub prefix_len: u8,
    /// The user's bridge.
    pub bridge: String,
    /// The host end of its veth pair.
    pub host_veth: String,
}

/// What [`Network::reconcile`] found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Live sandboxes whose addresses were marked used.
    pub kept: usize,
    /// Orphaned host veths deleted.
    pub deleted_veths: Vec<String>,
    /// Orphaned bridges deleted (with their rules).
    pub deleted_bridges: Vec<String>,
    /// Live sandboxes whose address could not be reserved (duplicate or out of range), with why.
    pub conflicts: Vec<(String, String)>,
}
