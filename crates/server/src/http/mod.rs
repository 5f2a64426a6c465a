//! HTTP handlers: extract → call one service function → respond.

pub mod health;
pub mod openapi;
pub mod sandboxes;
pub mod secrets;
