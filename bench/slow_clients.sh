#!/usr/bin/env bash
# bench/slow_clients.sh — a normal client's latency while slowloris connections are open
# (issue 14: p99 within 2x of the same load without them).
#
# kefu-edge -c bench/conf (one worker, pinned to core 0; server.yaml's client settings as
# shipped: header_timeout 10s). The normal load: wrk -t1 -c$CONNS on core 1, each connection
# paced to a mean DELAY_MS between requests (bench/wrk/report.lua), so the server is far from
# saturated and p99 is the latency a shopper sees, not a queue. The attack: bench/slowloris.py
# on core 1 holds SLOW connections that send a header line every INTERVAL s and never end
# their head; each one the server cuts is reopened at once. Rounds alternate: without the
# attack, then with it (it starts WARM s before wrk). The table gives medians over rounds and
# the ratio of p99s; the server's cut counter shows the timeouts at work.
#
# Environment: ROUNDS=3 DURATION=10 CONNS=8 DELAY_MS=2 SLOW=500 INTERVAL=1 WARM=3
#   SAMPLES=tests/data/intent_samples.tsv  KEFU_BIN=target/release/kefu-edge
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CONNS=${CONNS:-8} DELAY_MS=${DELAY_MS:-2}
SLOW=${SLOW:-500} INTERVAL=${INTERVAL:-1} WARM=${WARM:-3}
SAMPLES=${SAMPLES:-tests/data/intent_samples.tsv}
KEFU_BIN=${KEFU_BIN:-target/release/kefu-edge}
for cmd in wrk taskset curl python3; do
    command -v "$cmd" >/dev/null || { echo "slow_clients: $cmd is missing" >&2; exit 1; }
done
[ -x "$KEFU_BIN" ] || { echo "slow_clients: build $KEFU_BIN first (cargo build --release)" >&2; exit 1; }
work=$(mktemp -d /tmp/kefu-slow.XXXXXX)
ulimit -n 65536 2>/dev/null || true
taskset -c 0 "$KEFU_BIN" -c bench/conf >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf 127.0.0.1:9901/healthz >/dev/null && break; sleep 0.1; done
curl -sf 127.0.0.1:9901/healthz >/dev/null || { cat "$work/server.log" >&2; exit 1; }

# run NAME ROUND: one wrk run; prints its p99 in µs.
run() {
    local out="$work/$1.$2.txt"
    SAMPLES=$ROOT/$SAMPLES DELAY_MS=$DELAY_MS taskset -c 1 \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s bench/wrk/chat.lua \
        http://127.0.0.1:8080/v1/chat >"$out" 2>&1 || true
    grep '^BENCH ' "$out" | tail -n 1
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Warm-up (first requests pay for lazy allocations).
run warmup 0 >/dev/null
: >"$work/results.tsv"
for r in $(seq "$ROUNDS"); do
    line=$(run calm "$r")
    printf 'calm\t%s\t%s\t%s\n' "$(field p99_us <<<"$line")" "$(field rps <<<"$line")" "$(field non200 <<<"$line")" >>"$work/results.tsv"
    taskset -c 1 python3 bench/slowloris.py 127.0.0.1 8080 "$SLOW" "$((DURATION + WARM + 1))" "$INTERVAL" >"$work/slow.$r.txt" 2>&1 &
    attacker=$!
    sleep "$WARM"
    line=$(run attacked "$r")
    wait "$attacker" || true
    printf 'attacked\t%s\t%s\t%s\n' "$(field p99_us <<<"$line")" "$(field rps <<<"$line")" "$(field non200 <<<"$line")" >>"$work/results.tsv"
    echo "round $r: $(tail -n 2 "$work/results.tsv" | tr '\t\n' ' ')| $(cat "$work/slow.$r.txt")"
done
calm=$(awk -F'\t' '$1=="calm"{print $2}' "$work/results.tsv" | median)
attacked=$(awk -F'\t' '$1=="attacked"{print $2}' "$work/results.tsv" | median)
cut=$(curl -s 127.0.0.1:9901/metrics | awk '/^kefu_connections_header_timeouts_total /{print $2}')
printf '\n%-10s %10s\n' load p99_us
printf '%-10s %10s\n' calm "$calm" attacked "$attacked"
awk -v a="$attacked" -v c="$calm" 'BEGIN { printf "p99 attacked / calm: %.2f (target <= 2)\n", a / c }'
echo "connections cut for a late request head: ${cut:-?}"
echo "work directory: $work"
