//! Allocation of per-sandbox host id ranges.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::protocol::ID_RANGE;

/// Which id-range slots are in use; the lowest free one is handed out.
#[derive(Debug)]
pub struct Slots {
    max: u32,
    used: Mutex<BTreeSet<u32>>,
}

impl Slots {
    /// Up to `max` slots.
    pub fn new(max: u32) -> Slots {
        Slots {
            max,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// Takes the lowest free slot.
    pub fn acquire(&self) -> Option<u32> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (0..self.max).find(|s| !used.contains(s))?;
        used.insert(slot);
        Some(slot)
    }

    /// Marks a slot used (recovery); false if it already was.
    pub fn reserve(&self, slot: u32) -> bool {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot)
    }

    /// Frees a slot.
    pub fn release(&self, slot: u32) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&slot);
    }

    /// First host id of `slot`'s range.
    pub fn uid_base(&self, first: u32, slot: u32) -> u32 {
        first + slot * ID_RANGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first() {
        let s = Slots::new(3);
        assert_eq!((s.acquire(), s.acquire()), (Some(0), Some(1)));
        s.release(0);
        assert_eq!(s.acquire(), Some(0));
        assert_eq!(s.acquire(), Some(2));
        assert_eq!(s.acquire(), None);
        assert!(!s.reserve(1));
        assert_eq!(s.uid_base(100_000, 2), 100_000 + 2 * 65_536);
    }
}
