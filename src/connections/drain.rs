//! Connections still waiting for their first request head, so that a graceful shutdown (and
//! the SIGQUIT hand-over of a binary upgrade) does not cut one whose request is on its way.
//!
//! Once its listeners stop accepting, Pingora's HTTP application wakes every session parked
//! in reading a request head and closes it without an answer. That is right for a kept-alive
//! connection between requests (it has been served; its client opens a new connection, which
//! the new process takes), but wrong for a connection accepted an instant earlier whose
//! request has not arrived yet: its client did everything right and gets no status line.
//! [`FirstHeads`] counts those connections; the connection guard's cleanup waits until none
//! is left before it lets Pingora's run. The wait is bounded: every such connection is cut at
//! its request-head deadline (`client.header_timeout`), and the whole process at the end of
//! the grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// How many connections have been accepted and not yet sent their first request head.
#[derive(Debug, Default)]
pub struct FirstHeads {
    waiting: AtomicUsize,
    none_left: Notify,
}

/// One connection counted in [`FirstHeads`], until this is dropped (its first head is in,
/// or the connection is gone).
#[derive(Debug)]
pub struct FirstHeadPending(Arc<FirstHeads>);

impl FirstHeads {
    /// Count a new connection.
    pub fn register(self: &Arc<Self>) -> FirstHeadPending {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        FirstHeadPending(Arc::clone(self))
    }

    /// Connections waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Completes when no connection is waiting for its first head.
    pub async fn none_waiting(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a last release in between is not
            // missed (`notify_waiters` wakes only registered waiters).
            notified.as_mut().enable();
            if self.waiting() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for FirstHeadPending {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn with_nothing_waiting_the_wait_is_over_at_once() {
        let heads = Arc::new(FirstHeads::default());
        let pending = heads.register();
        drop(pending);
        assert_eq!(heads.waiting(), 0);
        tokio::time::timeout(Duration::from_secs(5), heads.none_waiting())
            .await
            .expect("no wait");
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_last_connection_is_heard() {
        let heads = Arc::new(FirstHeads::default());
        let (a, b) = (heads.register(), heads.register());
        let waiter = tokio::spawn({
            let heads = Arc::clone(&heads);
            async move { heads.none_waiting().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "two connections still wait");
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "one connection still waits");
        assert_eq!(heads.waiting(), 1);
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended")
            .expect("waiter task");
    }
}
