//! Load shedding for the model stage. Past its capacity a queue only turns into waiting: every
//! request waits its whole deadline, then gets the fallback anyway, and holds a task and a
//! connection meanwhile. So a request whose *expected* wait is already past `batch.shed_wait`
//! gets the fallback at once. The expected wait is what the requests ahead of it cost: the
//! queue's length times the recent inference time per request (batched, so it falls as
//! batches fill) over the inference threads, once at least a whole batch is ahead (with less,
//! the request rides in the next batch whatever the estimate says). Predicting it, instead of shedding once the
//! measured queue wait's p99 has gone up, sheds before anyone waited and needs no window to
//! age out: when the queue drains, the estimate falls with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The recent inference time per request, and the wait it implies for a queue.
#[derive(Debug)]
pub struct WaitEstimate {
    /// Exponentially weighted mean of inference time per request, in nanoseconds.
    per_request_ns: AtomicU64,
    threads: u64,
}

impl WaitEstimate {
    /// For a batcher with `threads` inference threads (each takes its own batches).
    pub fn new(threads: usize) -> WaitEstimate {
        WaitEstimate {
            per_request_ns: AtomicU64::new(0),
            threads: threads.max(1) as u64,
        }
    }

    /// A batch of `requests` took `took` to run.
    pub fn record(&self, requests: usize, took: Duration) {
        if requests == 0 {
            return;
        }
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX) / requests as u64;
        let old = self.per_request_ns.load(Ordering::Relaxed);
        // Weight 1/8 for the new batch; the first one sets it. Two threads racing here lose
        // one sample, which a mean over many does not miss.
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.per_request_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How long a request that finds `queued` ahead of it is expected to wait.
    pub fn wait_behind(&self, queued: usize) -> Duration {
        let per_request = self.per_request_ns.load(Ordering::Relaxed);
        Duration::from_nanos(per_request.saturating_mul(queued as u64) / self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_estimate_before_the_first_batch() {
        let e = WaitEstimate::new(1);
        assert_eq!(e.wait_behind(1000), Duration::ZERO);
    }

    #[test]
    fn the_wait_is_the_queue_times_the_cost_per_request_over_the_threads() {
        let e = WaitEstimate::new(2);
        // 40 requests in 20 ms: 0.5 ms each.
        e.record(40, Duration::from_millis(20));
        assert_eq!(e.wait_behind(400), Duration::from_millis(100));
        assert_eq!(e.wait_behind(0), Duration::ZERO);
    }

    #[test]
    fn the_mean_follows_recent_batches() {
        let e = WaitEstimate::new(1);
        e.record(1, Duration::from_millis(1));
        for _ in 0..100 {
            e.record(10, Duration::from_millis(100));
        }
        let w = e.wait_behind(1);
        assert!(
            w > Duration::from_micros(9_900) && w <= Duration::from_millis(10),
            "{w:?}"
        );
        e.record(0, Duration::from_secs(1));
        assert_eq!(e.wait_behind(1), w, "an empty batch says nothing");
    }
}
