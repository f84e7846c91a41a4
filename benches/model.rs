//! The model backend from Rust, without the batcher's queue: classifications per second and
//! p50/p99 of one inference at batch 1, 8 and 40, for the shipped INT8 model and any other
//! ONNX file of the same version (the FP32 export of the pipeline's work directory), plus
//! the batching gain and the share of the CPU's FLOP limit reached.
//!
//!     cargo bench --bench model -- [MODEL.onnx ...]
//!
//! Messages: models/eval/second_eval.tsv (authored, never trained on), or the file named by
//! `KEFU_BENCH_MESSAGES`. One inference thread, `intra_threads` from conf/model.yaml.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kefu_edge::config::Config;
use kefu_edge::model::{Backend, ModelVersion, PaddedBatch, Runtime};

fn messages() -> Vec<String> {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/models/eval/second_eval.tsv");
    let path = std::env::var("KEFU_BENCH_MESSAGES").unwrap_or_else(|_| default.to_string());
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect()
}

/// Multiply-adds of one sequence of `t` tokens through the encoder (×2 for FLOPs):
/// Q/K/V/O and feed-forward matrices per token, attention scores and context per token
/// pair, pooler and classifier once.
fn flops(manifest: &serde_json::Value, t: f64) -> f64 {
    let e = &manifest["encoder"];
    let hidden = e["hidden"].as_f64().unwrap_or(0.0);
    let ffn = e["ffn"].as_f64().unwrap_or(0.0);
    let head_dim = e["head_dim"].as_f64().unwrap_or(0.0);
    let labels = e["labels"].as_f64().unwrap_or(0.0);
    let heads: Vec<f64> = e["heads"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h.as_f64()).collect())
        .unwrap_or_default();
    let mut macs = 0.0;
    for h in heads {
        let width = h * head_dim;
        macs += t * (4.0 * hidden * width + 2.0 * hidden * ffn);
        macs += 2.0 * t * t * width;
    }
    macs += hidden * hidden + hidden * labels;
    2.0 * macs
}

/// Peak FP32 FLOP/s of one core: FMA lanes × 2 FMA units × 2 × clock (from /proc/cpuinfo).
fn peak_flops_per_core() -> Option<(f64, String)> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags"))?;
    let lanes = if flags.contains(" avx512f") {
        16.0
    } else if flags.contains(" avx2") && flags.contains(" fma") {
        8.0
    } else {
        4.0
    };
    let peak = lanes * 2.0 * 2.0 * mhz * 1e6;
    Some((
        peak,
        format!("{lanes} fp32 lanes x 2 FMA units at {mhz:.0} MHz"),
    ))
}

fn main() {
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
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(version.dir.join("manifest.json")).unwrap())
            .unwrap();
    let runtime = Runtime::load(&m.runtime).unwrap_or_else(|e| panic!("{e}"));
    let texts = messages();
    let encoded: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| version.encoder.encode(t).unwrap())
        .collect();
    let mean_tokens = encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len() as f64;
    let per_seq = flops(&manifest, mean_tokens);
    println!(
        "{} messages, {mean_tokens:.1} tokens on average; {:.1} MFLOP per classification (unpadded)",
        texts.len(),
        per_seq / 1e6
    );
    let peak = peak_flops_per_core();
    if let Some((p, how)) = &peak {
        println!(
            "FP32 FLOP limit of one core: {:.1} GFLOP/s ({how})",
            p / 1e9
        );
    }
    let mut files: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    files.insert(0, version.model_path());
    for file in files {
        let mut backend = runtime.session(&file).unwrap_or_else(|e| panic!("{e}"));
        println!("\n{}", file.display());
        let mut single = 0.0;
        for batch in [1usize, 8, 40] {
            let batches: Vec<PaddedBatch> = encoded
                .chunks(batch)
                .filter(|c| c.len() == batch)
                .map(PaddedBatch::new)
                .collect();
            for b in batches.iter().take(3) {
                backend.run(b).unwrap();
            }
            let mut ms = Vec::new();
            let started = Instant::now();
            let mut done = 0usize;
            while started.elapsed().as_secs_f64() < 3.0 {
                for b in &batches {
                    let t = Instant::now();
                    backend.run(b).unwrap();
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                    done += batch;
                }
            }
            let per_s = done as f64 / started.elapsed().as_secs_f64();
            if batch == 1 {
                single = per_s;
            }
            ms.sort_by(f64::total_cmp);
            let q = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
            let share = peak.as_ref().map_or(String::new(), |(p, _)| {
                format!(", {:.1}% of the FLOP limit", 100.0 * per_s * per_seq / p)
            });
            println!(
                "batch {batch:>2}: {per_s:>8.0} classifications/s, p50 {:>7.3} ms, p99 {:>7.3} ms per inference, gain x{:.2}{share}",
                q(0.5),
                q(0.99),
                per_s / single
            );
        }
    }
}
