#!/usr/bin/env bash
# bench/shedding.sh — load shedding of the model stage (issue 14 part 6): model-path traffic
# at 3x the model path's capacity, with rule-path traffic beside it; the rule path's p99 must
# stay within 2x of its p99 without the overload, with no timeouts.
#
# kefu-edge runs a copy of bench/conf with the model stage enabled (conf/model.yaml's
# batching, one inference thread), pinned to core 0; wrk runs on core 1. Messages: the model
# path's are those of models/eval/second_eval.tsv that the fast path hands on (found with
# `kefu-edge classify`, as bench/model_path.sh does); the rule path's are
# the messages of tests/data/intent_samples.tsv that it answers itself. The overload needs many
# connections: each waits for its answer (tens of ms at capacity) before its next request.
#   1. capacity: model-path messages alone, closed loop (-c CONNS), req/s = the capacity C;
#   2. calm: rule-path traffic alone, paced (RULE_CONNS connections, RULE_DELAY_MS apart);
#   3. overload, twice: the same rule-path traffic and, beside it, model-path traffic paced
#      to OVERLOAD x C (MODEL_CONNS connections), once with batch.shed_wait as shipped
#      (100ms) and once with shedding off (shed_wait: 0s: only the 1,024-deep queue and the
#      200 ms deadline bound the wait).
# Printed: each run's p99, timeouts and non-200s, the model requests shed, overloaded or past
# their deadline, and the rule path's p99 ratio against calm.
# Environment: DURATION=10 CONNS=64 RULE_CONNS=8 RULE_DELAY_MS=2 MODEL_CONNS=512 OVERLOAD=3
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10} CONNS=${CONNS:-64} RULE_CONNS=${RULE_CONNS:-8}
RULE_DELAY_MS=${RULE_DELAY_MS:-2} MODEL_CONNS=${MODEL_CONNS:-512} OVERLOAD=${OVERLOAD:-3}
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
for cmd in wrk taskset curl python3; do
    command -v "$cmd" >/dev/null || { echo "shedding: $cmd is missing" >&2; exit 1; }
done
[[ -x $KEFU_BIN ]] || { echo "shedding: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/kefu-shed.XXXXXX)

bench/model_conf.py "$WORK/shed" --set shed_wait=100ms
bench/model_conf.py "$WORK/noshed" --set shed_wait=0s
grep -v '^#' models/eval/second_eval.tsv | cut -f1 >"$WORK/all.txt"
"$KEFU_BIN" classify -c "$WORK/shed" <"$WORK/all.txt" 2>/dev/null | paste "$WORK/all.txt" - |
    awk -F'\t' '$4 == "model" { print $1 }' >"$WORK/model_path.txt"
grep -v '^#' tests/data/intent_samples.tsv | cut -f1 | awk 'NF' >"$WORK/samples.txt"
"$KEFU_BIN" classify -c "$WORK/shed" <"$WORK/samples.txt" 2>/dev/null | paste "$WORK/samples.txt" - |
    awk -F'\t' '$4 == "rule" { print $1 }' >"$WORK/rule_path.txt"
echo "model-path messages: $(wc -l <"$WORK/model_path.txt"); rule-path messages: $(wc -l <"$WORK/rule_path.txt") (of tests/data/intent_samples.tsv)"

SERVER=
start() {
    taskset -c 0 "$KEFU_BIN" -c "$1" >>"$WORK/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 200); do curl -sf 127.0.0.1:9901/healthz >/dev/null && return; sleep 0.1; done
    tail -20 "$WORK/server.log" >&2; exit 1
}
stop() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; SERVER=; }
trap stop EXIT
# wrk_run OUT SAMPLES CONNS [DELAY_MS]
wrk_run() {
    SAMPLES=$2 DELAY_MS=${4:-} taskset -c 1 wrk -t1 -c"$3" -d"${DURATION}s" --timeout 5s \
        -s bench/wrk/chat.lua http://127.0.0.1:8080/v1/chat >"$1" 2>&1 || true
}
field() { grep '^BENCH ' "$1" | tail -n 1 | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
outcome() { curl -s 127.0.0.1:9901/metrics | awk -v o="$1" '$1 ~ "^kefu_model_requests_total\\{outcome=\"" o "\"" { s += $2 } END { print s + 0 }'; }
row() { # NAME WRK_OUT
    printf '%-28s %9s %9s %8s %8s %8s\n' "$1" "$(field "$2" rps)" "$(field "$2" p99_us)" \
        "$(field "$2" timeouts)" "$(field "$2" non200)" "$(field "$2" socket_errors)"
}

# The capacity is measured with shedding off: with it on, a closed loop of CONNS clients gets
# its fallbacks at once and comes straight back, so the proxy thread's shed answers crowd out
# the inference thread (nice 19, on the same core here) and the "capacity" measured is the
# shedding rate.
start "$WORK/noshed"
wrk_run "$WORK/warm.txt" "$WORK/model_path.txt" "$CONNS"
wrk_run "$WORK/capacity.txt" "$WORK/model_path.txt" "$CONNS"
capacity=$(field "$WORK/capacity.txt" rps)
# Each model-path connection paced so that together they offer OVERLOAD x capacity.
delay=$(awk -v c="$MODEL_CONNS" -v r="$capacity" -v k="$OVERLOAD" 'BEGIN { printf "%.2f", c * 1000 / (r * k) }')
# The outcomes of a request the model itself decided.
ANSWERED='(answered|below_threshold|no_template|no_answer)'
overload() { # NAME
    local before_shed before_over before_dl before_model
    before_shed=$(outcome shed) before_over=$(outcome overloaded) before_dl=$(outcome deadline)
    before_model=$(outcome "$ANSWERED")
    wrk_run "$WORK/$1.model.txt" "$WORK/model_path.txt" "$MODEL_CONNS" "$delay" &
    local model=$!
    sleep 1
    wrk_run "$WORK/$1.rule.txt" "$WORK/rule_path.txt" "$RULE_CONNS" "$RULE_DELAY_MS"
    wait "$model"
    echo "$1: model requests answered by the model $(( $(outcome "$ANSWERED") - before_model )), shed $(( $(outcome shed) - before_shed )), overloaded $(( $(outcome overloaded) - before_over )), past the deadline $(( $(outcome deadline) - before_dl ))" >>"$WORK/outcomes.txt"
}
overload noshed
stop
start "$WORK/shed"
wrk_run "$WORK/warm2.txt" "$WORK/rule_path.txt" "$RULE_CONNS" "$RULE_DELAY_MS"
wrk_run "$WORK/calm.txt" "$WORK/rule_path.txt" "$RULE_CONNS" "$RULE_DELAY_MS"
overload shed
stop

printf '\nmodel-path capacity (shedding off): %s req/s; overload offered: %sx, %s connections %s ms apart\n\n' \
    "$capacity" "$OVERLOAD" "$MODEL_CONNS" "$delay"
printf '%-28s %9s %9s %8s %8s %8s\n' run req/s p99_us timeouts non200 sock_err
row "model path, capacity" "$WORK/capacity.txt"
row "rule path, calm" "$WORK/calm.txt"
row "rule path, overload, shed" "$WORK/shed.rule.txt"
row "model path, overload, shed" "$WORK/shed.model.txt"
row "rule path, overload, no shed" "$WORK/noshed.rule.txt"
row "model path, overload, no shed" "$WORK/noshed.model.txt"
echo
cat "$WORK/outcomes.txt"
awk -v a="$(field "$WORK/shed.rule.txt" p99_us)" -v b="$(field "$WORK/noshed.rule.txt" p99_us)" -v c="$(field "$WORK/calm.txt" p99_us)" \
    'BEGIN { printf "rule-path p99 under overload / calm: %.2f with shedding (target <= 2), %.2f without\n", a / c, b / c }'
echo "work directory: $WORK"
