//! The `namespace` engine: our own hardened Linux-namespace launcher.
//!
//! A sandbox is: a directory (`upper/` is its writable layer, kept until destroy), a cgroup
//! (limits, accounting, freezer), a veth on its user's bridge, and a process tree whose PID 1
//! is lohar, in new user, mount, pid, uts, ipc, net and cgroup namespaces, with sandbox uid 0
//! mapped to an unprivileged 65 536-id range on the host. See [`init`] for the launch steps.

pub mod caps;
mod engine;
pub mod init;
pub mod launch;
pub mod protocol;
pub mod rootfs;
pub mod seccomp;
mod slots;
mod sys;

pub use engine::{
    check_host, NamespaceConfig, NamespaceEngine, SandboxMeta, CONTROL_PORT, FORWARD_PORT,
};
