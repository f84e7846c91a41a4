//! Multi-turn dialogue state: what a user said before (intents, slots, turn count, whether
//! they were handed to a human), kept between messages so that follow-ups are understood.
//!
//! `state` is the value and its capped MessagePack encoding, `slots` reads order numbers,
//! sizes and colours from text, `context` holds the follow-up rules, and `store` is the
//! [`DialogStore`] interface with three implementations chosen in `dialog.yaml`: `memory`
//! (embedded, bounded, the shipped default), `redis_store` for Redis and Redis Cluster.
//! [`Dialog`] is what the server holds: a store plus the limits it is used with.

pub mod context;
pub mod memory;
pub mod redis_store;
mod slots;
pub mod state;
pub mod store;

use std::sync::Arc;

pub use context::{Context, ContextRules};
pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use slots::Slots;
pub use state::{DialogState, LatestTurn, StateError, Turn};
pub use store::{DialogStore, StoreError};

use crate::config::{DialogConfig, StoreConfig};
use crate::intent::Intent;

/// How many recent turns the context rules look back over.
pub const CONTEXT_TURNS: usize = 3;

/// The store of one configuration, with the expiry and size rules it is used with.
pub struct Dialog {
    store: Arc<dyn DialogStore>,
    /// The configuration the store was built from (a reload with the same one keeps it,
    /// so the memory store's states and Redis connections survive).
    built_from: (StoreConfig, std::time::Duration),
    pub enabled: bool,
    pub max_state_bytes: usize,
    pub history: usize,
}

impl Dialog {
    /// The store `cfg` names; `previous`'s store is kept when its configuration is equal.
    /// Nothing connects here: Redis stores connect on first use, inside the server's
    /// runtime.
    pub fn new(cfg: &DialogConfig, previous: Option<&Dialog>) -> anyhow::Result<Dialog> {
        let key = (cfg.store.clone(), cfg.ttl);
        let store: Arc<dyn DialogStore> = match previous {
            Some(p) if p.built_from == key => Arc::clone(&p.store),
            _ => match &cfg.store {
                StoreConfig::Memory(m) => Arc::new(MemoryStore::new(m, cfg.ttl)),
                StoreConfig::Redis(r) => Arc::new(RedisStore::standalone(r, cfg.ttl)?),
                StoreConfig::Cluster(c) => Arc::new(RedisStore::cluster(c, cfg.ttl)?),
            },
        };
        Ok(Dialog {
            store,
            built_from: key,
            enabled: cfg.enabled,
            max_state_bytes: cfg.max_state_bytes,
            history: cfg.history,
        })
    }

    pub fn store(&self) -> &dyn DialogStore {
        &*self.store
    }

    /// The user's state; a corrupt one counts as none (it will be overwritten).
    pub async fn load(&self, user: &str) -> Result<DialogState, StoreError> {
        match self.store.load(user).await {
            Ok(state) => Ok(state.unwrap_or_default()),
            Err(StoreError::Corrupt(e)) => {
                log::warn!("dialogue state of one user is corrupt ({e}); starting it again");
                Ok(DialogState::default())
            }
            Err(e) => Err(e),
        }
    }

    /// Encode `state` within the size cap (trimming its history) and save it with its
    /// newest turn indexed. Returns the encoded size.
    pub async fn save(&self, user: &str, state: &mut DialogState) -> Result<usize, StoreError> {
        let encoded = state
            .encode_capped(self.max_state_bytes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store
            .save(user, &encoded, state.latest().as_ref())
            .await?;
        Ok(encoded.len())
    }

    pub async fn latest(
        &self,
        user: &str,
        intent: Intent,
    ) -> Result<Option<LatestTurn>, StoreError> {
        self.store.latest(user, intent).await
    }
}
