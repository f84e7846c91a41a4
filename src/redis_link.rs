//! One Redis connection, made on first use and kept: standalone (a `ConnectionManager`,
//! which reconnects by itself) or Redis Cluster (the cluster client follows redirections
//! and reconnects itself). The dialogue store and the shared rate limits each hold one.
//!
//! Connecting happens inside the server's runtime (the clients spawn their driver tasks
//! there), is bounded by the connect timeout, and is never waited on by more than one
//! request: the others are told "unavailable" at once, and after a failed connect for a
//! short pause, so a Redis that is down costs a request no time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// After a failed connect, requests answer "unavailable" at once for this long instead of
/// each trying again (the link is retried by the first request after it).
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// A live connection; cheap to clone (both kinds multiplex one socket per node).
#[derive(Clone)]
pub enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where to connect.
pub enum Target {
    Standalone(redis::Client),
    Cluster(Box<ClusterClient>),
}

pub struct RedisLink {
    target: Target,
    connect_timeout: Duration,
    /// The standalone manager's own bound on one command (the cluster client's is set on
    /// its builder).
    response_timeout: Duration,
    conn: ArcSwapOption<Conn>,
    /// Held while connecting; the instant of the last failed attempt.
    connecting: tokio::sync::Mutex<Option<Instant>>,
}

impl RedisLink {
    pub fn new(target: Target, connect_timeout: Duration, response_timeout: Duration) -> Self {
        RedisLink {
            target,
            connect_timeout,
            response_timeout,
            conn: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(None),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The connection if there is one; otherwise a connect is started in the background
    /// (one at a time) and the error says why there is none. For callers that may not wait
    /// even for a connect (the shared rate limits answer within milliseconds).
    pub fn connection_now(self: &Arc<Self>) -> Result<Conn, String> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            let link = Arc::clone(self);
            tokio::spawn(async move {
                let _ = link.connection().await;
            });
        }
        Err("not connected yet".into())
    }

    /// The connection, made on first use and kept; a failed connect is retried after a
    /// pause. The error says why there is none, in one line.
    pub async fn connection(&self) -> Result<Conn, String> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let Ok(mut last_failure) = self.connecting.try_lock() else {
            return Err("connecting".into());
        };
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        if last_failure.is_some_and(|t| t.elapsed() < RECONNECT_PAUSE) {
            return Err("not connected (retrying shortly)".into());
        }
        let connect = async {
            match &self.target {
                Target::Standalone(client) => {
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.connect_timeout))
                        .set_response_timeout(Some(self.response_timeout))
                        .set_number_of_retries(2)
                        .set_min_delay(Duration::from_millis(10))
                        .set_max_delay(Duration::from_millis(500));
                    ConnectionManager::new_with_config(client.clone(), cfg)
                        .await
                        .map(Conn::Standalone)
                }
                Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            }
        };
        match tokio::time::timeout(self.connect_timeout * 2, connect).await {
            Ok(Ok(conn)) => {
                *last_failure = None;
                self.conn.store(Some(Arc::new(conn.clone())));
                Ok(conn)
            }
            Ok(Err(e)) => {
                *last_failure = Some(Instant::now());
                Err(e.to_string())
            }
            Err(_) => {
                *last_failure = Some(Instant::now());
                Err("connect timed out".into())
            }
        }
    }
}
