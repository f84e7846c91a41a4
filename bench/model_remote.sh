#!/usr/bin/env bash
# bench/model_remote.sh — the model stage's remote backend (KServe v2 over HTTP/JSON) against
# the in-process one (ONNX Runtime), on the same batches in one run: p50/p99 per batch,
# classifications/s at batch 1, 8 and 40, and what the remote path adds per batch
# (benches/model_remote.rs).
#
# It starts bench/kserve/intent_server.py (the kserve package's ModelServer with the shipped
# model on ONNX Runtime, one thread) from third_party/kserve-venv (scripts/setup.sh --test
# installs it), pinned to core 1; the benchmark runs on core 0. PORT=8500 by default.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PORT=${PORT:-8500}
PY=third_party/kserve-venv/bin/python
[[ -x $PY ]] || { echo "model_remote.sh: run scripts/setup.sh --test first (kserve)" >&2; exit 1; }
LOG=$(mktemp /tmp/kefu-kserve.XXXXXX.log)
version=$(awk '$1 == "active:" { print $2 }' conf/model.yaml)
taskset -c 1 "$PY" bench/kserve/intent_server.py --model-dir "models/intent/$version" \
    --port "$PORT" >"$LOG" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
cargo bench --bench model_remote --no-run -q
KEFU_KSERVE_URL="http://127.0.0.1:$PORT" KEFU_KSERVE_LOG="$LOG" taskset -c 0 cargo bench --bench model_remote -q
echo "server log: $LOG"
