#!/usr/bin/env bash
# bench/dialog_path.sh — dialogue state, in one run:
#   1. `cargo bench --bench dialog`: bytes per state, and load+save p50/p99 on the memory
#      store, the Redis on 127.0.0.1:6379 and a Redis Cluster (3 masters, 3 replicas,
#      started here on ports 7100-7105) without and with WAIT for a replica;
#   2. end-to-end POST /v1/chat max req/s (bench/rule_path.sh, kefu-edge alone on core 0,
#      wrk on core 1) with the state in memory, then in a redis-server started here on
#      127.0.0.1:6391 and pinned to wrk's core (unpinned, the scheduler puts it on kefu-edge's
#      core half the time, and the run measures two processes sharing one core), alternated
#      ROUNDS times, so the ratio is measured side by side; the median of per-round ratios.
# Environment: DURATION (default 5), ROUNDS (default 5), CONNS, WARMUP as for rule_path.sh;
# CHAT_ONLY=1 skips part 1.
# Needs redis-server, redis-cli, wrk, taskset, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
ROUNDS=${ROUNDS:-5}
CHAT_ONLY=${CHAT_ONLY:-}
export DURATION=${DURATION:-5}
[[ -x $KEFU_BIN ]] || { echo "dialog_path.sh: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/kefu-dialog-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [[ -z $CHAT_ONLY ]]; then
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
fi

mkdir -p "$WORK/redis-chat"
taskset -c "${WRK_CORE:-1}" redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK/redis-chat" >/dev/null 2>&1 &
pids+=($!)
until redis-cli -p 6391 ping >/dev/null 2>&1; do sleep 0.1; done

echo "== chat req/s: state in memory vs in Redis (127.0.0.1:6391, on wrk's core)"
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
    ("dialog.yaml", "url: redis://127.0.0.1:6379/", "url: redis://127.0.0.1:6391/"),
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
        echo "$round $store ${rate:-0}" >>"$WORK/chat-rates.txt"
    done
done
awk '{ r[$1, $2] = $3; n = $1 } END {
        for (i = 1; i <= n; i++) if (r[i, "memory"] > 0) { v[++m] = r[i, "redis"] / r[i, "memory"]; s = s sprintf(" %.2f", v[m]) }
        asort(v); med = m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        printf "redis/memory chat req/s: median of per-round ratios %.2f (rounds:%s)   target >= 0.8\n", med, s }' \
    "$WORK/chat-rates.txt"
echo "raw output: $WORK"
