//! The model backend from Rust, without the batcher's queue: classifications per second and
//! p50/p99 of one inference at batch 1, 8 and 40, for the shipped INT8 model and any other
//! ONNX file of the same version (the FP32 export of the pipeline's work directory), plus
//! the batching gain and the share of the CPU's FLOP limit reached.
//!
//!     cargo bench --bench model -- [MODEL.onnx ...]
//!     KEFU_BENCH_VERSIONS=v1,v2 cargo bench --bench model     # versions side by side, one run
//!
//! Messages: models/eval/second_eval.tsv (authored, never trained on), or the file named by
//! `KEFU_BENCH_MESSAGES`. One inference thread, `intra_threads` from conf/model.yaml.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kefu_edge::config::Config;
use kefu_edge::model::{Backend, ModelVersion, PaddedBatch, Runtime};

mod common;

fn messages() -> Vec<String> {
    common::messages("models/eval/second_eval.tsv")
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
    let list = |key: &str| -> Vec<f64> {
        e[key]
            .as_array()
            .map(|a| a.iter().filter_map(|h| h.as_f64()).collect())
            .unwrap_or_default()
    };
    let heads = list("heads");
    // Pruned feed-forward widths per layer (v2 on), else `ffn` for every layer.
    let ffns = list("ffns");
    let mut macs = 0.0;
    for (i, h) in heads.into_iter().enumerate() {
        let width = h * head_dim;
        let ffn = ffns.get(i).copied().unwrap_or(ffn);
        macs += t * (4.0 * hidden * width + 2.0 * hidden * ffn);
        macs += 2.0 * t * t * width;
    }
    macs += hidden * hidden + hidden * labels;
    2.0 * macs
}

/// Peak FP32 FLOP/s of one core: FMA lanes x 2 FMA units x 2 x clock (from /proc/cpuinfo),
/// and the INT8 peak: with VNNI (`vpdpbusd`) a lane does 4 int8 multiply-adds per
/// instruction, 4x the FP32 rate.
fn peak_per_core() -> Option<(f64, f64, String)> {
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
    let fp32 = lanes * 2.0 * 2.0 * mhz * 1e6;
    let vnni = flags.contains(" avx512_vnni") || flags.contains(" avx_vnni");
    let int8 = if vnni { 4.0 * fp32 } else { 2.0 * fp32 };
    let how = format!(
        "{lanes} fp32 lanes x 2 FMA units at {mhz:.0} MHz; INT8 {}x that{}",
        int8 / fp32,
        if vnni { " (VNNI)" } else { "" }
    );
    Some((fp32, int8, how))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("conf")).unwrap_or_else(|e| panic!("{e}"));
    let versions =
        std::env::var("KEFU_BENCH_VERSIONS").unwrap_or_else(|_| cfg.model.active.clone());
    let extra: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    // One ONNX Runtime environment per process, shared by every version.
    let runtime = Runtime::process(&cfg.model.runtime).unwrap_or_else(|e| panic!("{e}"));
    for (i, name) in versions.split(',').enumerate() {
        println!("\n=== version {name}");
        bench_version(&cfg, &runtime, name, if i == 0 { &extra } else { &[] });
    }
}

fn bench_version(cfg: &Config, runtime: &Runtime, name: &str, extra: &[PathBuf]) {
    let m = &cfg.model;
    let version = ModelVersion::open(
        &m.version_dir(name),
        name,
        &m.quality_gate,
        m.batch.max_tokens,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(version.dir.join("manifest.json")).unwrap())
            .unwrap();
    let texts = messages();
    let encoded: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            version
                .encoder
                .encode(&kefu_edge::model::ModelInput::alone(t))
                .unwrap()
        })
        .collect();
    let mean_tokens = encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len() as f64;
    let per_seq = flops(&manifest, mean_tokens);
    println!(
        "{} messages, {mean_tokens:.1} tokens on average; {:.1} MFLOP per classification (unpadded)",
        texts.len(),
        per_seq / 1e6
    );
    let peak = peak_per_core();
    if let Some((fp32, int8, how)) = &peak {
        println!(
            "limit of one core: FP32 {:.0} GFLOP/s, INT8 {:.0} GOP/s ({how})",
            fp32 / 1e9,
            int8 / 1e9
        );
    }
    let mut files: Vec<PathBuf> = extra.to_vec();
    files.insert(0, version.model_path());
    // In arrival order (what a batch of concurrent requests looks like) and sorted by length
    // (the least padding a grouping by length could reach).
    let mut sorted = encoded.clone();
    sorted.sort_by_key(Vec::len);
    for file in files {
        let mut backend = runtime
            .session(&file, &cfg.model.runtime)
            .unwrap_or_else(|e| panic!("{e}"));
        let int8 = std::fs::read(&file)
            .map(|b| b.windows(21).any(|w| w == b"DynamicQuantizeLinear"))
            .unwrap_or(false);
        let limit = peak.as_ref().map(|(f, i, _)| if int8 { *i } else { *f });
        println!(
            "\n{} ({})",
            file.display(),
            if int8 { "INT8" } else { "FP32" }
        );
        let mut single = 0.0;
        for (order, seqs) in [("arrival", &encoded), ("by length", &sorted)] {
            for batch in [1usize, 8, 40] {
                if batch == 1 && order != "arrival" {
                    continue;
                }
                let batches: Vec<PaddedBatch> = seqs
                    .chunks(batch)
                    .filter(|c| c.len() == batch)
                    .map(PaddedBatch::new)
                    .collect();
                let padded: usize = batches.iter().map(|b| b.batch * b.seq).sum();
                let real: usize = batches
                    .iter()
                    .map(|b| b.mask.iter().filter(|m| **m == 1).count())
                    .sum();
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
                let share = limit.map_or(String::new(), |l| {
                    format!(", {:.1}% of the limit", 100.0 * per_s * per_seq / l)
                });
                println!(
                    "batch {batch:>2} {order:<9}: {per_s:>6.0} classifications/s, p50 {:>7.3} ms, p99 {:>7.3} ms per inference, x{:.2} of batch 1, padding x{:.2}{share}",
                    q(0.5),
                    q(0.99),
                    per_s / single,
                    padded as f64 / real as f64
                );
            }
        }
    }
}
