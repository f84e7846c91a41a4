#!/usr/bin/env bash
# bench/soak.sh — 30 minutes of mixed traffic at half the max rate, a SIGHUP every 10 s and
# one model swap halfway (issue 14): 0 failed requests, and RSS and open file descriptors
# flat (within 10% of their level after the first minute). Writes bench/soak_rss.svg (RSS
# and descriptors over time) and prints the figures.
#
# kefu-edge on a copy of bench/conf with the model stage on and two versions (the shipped v2
# and a copy, v2b, as candidate at 0%), pinned to core 0; wrk paced on core 1 with the
# messages of models/eval/second_eval.tsv (fast path and model path mixed). Halfway,
# POST /admin/model/promote swaps the versions.
# Environment: DURATION=1800 (seconds) CONNS=32 SAMPLE_EVERY=10 OUT=bench/soak_rss.svg
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-1800} CONNS=${CONNS:-32} SAMPLE_EVERY=${SAMPLE_EVERY:-10}
OUT=${OUT:-bench/soak_rss.svg}
KEFU_BIN=${KEFU_BIN:-$ROOT/target/release/kefu-edge}
for cmd in wrk taskset curl python3; do
    command -v "$cmd" >/dev/null || { echo "soak: $cmd is missing" >&2; exit 1; }
done
[[ -x $KEFU_BIN ]] || { echo "soak: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/kefu-soak.XXXXXX)
mkdir -p "$WORK/models"
cp -r models/intent/v2 "$WORK/models/v2"
cp -r models/intent/v2 "$WORK/models/v2b"
sed -i '0,/"version": "v2"/s//"version": "v2b"/' "$WORK/models/v2b/manifest.json"
bench/model_conf.py "$WORK/conf" --models-dir "$WORK/models" --set active=v2 --set candidate=v2b
grep -v '^#' models/eval/second_eval.tsv | cut -f1 >"$WORK/messages.txt"

taskset -c 0 "$KEFU_BIN" -c "$WORK/conf" >"$WORK/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    curl -sf 127.0.0.1:9901/healthz | grep -q '"candidate":{"version":"v2b"' && break
    sleep 0.1
done
curl -sf 127.0.0.1:9901/healthz >/dev/null || { tail "$WORK/server.log" >&2; exit 1; }
field() { grep '^BENCH ' "$1" | tail -n 1 | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }

# The max rate of this mix, then half of it, paced.
SAMPLES=$WORK/messages.txt taskset -c 1 wrk -t1 -c64 -d10s -s bench/wrk/chat.lua \
    http://127.0.0.1:8080/v1/chat >"$WORK/max.txt" 2>&1 || true
max=$(field "$WORK/max.txt" rps)
# Paced: each connection waits DELAY_MS after an answer, so its cycle is the delay plus the
# latency; one 10 s calibration run measures the latency and sets the delay for half the max.
cycle=$(awk -v c="$CONNS" -v r="$max" 'BEGIN { printf "%.3f", c * 1000 / (r / 2) }')
SAMPLES=$WORK/messages.txt DELAY_MS=$cycle taskset -c 1 wrk -t1 -c"$CONNS" -d10s -s bench/wrk/chat.lua \
    http://127.0.0.1:8080/v1/chat >"$WORK/calibrate.txt" 2>&1 || true
got=$(field "$WORK/calibrate.txt" rps)
delay=$(awk -v c="$CONNS" -v got="$got" -v cycle="$cycle" 'BEGIN {
    latency = c * 1000 / got - cycle; d = cycle - latency; printf "%.2f", (d > 0 ? d : 0) }')
echo "max $max req/s; soak at half: $CONNS connections, $delay ms apart (calibration: $got req/s at $cycle ms), ${DURATION}s"
SAMPLES=$WORK/messages.txt DELAY_MS=$delay taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" \
    --timeout 5s -s bench/wrk/chat.lua http://127.0.0.1:8080/v1/chat >"$WORK/soak.txt" 2>&1 &
load=$!

start=$(date +%s)
hups=0 swapped=0
printf 't_s\trss_kb\tfds\n' >"$WORK/samples.tsv"
while sleep "$SAMPLE_EVERY" && kill -0 "$load" 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$server/status")
    fds=$(ls "/proc/$server/fd" | wc -l)
    printf '%s\t%s\t%s\n' "$now" "$rss" "$fds" >>"$WORK/samples.tsv"
    kill -HUP "$server"; hups=$((hups + 1))
    if [[ $swapped == 0 && $now -ge $((DURATION / 2)) ]]; then
        curl -s -XPOST 127.0.0.1:9901/admin/model/promote >"$WORK/promote.json"
        swapped=1
    fi
done
wait "$load" || true
health=$(curl -s 127.0.0.1:9901/healthz)

case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
python3 - "$WORK" "$OUT" "$hups" "$health" <<'PY'
import sys, json, pathlib
work, out, hups, health = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
rows = [l.split("\t") for l in (work / "samples.tsv").read_text().splitlines()[1:]]
t = [int(r[0]) for r in rows]; rss = [int(r[1]) / 1024 for r in rows]; fds = [int(r[2]) for r in rows]
bench = next(l for l in (work / "soak.txt").read_text().splitlines() if l.startswith("BENCH "))
kv = dict(x.split("=", 1) for x in bench.split()[1:])
settled = [i for i, s in enumerate(t) if s >= 60] or list(range(len(t)))
def spread(xs):
    base = xs[settled[0]]
    return base, min(xs[i] for i in settled), max(xs[i] for i in settled), max(abs(xs[i] - base) / base for i in settled)
b_rss, lo_rss, hi_rss, d_rss = spread(rss)
b_fd, lo_fd, hi_fd, d_fd = spread(fds)
print(f"requests {kv.get('requests')} at {kv.get('rps')} req/s; non-200 {kv.get('non200')}, socket errors {kv.get('socket_errors')}, timeouts {kv.get('timeouts')}")
print(f"SIGHUPs {hups}; reloads ok {health['config']['reloads_ok']}, failed {health['config']['reloads_failed']}; serving active {health['model']['active']['version']}")
print(f"RSS after the first minute: {b_rss:.1f} MiB, range {lo_rss:.1f}-{hi_rss:.1f}, largest change {d_rss:.1%} (target <= 10%)")
print(f"open fds after the first minute: {b_fd}, range {lo_fd}-{hi_fd}, largest change {d_fd:.1%} (target <= 10%)")
# The plot: RSS (MiB) and descriptors against minutes, one SVG, no plotting library needed.
W, H, L, B = 720, 300, 60, 40
tmax = max(t) or 1
top = max(max(rss) * 1.2, 1)
ftop = max(max(fds) * 1.2, 1)
def pts(ys, ymax):
    return " ".join(f"{L + (W - L - 20) * x / tmax:.1f},{H - B - (H - B - 20) * y / ymax:.1f}" for x, y in zip(t, ys))
ticks = "".join(
    f'<text x="{L + (W - L - 20) * m * 60 / tmax:.1f}" y="{H - B + 18}" font-size="11" text-anchor="middle">{m}</text>'
    for m in range(0, tmax // 60 + 1, max(1, tmax // 600)))
svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{W / 2}" y="16" font-size="13" text-anchor="middle">kefu-edge soak: RSS (MiB, blue; axis 0-{top:.0f}) and open fds (orange; axis 0-{ftop:.0f}), {kv.get('requests')} requests, {hups} SIGHUPs, one model swap</text>
<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="black"/>
<line x1="{L}" y1="20" x2="{L}" y2="{H - B}" stroke="black"/>
{ticks}<text x="{W / 2}" y="{H - 6}" font-size="11" text-anchor="middle">minutes</text>
<text x="{L - 8}" y="{H - B - (H - B - 20) * b_rss / top:.1f}" font-size="11" text-anchor="end">{b_rss:.0f}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{pts(rss, top)}"/>
<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" points="{pts(fds, ftop)}"/>
</svg>
'''
out.write_text(svg)
print(f"plot: {out}")
PY
echo "work directory: $WORK"
