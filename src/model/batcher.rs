//! The dynamic batcher: a bounded queue in front of dedicated inference threads (never the
//! proxy's async workers), each owning one [`Backend`].
//!
//! An inference thread takes the first waiting request and everything queued behind it. If
//! that is a single request, the model was idle and it goes at once: no idle wait at low
//! load. If more were waiting (load), the batch keeps filling until `max_batch` or until its
//! first request has waited `max_wait`, which is where batching pays. Requests whose
//! deadline has passed, or whose caller stopped waiting, are dropped before inference.
//! Padding is to the longest sequence of the batch.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use prometheus::Histogram;
use tokio::sync::oneshot;

use super::ModelError;
use super::backend::{Backend, PaddedBatch};
use super::shed::WaitEstimate;
use super::version::{ModelInput, TextEncoder};
use crate::config::BatchConfig;
use crate::intent::Intent;
use crate::router::trained::softmax_best;

/// The model's answer for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub intent: Intent,
    pub prob: f32,
    /// The probability of every intent, indexed by [`Intent::index`] (0 for intents the
    /// model does not know).
    pub probs: Vec<f32>,
    /// How many requests shared its batch.
    pub batch_size: usize,
}

struct Job {
    input: ModelInput,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<Prediction, ModelError>>,
}

/// What the batcher reports (prometheus handles; unregistered ones in tests).
#[derive(Clone)]
pub struct BatchMetrics {
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub queue_seconds: Histogram,
    /// Deployments published (a version loaded, swapped, promoted or rolled back).
    pub swaps: prometheus::IntCounter,
    /// Remote backend: 1 while a server is ready for a version, by version and server.
    pub remote_ready: prometheus::IntGaugeVec,
    /// Remote backend: infer requests that failed, by server (each takes it out until its
    /// next health check).
    pub remote_failures: prometheus::IntCounterVec,
}

impl BatchMetrics {
    pub fn unregistered() -> BatchMetrics {
        let h = |name: &str| {
            Histogram::with_opts(prometheus::HistogramOpts::new(name, name))
                .unwrap_or_else(|_| unreachable!("static histogram options are valid"))
        };
        BatchMetrics {
            batch_size: h("batch_size"),
            inference_seconds: h("inference_seconds"),
            queue_seconds: h("queue_seconds"),
            swaps: prometheus::IntCounter::new("swaps", "swaps")
                .unwrap_or_else(|_| unreachable!("static counter options are valid")),
            remote_ready: prometheus::IntGaugeVec::new(
                prometheus::Opts::new("ready", "ready"),
                &["version", "server"],
            )
            .unwrap_or_else(|_| unreachable!("static gauge options are valid")),
            remote_failures: prometheus::IntCounterVec::new(
                prometheus::Opts::new("failures", "failures"),
                &["server"],
            )
            .unwrap_or_else(|_| unreachable!("static counter options are valid")),
        }
    }
}

pub struct Batcher {
    queue: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    estimate: Arc<WaitEstimate>,
    /// Expected waits beyond this are shed (zero: never).
    shed_wait: Duration,
    max_batch: usize,
}

/// A pending answer.
pub struct Pending {
    rx: oneshot::Receiver<Result<Prediction, ModelError>>,
    deadline: Instant,
}

impl Pending {
    /// Wait for it on an async task, at most until the deadline.
    pub async fn wait(self) -> Result<Prediction, ModelError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ModelError::Closed),
            Err(_) => Err(ModelError::DeadlinePassed),
        }
    }

    /// Wait for it on a plain thread (the CLI).
    pub fn wait_blocking(self) -> Result<Prediction, ModelError> {
        self.rx.blocking_recv().unwrap_or(Err(ModelError::Closed))
    }
}

impl Batcher {
    pub fn start(
        name: &str,
        cfg: BatchConfig,
        encoder: Arc<TextEncoder>,
        labels: Arc<[Intent]>,
        backends: Vec<Box<dyn Backend>>,
        nice: i32,
        metrics: BatchMetrics,
    ) -> Result<Batcher, ModelError> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let estimate = Arc::new(WaitEstimate::new(backends.len()));
        let mut workers = Vec::new();
        for (i, backend) in backends.into_iter().enumerate() {
            let worker = Worker {
                estimate: Arc::clone(&estimate),
                rx: rx.clone(),
                cfg,
                encoder: Arc::clone(&encoder),
                labels: Arc::clone(&labels),
                backend,
                metrics: metrics.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("kefu-model-{name}-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    worker.run()
                })
                .map_err(|e| ModelError::Load(format!("inference thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Batcher {
            queue: Some(tx),
            workers,
            estimate,
            shed_wait: cfg.shed_wait,
            max_batch: cfg.max_batch,
        })
    }

    /// Queue a message; refused at once when the queue is full, or when the wait it can
    /// expect behind the queue is past `shed_wait` or `deadline` ([`WaitEstimate`]).
    pub fn submit(&self, input: ModelInput, deadline: Duration) -> Result<Pending, ModelError> {
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        let job = Job {
            input,
            enqueued: now,
            deadline: now + deadline,
            reply,
        };
        let queue = self.queue.as_ref().ok_or(ModelError::Closed)?;
        // Fewer than a batch ahead: it rides in the next batch, whatever the estimate (on a
        // busy machine one slow inference must not shed sequential traffic). A wait past
        // the deadline ends in the fallback anyway.
        let ahead = queue.len();
        let mark = self.shed_wait.min(deadline);
        if !self.shed_wait.is_zero()
            && ahead >= self.max_batch
            && self.estimate.wait_behind(ahead) > mark
        {
            return Err(ModelError::Shed);
        }
        match queue.try_send(job) {
            Ok(()) => Ok(Pending {
                rx,
                deadline: now + deadline,
            }),
            Err(TrySendError::Full(_)) => Err(ModelError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(ModelError::Closed),
        }
    }

    /// Requests waiting for an inference thread.
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for Batcher {
    /// Close the queue: the inference threads answer what is queued, then exit. They are
    /// not joined here (this may run on an async worker); they end on their own.
    fn drop(&mut self) {
        self.queue = None;
        self.workers.clear();
    }
}

struct Worker {
    estimate: Arc<WaitEstimate>,
    rx: Receiver<Job>,
    cfg: BatchConfig,
    encoder: Arc<TextEncoder>,
    labels: Arc<[Intent]>,
    backend: Box<dyn Backend>,
    metrics: BatchMetrics,
}

impl Worker {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let jobs = self.collect(first);
            self.serve(jobs);
        }
    }

    fn collect(&self, first: Job) -> Vec<Job> {
        let close_at = first.enqueued + self.cfg.max_wait;
        let mut jobs = vec![first];
        while jobs.len() < self.cfg.max_batch {
            match self.rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Under load only: fill the batch until it is full or its first request is due.
        if jobs.len() > 1 {
            while jobs.len() < self.cfg.max_batch {
                let left = close_at.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(job) => jobs.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        jobs
    }

    fn serve(&mut self, jobs: Vec<Job>) {
        let now = Instant::now();
        let mut live = Vec::with_capacity(jobs.len());
        let mut sequences = Vec::with_capacity(jobs.len());
        for job in jobs {
            self.metrics
                .queue_seconds
                .observe(now.duration_since(job.enqueued).as_secs_f64());
            if job.reply.is_closed() {
                continue; // the caller gave up
            }
            if now >= job.deadline {
                let _ = job.reply.send(Err(ModelError::DeadlinePassed));
                continue;
            }
            match self.encoder.encode(&job.input) {
                Ok(ids) => {
                    sequences.push(ids);
                    live.push(job);
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        // Shortest first, cut where padding would exceed `max_padding`: on a CPU a batch
        // costs what its padded tokens cost, so one inference over mixed lengths is slower
        // than a few over similar ones (benches/model.rs measures both).
        let mut order: Vec<usize> = (0..live.len()).collect();
        order.sort_by_key(|&i| sequences[i].len());
        let mut jobs: Vec<Option<Job>> = live.into_iter().map(Some).collect();
        for group in length_groups(&order, &sequences, self.cfg.max_padding) {
            let seqs: Vec<Vec<u32>> = group
                .iter()
                .map(|&i| std::mem::take(&mut sequences[i]))
                .collect();
            let group_jobs: Vec<Job> = group.iter().filter_map(|&i| jobs[i].take()).collect();
            self.infer(group_jobs, &seqs);
        }
    }

    fn infer(&mut self, live: Vec<Job>, sequences: &[Vec<u32>]) {
        let batch = PaddedBatch::new(sequences);
        let started = Instant::now();
        let result = self.backend.run(&batch);
        let took = started.elapsed();
        self.estimate.record(live.len(), took);
        self.metrics.inference_seconds.observe(took.as_secs_f64());
        self.metrics.batch_size.observe(live.len() as f64);
        let n_labels = self.labels.len();
        match result {
            Ok(logits) if logits.len() == live.len() * n_labels => {
                for (job, row) in live.into_iter().zip(logits.chunks_exact(n_labels)) {
                    let mut exps = row.to_vec();
                    let (best, prob) = softmax_best(&mut exps);
                    let mut probs = vec![0.0; Intent::ALL.len()];
                    for (label, e) in self.labels.iter().zip(exps) {
                        probs[label.index()] = e * prob;
                    }
                    let _ = job.reply.send(Ok(Prediction {
                        intent: self.labels[best],
                        prob,
                        probs,
                        batch_size: batch.batch,
                    }));
                }
            }
            Ok(logits) => {
                let e = ModelError::Inference(format!(
                    "{} logits for {} requests of {n_labels} labels",
                    logits.len(),
                    live.len()
                ));
                for job in live {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for job in live {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Give this thread the nice value `nice` (Linux keeps one per thread). Inference is the
/// heavy, batched, deadline-bounded work; the proxy's workers answer the rule path in
/// microseconds. At equal priority a saturated model stage takes time slices of milliseconds
/// from them, which is the rule path's p99 (bench/shedding.sh measures both).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's id; no memory is shared with them.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if rc != 0 {
            log::warn!(
                "inference thread: cannot set nice {nice}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Cut `order` (indices sorted by sequence length, shortest first) into runs whose padded
/// size (longest x count) stays within `max_padding` x their real tokens.
pub fn length_groups(order: &[usize], sequences: &[Vec<u32>], max_padding: f64) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut real = 0usize;
    for &i in order {
        let len = sequences[i].len();
        let fits = groups.last().is_some_and(|g| {
            let padded = len * (g.len() + 1);
            padded as f64 <= max_padding * (real + len) as f64
        });
        match groups.last_mut() {
            Some(g) if fits => {
                g.push(i);
                real += len;
            }
            _ => {
                groups.push(vec![i]);
                real = len;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests;
