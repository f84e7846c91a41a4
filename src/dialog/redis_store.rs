//! Redis stores: standalone (a `ConnectionManager`, which reconnects by itself) and Redis
//! Cluster (the `redis` crate's async cluster client, reads and writes on masters).
//!
//! A user's state and latest-intent index share the hash tag `{user}`, so one pipeline
//! reaches one node in either mode:
//! - load: `GETEX state PX ttl` + `PEXPIRE latest ttl` (every read slides the expiry);
//! - save: `SET state PX ttl` + `HSET latest <intent>` + `PEXPIRE latest ttl`, then
//!   `WAIT n timeout` when replication is asked for, on the same connection, so the save is
//!   acknowledged only once `n` replicas hold it and a failover cannot lose it.
//!
//! Time is bounded at every step: connecting (`connect_timeout`), each attempt
//! (`command_timeout`), and retries of connection failures (exponential backoff from 1 ms
//! while the sleeps stay within `retry_budget`; a timed-out attempt is not retried). The cluster client retries redirections and reconnects itself;
//! its retry waits are set from the same budget.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::{RedisError, RetryMethod, Value};

use super::store::{DialogStore, StoreError, latest_key, state_key};
use super::{DialogState, LatestTurn, StateError};
use crate::config::{ClusterConfig, RedisConfig, RedisOptions, StoreKind};
use crate::intent::Intent;
use crate::redis_link::{RedisLink, Target};

pub struct RedisStore {
    link: RedisLink,
    opts: RedisOptions,
    ttl_ms: u64,
}

/// The longest one attempt may take: the command timeout, plus the `WAIT` of a save.
fn attempt_timeout(o: &RedisOptions) -> Duration {
    if o.wait_replicas > 0 {
        o.command_timeout + o.wait_timeout
    } else {
        o.command_timeout
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    pub fn standalone(cfg: &RedisConfig, ttl: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(unavailable)?;
        Ok(Self::new(Target::Standalone(client), &cfg.options, ttl))
    }

    pub fn cluster(cfg: &ClusterConfig, ttl: Duration) -> Result<RedisStore, StoreError> {
        let o = &cfg.options;
        // The client's own retries (redirections after a failover, reconnects) sleep at most
        // `retries × max_wait`, kept within the retry budget.
        const RETRIES: u32 = 3;
        let max_wait = (o.retry_budget.as_millis() as u64 / u64::from(RETRIES)).max(2);
        let client = ClusterClientBuilder::new(cfg.nodes.iter().map(String::as_str))
            .retries(RETRIES)
            .min_retry_wait(1)
            .max_retry_wait(max_wait)
            .retry_wait_formula(1, 2)
            .connection_timeout(o.connect_timeout)
            // The client's own timeout bounds every request, a save's WAIT included.
            .response_timeout(attempt_timeout(o))
            .build()
            .map_err(unavailable)?;
        Ok(Self::new(Target::Cluster(Box::new(client)), o, ttl))
    }

    fn new(target: Target, opts: &RedisOptions, ttl: Duration) -> RedisStore {
        RedisStore {
            link: RedisLink::new(target, opts.connect_timeout, attempt_timeout(opts)),
            opts: opts.clone(),
            ttl_ms: ttl_ms(ttl),
        }
    }

    /// Run `pipe` within `limit`, retrying retryable failures within the budget.
    async fn run(&self, pipe: &redis::Pipeline, limit: Duration) -> Result<Vec<Value>, StoreError> {
        let mut slept = Duration::ZERO;
        let mut backoff = Duration::from_millis(1);
        loop {
            let mut conn = self.link.connection().await.map_err(unavailable)?;
            let attempt = conn.req_packed_commands(pipe, 0, pipe.len());
            let error = match tokio::time::timeout(limit, attempt).await {
                Ok(Ok(values)) => {
                    return match server_error(&values) {
                        Some(e) => Err(e),
                        None => Ok(values),
                    };
                }
                Ok(Err(e)) if !retryable(&e) => return Err(unavailable(e)),
                Ok(Err(e)) => unavailable(e),
                // A server too slow for one attempt is too slow for the next: no retry.
                Err(_) => return Err(unavailable(format!("no answer within {limit:?}"))),
            };
            // The cluster client has already retried inside its own budget.
            if self.kind() == StoreKind::Cluster || slept + backoff > self.opts.retry_budget {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            slept += backoff;
            backoff *= 2;
        }
    }
}

/// Connection-level failures (the manager reconnects meanwhile); not timeouts, not answers.
fn retryable(e: &RedisError) -> bool {
    !e.is_timeout()
        && matches!(
            e.retry_method(),
            RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry | RetryMethod::Reconnect
        )
}

/// The first answer of a pipeline, decoded: `None` for a missing key.
fn decode_first<T>(
    values: &[Value],
    decode: fn(&[u8]) -> Result<T, StateError>,
) -> Result<Option<T>, StoreError> {
    match values.first() {
        Some(Value::Nil) | None => Ok(None),
        Some(Value::BulkString(bytes)) => decode(bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
        Some(v) => Err(StoreError::Corrupt(format!("unexpected answer {v:?}"))),
    }
}

/// The first error a pipeline answered with (a server error is a value, not an `Err`).
fn server_error(values: &[Value]) -> Option<StoreError> {
    values.iter().find_map(|v| match v {
        Value::ServerError(e) => Some(unavailable(format!("{e:?}"))),
        _ => None,
    })
}

#[async_trait]
impl DialogStore for RedisStore {
    fn kind(&self) -> StoreKind {
        if self.link.is_cluster() {
            StoreKind::Cluster
        } else {
            StoreKind::Redis
        }
    }

    async fn load(&self, user: &str) -> Result<Option<DialogState>, StoreError> {
        let prefix = &self.opts.key_prefix;
        let mut pipe = redis::pipe();
        pipe.cmd("GETEX")
            .arg(state_key(prefix, user))
            .arg("PX")
            .arg(self.ttl_ms)
            .cmd("PEXPIRE")
            .arg(latest_key(prefix, user))
            .arg(self.ttl_ms);
        let values = self.run(&pipe, self.opts.command_timeout).await?;
        decode_first(&values, DialogState::decode)
    }

    async fn save(
        &self,
        user: &str,
        encoded: &[u8],
        latest: Option<&LatestTurn>,
    ) -> Result<(), StoreError> {
        let prefix = &self.opts.key_prefix;
        let index = latest_key(prefix, user);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(state_key(prefix, user))
            .arg(encoded)
            .arg("PX")
            .arg(self.ttl_ms);
        if let Some(l) = latest {
            let value = l.encode().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            pipe.cmd("HSET")
                .arg(&index)
                .arg(l.intent.as_str())
                .arg(value);
        }
        pipe.cmd("PEXPIRE").arg(&index).arg(self.ttl_ms);
        let wanted = self.opts.wait_replicas;
        if wanted > 0 {
            let wait_ms = u64::try_from(self.opts.wait_timeout.as_millis())
                .unwrap_or(1)
                .max(1);
            pipe.cmd("WAIT").arg(wanted).arg(wait_ms);
        }
        let values = self.run(&pipe, attempt_timeout(&self.opts)).await?;
        if wanted > 0 {
            let got = match values.last() {
                Some(Value::Int(n)) => u32::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            if got < wanted {
                return Err(StoreError::NotReplicated { wanted, got });
            }
        }
        Ok(())
    }

    async fn latest(&self, user: &str, intent: Intent) -> Result<Option<LatestTurn>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(latest_key(&self.opts.key_prefix, user))
            .arg(intent.as_str());
        let values = self.run(&pipe, self.opts.command_timeout).await?;
        decode_first(&values, LatestTurn::decode)
    }
}
