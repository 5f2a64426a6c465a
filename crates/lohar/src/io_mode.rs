//! Whether lohar keeps its closable files out of epoll (set once at start from the config).
//!
//! Only the gvisor engine asks for it (`epoll_free_io`): runsc 2022 can bring a deleted epoll
//! registration back after a restore (see [`crate::tcp_threads`], [`crate::pipe_threads`]).
//! Everywhere else tokio's reactor serves TCP connections, pipes and terminals directly,
//! which costs no thread per connection or process.

use std::sync::atomic::{AtomicBool, Ordering};

static EPOLL_FREE: AtomicBool = AtomicBool::new(false);

/// Sets the mode for the rest of the process's life.
pub fn set_epoll_free(on: bool) {
    EPOLL_FREE.store(on, Ordering::Relaxed);
}

/// Whether TCP connections, pipes and terminals are served by threads instead of epoll.
pub fn epoll_free() -> bool {
    EPOLL_FREE.load(Ordering::Relaxed)
}
