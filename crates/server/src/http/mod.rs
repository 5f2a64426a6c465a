//! HTTP handlers: extract → call one service function → respond.

pub mod exec;
pub mod files;
pub mod health;
pub mod openapi;
pub mod proxy;
pub mod publish;
pub mod sandboxes;
pub mod secrets;
pub mod sessions;
pub mod shell;
pub mod webshell;
mod webshell_page;
