use std::str::FromStr;
use std::sync::Mutex;

use super::*;
use crate::model::TextEncoder;

/// Words `a`..`e` and the specials; whitespace-split.
const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"a":4,"b":5,"c":6,"d":7,"e":8},"unk_token":"[UNK]"}}"#;

fn encoder() -> Arc<TextEncoder> {
    let tok = tokenizers::Tokenizer::from_str(TOKENIZER).unwrap();
    Arc::new(TextEncoder::new(tok, 128, None).unwrap())
}

/// Label = number of real tokens of the row, so padding must not change the answer. Each
/// run first says it started, then waits to be released: tests decide what is queued while
/// the model is busy, whatever the machine's load.
struct Fake {
    labels: usize,
    started: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
    batches: Arc<Mutex<Vec<usize>>>,
    fail: bool,
}

impl Backend for Fake {
    fn run(&mut self, b: &PaddedBatch) -> Result<Vec<f32>, ModelError> {
        let _ = self.started.send(());
        let _ = self.release.recv();
        self.batches.lock().unwrap().push(b.batch);
        if self.fail {
            return Err(ModelError::Inference("fake failure".into()));
        }
        let mut out = vec![0.0; b.batch * self.labels];
        for row in 0..b.batch {
            let real: i64 = b.mask[row * b.seq..(row + 1) * b.seq].iter().sum();
            out[row * self.labels + (real as usize % self.labels)] = 5.0;
        }
        Ok(out)
    }
}

fn labels() -> Arc<[Intent]> {
    Intent::ALL[..4].to_vec().into()
}

struct Harness {
    batcher: Batcher,
    batches: Arc<Mutex<Vec<usize>>>,
    started: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

impl Harness {
    fn new(cfg: BatchConfig, fail: bool) -> Harness {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = crossbeam_channel::unbounded();
        let (release, release_rx) = crossbeam_channel::unbounded();
        let fake = Fake {
            labels: 4,
            started: started_tx,
            release: release_rx,
            batches: Arc::clone(&batches),
            fail,
        };
        let batcher = Batcher::start(
            "t",
            cfg,
            encoder(),
            labels(),
            vec![Box::new(fake)],
            0,
            BatchMetrics::unregistered(),
        )
        .unwrap();
        Harness {
            batcher,
            batches,
            started,
            release,
        }
    }

    /// Let every run through from now on.
    fn open(&self) {
        for _ in 0..1000 {
            let _ = self.release.send(());
        }
    }

    fn submit(&self, text: &str) -> Pending {
        self.batcher
            .submit(ModelInput::alone(text), Duration::from_secs(30))
            .unwrap()
    }

    /// One request that takes 50 ms or more: what the shedding estimate learns from.
    fn one_slow_request(&self) {
        let first = self.submit("a");
        self.started.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        self.release.send(()).unwrap();
        assert!(first.wait_blocking().is_ok());
    }

    fn seen(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

fn cfg(max_batch: usize, max_wait_ms: u64, queue: usize) -> BatchConfig {
    BatchConfig {
        max_batch,
        max_wait: Duration::from_millis(max_wait_ms),
        queue,
        shed_wait: Duration::ZERO,
        max_tokens: 128,
        max_padding: 100.0,
    }
}

#[test]
fn a_request_that_rides_in_the_next_batch_is_not_shed() {
    let mut c = cfg(4, 0, 16);
    c.shed_wait = Duration::from_millis(20);
    let h = Harness::new(c, false);
    h.one_slow_request();
    // Busy, one waiting: ~50 ms expected, but fewer than max_batch ahead.
    let busy = h.submit("a");
    h.started.recv().unwrap();
    let queued = [h.submit("a"), h.submit("a")];
    h.open();
    assert!(busy.wait_blocking().is_ok());
    for p in queued {
        assert!(p.wait_blocking().is_ok());
    }
}

#[test]
fn a_request_that_would_only_wait_is_shed() {
    let mut c = cfg(1, 0, 16);
    c.shed_wait = Duration::from_millis(20);
    let h = Harness::new(c, false);
    h.one_slow_request();
    // The model busy again and one request waiting: the next one would wait ~50 ms.
    let busy = h.submit("a");
    h.started.recv().unwrap();
    let queued = h.submit("a");
    let shed = h
        .batcher
        .submit(ModelInput::alone("a"), Duration::from_secs(30));
    assert!(matches!(shed, Err(ModelError::Shed)));
    h.open();
    assert!(busy.wait_blocking().is_ok());
    assert!(queued.wait_blocking().is_ok());
    // Drained: nothing ahead, nothing shed.
    let after = h
        .batcher
        .submit(ModelInput::alone("a"), Duration::from_secs(30));
    assert!(after.is_ok_and(|p| p.wait_blocking().is_ok()));
}

#[test]
fn an_idle_model_answers_at_once() {
    // A 5 s batching window must not delay a lone request.
    let h = Harness::new(cfg(40, 5_000, 16), false);
    h.open();
    let started = Instant::now();
    let p = h.submit("a b c").wait_blocking().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.intent, Intent::ALL[3]);
    assert!(p.prob > 0.9);
    assert_eq!(p.batch_size, 1);
    assert_eq!(h.seen(), vec![1]);
}

#[test]
fn requests_queued_behind_a_busy_model_share_a_batch() {
    let h = Harness::new(cfg(8, 50, 64), false);
    let first = h.submit("a");
    h.started.recv().unwrap(); // the model is busy with it
    let rest: Vec<Pending> = (0..10).map(|i| h.submit(["a b", "a b c"][i % 2])).collect();
    h.open();
    assert_eq!(first.wait_blocking().unwrap().batch_size, 1);
    let answers: Vec<Prediction> = rest
        .into_iter()
        .map(|p| p.wait_blocking().unwrap())
        .collect();
    // Batched answers are the answers each gets alone: padding changes nothing.
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.intent, Intent::ALL[[2, 3][i % 2]]);
    }
    let seen = h.seen();
    assert_eq!(
        seen,
        vec![1, 8, 2],
        "max_batch closes the batch, the rest follows"
    );
}

#[test]
fn a_full_queue_refuses_at_once() {
    let h = Harness::new(cfg(1, 0, 2), false);
    let busy = h.submit("a");
    h.started.recv().unwrap();
    let queued = [h.submit("a"), h.submit("a")];
    assert_eq!(h.batcher.queued(), 2);
    let refused = h
        .batcher
        .submit(ModelInput::alone("a"), Duration::from_secs(30));
    assert!(matches!(refused, Err(ModelError::Overloaded)));
    h.open();
    assert!(busy.wait_blocking().is_ok());
    for p in queued {
        assert!(p.wait_blocking().is_ok());
    }
}

#[test]
fn a_passed_deadline_is_not_inferred() {
    let h = Harness::new(cfg(1, 0, 8), false);
    let busy = h.submit("a");
    h.started.recv().unwrap();
    let late = h
        .batcher
        .submit(ModelInput::alone("a b"), Duration::from_millis(1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    h.open();
    assert!(busy.wait_blocking().is_ok());
    assert_eq!(late.wait_blocking(), Err(ModelError::DeadlinePassed));
    assert_eq!(
        h.seen(),
        vec![1],
        "the late request never reached the model"
    );
}

#[test]
fn a_backend_error_reaches_every_request_of_the_batch() {
    let h = Harness::new(cfg(4, 0, 8), true);
    h.open();
    let e = h.submit("a").wait_blocking();
    assert!(matches!(e, Err(ModelError::Inference(_))), "{e:?}");
}

#[test]
fn softmax_best_gives_the_largest_probability() {
    let (i, p) = softmax_best(&mut [0.0, 2.0, 1.0]);
    assert_eq!(i, 1);
    let want = 2f32.exp() / (1.0 + 2f32.exp() + 1f32.exp());
    assert!((p - want).abs() < 1e-6);
}

#[test]
fn length_groups_bound_the_padding() {
    let seqs: Vec<Vec<u32>> = [3, 3, 4, 4, 9, 10, 30]
        .iter()
        .map(|n| vec![1; *n])
        .collect();
    let order: Vec<usize> = (0..seqs.len()).collect();
    assert_eq!(length_groups(&order, &seqs, 100.0), vec![order.clone()]);
    assert_eq!(
        length_groups(&order, &seqs, 1.25),
        vec![vec![0, 1, 2, 3], vec![4, 5], vec![6]]
    );
    assert_eq!(length_groups(&order, &seqs, 1.0).len(), 5);
}

#[test]
fn a_mixed_batch_runs_as_groups_of_similar_length_with_the_same_answers() {
    let mut c = cfg(8, 50, 64);
    c.max_padding = 1.25;
    let h = Harness::new(c, false);
    let first = h.submit("a");
    h.started.recv().unwrap();
    let texts = ["a b c d e a b c d e", "a", "a b c d e a b c d e", "a"];
    let rest: Vec<Pending> = texts.iter().map(|t| h.submit(t)).collect();
    h.open();
    first.wait_blocking().unwrap();
    for (t, p) in texts.iter().zip(rest) {
        let p = p.wait_blocking().unwrap();
        let tokens = t.split(' ').count();
        assert_eq!(p.intent, Intent::ALL[tokens % 4], "{t}");
        assert_eq!(p.batch_size, 2, "grouped with its own length");
    }
    assert_eq!(h.seen(), vec![1, 2, 2]);
}
