//! CPU accounting net of an engine's own idle cost (an emulator's timers, a user-space
//! kernel's polling), so the thermal manager's "busy" threshold measures the sandbox's work.

/// Counts only the CPU time used beyond an idle allowance. The count only grows (the thermal
/// manager compares successive readings).
#[derive(Debug, Clone, Copy)]
pub struct IdleMeter {
    last_raw: u64,
    last_at: Option<std::time::Instant>,
    excess: u64,
}

impl IdleMeter {
    /// A meter starting at cumulative CPU time `raw` (µs).
    pub fn new(raw: u64) -> IdleMeter {
        IdleMeter {
            last_raw: raw,
            last_at: None,
            excess: 0,
        }
    }

    /// Adds the CPU used since the last reading beyond `allowance` (a share of one CPU over
    /// the wall time between readings); returns the running total (µs).
    pub fn observe(&mut self, raw: u64, now: std::time::Instant, allowance: f64) -> u64 {
        if let Some(at) = self.last_at {
            let wall = now.duration_since(at).as_micros() as f64;
            let used = raw.saturating_sub(self.last_raw);
            self.excess += used.saturating_sub((wall * allowance) as u64);
        }
        self.last_raw = raw;
        self.last_at = Some(now);
        self.excess
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn idle_meter_counts_only_cpu_beyond_the_allowance() {
        let t0 = std::time::Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut m = IdleMeter::new(1_000);
        assert_eq!(m.observe(1_000, s(0), 0.05), 0);
        // 1 s wall, 20 ms used: under 5 %, counts nothing.
        assert_eq!(m.observe(21_000, s(1_000), 0.05), 0);
        // 1 s wall, 500 ms used: 450 ms beyond the allowance.
        assert_eq!(m.observe(521_000, s(2_000), 0.05), 450_000);
        // Idle again: the total stays.
        assert_eq!(m.observe(521_000, s(3_000), 0.05), 450_000);
    }
}
