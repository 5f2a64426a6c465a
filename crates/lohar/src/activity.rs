//! The last-activity clock the host's thermal manager reads.

use std::sync::atomic::{AtomicI64, Ordering};

use bhatti_proto::msg::Activity;

/// Last activity time, bumped by execs, file reads/writes and session input.
#[derive(Debug, Default)]
pub struct ActivityClock {
    last_unix: AtomicI64,
}

impl ActivityClock {
    /// Records activity now.
    pub fn touch(&self) {
        self.last_unix.store(now_unix(), Ordering::Relaxed);
    }

    /// Unix seconds of the last activity (0 if none).
    pub fn last(&self) -> i64 {
        self.last_unix.load(Ordering::Relaxed)
    }

    /// The ACTIVITY_RESP payload, given the session counts.
    pub fn report(&self, active_sessions: u32, attached_sessions: u32) -> Activity {
        Activity {
            last_activity_unix: self.last(),
            active_sessions,
            attached_sessions,
        }
    }
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
