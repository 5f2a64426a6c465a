//! lohar integration tests: a real lohar process in test mode (Unix sockets), driven by the
//! host-side client from bhatti-engine. One binary, one module per area.

mod harness;

mod exec;
mod files;
mod forward;
mod pid1;
mod robustness;
mod sessions;
mod v2;
