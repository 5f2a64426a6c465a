//! Errors of the networking module: each variant names the failing step and the object.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use thiserror::Error;

/// Why a networking operation failed.
#[derive(Debug, Error)]
pub enum NetError {
    /// The configuration cannot work (base network too small, names too long …).
    #[error("invalid network configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A user's subnet index does not fit inside the base network.
    #[error("subnet index {index} is outside {base} (valid: 1..={max})")]
    SubnetOutOfRange {
        /// The index asked for.
        index: u32,
        /// The configured base network.
        base: Ipv4Net,
        /// The largest valid index.
        max: u32,
    },
    /// Every sandbox address of a user is taken.
    #[error("IP pool exhausted (253 sandboxes per user) in {subnet}")]
    PoolExhausted {
        /// The user's subnet.
        subnet: Ipv4Net,
    },
    /// A requested address belongs to another sandbox.
    #[error("IP {ip} is already used by sandbox {owner}")]
    IpTaken {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The sandbox key holding it.
        owner: String,
    },
    /// A requested address is not one of the user's sandbox addresses (.2–.254 of the subnet).
    #[error("IP {ip} is not a sandbox address of {subnet} (.2-.254)")]
    IpOutsidePool {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The user's subnet.
        subnet: Ipv4Net,
    },
    /// A sandbox key cannot be turned into an interface name.
    #[error("sandbox key {key:?} cannot name an interface (need 8+ characters of [0-9A-Za-z_-])")]
    BadKey {
        /// The key.
        key: String,
    },
    /// Another sandbox's key starts with the same 8 characters, so its host veth has this name.
    #[error("host veth {name} is already used by sandbox {owner}")]
    VethNameTaken {
        /// The interface name.
        name: String,
        /// The key of the sandbox using it.
        owner: String,
    },
    /// Creating a TAP device failed.
    #[error("{step} tap {name}: {source}")]
    Tap {
        /// What was being done.
        step: &'static str,
        /// The interface name.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Opening a netlink socket failed.
    #[error("opening a netlink socket ({context}): {source}")]
    Connect {
        /// Host side or the sandbox's netns.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{step} {object}: {source}")]
    Netlink {
        /// What was being done ("create bridge", "add default route" …).
        step: &'static str,
        /// The interface, address or route concerned.
        object: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link expected to exist was not found.
    #[error("{step}: no interface {name}")]
    LinkMissing {
        /// What was being done.
        step: &'static str,
        /// The interface name.
        name: String,
    },
    /// Opening or entering the sandbox's network namespace failed.
    #[error("{step} {path}: {source}")]
    Netns {
        /// What was being done.
        step: &'static str,
        /// The netns path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The helper thread that configures a sandbox's netns died.
    #[error("configuring {path}: helper thread panicked")]
    NetnsThread {
        /// The netns path.
        path: PathBuf,
    },
    /// No `iptables` binary was found.
    #[error("iptables not found on PATH or in /usr/sbin, /sbin (install the iptables package)")]
    IptablesMissing,
    /// Running `iptables` failed to start.
    #[error("running iptables {args}: {source}")]
    IptablesSpawn {
        /// The arguments.
        args: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `iptables` exited unsuccessfully.
    #[error("iptables {args}: {status}: {stderr}")]
    Iptables {
        /// The arguments.
        args: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Writing a sysctl failed.
    #[error("setting {key}: {source}")]
    Sysctl {
        /// The sysctl path.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
