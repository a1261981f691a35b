//! Event counts per rule and subject in fixed windows: counted here first (a short
//! mutex, never held across an await, so the write path pays a hash lookup), summed
//! over every replica through the database once a second.
//!
//! A window's estimate is the last total the database returned (every replica's
//! counts up to then) plus what this process counted since; so a rule fires here at
//! once on this process's own events, and within a second on everyone's.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Rule;
use crate::domain::anomaly::Subject;

/// Subjects tracked at once; beyond that new subjects are counted in the database
/// only (at the next flush nothing is pending for them, so they are not counted).
/// Bounds the memory an attacker rotating addresses can make us hold.
const MAX_SLOTS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub rule: Rule,
    pub subject: Subject,
}

#[derive(Debug)]
struct Slot {
    window_ms: i64,
    /// The last total of the window the database returned.
    shared: u64,
    /// Counted here since then.
    pending: u64,
    /// The rule's response already ran for this window (rules that act once).
    fired: bool,
}

/// What a hit tells the caller: the estimate, and whether the response has already
/// run this window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub total: u64,
    pub fired: bool,
}

/// Counts due to be added to the database.
#[derive(Debug, PartialEq, Eq)]
pub struct Pending {
    pub key: Key,
    pub window_ms: i64,
    pub add: u64,
}

#[derive(Default)]
pub struct Tally {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Tally {
    /// Counts one event of `key` at `now_ms` in windows of `window_ms`.
    pub fn hit(&self, key: Key, now_ms: i64, window_ms: i64) -> Count {
        let start = window_start(now_ms, window_ms);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_SLOTS && !slots.contains_key(&key) {
            return Count { total: 0, fired: false };
        }
        let slot = slots.entry(key).or_insert(Slot { window_ms: start, shared: 0, pending: 0, fired: false });
        if slot.window_ms != start {
            *slot = Slot { window_ms: start, shared: 0, pending: 0, fired: false };
        }
        slot.pending += 1;
        Count { total: slot.shared + slot.pending, fired: slot.fired }
    }

    /// Notes that the response to `key` ran in the window containing `now_ms`.
    pub fn mark_fired(&self, key: Key, now_ms: i64, window_ms: i64) {
        let start = window_start(now_ms, window_ms);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&key).filter(|s| s.window_ms == start) {
            slot.fired = true;
        }
    }

    /// Takes what was counted since the last flush, and forgets slots whose window
    /// ended (`window_of` gives each rule's window length).
    pub fn drain(&self, now_ms: i64, window_of: impl Fn(Rule) -> i64) -> Vec<Pending> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        slots.retain(|key, slot| {
            if slot.pending > 0 {
                due.push(Pending { key: *key, window_ms: slot.window_ms, add: slot.pending });
                slot.shared += slot.pending;
                slot.pending = 0;
            }
            slot.window_ms + window_of(key.rule) > now_ms
        });
        due
    }

    /// Drops the slots of the keys `which` picks, pending counts included.
    pub fn forget(&self, which: impl Fn(&Key) -> bool) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| !which(key));
    }

    /// Records the database's total for a window; returns the new estimate, if the
    /// slot is still on that window.
    pub fn settle(&self, key: Key, window_ms: i64, total: u64) -> Option<Count> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get_mut(&key).filter(|s| s.window_ms == window_ms)?;
        slot.shared = slot.shared.max(total);
        Some(Count { total: slot.shared + slot.pending, fired: slot.fired })
    }
}

/// The start of the fixed window of length `window_ms` that contains `now_ms`.
pub fn window_start(now_ms: i64, window_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(window_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u8) -> Key {
        Key { rule: Rule::AuthFailuresPerSource, subject: Subject::Source(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))) }
    }

    #[test]
    fn counts_per_subject_and_window() {
        let t = Tally::default();
        assert_eq!(t.hit(key(1), 1_000, 60_000).total, 1);
        assert_eq!(t.hit(key(1), 2_000, 60_000).total, 2);
        assert_eq!(t.hit(key(2), 2_000, 60_000).total, 1, "another subject");
        assert_eq!(t.hit(key(1), 61_000, 60_000).total, 1, "a new window starts from zero");
    }

    #[test]
    fn the_database_total_joins_the_local_count() {
        let t = Tally::default();
        t.hit(key(1), 1_000, 60_000);
        t.hit(key(1), 1_000, 60_000);
        let due = t.drain(1_500, |_| 60_000);
        assert_eq!(due, vec![Pending { key: key(1), window_ms: 0, add: 2 }]);
        assert!(t.drain(1_500, |_| 60_000).is_empty(), "drained once");
        t.hit(key(1), 1_600, 60_000);
        // Another replica counted 5 more: the database says 7.
        assert_eq!(t.settle(key(1), 0, 7), Some(Count { total: 8, fired: false }));
        assert_eq!(t.settle(key(1), 60_000, 9), None, "a total for another window is ignored");
    }

    #[test]
    fn forgotten_keys_lose_their_pending_counts() {
        let t = Tally::default();
        t.hit(key(1), 1_000, 60_000);
        t.hit(key(2), 1_000, 60_000);
        t.forget(|k| *k == key(1));
        assert_eq!(t.drain(1_500, |_| 60_000), vec![Pending { key: key(2), window_ms: 0, add: 1 }]);
        assert_eq!(t.hit(key(1), 2_000, 60_000).total, 1, "counts again from zero");
    }

    #[test]
    fn fired_holds_for_its_window_and_ended_windows_are_forgotten() {
        let t = Tally::default();
        t.hit(key(1), 1_000, 60_000);
        t.mark_fired(key(1), 1_000, 60_000);
        assert!(t.hit(key(1), 2_000, 60_000).fired);
        assert!(!t.hit(key(1), 60_001, 60_000).fired);
        t.drain(200_000, |_| 60_000);
        assert_eq!(t.slots.lock().unwrap().len(), 0);
    }
}
