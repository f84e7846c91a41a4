//! The remote model backend against the in-process one, on the same padded batches: p50/p99
//! of one batch and classifications/s at batch 1, 8 and 40, one batch in flight, rounds of
//! the two interleaved so that a noisy machine slows both alike. What the remote path adds
//! per batch is its p50 minus the in-process p50: the edge's JSON encoding and decoding
//! (measured on its own below), loopback HTTP, and the inference server's own handling.
//!
//!     bench/model_remote.sh        # starts bench/kserve/intent_server.py and runs this
//!     KEFU_KSERVE_URL=http://127.0.0.1:8500 cargo bench --bench model_remote
//!
//! Messages: models/eval/second_eval.tsv (authored, never trained on), or the file named by
//! `KEFU_BENCH_MESSAGES`.

use std::path::Path;
use std::time::{Duration, Instant};

use kefu_edge::config::{Config, KserveConfig};
use kefu_edge::model::kserve::{KserveBackend, KservePool};
use kefu_edge::model::v2::{decode_answer, encode_request};
use kefu_edge::model::{Backend, BatchMetrics, ModelInput, ModelVersion, PaddedBatch, Runtime};

mod common;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(600);

fn quantile(ms: &mut [f64], p: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() - 1) as f64 * p) as usize]
}

/// Run `batches` through `backend` for one round: batches' times in ms, and how many
/// classifications in how many seconds.
fn round(backend: &mut dyn Backend, batches: &[PaddedBatch], ms: &mut Vec<f64>) -> (usize, f64) {
    let started = Instant::now();
    let mut done = 0;
    'round: loop {
        for b in batches {
            if started.elapsed() >= ROUND {
                break 'round;
            }
            let t = Instant::now();
            backend.run(b).unwrap_or_else(|e| panic!("{e}"));
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            done += b.batch;
        }
    }
    (done, started.elapsed().as_secs_f64())
}

/// The inference server's own times of the requests it logged after byte `from` of its
/// log (kserve's trace lines): handling (wall, from the request to the answer) and the
/// model's `predict`, in ms.
fn server_times(log: &str, from: usize) -> (Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut wall, mut predict) = (Vec::new(), Vec::new());
    for line in text.get(from..).unwrap_or("").lines() {
        // `requestId: …, predict_ms: 2.07, postprocess_ms: …`
        if let Some(v) = line.split("predict_ms: ").nth(1) {
            predict.extend(
                v.split(',')
                    .next()
                    .and_then(|v| v.trim().parse::<f64>().ok()),
            );
        }
        // `kserve.io.v2.models.<name>.infer: 0.0118 ['http_status:200', …, 'time:wall']`
        if let Some(v) = line
            .split(".infer: ")
            .nth(1)
            .filter(|_| line.contains("time:wall"))
        {
            let seconds = v
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
            wall.extend(seconds.map(|s| s * 1e3));
        }
    }
    (wall, predict)
}

fn main() {
    let Ok(url) = std::env::var("KEFU_KSERVE_URL") else {
        println!("model_remote: set KEFU_KSERVE_URL (bench/model_remote.sh starts a server)");
        return;
    };
    let log = std::env::var("KEFU_KSERVE_LOG").ok();
    // JSON lists, or the binary tensor extension with KEFU_KSERVE_BINARY=1.
    let binary = std::env::var("KEFU_KSERVE_BINARY").is_ok_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("conf")).unwrap_or_else(|e| panic!("{e}"));
    let m = &cfg.model;
    let version = ModelVersion::open(
        &m.version_dir(&m.active),
        &m.active,
        &m.quality_gate,
        m.batch.max_tokens,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::process(&m.runtime).unwrap_or_else(|e| panic!("{e}"));
    let mut local = runtime
        .session(&version.model_path(), &m.runtime)
        .unwrap_or_else(|e| panic!("{e}"));
    let pool = KservePool::start(
        &KserveConfig {
            endpoints: vec![url.trim_end_matches('/').to_owned()],
            model_name: "kefu-intent-{version}".into(),
            timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            binary_tensors: binary,
        },
        &version.manifest.version,
        version.labels.len(),
        BatchMetrics::unregistered(),
    );
    assert_eq!(
        pool.ready(),
        1,
        "{url} is not ready or serves another model"
    );
    let mut remote = KserveBackend::new(pool);
    let encoded: Vec<Vec<u32>> = common::messages("models/eval/second_eval.tsv")
        .iter()
        .map(|t| version.encoder.encode(&ModelInput::alone(t)).unwrap())
        .collect();
    println!(
        "{} messages, version {}, server {url}",
        encoded.len(),
        m.active
    );
    for batch in [1usize, 8, 40] {
        let batches: Vec<PaddedBatch> = encoded
            .chunks(batch)
            .filter(|c| c.len() == batch)
            .map(PaddedBatch::new)
            .collect();
        for b in batches.iter().take(3) {
            local.run(b).unwrap_or_else(|e| panic!("{e}"));
            remote.run(b).unwrap_or_else(|e| panic!("{e}"));
        }
        let (mut lms, mut rms) = (Vec::new(), Vec::new());
        let (mut ldone, mut rdone, mut lsecs, mut rsecs) = (0, 0, 0.0, 0.0);
        let log_from = log
            .as_ref()
            .map_or(0, |l| std::fs::metadata(l).map_or(0, |m| m.len()));
        for _ in 0..ROUNDS {
            let (n, t) = round(&mut local, &batches, &mut lms);
            (ldone, lsecs) = (ldone + n, lsecs + t);
            let (n, t) = round(&mut remote, &batches, &mut rms);
            (rdone, rsecs) = (rdone + n, rsecs + t);
        }
        // The edge's own share: encoding the request and reading the answer, on this batch.
        let b = &batches[0];
        let logits = local.run(b).unwrap_or_else(|e| panic!("{e}"));
        let answer = serde_json::json!({"model_name": "m", "id": "1", "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [b.batch, logits.len() / b.batch], "data": logits}
        ]})
        .to_string();
        let t = Instant::now();
        let n = 2000;
        for _ in 0..n {
            let request = encode_request("1", b, binary).unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(request.body);
            let parsed = decode_answer(answer.as_bytes(), None, b.batch, logits.len() / b.batch);
            std::hint::black_box(parsed.unwrap_or_else(|e| panic!("{e}")));
        }
        let json_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        let (l50, l99) = (quantile(&mut lms, 0.5), quantile(&mut lms, 0.99));
        let (r50, r99) = (quantile(&mut rms, 0.5), quantile(&mut rms, 0.99));
        println!(
            "batch {batch:>2}: in-process {:>6.0}/s p50 {l50:>7.3} ms p99 {l99:>7.3} ms | remote {:>6.0}/s p50 {r50:>7.3} ms p99 {r99:>7.3} ms | remote/in-process: throughput {:.2}, p50 +{:.3} ms",
            ldone as f64 / lsecs,
            rdone as f64 / rsecs,
            (rdone as f64 / rsecs) / (ldone as f64 / lsecs),
            r50 - l50
        );
        let server = log.as_ref().map(|l| server_times(l, log_from as usize));
        match server {
            Some((mut wall, mut predict)) if !wall.is_empty() && !predict.is_empty() => {
                let (w50, p50) = (quantile(&mut wall, 0.5), quantile(&mut predict, 0.5));
                println!(
                    "          server p50: handling {w50:.3} ms, of which predict {p50:.3} ms (its HTTP/JSON {:.3} ms) | the edge's side p50 {:.3} ms (remote p50 - server handling; its JSON alone {json_ms:.3} ms)",
                    w50 - p50,
                    r50 - w50
                );
            }
            _ => println!("          (no server log: KEFU_KSERVE_LOG; edge JSON {json_ms:.3} ms)"),
        }
    }
}
