#!/usr/bin/env bash
# bench/model_path.sh — end-to-end POST /v1/chat on messages the fast path hands to the model
# stage: the max req/s, then p50/p99 paced at 50% and at 90% of that max, in one run.
#
# It reuses bench/rule_path.sh (kefu-edge alone, pinned to core 0; wrk on core 1; see that
# script's header for what paced mode measures) on:
#   * a configuration made from bench/conf with the model stage enabled (conf/model.yaml's
#     batching: max_batch 40, max_wait 30 ms, one inference thread);
#   * the messages of models/eval/second_eval.tsv (authored, never trained on) that the fast
#     path hands on, found with `kefu-edge classify` on that configuration.
# Environment: DURATION, ROUNDS, CONNS, WARMUP as for rule_path.sh; LOADS="50 90";
# MAX_KEFU=<req/s> skips the max-rate run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
LOADS=${LOADS:-"50 90"}
[[ -x $KEFU_BIN ]] || { echo "model_path.sh: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/kefu-model-bench.XXXXXX)
bench/model_conf.py "$WORK/conf"
grep -v '^#' models/eval/second_eval.tsv | cut -f1 >"$WORK/all.txt"
"$KEFU_BIN" classify -c "$WORK/conf" <"$WORK/all.txt" 2>/dev/null | paste "$WORK/all.txt" - |
    awk -F'\t' '$4 == "model" { print $1 }' >"$WORK/model_path.txt"
echo "model-path messages: $(wc -l <"$WORK/model_path.txt") of $(wc -l <"$WORK/all.txt") in models/eval/second_eval.tsv"
max=${MAX_KEFU:-}
for load in $LOADS; do
    out="$WORK/load$load.txt"
    env SERVERS=kefu KEFU_CONF="$WORK/conf" SAMPLES="$WORK/model_path.txt" LOAD="$load" \
        ${max:+MAX_KEFU=$max} bench/rule_path.sh | tee "$out"
    # The max measured by the first run is reused by the next.
    [[ -n $max ]] || max=$(awk '$1 == "kefu" && $2 ~ /^[0-9.]+$/ { print $2; exit }' "$out")
done
echo "configuration and messages: $WORK"
