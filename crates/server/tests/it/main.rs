//! Integration tests: one binary; each test runs its own daemon on port 0 in a temp data dir,
//! against an in-memory test engine.

mod auth;
mod engines;
mod helpers;
mod openapi;
mod ops;
mod proxy;
mod public;
mod publish;
mod restart;
mod sandboxes;
mod secrets;
mod test_engine;
mod thermal;
