//! What the benchmarks share.

/// The messages of a benchmark: the first tab-separated column of every line of the file
/// named by `KEFU_BENCH_MESSAGES`, or of `default` (relative to the repository); empty
/// lines and `#` comments skipped.
pub fn messages(default: &str) -> Vec<String> {
    let default = format!("{}/{default}", env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var("KEFU_BENCH_MESSAGES").unwrap_or(default);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect()
}
