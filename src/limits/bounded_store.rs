//! A fixed-size state store for governor's keyed rate limiters.
//!
//! governor's own keyed stores grow with every key they see until `retain_recent` runs, so a
//! scan from many addresses (or many forged user ids) grows them without bound. This store is
//! a set-associative table sized once from `max_tracked_keys`: a key hashes to one small set
//! and, when its set is full, the entry whose GCRA "theoretical arrival time" is oldest is
//! replaced. That entry is the one closest to a full bucket (an entry whose time has passed
//! carries no information at all), so eviction only ever gives a key back tokens it would
//! soon have had anyway. Keys are identified by a 64-bit keyed hash; two keys sharing a hash
//! would share a bucket, which at 2^-64 per pair is not worth a stored key.

use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;
use std::sync::Mutex;

use governor::nanos::Nanos;
use governor::state::StateStore;

const WAYS: usize = 8;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Key hash with the low bit set; 0 marks an empty slot.
    tag: u64,
    /// GCRA state: the theoretical arrival time in the limiter's nanoseconds.
    tat: u64,
}

pub struct BoundedStore<K> {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    hasher: RandomState,
    _key: PhantomData<fn(&K)>,
}

impl<K: Hash> BoundedStore<K> {
    /// A store that remembers at least `max_keys` keys (rounded up to a power of two).
    pub fn new(max_keys: usize) -> Self {
        let sets = max_keys.div_ceil(WAYS).next_power_of_two().max(1);
        BoundedStore {
            sets: (0..sets)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
            hasher: RandomState::new(),
            _key: PhantomData,
        }
    }

    /// How many keys the table can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// How many keys are held now (walks the table: for tests and metrics, not requests).
    pub fn len(&self) -> usize {
        self.sets
            .iter()
            .map(|s| {
                let set = s.lock().unwrap_or_else(|e| e.into_inner());
                set.iter().filter(|slot| slot.tag != 0).count()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let hash = self.hasher.hash_one(key);
        let tag = hash | 1;
        // The set index uses the high bits; the tag keeps all of them.
        let index = (hash >> 32) as usize & (self.sets.len() - 1);
        // A poisoned lock only means another thread panicked between two plain stores;
        // the slots are always valid, so keep going.
        let mut set = self.sets[index].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = set.iter_mut().find(|s| s.tag == tag) {
            let (out, tat) = f(Some(Nanos::new(slot.tat)))?;
            slot.tat = tat.as_u64();
            return Ok(out);
        }
        let (out, tat) = f(None)?;
        let victim = set
            .iter_mut()
            .min_by_key(|s| if s.tag == 0 { 0 } else { s.tat })
            .expect("WAYS > 0: this is a bug");
        *victim = Slot {
            tag,
            tat: tat.as_u64(),
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::middleware::NoOpMiddleware;
    use governor::{Quota, RateLimiter, clock::FakeRelativeClock};
    use std::num::NonZeroU32;
    use std::time::Duration;

    type Limiter = RateLimiter<u64, BoundedStore<u64>, FakeRelativeClock, NoOpMiddleware<Nanos>>;

    fn limiter(max_keys: usize) -> Limiter {
        let quota =
            Quota::per_second(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(3).unwrap());
        RateLimiter::new(
            quota,
            BoundedStore::new(max_keys),
            FakeRelativeClock::default(),
        )
    }

    #[test]
    fn behaves_like_a_token_bucket_per_key() {
        let l = limiter(1024);
        for _ in 0..3 {
            assert!(l.check_key(&7).is_ok());
        }
        assert!(l.check_key(&7).is_err(), "burst of 3 used up");
        assert!(l.check_key(&8).is_ok(), "other keys are independent");
        l.clock().advance(Duration::from_secs(1));
        assert!(l.check_key(&7).is_ok(), "one token back after a second");
        assert!(l.check_key(&7).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_a_key_flood() {
        let l = limiter(1000);
        let cap = 1024;
        for k in 0..1_000_000u64 {
            let _ = l.check_key(&k);
        }
        let store = l.into_state_store();
        assert_eq!(store.capacity(), cap);
        assert!(store.len() <= cap);
        assert!(
            store.len() > cap / 2,
            "table is actually used: {}",
            store.len()
        );
    }

    #[test]
    fn a_busy_key_survives_a_flood_of_one_shot_keys() {
        // A key that keeps its bucket drained has the newest TAT in its set, so keys seen
        // once are evicted before it and it stays limited.
        let l = limiter(64);
        for _ in 0..3 {
            assert!(l.check_key(&u64::MAX).is_ok());
        }
        for k in 0..10_000u64 {
            let _ = l.check_key(&k);
            assert!(
                l.check_key(&u64::MAX).is_err(),
                "busy key forgotten after {k} keys"
            );
        }
    }
}
