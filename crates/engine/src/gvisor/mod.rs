//! The `gvisor` engine: sandboxes under runsc (gVisor's user-space kernel), with memory
//! snapshots.
//!
//! A sandbox is a directory `<sandboxes_dir>/<id>/` — `upper/` + `work/` (its writable layer,
//! overlaid on the image like the namespace engine's), `rootfs/` (the overlay, mounted on the
//! host), `boot/` (bound at `/run/bhatti`: lohar's config), `bundle/config.json` (built by
//! [`oci`]), `netns` (a bind-mounted network namespace holding its veth; runsc's netstack takes
//! over `eth0`), `checkpoint/` while cold or stopped — plus a cgroup (limits, CPU accounting)
//! and runsc's state under the engine's runsc root.
//!
//! - warm = `runsc pause`; cold = `runsc checkpoint` to `checkpoint/` (the sandbox's processes
//!   and memory are gone from the host), wake = `runsc restore`: processes, sessions, files and
//!   IP come back as they were. `stop`/`start` take the same path.
//! - gVisor refuses to save TCP connections that are open or in TIME_WAIT on a real NIC; a
//!   snapshot that fails takes the sandbox down, so the engine boots it again over its kept
//!   filesystem (its processes are lost) and reports the failure.
//! - runsc 0.0~20221219 (Debian bookworm's) is the floor; see [`runsc`] for the workaround it
//!   needs on Linux ≥ 6.x.

mod cgroups;
mod config;
mod engine;
mod fs;
pub mod oci;
pub mod runsc;

pub use config::GvisorConfig;
pub use engine::{GvisorEngine, GvisorMeta};
