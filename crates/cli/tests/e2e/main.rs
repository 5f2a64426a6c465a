//! End-to-end: the real `bhatti` binary against a real `bhatti serve` running the namespace
//! engine (root only). Each daemon runs in its own network namespace with its own data dir;
//! CLI commands are run inside that namespace too.

mod harness;

mod api_contract;
mod chaos;
mod escape;
mod gvisor;
mod lifecycle;
mod load;
mod ops;
mod proxy;
mod shell;
mod thermal;
mod vm;
mod webshell;
