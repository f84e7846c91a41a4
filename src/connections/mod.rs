//! The chat listener's connections, before any request is read: how many may be open in all
//! and per client address (nginx: `worker_connections`, `limit_conn`), and how long a request
//! head may take to arrive (`client_header_timeout`, [`HeaderDeadline`]). [`ConnectionGuard`]
//! wraps the Pingora application: a connection over a limit gets a 503 JSON answer and is
//! closed before its request is read; an admitted one is served with a [`HeaderDeadline`]
//! under the HTTP session.
//!
//! At a graceful shutdown (SIGTERM, or SIGQUIT handing the sockets to a new binary) the
//! guard lets connections accepted just before the listeners closed send their first request
//! before Pingora closes the idle ones ([`drain`]).
//!
//! On the HTTPS addresses the guard also does the TLS handshake ([`TlsTerminator`]), under the
//! same limits and deadline; a connection over a limit there is closed without an answer.
//!
//! The client address here is the socket's peer: no header has been read yet, so a
//! `real_ip_header` cannot apply. Behind a load balancer every connection comes from it, and
//! the per-client limit must stay off (0), as with nginx's `limit_conn` on `$remote_addr`.

mod deadline;
mod drain;
mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::ALPN;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

pub use deadline::{Expiry, HeaderDeadline};
use drain::{FirstHeadPending, FirstHeads};
pub use tls::TlsTerminator;

/// What [`ConnectionGuard`] enforces; read for every new connection, so a reload applies to
/// the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// From accepting a connection (or the first byte of a kept-alive one's next request)
    /// to the end of the request head.
    pub header_timeout: Duration,
    /// Open connections on the chat listener; 0: no limit.
    pub max_connections: usize,
    /// Open connections from one peer address; 0: no limit.
    pub max_connections_per_client: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_client` reached for this address.
    PerClient,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerClient => "per_client",
        }
    }
}

/// What the connection guard reports (prometheus handles; unregistered ones in tests).
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// Connections open on the chat listener.
    pub open: IntGauge,
    /// Connections refused, by reason (total, per_client).
    pub refused: IntCounterVec,
    /// Connections cut because a request head did not arrive in time.
    pub header_timeouts: IntCounter,
    /// TLS handshakes that failed.
    pub tls_failures: IntCounter,
}

impl ConnectionMetrics {
    pub fn unregistered() -> ConnectionMetrics {
        ConnectionMetrics {
            open: IntGauge::new("open", "open")
                .unwrap_or_else(|_| unreachable!("static gauge options are valid")),
            refused: IntCounterVec::new(Opts::new("refused", "refused"), &["reason"])
                .unwrap_or_else(|_| unreachable!("static counter options are valid")),
            header_timeouts: IntCounter::new("header_timeouts", "header_timeouts")
                .unwrap_or_else(|_| unreachable!("static counter options are valid")),
            tls_failures: IntCounter::new("tls_failures", "tls_failures")
                .unwrap_or_else(|_| unreachable!("static counter options are valid")),
        }
    }
}

/// Open connections, in all and per peer address.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection's place in the [`ConnectionTable`], given back when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    table: &'a ConnectionTable,
    client: Option<IpAddr>,
}

impl ConnectionTable {
    /// Take a place for a connection from `client` under `caps`, or say why not.
    pub fn admit(
        &self,
        client: Option<IpAddr>,
        caps: &ConnectionCaps,
    ) -> Result<Slot<'_>, Refusal> {
        let total = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        // From here on the slot exists: dropping it on refusal gives everything back.
        let mut slot = Slot {
            table: self,
            client: None,
        };
        if caps.max_connections > 0 && total > caps.max_connections {
            return Err(Refusal::Total);
        }
        if let Some(ip) = client
            && caps.max_connections_per_client > 0
        {
            let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_client.entry(ip).or_insert(0);
            if *n >= caps.max_connections_per_client {
                return Err(Refusal::PerClient);
            }
            *n += 1;
            slot.client = Some(ip);
        }
        Ok(slot)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections open now from `client` (counted only while a per-client limit is on).
    pub fn open_from(&self, client: IpAddr) -> usize {
        let per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        per_client.get(&client).copied().unwrap_or(0)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut per_client = self
                .table
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_client.remove(&ip);
                }
            }
        }
    }
}

/// The answer to a refused connection, written before its request is read (HTTP/1.1
/// clients read a response that comes early); the same JSON error shape as the chat API.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\n\
Content-Length: 79\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections\"}}";

/// A Pingora application (the chat proxy) behind the connection limits and the request-head
/// deadline. `caps` gives the current settings (the configuration in force).
pub struct ConnectionGuard<A> {
    app: Arc<A>,
    caps: Arc<dyn Fn() -> ConnectionCaps + Send + Sync>,
    /// Shared by the guards of one application (cleartext and HTTPS addresses).
    table: Arc<ConnectionTable>,
    metrics: ConnectionMetrics,
    /// The handshake, on HTTPS addresses.
    tls: Option<TlsTerminator>,
    /// Whether the application serves cleartext HTTP/2 (h2c).
    h2c: bool,
    /// Connections not yet heard from, which a graceful shutdown waits for.
    first_heads: Arc<FirstHeads>,
}

/// How long the guard's cleanup lets connections accepted just before the listeners closed
/// reach the guard (their tasks are spawned, maybe not yet run) before it counts them.
const ACCEPTED_SETTLE: Duration = Duration::from_millis(100);

impl<A> ConnectionGuard<A> {
    /// The guard of cleartext addresses; `h2c`: the application takes HTTP/2 there too.
    pub fn new(
        app: Arc<A>,
        caps: Arc<dyn Fn() -> ConnectionCaps + Send + Sync>,
        table: Arc<ConnectionTable>,
        metrics: ConnectionMetrics,
        h2c: bool,
    ) -> ConnectionGuard<A> {
        ConnectionGuard {
            app,
            caps,
            table,
            metrics,
            tls: None,
            h2c,
            first_heads: Arc::default(),
        }
    }

    /// The same guard for HTTPS addresses: every connection is a TLS handshake first.
    pub fn with_tls(self, tls: TlsTerminator) -> ConnectionGuard<A> {
        ConnectionGuard {
            tls: Some(tls),
            h2c: false,
            ..self
        }
    }

    fn client_name(client: Option<IpAddr>) -> String {
        client.map_or_else(|| "?".into(), |ip| ip.to_string())
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    // The HTTP application serves every request of a connection before it returns (and
    // then returns `None`), so the slot is held for the connection's whole life.
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let caps = (self.caps)();
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let slot = match self.table.admit(client, &caps) {
            Ok(slot) => slot,
            Err(refusal) => {
                self.metrics
                    .refused
                    .with_label_values(&[refusal.as_str()])
                    .inc();
                log::warn!(
                    "connection from {} refused: {} connection limit reached",
                    Self::client_name(client),
                    refusal.as_str()
                );
                // A TLS client could not read the answer: it is closed without one.
                if self.tls.is_some() {
                    return None;
                }
                // Bounded: a client that does not read must not hold the task.
                let write = async {
                    stream.write_all(REFUSED).await?;
                    stream.flush().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                return None;
            }
        };
        self.metrics.open.inc();
        let pending = self.first_heads.register();
        let reused = self
            .serve(stream, client, &caps, accepted, pending, shutdown)
            .await;
        self.metrics.open.dec();
        drop(slot);
        reused
    }

    // Pingora's cleanup closes every connection still waiting for a request head; first the
    // ones accepted just before the listeners closed get their first request in (`drain`).
    async fn cleanup(&self) {
        tokio::time::sleep(ACCEPTED_SETTLE).await;
        let waiting = self.first_heads.waiting();
        if waiting > 0 {
            log::info!("shutdown: waiting for the first request of {waiting} new connections");
        }
        self.first_heads.none_waiting().await;
        self.app.cleanup().await
    }
}

impl<A: ServerApp + Send + Sync + 'static> ConnectionGuard<A> {
    /// An admitted connection: the TLS handshake where there is one, then the application
    /// under the request-head deadline.
    async fn serve(
        &self,
        stream: Stream,
        client: Option<IpAddr>,
        caps: &ConnectionCaps,
        accepted: Instant,
        pending: FirstHeadPending,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = match &self.tls {
            None => stream,
            Some(tls) => {
                let due = accepted + caps.header_timeout;
                match tokio::time::timeout_at(due, tls.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        self.metrics.tls_failures.inc();
                        log::info!(
                            "TLS handshake with {} failed: {e}",
                            Self::client_name(client)
                        );
                        return None;
                    }
                    Err(_) => {
                        self.metrics.header_timeouts.inc();
                        log::info!(
                            "client {} timed out in the TLS handshake ({:?})",
                            Self::client_name(client),
                            caps.header_timeout
                        );
                        return None;
                    }
                }
            }
        };
        let http2 = match &self.tls {
            None => self.h2c,
            Some(_) => stream.selected_alpn_proto() == Some(ALPN::H2),
        };
        let (mut stream, expiry) =
            HeaderDeadline::new(stream, caps.header_timeout, accepted, http2);
        stream.hold_until_first_head(pending);
        tokio::select! {
            reused = self.app.process_new(Box::new(stream), shutdown) => reused,
            () = expiry.wait() => {
                // Dropping the session closes the connection (nginx logs this at info too).
                self.metrics.header_timeouts.inc();
                log::info!(
                    "client {} timed out reading a request head ({:?})",
                    Self::client_name(client),
                    caps.header_timeout
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: usize, per_client: usize) -> ConnectionCaps {
        ConnectionCaps {
            header_timeout: Duration::from_secs(10),
            max_connections: total,
            max_connections_per_client: per_client,
        }
    }

    #[test]
    fn the_refusal_body_is_the_length_it_says() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[test]
    fn limits_count_open_connections_and_give_places_back() {
        let table = ConnectionTable::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c = caps(3, 2);
        let a1 = table.admit(Some(a), &c).unwrap();
        let a2 = table.admit(Some(a), &c).unwrap();
        assert_eq!(table.admit(Some(a), &c).unwrap_err(), Refusal::PerClient);
        assert_eq!(table.open_from(a), 2);
        let b1 = table.admit(Some(b), &c).unwrap();
        assert_eq!(table.admit(Some(b), &c).unwrap_err(), Refusal::Total);
        assert_eq!(table.open(), 3, "refused connections hold no place");
        drop(a1);
        let a3 = table.admit(Some(a), &c).unwrap();
        drop((a2, a3, b1));
        assert_eq!(table.open(), 0);
        assert_eq!(table.open_from(a), 0);
        assert!(table.per_client.lock().unwrap().is_empty());
    }

    #[test]
    fn zero_means_no_limit() {
        let table = ConnectionTable::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let slots: Vec<_> = (0..100)
            .map(|_| table.admit(Some(ip), &caps(0, 0)).unwrap())
            .collect();
        assert_eq!(table.open(), 100);
        // Without a per-client limit nothing is kept per address.
        assert_eq!(table.open_from(ip), 0);
        drop(slots);
        assert_eq!(table.open(), 0);
    }
}
