//! The [`DialogStore`] interface and what its implementations share: keys, errors.

use async_trait::async_trait;

use super::{DialogState, LatestTurn};
use crate::config::StoreKind;
use crate::intent::Intent;

/// Why a store operation failed. On a request path every one of these means "answer
/// without context": the shopper is never refused because the state is unreachable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Not reachable, or not within its timeouts and retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Written to the master but fewer replicas acknowledged it than configured.
    #[error("written but not replicated: {got} of {wanted} replicas acknowledged")]
    NotReplicated { wanted: u32, got: u32 },
    /// The stored bytes do not decode (another writer, or a much older format).
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::NotReplicated { .. } => "not_replicated",
            StoreError::Corrupt(_) => "corrupt",
        }
    }
}

/// Where users' dialogue states live. Implementations bound every operation in time, so a
/// slow store slows a request by at most its timeouts.
#[async_trait]
pub trait DialogStore: Send + Sync {
    fn kind(&self) -> StoreKind;

    /// The user's state, refreshing its expiry. `None`: no state (new user, or expired).
    async fn load(&self, user: &str) -> Result<Option<DialogState>, StoreError>;

    /// Replace the user's state with `encoded` (already capped) and index `latest` under its
    /// intent; both expire after the store's TTL from now. `Ok` means acknowledged: with
    /// replication configured, by the replicas too.
    async fn save(
        &self,
        user: &str,
        encoded: &[u8],
        latest: Option<&LatestTurn>,
    ) -> Result<(), StoreError>;

    /// The user's last turn of `intent` (the per-user latest-intent index), in one lookup.
    async fn latest(&self, user: &str, intent: Intent) -> Result<Option<LatestTurn>, StoreError>;
}

/// The hash tag of a user: the id itself, unless it contains a brace (which would end or
/// nest the tag), then `~` and its bytes in hex. Every key of one user carries it, so
/// Redis Cluster keeps them in one slot.
pub fn hash_tag(user: &str) -> String {
    if user.contains(['{', '}']) || user.starts_with('~') {
        let mut tag = String::with_capacity(1 + user.len() * 2);
        tag.push('~');
        for b in user.bytes() {
            tag.push_str(&format!("{b:02x}"));
        }
        tag
    } else {
        user.to_owned()
    }
}

/// The key of a user's state: `<prefix>{<user>}:state`.
pub fn state_key(prefix: &str, user: &str) -> String {
    format!("{prefix}{{{}}}:state", hash_tag(user))
}

/// The key of a user's latest-intent index (a hash, one field per intent).
pub fn latest_key(prefix: &str, user: &str) -> String {
    format!("{prefix}{{{}}}:latest", hash_tag(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_user_share_a_hash_tag() {
        assert_eq!(state_key("kefu:", "u42"), "kefu:{u42}:state");
        assert_eq!(latest_key("kefu:", "u42"), "kefu:{u42}:latest");
        // A brace in the id cannot break out of the tag.
        assert_eq!(state_key("kefu:", "a}b"), "kefu:{~617d62}:state");
        assert_ne!(
            hash_tag("~617d62"),
            hash_tag("a}b"),
            "escaped ids cannot collide"
        );
    }
}
