//! What Redis last said a request's shared buckets could still admit, so that a request
//! far from its limits is admitted without waiting for Redis (`shared.ahead`). Its check
//! still goes to Redis, in the next batched call, and Redis's answer replaces the figure here;
//! only the wait is skipped. Near a limit (the last answer left no more than `ahead` of the
//! smallest burst) every request waits for Redis, so the last admissions before a refusal
//! are decided there exactly, as without this.
//!
//! The cost: requests of one key that reach several nodes within one Redis round trip may
//! each be admitted here against an answer that predates the others. Past the limit Redis
//! refuses such a request without charging it, so the buckets may admit up to
//! `(nodes − 1) × (1 − ahead) × burst` more than their burst in that moment, and no more
//! than their rate over time.

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// An answer older than this is not trusted: the other nodes may have spent the headroom.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Keys remembered, at most (the least recently used are forgotten).
const CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Admissions left according to Redis, minus those admitted here since.
    remaining: u32,
    at: Instant,
}

/// Headroom per set of bucket keys (one request's buckets).
pub struct Headroom {
    entries: Mutex<LruCache<u64, Entry>>,
}

impl Default for Headroom {
    fn default() -> Self {
        Headroom {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl Headroom {
    /// The cache key of one request's bucket keys.
    pub fn key_of<K: Hash>(keys: &[K]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        keys.hash(&mut h);
        h.finish()
    }

    /// Admit one request of `key` now if Redis's last answer, less than [`MAX_AGE`] old,
    /// left more than `floor` admissions; the admission is taken off that figure.
    pub fn take(&self, key: u64, floor: u32, now: Instant) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(&key) {
            Some(e) if e.remaining > floor && now.duration_since(e.at) < MAX_AGE => {
                e.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    /// Redis answered a request of `key`: it can admit `remaining` more (0 when refused).
    pub fn record(&self, key: u64, remaining: u32, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.put(key, Entry { remaining, at: now });
    }

    /// Forget everything (Redis failed: its last answers say nothing about it now).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_ahead_down_to_the_floor_then_waits() {
        let h = Headroom::default();
        let k = Headroom::key_of(&["kefu:rl:{rl}:user:a"]);
        let now = Instant::now();
        assert!(!h.take(k, 5, now), "nothing known: wait for Redis");
        h.record(k, 9, now);
        let ahead = (0..10).filter(|_| h.take(k, 5, now)).count();
        assert_eq!(ahead, 4, "9 left, 5 kept for Redis to decide");
        h.record(k, 8, now);
        assert!(h.take(k, 5, now), "a new answer gives headroom again");
        h.record(k, 0, now);
        assert!(!h.take(k, 0, now), "refused: wait");
    }

    #[test]
    fn old_answers_are_not_trusted() {
        let h = Headroom::default();
        let k = Headroom::key_of(&["a", "b"]);
        let then = Instant::now();
        h.record(k, 100, then);
        assert!(h.take(k, 10, then + Duration::from_millis(999)));
        assert!(!h.take(k, 10, then + MAX_AGE));
        h.record(k, 100, then);
        h.clear();
        assert!(!h.take(k, 10, then));
        assert_ne!(k, Headroom::key_of(&["b", "a"]));
    }
}
