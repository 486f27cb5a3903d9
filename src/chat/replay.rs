//! Replay protection for signed platform requests: a signature is valid
//! for 5 minutes, so a captured request could otherwise be sent again and
//! again within that window (three times = three incidents, three pages).
//! A [`ReplayGuard`] remembers what it saw for the window and says whether
//! this is the first time. Memory is bounded: entries expire with the
//! window, and past `capacity` the oldest are forgotten first.

use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};

/// Signed requests remembered per platform (about 150 bytes each): far
/// more than Slack or Discord send in 5 minutes.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// Remembers request identities (a Slack signature, a Discord interaction
/// id, a Slack event id) for the replay window.
pub struct ReplayGuard {
    window_seconds: i64,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// (when it was first seen, unix seconds; key), oldest first.
    order: VecDeque<(i64, String)>,
    keys: HashSet<String>,
}

impl ReplayGuard {
    /// A guard remembering keys for `window_seconds`, at most `capacity` of them.
    pub fn new(window_seconds: i64, capacity: usize) -> Self {
        Self {
            window_seconds,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records `key` at `now` (unix seconds); false if it was already seen
    /// within the window.
    pub fn first_time(&self, key: &str, now: i64) -> bool {
        let mut seen = self.seen.lock();
        while let Some((at, _)) = seen.order.front() {
            if *at > now - self.window_seconds && seen.order.len() < self.capacity {
                break;
            }
            let (_, old) = seen.order.pop_front().expect("front exists");
            seen.keys.remove(&old);
        }
        if seen.keys.contains(key) {
            return false;
        }
        seen.keys.insert(key.to_string());
        seen.order.push_back((now, key.to_string()));
        true
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_again_within_the_window_and_forgotten_after() {
        let g = ReplayGuard::new(300, 100);
        assert!(g.first_time("a", 1_000));
        assert!(!g.first_time("a", 1_001));
        assert!(!g.first_time("a", 1_299));
        assert!(g.first_time("b", 1_299));
        // 300 s later "a" has expired (and the request's timestamp would
        // be refused as too old anyway).
        assert!(g.first_time("a", 1_300));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let g = ReplayGuard::new(300, 1_000);
        for i in 0..10_000 {
            assert!(g.first_time(&format!("k{i}"), 1_000));
        }
        assert_eq!(g.len(), 1_000);
        // The newest are still remembered.
        assert!(!g.first_time("k9999", 1_000));
    }
}
