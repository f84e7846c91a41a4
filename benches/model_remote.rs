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
use kefu_edge::model::kserve::{KserveBackend, KservePool, decode_answer, encode_request};
use kefu_edge::model::{Backend, BatchMetrics, ModelInput, ModelVersion, PaddedBatch, Runtime};

mod common;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(600);

fn quantile(ms: &mut [f64], p: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() - 1) as f64 * p) as usize]
}

/// Run `batches` through `backend` for one round; the time of each batch in ms.
fn round(backend: &mut dyn Backend, batches: &[PaddedBatch], ms: &mut Vec<f64>) -> usize {
    let started = Instant::now();
    let mut done = 0;
    while started.elapsed() < ROUND {
        for b in batches {
            let t = Instant::now();
            backend.run(b).unwrap_or_else(|e| panic!("{e}"));
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            done += b.batch;
        }
    }
    done
}

fn main() {
    let Ok(url) = std::env::var("KEFU_KSERVE_URL") else {
        println!("model_remote: set KEFU_KSERVE_URL (bench/model_remote.sh starts a server)");
        return;
    };
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
    let runtime = Runtime::load(&m.runtime).unwrap_or_else(|e| panic!("{e}"));
    let mut local = runtime
        .session(&version.model_path())
        .unwrap_or_else(|e| panic!("{e}"));
    let pool = KservePool::start(
        &KserveConfig {
            endpoints: vec![url.trim_end_matches('/').to_owned()],
            model_name: "kefu-intent-{version}".into(),
            timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
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
        let (mut ldone, mut rdone) = (0, 0);
        for _ in 0..ROUNDS {
            ldone += round(&mut local, &batches, &mut lms);
            rdone += round(&mut remote, &batches, &mut rms);
        }
        let secs = ROUND.as_secs_f64() * ROUNDS as f64;
        // The edge's own share: the request's JSON and the answer's parse, on this batch.
        let b = &batches[0];
        let logits = local.run(b).unwrap_or_else(|e| panic!("{e}"));
        let answer = serde_json::json!({"model_name": "m", "id": "1", "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [b.batch, logits.len() / b.batch], "data": logits}
        ]})
        .to_string();
        let t = Instant::now();
        let n = 2000;
        for _ in 0..n {
            let request = encode_request("1", b).unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(request);
            let parsed = decode_answer(answer.as_bytes(), b.batch, logits.len() / b.batch);
            std::hint::black_box(parsed.unwrap_or_else(|e| panic!("{e}")));
        }
        let json_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        let (l50, l99) = (quantile(&mut lms, 0.5), quantile(&mut lms, 0.99));
        let (r50, r99) = (quantile(&mut rms, 0.5), quantile(&mut rms, 0.99));
        println!(
            "batch {batch:>2}: in-process {:>6.0}/s p50 {l50:>6.3} ms p99 {l99:>6.3} ms | remote {:>6.0}/s p50 {r50:>6.3} ms p99 {r99:>6.3} ms | added p50 {:>6.3} ms (edge JSON {json_ms:.3} ms) | remote/in-process throughput {:.2}",
            ldone as f64 / secs,
            rdone as f64 / secs,
            r50 - l50,
            rdone as f64 / ldone as f64
        );
    }
}
