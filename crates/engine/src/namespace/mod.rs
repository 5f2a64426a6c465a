//! The `namespace` engine: our own hardened Linux-namespace launcher.

pub mod caps;
pub mod seccomp;
