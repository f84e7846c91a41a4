#!/usr/bin/env bash
# bench/dialog_path.sh — dialogue state, in one run:
#   1. `cargo bench --bench dialog`: bytes per state, and load+save p50/p99 on the memory
#      store, the Redis on 127.0.0.1:6379 and a Redis Cluster (3 masters, 3 replicas,
#      started here on ports 7100-7105) without and with WAIT for a replica;
#   2. end-to-end POST /v1/chat max req/s (bench/rule_path.sh, kefu-edge alone on core 0,
#      wrk on core 1) with the state in memory, then in the Redis on 127.0.0.1:6379,
#      alternated ROUNDS times, so the ratio is measured side by side.
# Environment: DURATION (default 5), ROUNDS (default 2), CONNS, WARMUP as for rule_path.sh.
# Needs redis-server, redis-cli, wrk, taskset, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
ROUNDS=${ROUNDS:-2}
export DURATION=${DURATION:-5}
[[ -x $KEFU_BIN ]] || { echo "dialog_path.sh: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/kefu-dialog-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

nodes=()
for port in 7100 7101 7102 7103 7104 7105; do
    mkdir -p "$WORK/redis-$port"
    redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis-$port" \
        --cluster-enabled yes --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 \
        >/dev/null 2>&1 &
    pids+=($!)
    nodes+=("127.0.0.1:$port")
done
for port in 7100 7101 7102 7103 7104 7105; do
    until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
until redis-cli -p 7100 cluster info | grep -q cluster_state:ok; do sleep 0.2; done
for port in 7100 7101 7102 7103 7104 7105; do
    until redis-cli -p $port info replication | grep -Eq 'role:master|master_link_status:up'; do sleep 0.2; done
done
urls=$(printf 'redis://%s/,' "${nodes[@]}")
echo "== store latency (one client, sequential turns)"
cargo bench --quiet --bench dialog -- --cluster "${urls%,}" 2>/dev/null | grep -v '^$'

echo "== chat req/s: state in memory vs in Redis (127.0.0.1:6379)"
for store in memory redis; do
    cp -rL bench/conf "$WORK/conf-$store"
    python3 - "$WORK/conf-$store" "$ROOT" "$store" <<'PY'
import sys, pathlib
conf, root, store = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for name, old, new in [
    ("model.yaml", "../../third_party", f"{root}/third_party"),
    ("model.yaml", "../../models/intent", f"{root}/models/intent"),
    ("router.yaml", "../../models/router", f"{root}/models/router"),
    ("dialog.yaml", "enabled: false", "enabled: true"),
    ("dialog.yaml", "store: memory", f"store: {store}"),
    ("dialog.yaml", 'key_prefix: "kefu:"', 'key_prefix: "kefubench:"'),
]:
    p = conf / name
    p.write_text(p.read_text().replace(old, new, 1))
PY
done
for round in $(seq "$ROUNDS"); do
    for store in memory redis; do
        out="$WORK/chat-$store-$round.txt"
        env SERVERS=kefu ROUNDS=1 KEFU_CONF="$WORK/conf-$store" bench/rule_path.sh >"$out" 2>&1 || true
        rate=$(awk '$1 == "kefu" && $2 ~ /^[0-9.]+$/ { print $2; exit }' "$out")
        echo -e "round $round\t$store\t${rate:-?} req/s"
    done
done
redis-cli -p 6379 --scan --pattern 'kefubench:*' | xargs -r redis-cli -p 6379 del >/dev/null
echo "raw output: $WORK"
