//! The embedded store: states in process memory, bounded by entries and bytes, least
//! recently used out first, with the same sliding expiry as Redis.
//!
//! Sharded by user so that concurrent requests rarely meet on one lock; each shard has its
//! share of both bounds. Entries keep the encoded bytes (not the decoded state), so the
//! byte bound counts what is really held and a load is one decode, as with Redis.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lru::LruCache;

use super::store::{DialogStore, StoreError};
use super::{DialogState, LatestTurn};
use crate::config::{MemoryStoreConfig, StoreKind};
use crate::intent::Intent;

const SHARDS: usize = 16;

/// Bytes an entry costs beyond its key and values: the LRU node, the map slot, the
/// allocations' headers. An estimate, so that a million tiny states cannot slip past the
/// byte bound.
const ENTRY_OVERHEAD: usize = 128;

struct Entry {
    state: Vec<u8>,
    latest: Vec<LatestTurn>,
    expires: Instant,
}

impl Entry {
    fn cost(&self, key: &str) -> usize {
        let latest: usize = self
            .latest
            .iter()
            .map(|l| std::mem::size_of::<LatestTurn>() + l.order.as_ref().map_or(0, |o| o.len()))
            .sum();
        ENTRY_OVERHEAD + key.len() + self.state.len() + latest
    }
}

struct Shard {
    entries: LruCache<Box<str>, Entry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Shard {
    fn evict(&mut self) {
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.pop_lru() {
                Some((key, entry)) => self.bytes -= entry.cost(&key),
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.pop(key)?;
        self.bytes -= entry.cost(key);
        Some(entry)
    }
}

pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
    ttl: Duration,
}

impl MemoryStore {
    pub fn new(cfg: &MemoryStoreConfig, ttl: Duration) -> MemoryStore {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: LruCache::unbounded(),
                    bytes: 0,
                    max_entries: cfg.max_entries.div_ceil(SHARDS),
                    max_bytes: cfg.max_bytes / SHARDS,
                })
            })
            .collect();
        MemoryStore {
            shards,
            hasher: Default::default(),
            ttl,
        }
    }

    fn shard(&self, user: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(user) as usize) % SHARDS;
        // A panic while holding a shard leaves plain data behind; keep serving it.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// States held, and the bytes they are counted as.
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            (n + s.entries.len(), b + s.bytes)
        })
    }

    /// [`DialogStore::load`] at a given instant.
    pub fn load_at(&self, user: &str, now: Instant) -> Result<Option<DialogState>, StoreError> {
        let mut shard = self.shard(user);
        let bytes = match shard.entries.get_mut(user) {
            None => return Ok(None),
            Some(e) if e.expires > now => {
                e.expires = now + self.ttl;
                e.state.clone()
            }
            Some(_) => {
                shard.remove(user);
                return Ok(None);
            }
        };
        drop(shard);
        DialogState::decode(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// [`DialogStore::save`] at a given instant.
    pub fn save_at(&self, user: &str, encoded: &[u8], latest: Option<&LatestTurn>, now: Instant) {
        let mut shard = self.shard(user);
        let mut entry = match shard.remove(user) {
            Some(e) if e.expires > now => e,
            _ => Entry {
                state: Vec::new(),
                latest: Vec::new(),
                expires: now,
            },
        };
        entry.state.clear();
        entry.state.extend_from_slice(encoded);
        entry.expires = now + self.ttl;
        if let Some(l) = latest {
            entry.latest.retain(|old| old.intent != l.intent);
            entry.latest.push(l.clone());
        }
        shard.bytes += entry.cost(user);
        shard.entries.push(user.into(), entry);
        shard.evict();
    }

    /// [`DialogStore::latest`] at a given instant.
    pub fn latest_at(&self, user: &str, intent: Intent, now: Instant) -> Option<LatestTurn> {
        let shard = self.shard(user);
        let entry = shard.entries.peek(user).filter(|e| e.expires > now)?;
        entry.latest.iter().find(|l| l.intent == intent).cloned()
    }
}

#[async_trait]
impl DialogStore for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn load(&self, user: &str) -> Result<Option<DialogState>, StoreError> {
        self.load_at(user, Instant::now())
    }

    async fn save(
        &self,
        user: &str,
        encoded: &[u8],
        latest: Option<&LatestTurn>,
    ) -> Result<(), StoreError> {
        self.save_at(user, encoded, latest, Instant::now());
        Ok(())
    }

    async fn latest(&self, user: &str, intent: Intent) -> Result<Option<LatestTurn>, StoreError> {
        Ok(self.latest_at(user, intent, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::{Slots, Turn};

    fn state(intent: Intent, at: i64) -> (Vec<u8>, LatestTurn) {
        let mut s = DialogState::default();
        s.record(
            Turn {
                intent,
                at,
                text: "我想退款".into(),
            },
            &Slots::default(),
            false,
            16,
        );
        let latest = s.latest().unwrap();
        (s.encode_capped(2048).unwrap(), latest)
    }

    fn store(max_entries: usize, max_bytes: usize, ttl: Duration) -> MemoryStore {
        MemoryStore::new(
            &MemoryStoreConfig {
                max_entries,
                max_bytes,
            },
            ttl,
        )
    }

    #[test]
    fn expiry_slides_with_every_read_and_write() {
        let s = store(100, 1 << 20, Duration::from_secs(60));
        let t0 = Instant::now();
        let (bytes, latest) = state(Intent::RefundApply, 1);
        s.save_at("u", &bytes, Some(&latest), t0);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert!(s.load_at("u", at(50)).unwrap().is_some());
        assert!(
            s.load_at("u", at(100)).unwrap().is_some(),
            "the read at 50s extended it"
        );
        assert_eq!(s.latest_at("u", Intent::RefundApply, at(150)), Some(latest));
        assert!(
            s.load_at("u", at(161)).unwrap().is_none(),
            "60s after the last read"
        );
        assert_eq!(
            s.usage().0,
            0,
            "an expired state found by a read is dropped"
        );
        assert_eq!(s.latest_at("u", Intent::RefundApply, at(161)), None);
    }

    #[test]
    fn latest_index_keeps_one_entry_per_intent() {
        let s = store(100, 1 << 20, Duration::from_secs(60));
        let now = Instant::now();
        let (a, la) = state(Intent::RefundApply, 1);
        let (b, lb) = state(Intent::ExchangeGoods, 2);
        let (c, lc) = state(Intent::RefundApply, 3);
        s.save_at("u", &a, Some(&la), now);
        s.save_at("u", &b, Some(&lb), now);
        s.save_at("u", &c, Some(&lc), now);
        assert_eq!(s.latest_at("u", Intent::RefundApply, now).unwrap().at, 3);
        assert_eq!(s.latest_at("u", Intent::ExchangeGoods, now).unwrap().at, 2);
        assert_eq!(s.latest_at("u", Intent::Coupon, now), None);
        assert_eq!(s.latest_at("nobody", Intent::Coupon, now), None);
    }

    #[test]
    fn a_million_users_stay_within_entries_and_bytes() {
        let (max_entries, max_bytes) = (10_000, 2 << 20);
        let s = store(max_entries, max_bytes, Duration::from_secs(600));
        let now = Instant::now();
        let (bytes, latest) = state(Intent::RefundApply, 1);
        let mut key = String::new();
        for i in 0..1_000_000u32 {
            key.clear();
            key.push_str("user-");
            key.push_str(&i.to_string());
            s.save_at(&key, &bytes, Some(&latest), now);
        }
        let (entries, held) = s.usage();
        assert!(entries <= max_entries, "{entries} entries");
        assert!(held <= max_bytes, "{held} bytes");
        assert!(
            entries > max_entries / 4,
            "the bound is used, not just obeyed: {entries}"
        );
        assert!(
            s.load_at("user-999999", now).unwrap().is_some(),
            "the newest stays"
        );
        assert!(
            s.load_at("user-0", now).unwrap().is_none(),
            "the oldest went first"
        );
    }

    #[test]
    fn the_byte_bound_evicts_before_the_entry_bound() {
        let s = store(1_000_000, 64 * 1024, Duration::from_secs(600));
        let now = Instant::now();
        let big = vec![0x90u8; 2000];
        for i in 0..1000 {
            s.save_at(&format!("u{i}"), &big, None, now);
        }
        let (entries, held) = s.usage();
        assert!(held <= 64 * 1024, "{held}");
        assert!(entries < 40, "{entries}");
    }
}
