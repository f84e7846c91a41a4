#!/usr/bin/env bash
# bench/rule_path.sh — requests/s of kefu-edge's rule path against the nginx + Lua tier it
# replaces and against Pingora's own ceiling, in ONE run on a 2-core box.
#
# Servers (each pinned to core 0 with taskset; wrk -t1 -c64 pinned to core 1):
#   nginx    nginx 1.22 + Lua (bench/nginx/): UA/IP deny, limit_req, cjson body parse, keyword
#            rules generated from the same intents.yaml, template reply. 127.0.0.1:8090.
#   ping     target/release/examples/ping: bare Pingora answering from request_filter, the
#            ceiling of any Pingora service on this core. 127.0.0.1:8092.
#   kefu     target/release/kefu-edge -c bench/conf. Chat on :8080, admin 127.0.0.1:9901.
#   kefu_local  (SHARED=1 only) kefu-edge on bench/conf as it is, local buckets only.
# SHARED=1: the per-address and per-user buckets are shared through a redis-server started
# on 127.0.0.1:6390 (pinned to wrk's core): kefu-edge runs a copy of KEFU_CONF with
# `shared: true` on both, and the nginx tier runs lua-compat/kefu_limit.lua on the same
# buckets in access_by_lua. SERVERS defaults to "nginx kefu kefu_local", and the table adds
# kefu with shared buckets against kefu_local (requests/s ratio, added p99).
# ACCESS_LOG=1: kefu runs with server.yaml's access_log (a file in the work directory) and
# kefu_local without; SERVERS defaults to "kefu kefu_local" and the table gives their ratio.
# SHARED_TIMEOUT_MS=50: both tiers' bound on one Redis check (see below).
# SHARED_UNIX=1: both tiers reach that Redis over a unix socket instead of loopback TCP.
# SHARED_AHEAD=0: kefu-edge's limits.yaml `shared.ahead` (default: the product's, 0.5); 0 makes
# every request wait for Redis's answer.
# The three run in interleaved rounds (the starting server rotates each round), so a build
# or other noise that comes and goes hits all of them; the table shows medians over rounds
# and the kefu/nginx ratio is also given as the median of per-round ratios.
#
# Paced mode (LOAD=80): after the max-rate rounds, nginx and kefu are each run again at about
# LOAD% of their own measured max and the p99 is reported (design target: p99 <= 2 ms at
# 80%). wrk has no rate option, so the rate is set with wrk's delay() hook: every one of the
# CONNS connections waits a mean DELAY_MS between a response and its next request, and
# DELAY_MS is calibrated with short runs until the achieved rate is within 3% of the target.
# What that measures, honestly:
#   * it is still a closed loop: a connection that waits for a slow response does not send
#     the requests it "should" have sent meanwhile, so a stall is counted once instead of
#     for every request it delayed (coordinated omission). p99 is optimistic when the server
#     stalls for longer than a connection's cycle (CONNS/target, ~1-3 ms here); look at
#     max_us and p99.9 too. wrk2 corrects this but is not packaged in Debian.
#   * wrk's timers have millisecond resolution, so paced requests leave in bursts at
#     millisecond edges rather than as a smooth Poisson stream; that queues them briefly
#     in the server and makes p99 pessimistic by up to a fraction of a millisecond, for both
#     servers alike.
#   * the latency is wrk's: from writing the request to reading the whole response, over
#     loopback, including wrk's own scheduling on core 1.
# Open-loop mode (OPEN_LOOP="50 80 95"): nginx, ping and kefu each at those % of their own max
# with examples/open_loop.rs in place of wrk (cargo build --release --example open_loop):
# requests leave on a fixed schedule and each latency counts from when the request was due,
# so a stall is paid by every request it delayed (no coordinated omission).
# Fewer connections instead of pacing would not give a chosen rate (a closed loop with c
# connections runs at c/latency, which saturates the server down to c of ~2), so it is not used.
#
# Environment:
#   DURATION=10   seconds per measured run          WARMUP=3     seconds of warm-up per start
#   ROUNDS=3      interleaved rounds                 CONNS=64     wrk connections
#   SERVERS="nginx ping kefu"  which servers (e.g. SERVERS=nginx to test the harness alone)
#   (relative paths are taken from the repository root)
#   SAMPLES=tests/data/intent_samples.tsv  messages for chat (first column; '#' skipped);
#            ../shared/data/jddc2019_customer_messages.txt replays real shopper traffic.
#   KEFU_CONF=bench/conf   kefu-edge's conf dir; the nginx tier's rules, edge filter and
#            limits are generated from it (intents.yaml falls back to conf/intents.yaml; with
#            no such directory, nginx alone runs conf/'s rules with non-throttling limits).
#   LOAD=80       also run the paced mode at this % of each server's max
#   OPEN_LOOP="50 80 95"  also run the open-loop mode (below) at these % of each server's max
#   OPEN_ROUNDS=1  open-loop rounds (servers interleaved, the starting one rotating); with
#            SHARED=1 the table ends with the median p99 kefu's shared buckets add over kefu_local
#   PACER=timerfd  how the open-loop generator waits for due times: timerfd (sleeps between
#            sends, leaving its core to the Redis of SHARED=1) or spin (yields in a loop: sends
#            on time to microseconds, but the core is never idle)
#   MAX_NGINX=, MAX_KEFU=  with LOAD: skip the max rounds and use these req/s instead
#   CAL_SECONDS=3 seconds per calibration run of the paced mode
#   USERS=4096    distinct user_ids in the load (bench/wrk/chat.lua)
#   SERVER_CORE=0 WRK_CORE=1
#   KEFU_BIN, PING_BIN      other binaries than target/release/{kefu-edge,examples/ping}
# Output: the table on stdout; raw wrk output, server logs and results.tsv stay in the
# work directory printed at the end (/tmp/kefu-bench.*).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SHARED=${SHARED:-}
if [[ -n $SHARED ]]; then SERVERS=${SERVERS:-"nginx kefu kefu_local"}; fi
ACCESS_LOG=${ACCESS_LOG:-}
if [[ -n $ACCESS_LOG ]]; then SERVERS=${SERVERS:-"kefu kefu_local"}; fi
SERVERS=${SERVERS:-"nginx ping kefu"}
REDIS_PORT=6390
# Each tier's bound on one Redis check. On this 2-core box Redis shares wrk's saturated
# core, so the product's 2 ms default would measure the local fallback, not Redis.
SHARED_TIMEOUT_MS=${SHARED_TIMEOUT_MS:-50}
# SHARED_UNIX=1: both tiers reach Redis over a unix socket instead of loopback TCP.
SHARED_UNIX=${SHARED_UNIX:-}
SAMPLES=${SAMPLES:-$ROOT/tests/data/intent_samples.tsv}
KEFU_CONF=${KEFU_CONF:-bench/conf}
LOAD=${LOAD:-}
OPEN_LOOP=${OPEN_LOOP:-}
OPEN_ROUNDS=${OPEN_ROUNDS:-1}
PACER=${PACER:-timerfd}
OPEN_LOOP_BIN=${OPEN_LOOP_BIN:-$ROOT/target/release/examples/open_loop}
USERS=${USERS:-4096}
CAL_SECONDS=${CAL_SECONDS:-3}
SERVER_CORE=${SERVER_CORE:-0}
WRK_CORE=${WRK_CORE:-1}

KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
PING_BIN=${PING_BIN:-$ROOT/target/release/examples/ping}
NGINX_ADDR=127.0.0.1:8090
declare -A URL=(
    [nginx]=http://127.0.0.1:8090/v1/chat
    [ping]=http://127.0.0.1:8092/ping
    [kefu]=http://127.0.0.1:8080/v1/chat
    [kefu_local]=http://127.0.0.1:8080/v1/chat
)
declare -A SCRIPT=([nginx]=bench/wrk/chat.lua [ping]=bench/wrk/ping.lua [kefu]=bench/wrk/chat.lua
                   [kefu_local]=bench/wrk/chat.lua)
declare -A PORTS=([nginx]="8090" [ping]="8092" [kefu]="8080 9901" [kefu_local]="8080 9901")

die() { echo "rule_path.sh: $*" >&2; exit 2; }
say() { echo "== $*" >&2; }
calc() { awk "BEGIN { printf \"%.6g\", ($*) }"; }
pos() { awk "BEGIN { d = ($*); printf \"%.6g\", (d > 0 ? d : 0) }"; }       # max(0, expr)
within() { awk "BEGIN { r = ($1); exit !(r > 1 - $2 && r < 1 + $2) }"; }  # within RATIO TOLERANCE

# ------------------------------------------------------------------ preflight
for s in $SERVERS; do
    [[ -n ${URL[$s]:-} ]] || die "unknown server '$s' in SERVERS (known: nginx ping kefu kefu_local)"
done
has() { [[ " $SERVERS " == *" $1 "* ]]; }

missing=()
for cmd in wrk taskset curl python3 awk; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if has nginx; then
    command -v nginx >/dev/null || missing+=(nginx)
    for f in /usr/lib/nginx/modules/ngx_http_lua_module.so /usr/lib/nginx/modules/ndk_http_module.so \
             /usr/share/lua/5.1/resty/core.lua /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so; do
        [[ -e $f ]] || missing+=("$f")
    done
fi
if [[ -n $SHARED ]]; then
    command -v redis-server >/dev/null || missing+=(redis-server)
    [[ -e /usr/share/lua/5.1/nginx/redis.lua || -e /usr/share/lua/5.1/resty/redis.lua ]] || missing+=(lua-nginx-redis)
fi
if ((${#missing[@]})); then
    die "missing: ${missing[*]}
  Debian 12: apt-get install nginx-light libnginx-mod-http-lua lua-resty-core lua-cjson wrk curl python3-yaml"
fi
python3 -c 'import yaml' 2>/dev/null || die "python3 needs PyYAML (apt-get install python3-yaml)"
(($(nproc) >= 2)) || die "needs 2 cores (server on core $SERVER_CORE, wrk on core $WRK_CORE); nproc=$(nproc)"

need_build=()
has kefu && [[ ! -x $KEFU_BIN ]] && need_build+=("$KEFU_BIN")
has ping && [[ ! -x $PING_BIN ]] && need_build+=("$PING_BIN")
[[ -n $OPEN_LOOP && ! -x $OPEN_LOOP_BIN ]] && need_build+=("$OPEN_LOOP_BIN (cargo build --release --example open_loop)")
if ((${#need_build[@]})); then
    die "not built: ${need_build[*]}
  run: cargo build --release --bin kefu-edge --example ping
  (or leave servers out, e.g. SERVERS=nginx bench/rule_path.sh)"
fi
if has kefu && [[ ! -d $KEFU_CONF ]]; then
    die "kefu-edge's bench configuration $KEFU_CONF does not exist (KEFU_CONF=...)"
fi
if has nginx || has kefu; then
    [[ -r $SAMPLES ]] || die "no messages file $SAMPLES (set SAMPLES=...; e.g. ../shared/data/jddc2019_customer_messages.txt)"
fi
[[ -z $LOAD ]] || [[ $LOAD =~ ^[0-9]+$ && $LOAD -ge 5 && $LOAD -le 100 ]] || die "LOAD must be a percentage (5..100)"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for s in $SERVERS; do
    for p in ${PORTS[$s]}; do
        ! port_busy "$p" || die "port $p (for $s) is already in use; stop whatever listens there"
    done
done

WORK=$(mktemp -d /tmp/kefu-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as nobody and read the generated Lua from here
RESULTS=$WORK/results.tsv
printf 'round\tserver\trps\tp50_us\tp99_us\tp999_us\tmax_us\tnon200\tsocket_errors\tsteal_pct\tbg_busy_pct\n' >"$RESULTS"

# ------------------------------------------------------------------ nginx tier files
if has nginx; then
    gen_args=(--conf "$KEFU_CONF")
    if [[ ! -d $KEFU_CONF ]]; then
        # No bench configuration yet (nginx alone): the shipped rules, but not the shipped
        # limits, which would throttle the benchmark (per_ip 50r/s).
        say "$KEFU_CONF does not exist: nginx tier from conf/ with non-throttling limits"
        gen_args=(--conf conf --limits none)
    fi
    if ! python3 bench/gen_lua_rules.py "${gen_args[@]}" --out "$WORK/gen" 2>"$WORK/gen.log"; then
        cat "$WORK/gen.log" >&2
        die "generating the Lua rules (${gen_args[*]}) failed"
    fi
    sed 's/^/   /' "$WORK/gen.log" >&2
    if [[ -n $SHARED ]]; then
        cp lua-compat/kefu_limit.lua lua-compat/gcra.lua "$WORK/gen/"
        # The same quotas as kefu-edge's limits.yaml, on the same Redis keys.
        python3 - "$KEFU_CONF/limits.yaml" "$WORK/gen" "$REDIS_PORT" "$SHARED_TIMEOUT_MS" >>"$WORK/gen/kefu_chat.conf" <<'PY'
import sys, yaml
limits, gen, port, timeout = yaml.safe_load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
def quota(name):
    b = limits[name]
    n, per = b["rate"].split("r/")
    us = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}[per] // int(n)
    return "{interval_us = %d, burst = %d}" % (max(us, 1), b["burst"])
print("access_by_lua_block {")
import os
host = "unix:%s/redis.sock" % os.path.dirname(gen) if os.environ.get("SHARED_UNIX") else "127.0.0.1"
print('    require("kefu_limit").access({script = "%s/gcra.lua", redis_host = "%s", redis_port = %s, timeout_ms = %s,'
      % (gen, host, port, timeout))
print("        per_ip = %s, per_user = %s})" % (quota("per_ip"), quota("per_user")))
print("}")
PY
    fi
    mkdir -p "$WORK/nginx"
    sed -e "s#@RUN_DIR@#$WORK/nginx#g" -e "s#@GEN_DIR@#$WORK/gen#g" \
        -e "s#@LUA_DIR@#$ROOT/bench/nginx#g" -e "s#@LISTEN@#$NGINX_ADDR#g" \
        -e "s#@CHAT_PATH@#/v1/chat#g" bench/nginx/nginx.conf.in >"$WORK/nginx/nginx.conf"
    nginx -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
        || die "nginx -t failed; see $WORK/nginx/error.log"
fi

# ------------------------------------------------------------------ shared buckets
KEFU_RUN_CONF=$KEFU_CONF
REDIS_PID=
if [[ -n $SHARED ]]; then
    ! port_busy "$REDIS_PORT" || die "port $REDIS_PORT (redis) is already in use"
    taskset -c "$WRK_CORE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly no --unixsocket "$WORK/redis.sock" --unixsocketperm 777 >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    KEFU_RUN_CONF=$WORK/kefu-shared
    cp -rL "$KEFU_CONF" "$KEFU_RUN_CONF"   # -L: bench/conf links some files to conf/
    python3 - "$KEFU_RUN_CONF/limits.yaml" "$REDIS_PORT" "$SHARED_TIMEOUT_MS" <<'PY'
import sys, yaml
path, port, timeout = sys.argv[1], sys.argv[2], sys.argv[3]
limits = yaml.safe_load(open(path))
for name in ("per_ip", "per_user"):
    limits[name]["shared"] = True
import os
url = "redis://127.0.0.1:%s" % port
if os.environ.get("SHARED_UNIX"):
    url = "unix://" + os.path.join(os.path.dirname(os.path.dirname(path)), "redis.sock")
limits["shared"] = {"redis": url, "timeout": "%sms" % timeout, "nodes": 1}
if os.environ.get("SHARED_AHEAD"):
    limits["shared"]["ahead"] = float(os.environ["SHARED_AHEAD"])
yaml.safe_dump(limits, open(path, "w"))
PY
    # Relative paths of the copy (../models, the ONNX Runtime library) point back to the original.
    for f in "$KEFU_RUN_CONF"/*.yaml; do sed -i "s#: \.\./#: $ROOT/$KEFU_CONF/../#" "$f"; done
fi
if [[ -n $ACCESS_LOG ]]; then
    if [[ $KEFU_RUN_CONF == "$KEFU_CONF" ]]; then
        KEFU_RUN_CONF=$WORK/kefu-logged
        cp -rL "$KEFU_CONF" "$KEFU_RUN_CONF"
        for f in "$KEFU_RUN_CONF"/*.yaml; do sed -i "s#: \.\./#: $ROOT/$KEFU_CONF/../#" "$f"; done
    fi
    printf 'access_log:\n  path: %s/access.log\n' "$WORK" >>"$KEFU_RUN_CONF/server.yaml"
fi

# ------------------------------------------------------------------ server control
SERVER_PID=
SERVER_NAME=
declare -A MED=()
declare -A P99=()

start_server() {
    local s=$1 log=$WORK/$1.log
    case $s in
    nginx) taskset -c "$SERVER_CORE" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
               -e "$WORK/nginx/error.log" >>"$log" 2>&1 & ;;
    ping)  taskset -c "$SERVER_CORE" "$PING_BIN" >>"$log" 2>&1 & ;;
    kefu)  taskset -c "$SERVER_CORE" "$KEFU_BIN" -c "$KEFU_RUN_CONF" >>"$log" 2>&1 & ;;
    kefu_local) taskset -c "$SERVER_CORE" "$KEFU_BIN" -c "$KEFU_CONF" >>"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    SERVER_NAME=$s
}

first_sample() {
    awk -F'\t' '!/^#/ && $1 != "" { print $1; exit }' "$SAMPLES" |
        python3 -c 'import json,sys; print(json.dumps({"user_id":"ready","text":sys.stdin.read().strip()}, ensure_ascii=False))'
}

probe_once() {
    local s=$1
    case $s in
    ping) curl -s -o /dev/null -w '%{http_code}' -A kefu-bench/1.0 "${URL[$s]}" ;;
    kefu | kefu_local) local h
          h=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/healthz) || true
          [[ $h == 200 ]] || { echo "healthz:$h"; return; }
          curl -s -o /dev/null -w '%{http_code}' -A kefu-bench/1.0 -H 'Content-Type: application/json' \
              --data-binary "$READY_BODY" "${URL[$s]}" ;;
    nginx) curl -s -o /dev/null -w '%{http_code}' -A kefu-bench/1.0 -H 'Content-Type: application/json' \
              --data-binary "$READY_BODY" "${URL[$s]}" ;;
    esac
}

wait_ready() {
    local s=$1 code=
    for _ in $(seq 1 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "--- $s exited during start-up; last lines of its log:" >&2
            tail -n 20 "$WORK/$s.log" "$WORK/nginx/error.log" 2>/dev/null >&2 || true
            SERVER_PID=
            die "$s did not start"
        fi
        code=$(probe_once "$s" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    die "$s did not answer 200 within 30 s (last: ${code:-no answer}); see $WORK/$s.log"
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local sig=INT   # pingora: SIGINT is the immediate stop (SIGTERM waits for the grace period)
    [[ $SERVER_NAME == nginx ]] && sig=TERM   # nginx: fast shutdown
    kill -"$sig" "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "rule_path.sh: $SERVER_NAME did not stop in 10 s, killing it" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    # Give the kernel a moment to release the listening port before the next start.
    sleep 0.3
}
trap 'stop_server; [[ -z $REDIS_PID ]] || kill "$REDIS_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ measuring
# /proc/stat: steal time on both cores while wrk runs (>2-3% means a noisy neighbour VM).
cpu_ticks() { awk '/^cpu[0-9]/ { t=0; for (i=2; i<=NF; i++) t+=$i; printf "%s %d %d %d ", $1, t, $9, $5+$6 }' /proc/stat; }
steal_pct() {  # before after -> max steal % over cpuN
    awk -v a="$1" -v b="$2" 'BEGIN { n=split(a, x, " "); split(b, y, " "); m=0
        for (i=1; i<=n; i+=4) { dt=y[i+1]-x[i+1]; ds=y[i+2]-x[i+2]; if (dt>0 && 100*ds/dt>m) m=100*ds/dt }
        printf "%.1f", m }'
}
core_busy_pct() {  # core before after -> busy % of cpuCORE (not idle, not waiting on I/O)
    awk -v c="cpu$1" -v a="$2" -v b="$3" 'BEGIN { n=split(a, x, " "); split(b, y, " ")
        for (i=1; i<=n; i+=4) if (x[i]==c) { dt=y[i+1]-x[i+1]; di=y[i+3]-x[i+3] }
        printf "%.0f", (dt > 0 ? 100 - 100 * di / dt : 0) }'
}

# Busy % of each core over 1 s while no server runs: what the rest of the machine (another
# container's build, say) takes away from the run that follows. Prints "core0/core1".
background_busy() {
    local a b
    a=$(grep -E '^cpu[0-9]+ ' /proc/stat); sleep 1; b=$(grep -E '^cpu[0-9]+ ' /proc/stat)
    paste <(echo "$a") <(echo "$b") | awk -v c0="cpu$SERVER_CORE" -v c1="cpu$WRK_CORE" '
        { n = NF / 2; t = 0; for (i = 2; i <= n; i++) t += $(i + n) - $i
          idle = ($(5 + n) + $(6 + n)) - ($5 + $6); busy[$1] = t > 0 ? 100 * (1 - idle / t) : 0 }
        END { printf "%.0f/%.0f", busy[c0], busy[c1] }'
}

# run_wrk NAME SECONDS OUTFILE [DELAY_MS] -> sets the BENCH fields as W_<key>, W_steal
run_wrk() {
    local s=$1 secs=$2 out=$3 delay=${4:-} before after line
    before=$(cpu_ticks)
    SAMPLES=$SAMPLES DELAY_MS=$delay taskset -c "$WRK_CORE" \
        wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "${SCRIPT[$s]}" "${URL[$s]}" >"$out" 2>&1 || true
    after=$(cpu_ticks)
    W_steal=$(steal_pct "$before" "$after")
    line=$(grep '^BENCH ' "$out" | tail -n 1) || true
    if [[ -z $line ]]; then
        cat "$out" >&2
        die "wrk gave no result for $s (see $out)"
    fi
    local kv k v
    for kv in ${line#BENCH }; do
        k=${kv%%=*} v=${kv#*=}
        printf -v "W_$k" '%s' "$v"
    done
}

median() { sort -g | awk '{ v[NR]=$1 } END { if (NR==0) { print "-"; exit } if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
col() {  # col SERVER COLUMN [ROUND_FILTER] -> values
    awk -F'\t' -v s="$1" -v c="$2" 'NR==1 { for (i=1; i<=NF; i++) h[$i]=i; next } $2==s && $1 ~ /^[0-9]+$/ { print $h[c] }' "$RESULTS"
}

READY_BODY=$(first_sample 2>/dev/null || echo '{"user_id":"ready","text":"你好"}')

say "kefu-edge rule-path benchmark: $(date -u +%FT%TZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "servers: $SERVERS; server on core $SERVER_CORE, wrk -t1 -c$CONNS on core $WRK_CORE; ${ROUNDS} rounds x ${DURATION}s (+${WARMUP}s warm-up); messages: $SAMPLES ($(grep -cv '^#' "$SAMPLES" 2>/dev/null || echo 0) lines)"
say "work directory: $WORK"

order=()
for s in nginx ping kefu kefu_local; do has "$s" && order+=("$s"); done

skip_max=
if [[ -n $LOAD || -n $OPEN_LOOP ]] && { ! has nginx || [[ -n ${MAX_NGINX:-} ]]; } && { ! has kefu || [[ -n ${MAX_KEFU:-} ]]; }; then
    skip_max=1
fi

if [[ -z $skip_max ]]; then
    for ((r = 1; r <= ROUNDS; r++)); do
        n=${#order[@]}
        for ((j = 0; j < n; j++)); do
            s=${order[$(((j + r - 1) % n))]}
            bg=$(background_busy)
            start_server "$s"
            wait_ready "$s"
            if ((r == 1)) && [[ $s == nginx || $s == kefu ]]; then
                python3 bench/probe_intents.py "${URL[$s]}" "$SAMPLES" "$WORK/probe.$s.tsv" --limit 2000 \
                    >"$WORK/probe.$s.txt" 2>&1 || true
                say "$s $(tail -n 1 "$WORK/probe.$s.txt")"
            fi
            run_wrk "$s" "$WARMUP" "$WORK/warmup.$r.$s.txt"
            run_wrk "$s" "$DURATION" "$WORK/wrk.$r.$s.txt"
            if [[ -n $SHARED && $s == kefu ]]; then
                # How the shared buckets were answered: by Redis, or by the local fallback
                # (Redis slower than the 2 ms timeout, breaker open).
                curl -s http://127.0.0.1:9901/metrics | grep -E '^kefu_limits_(shared|local|breaker)' \
                    >"$WORK/metrics.$r.kefu.txt" || true
                say "round $r kefu shared buckets: $(tr '\n' ' ' <"$WORK/metrics.$r.kefu.txt")"
            fi
            stop_server
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$W_rps" "$W_p50_us" "$W_p99_us" \
                "$W_p999_us" "$W_max_us" "$W_non200" "$W_socket_errors" "$W_steal" "$bg" >>"$RESULTS"
            say "round $r $s: $(printf '%.0f' "$W_rps") req/s, p50 ${W_p50_us} us, p99 ${W_p99_us} us, non-200 ${W_non200} (${W_codes}), socket errors ${W_socket_errors}; steal ${W_steal}%, busy before (core$SERVER_CORE/core$WRK_CORE) ${bg}%"
        done
    done

    echo
    echo "Rule path, max rate: wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds (server on core $SERVER_CORE, wrk on core $WRK_CORE)"
    printf '%-8s %12s %21s %9s %9s %10s %8s %12s\n' server "req/s" "(min-max)" "p50 ms" "p99 ms" non-2xx steal% "busy before"
    for s in "${order[@]}"; do
        MED[$s]=$(col "$s" rps | median)
        lo=$(col "$s" rps | sort -g | head -n 1)
        hi=$(col "$s" rps | sort -g | tail -n 1)
        p50=$(col "$s" p50_us | median)
        p99=$(col "$s" p99_us | median)
        bad=$(paste <(col "$s" non200) <(col "$s" socket_errors) | awk '{ t += $1 + $2 } END { print t+0 }')
        st=$(col "$s" steal_pct | sort -g | tail -n 1)
        bgmax=$(col "$s" bg_busy_pct | awk -F/ '{ if ($1 > a) a = $1; if ($2 > b) b = $2 } END { printf "%d/%d%%", a, b }')
        printf '%-8s %12.0f %21s %9.2f %9.2f %10s %8s %12s\n' "$s" "${MED[$s]}" \
            "($(printf '%.0f-%.0f' "$lo" "$hi"))" "$(calc "$p50/1000")" "$(calc "$p99/1000")" "$bad" "$st" "$bgmax"
    done
    if has kefu && has nginx; then
        per_round=$(paste <(col kefu rps) <(col nginx rps) | awk '{ printf "%.3f\n", $1/$2 }')
        printf 'kefu/nginx         %.2f  (median of per-round ratios %.2f; rounds: %s)   target >= 1.0, goal 1.1\n' \
            "$(calc "${MED[kefu]}/${MED[nginx]}")" "$(echo "$per_round" | median)" "$(echo $per_round)"
    fi
    if has kefu && has kefu_local; then
        per_round=$(paste <(col kefu rps) <(col kefu_local rps) | awk '{ printf "%.3f\n", $1/$2 }')
        what="shared buckets"; label="kefu shared/local "; target="target >= 0.7"; p99_target="target <= 1 ms"
        [[ -z $SHARED && -n $ACCESS_LOG ]] && { what="access log"; label="kefu logged/not   "; target=""; p99_target=""; }
        printf '%s %.2f  (median of per-round ratios %.2f; rounds: %s)   %s\n' "$label" \
            "$(calc "${MED[kefu]}/${MED[kefu_local]}")" "$(echo "$per_round" | median)" "$(echo $per_round)" "$target"
        printf 'p99 added by the %s: %.2f ms (median p99 kefu - kefu_local)   %s\n' "$what" \
            "$(calc "($(col kefu p99_us | median) - $(col kefu_local p99_us | median)) / 1000")" "$p99_target"
    fi
    if has kefu && has ping; then
        per_round=$(paste <(col kefu rps) <(col ping rps) | awk '{ printf "%.3f\n", $1/$2 }')
        printf 'kefu/pingora-ping  %.2f  (median of per-round ratios %.2f; rounds: %s)   goal ~0.95\n' \
            "$(calc "${MED[kefu]}/${MED[ping]}")" "$(echo "$per_round" | median)" "$(echo $per_round)"
    fi
    if has kefu && has nginx && [[ -s $WORK/probe.kefu.tsv && -s $WORK/probe.nginx.tsv ]]; then
        paste "$WORK/probe.nginx.tsv" "$WORK/probe.kefu.tsv" | awk -F'\t' '
            $3 == "rule" { n++; if ($6 == "rule" && $5 == $2) same++ }
            END { if (n) printf "rule hits of the nginx tier that kefu-edge also answered from rules with the same intent: %d/%d\n", same, n }'
    fi
    awk -F'\t' 'NR > 1 { split($11, b, "/"); if ($10 + 0 > 3 || b[1] + 0 > 10 || b[2] + 0 > 10) noisy = 1 }
        END { if (noisy) print "NOTE: the machine was not quiet (steal > 3% or > 10% of a core busy before a run):\n      compare the servers through the per-round ratios, not the absolute req/s." }' "$RESULTS"
fi

# max_rate SERVER -> the max req/s the paced and open-loop modes take their loads from:
# MAX_NGINX / MAX_KEFU when given, else the median of this run's max rounds. kefu_local runs
# at the shared kefu's rate: the p99 the shared buckets add, at equal load.
max_rate() {
    local max
    case $1 in
    nginx) max=${MAX_NGINX:-${MED[nginx]:-}} ;;
    ping) max=${MED[ping]:-} ;;
    kefu | kefu_local) max=${MAX_KEFU:-${MED[kefu]:-}} ;;
    esac
    [[ -n $max && $max != - ]] || die "no max rate for $1"
    echo "$max"
}

# ------------------------------------------------------------------ paced mode
if [[ -n $LOAD ]]; then
    rows=()
    for s in nginx kefu kefu_local; do
        has "$s" || continue
        max=$(max_rate "$s")
        target=$(calc "$max * $LOAD / 100")
        cycle=$(calc "$CONNS * 1000 / $target")          # ms between requests of one connection
        delay=$(pos "$cycle - 0.5")
        start_server "$s"
        wait_ready "$s"
        run_wrk "$s" "$WARMUP" "$WORK/load.warmup.$s.txt"
        for i in 1 2 3 4 5; do
            run_wrk "$s" "$CAL_SECONDS" "$WORK/load.cal$i.$s.txt" "$delay"
            say "$s calibration $i: delay ${delay} ms -> $(printf '%.0f' "$W_rps") req/s (target $(printf '%.0f' "$target"))"
            within "$W_rps / $target" 0.03 && break
            # Move the mean delay by the difference between the wanted and the measured cycle.
            delay=$(pos "$delay + $cycle - $CONNS * 1000 / $W_rps")
        done
        run_wrk "$s" "$DURATION" "$WORK/load.$s.txt" "$delay"
        stop_server
        P99[$s]=$W_p99_us
        printf 'load\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$s" "$W_rps" "$W_p50_us" "$W_p99_us" \
            "$W_p999_us" "$W_max_us" "$W_non200" "$W_socket_errors" "$W_steal" >>"$RESULTS"
        rows+=("$(printf '%-8s %10.0f %10.0f %10.0f %6.0f%% %9.2f %9.2f %9.2f %9.2f %8s' "$s" "$max" "$target" "$W_rps" \
            "$(calc "100 * $W_rps / $max")" "$(calc "$W_p50_us/1000")" "$(calc "$W_p99_us/1000")" \
            "$(calc "$W_p999_us/1000")" "$(calc "$W_max_us/1000")" "$((W_non200 + W_socket_errors))")")
    done
    echo
    echo "Paced at ~${LOAD}% of each server's max: $CONNS connections, per-connection delay calibrated (closed loop, ms-granular pacing: see the script header)"
    printf '%-8s %10s %10s %10s %7s %9s %9s %9s %9s %8s\n' server "max req/s" target achieved "% max" "p50 ms" "p99 ms" "p99.9 ms" "max ms" non-2xx
    printf '%s\n' "${rows[@]}"
    echo "design target: kefu p99 <= 2 ms at 80% load; compare only servers whose achieved % of max is close"
    if has kefu && has kefu_local; then
        echo "kefu_local ran at kefu's (shared buckets) target rate: the % max column is of that rate"
        printf 'p99 added by the shared buckets at equal load: %.2f ms   target <= 1 ms\n' \
            "$(calc "(${P99[kefu]} - ${P99[kefu_local]}) / 1000")"
    fi
fi

# ------------------------------------------------------------------ open-loop mode
if [[ -n $OPEN_LOOP ]]; then
    rows=()
    declare -A OP99=()
    declare -A GEN_SATURATED=()
    open_order=()
    for s in nginx ping kefu kefu_local; do has "$s" && open_order+=("$s"); done
    for ((r = 1; r <= OPEN_ROUNDS; r++)); do
        n=${#open_order[@]}
        for ((j = 0; j < n; j++)); do
            s=${open_order[$(((j + r - 1) % n))]}
            max=$(max_rate "$s")
            hostport=${URL[$s]#http://}
            path=/${hostport#*/}
            hostport=${hostport%%/*}
            start_server "$s"
            wait_ready "$s"
            run_wrk "$s" "$WARMUP" "$WORK/open.warmup.$s.txt"
            for load in $OPEN_LOOP; do
                rate=$(calc "$max * $load / 100")
                out=$WORK/open.$r.$s.$load.txt
                before=$(cpu_ticks)
                taskset -c "$WRK_CORE" "$OPEN_LOOP_BIN" --addr "$hostport" --path "$path" --rate "$rate" --pacer "$PACER" \
                    --duration "$DURATION" --conns "$CONNS" --samples "$SAMPLES" --users "$USERS" >"$out" 2>&1 || true
                after=$(cpu_ticks)
                steal=$(steal_pct "$before" "$after")
                gen_busy=$(core_busy_pct "$WRK_CORE" "$before" "$after")
                line=$(grep '^OPENLOOP ' "$out" | tail -n 1) || true
                [[ -n $line ]] || { cat "$out" >&2; die "open_loop gave no result for $s (see $out)"; }
                for kv in ${line#OPENLOOP }; do printf -v "O_${kv%%=*}" '%s' "${kv#*=}"; done
                say "round $r: $s open loop at ${load}%: $line steal $steal% generator core busy $gen_busy%"
                OP99[$r.$s.$load]=$O_p99_us
                printf 'open\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$O_achieved" "$O_p50_us" "$O_p99_us" \
                    "$O_p999_us" "$O_max_us" "$O_non2xx" "$O_errors" "$steal" "$load" >>"$RESULTS"
                rows+=("$(printf '%-10s %5s %6s%% %10.0f %10.0f %9.2f %9.2f %9.2f %9.2f %8s %7s %6s %8s' "$s" "$r" "$load" "$rate" "$O_achieved" \
                    "$(calc "$O_p50_us/1000")" "$(calc "$O_p99_us/1000")" "$(calc "$O_p999_us/1000")" \
                    "$(calc "$O_max_us/1000")" "$O_non2xx" "$O_errors" "$steal" "$gen_busy")")
                ((gen_busy >= 95)) && GEN_SATURATED[$load]=$((${GEN_SATURATED[$load]:-0} + 1))
            done
            stop_server
        done
    done
    echo
    echo "Open loop (examples/open_loop.rs, $CONNS connections, $PACER pacer, latency from each request's due time):"
    printf '%-10s %5s %7s %10s %10s %9s %9s %9s %9s %8s %7s %6s %8s\n' server round load "rate" achieved "p50 ms" "p99 ms" \
        "p99.9 ms" "max ms" non-2xx errors steal% "gen%"
    printf '%s\n' "${rows[@]}"
    for load in $OPEN_LOOP; do
        [[ -n ${GEN_SATURATED[$load]:-} ]] &&
            echo "NOTE: at $load% the generator's core (core $WRK_CORE: the generator, and Redis with SHARED=1) was >= 95%" \
                "busy in ${GEN_SATURATED[$load]} of $((OPEN_ROUNDS * ${#open_order[@]})) runs: there the latencies measure the generator falling behind"
    done
    echo "design target: kefu p99 <= 2 ms at 80% load"
    if has kefu && has kefu_local; then
        echo "kefu_local ran at kefu's (shared buckets) rates, so each round compares the two at equal load:"
        for load in $OPEN_LOOP; do
            diffs=$(for ((r = 1; r <= OPEN_ROUNDS; r++)); do
                echo "$(calc "(${OP99[$r.kefu.$load]} - ${OP99[$r.kefu_local.$load]}) / 1000")"
            done)
            printf 'p99 added by the shared buckets at %s%%: median %.2f ms over %s rounds (%s)   target <= 1 ms\n' \
                "$load" "$(median <<<"$diffs")" "$OPEN_ROUNDS" "$(echo $diffs)"
        done
    fi
fi

echo
echo "raw wrk output, server logs and results.tsv: $WORK"
