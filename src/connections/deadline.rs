//! A client connection whose request headers must arrive in time (nginx's
//! `client_header_timeout`). Pingora bounds each read of the headers, not the whole: a client
//! that sends one byte every few seconds (slowloris) keeps a connection for ever. This stream
//! sits under Pingora's HTTP session and, once the head of a request has taken longer than the
//! timeout, stops reading and tells the connection's owner through [`Expiry`], which drops the
//! session (closing the connection) and logs one quiet line. A read error would do the same,
//! but Pingora logs every failed head read at error level: a slowloris flood would flood the
//! log. The clock starts when the connection is accepted, and on a kept-alive connection when
//! the first byte of the next request arrives, so waiting idle between requests stays under
//! Pingora's keep-alive timeout. On a connection that may speak HTTP/2 (ALPN `h2`, or h2c
//! on a cleartext listener) the clock stops at the end of the client's connection preface:
//! HTTP/2 frames are not lines, and an idle HTTP/2 connection is bounded by Pingora's
//! `h2_idle_timeout` instead.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::drain::FirstHeadPending;

/// Where the end of a request head is: the empty line after the headers, with or without
/// the CR (httparse accepts both, so a bare LF must end the clock as well).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct HeadEnd {
    /// 0: in a line; 1: just after a LF; 2: after a LF and a CR.
    state: u8,
}

impl HeadEnd {
    /// Feed `bytes`; whether they complete the head.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            self.state = match (self.state, b) {
                (1 | 2, b'\n') => {
                    self.state = 0;
                    return true;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        false
    }
}

/// What the connection is doing, as far as the clock is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head that must be complete by the deadline.
    Head,
    /// Between requests on a kept-alive connection: no clock until a byte arrives.
    Idle,
    /// The head is in: the body and the response are bounded by Pingora's own timeouts.
    Request,
    /// The HTTP/2 connection preface is in: no more clock on this connection.
    Http2,
}

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A [`Stream`] whose request heads must arrive within `timeout` (see the module doc).
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    head: HeadEnd,
    timer: Pin<Box<Sleep>>,
    expiry: Arc<Notify>,
    /// The deadline passed: nothing more is read.
    expired: bool,
    /// While HTTP/2 is possible and the first bytes match its preface: how many matched.
    preface: Option<usize>,
    /// Held until the first request head (or the HTTP/2 preface) is in: a graceful shutdown
    /// waits for it (see `drain`).
    first_head: Option<FirstHeadPending>,
}

/// Completes when a [`HeaderDeadline`]'s request head did not arrive in time.
#[derive(Debug, Clone)]
pub struct Expiry(Arc<Notify>);

impl Expiry {
    pub async fn wait(&self) {
        self.0.notified().await
    }
}

impl HeaderDeadline {
    /// `inner`, accepted at `accepted` (before a TLS handshake, when there is one): its
    /// first request head is due within `timeout` of that. The [`Expiry`] completes when a
    /// head is late; the stream then never reads again. With `http2` the client may open
    /// with the HTTP/2 preface, after which the clock stops.
    pub fn new(
        inner: Stream,
        timeout: Duration,
        accepted: Instant,
        http2: bool,
    ) -> (HeaderDeadline, Expiry) {
        let expiry = Arc::new(Notify::new());
        let stream = HeaderDeadline {
            inner,
            timeout,
            phase: Phase::Head,
            head: HeadEnd::default(),
            timer: Box::pin(tokio::time::sleep_until(accepted + timeout)),
            expiry: Arc::clone(&expiry),
            expired: false,
            preface: http2.then_some(0),
            first_head: None,
        };
        (stream, Expiry(expiry))
    }

    /// Hold `pending` until the first request head (or the HTTP/2 preface) has been read,
    /// or the stream is dropped.
    pub fn hold_until_first_head(&mut self, pending: FirstHeadPending) {
        self.first_head = Some(pending);
    }

    /// Follow the HTTP/2 preface through the connection's first bytes.
    fn match_preface(&mut self, new: &[u8]) {
        let Some(matched) = self.preface else {
            return;
        };
        let want = &H2_PREFACE[matched..];
        let n = want.len().min(new.len());
        if new[..n] != want[..n] {
            self.preface = None;
        } else if matched + n == H2_PREFACE.len() {
            self.preface = None;
            self.phase = Phase::Http2;
        } else {
            self.preface = Some(matched + n);
        }
    }

    /// A response is on its way: the next bytes the client sends start a new request.
    fn response_started(&mut self) {
        if self.phase == Phase::Request {
            self.phase = Phase::Idle;
            self.head = HeadEnd::default();
        }
    }

    fn expire(&mut self) -> Poll<io::Result<()>> {
        if !self.expired {
            self.expired = true;
            // Stored as a permit when nobody waits yet.
            self.expiry.notify_one();
        }
        Poll::Pending
    }
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.match_preface(new);
                if this.phase == Phase::Idle {
                    this.phase = Phase::Head;
                    this.timer.as_mut().reset(Instant::now() + this.timeout);
                }
                if this.phase == Phase::Head {
                    if this.head.feed(new) {
                        this.phase = Phase::Request;
                    } else if Instant::now() >= this.timer.deadline() {
                        // What was read is dropped with the connection.
                        return this.expire();
                    }
                }
                if this.phase != Phase::Head {
                    // The reader gets the whole head from this read: a shutdown may now
                    // close the connection after this request, not before it.
                    this.first_head = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase == Phase::Head => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.expire(),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.response_started();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.response_started();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// Everything else is the accepted stream's.

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_head_ends_at_an_empty_line_with_or_without_cr() {
        let mut h = HeadEnd::default();
        assert!(!h.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(h.feed(b"\r\n"));
        let mut h = HeadEnd::default();
        assert!(!h.feed(b"GET / HTTP/1.1\nHost: a\n"));
        assert!(h.feed(b"\n"));
        // Split anywhere, even between the CR and the LF.
        let mut h = HeadEnd::default();
        for part in [&b"GET / HTTP/1.1\r"[..], b"\n", b"Host: a\r\n\r", b"\n"] {
            if h.feed(part) {
                return;
            }
        }
        panic!("head end not found across reads");
    }

    #[test]
    fn a_cr_inside_a_line_is_not_an_end() {
        let mut h = HeadEnd::default();
        assert!(!h.feed(b"GET / HTTP/1.1\r\nX: a\rb\r\n"));
        assert!(h.feed(b"\r\n"));
    }

    async fn pair(timeout: Duration) -> (HeaderDeadline, tokio::net::TcpStream, Expiry) {
        pair_with(timeout, false).await
    }

    async fn pair_with(
        timeout: Duration,
        http2: bool,
    ) -> (HeaderDeadline, tokio::net::TcpStream, Expiry) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let raw = server.into_std().unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(
            tokio::net::TcpStream::from_std(raw).unwrap(),
        ));
        let (stream, expiry) = HeaderDeadline::new(stream, timeout, Instant::now(), http2);
        (stream, client, expiry)
    }

    /// Read until the deadline stops the stream; how long that took.
    async fn read_until_expiry(server: &mut HeaderDeadline, expiry: &Expiry) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                r = server.read(&mut buf) => match r {
                    Ok(0) => panic!("client closed first"),
                    Ok(_) => continue,
                    Err(e) => panic!("read error {e}"),
                },
                _ = expiry.wait() => return started.elapsed(),
            }
        }
    }

    #[tokio::test]
    async fn a_head_sent_byte_by_byte_is_cut_at_the_deadline() {
        let (mut server, mut client, expiry) = pair(Duration::from_millis(300)).await;
        let writer = tokio::spawn(async move {
            for b in b"GET / HTTP/1.1\r\nHost: slow\r\n".iter().cycle() {
                if client.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let took = read_until_expiry(&mut server, &expiry).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");
        // Nothing more is read after the deadline.
        let mut buf = [0u8; 8];
        let more = tokio::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
        assert!(more.is_err(), "read after expiry: {more:?}");
        drop(server);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_kept_alive_connection_may_idle_between_requests() {
        let (mut server, mut client, expiry) = pair(Duration::from_millis(200)).await;
        let mut buf = [0u8; 128];
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0);
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // Idle for longer than the head timeout, then a second request, sent at once.
        tokio::time::sleep(Duration::from_millis(400)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0);
        // A third request that stalls half-way is cut.
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let took = read_until_expiry(&mut server, &expiry).await;
        assert!(took >= Duration::from_millis(150), "{took:?}");
    }

    #[tokio::test]
    async fn the_first_head_releases_its_place_in_the_drain_count() {
        let heads = Arc::new(super::super::drain::FirstHeads::default());
        let (mut server, mut client, _expiry) = pair(Duration::from_secs(10)).await;
        server.hold_until_first_head(heads.register());
        let mut buf = [0u8; 128];
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(server.read(&mut buf).await.unwrap() > 0);
        assert_eq!(heads.waiting(), 1, "half a head is not a request");
        client.write_all(b"Host: a\r\n\r\n").await.unwrap();
        assert!(server.read(&mut buf).await.unwrap() > 0);
        assert_eq!(heads.waiting(), 0);
        // A connection that goes away before its head releases its place too.
        let (mut other, client, _expiry) = pair(Duration::from_secs(10)).await;
        other.hold_until_first_head(heads.register());
        assert_eq!(heads.waiting(), 1);
        drop(client);
        drop(other);
        assert_eq!(heads.waiting(), 0);
    }

    /// Frames trickle in on an HTTP/2 connection for longer than the head timeout.
    async fn trickle_frames(http2: bool) -> bool {
        let (mut server, mut client, expiry) = pair_with(Duration::from_millis(200), http2).await;
        client.write_all(H2_PREFACE).await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < H2_PREFACE.len() {
            got += server.read(&mut buf[got..]).await.unwrap();
        }
        // The server's SETTINGS frame, then client frames with no line in them.
        server
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        for _ in 0..6 {
            client
                .write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(80)).await;
            let _ = tokio::time::timeout(Duration::from_millis(20), server.read(&mut buf)).await;
        }
        tokio::time::timeout(Duration::from_millis(50), expiry.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn after_the_http2_preface_the_clock_stops() {
        assert!(!trickle_frames(true).await, "an HTTP/2 connection was cut");
        // Where HTTP/2 is not served, the preface is an HTTP/1 head like any other.
        assert!(trickle_frames(false).await, "HTTP/1 connection not cut");
    }

    #[tokio::test]
    async fn a_late_preface_is_cut() {
        let (mut server, mut client, expiry) = pair_with(Duration::from_millis(200), true).await;
        let writer = tokio::spawn(async move {
            for b in H2_PREFACE {
                if client.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        let took = read_until_expiry(&mut server, &expiry).await;
        assert!(took >= Duration::from_millis(150), "{took:?}");
        drop(server);
        writer.await.unwrap();
    }
}
