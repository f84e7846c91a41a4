#!/usr/bin/env bash
# Run every cargo-fuzz target for SECONDS each (default 30, what .ci/run does) on its
# committed corpus (fuzz/corpus/<target>, seeded from the project's own files on the first
# run). Installs cargo-fuzz (nightly is on these machines) when missing. Exits non-zero on
# the first crash; libFuzzer leaves the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 600 chat_body reply_filter   # 10 minutes each, these targets
#
# Built without a sanitizer (`-s none`): the code is safe Rust, a panic is what is looked
# for, and the uninstrumented build takes a third of the time. FUZZ_PROFILE=dev builds the
# targets unoptimised: half the build time (6 against 12 minutes on the 2-core machine, where
# every dependency is built again with coverage instrumentation) for about a sixteenth of the
# executions per second, and the reply filter's target then takes more than the 10 s timeout
# to build its dictionary: useful for the other targets only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
profile=--release
if [ "${FUZZ_PROFILE:-release}" = dev ]; then profile=--dev; fi
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(chat_body config_file reply_filter router_features dialog_state nginx_import)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

seed() { # TARGET: the first corpus from files the project already has
    local dir=fuzz/corpus/$1
    [ -d "$dir" ] && return
    mkdir -p "$dir"
    local i=0
    case $1 in
    chat_body)
        printf '{"user_id":"u1","text":"怎么申请退款"}' >"$dir/plain"
        printf '{"user_id":"u\\u00e9","text":"\\ud83d\\ude00 \\u9000","order_id":"1","x":{"y":[1,2,{}]}}' >"$dir/escapes"
        printf '{"user_id":"","text":null}' >"$dir/bad" ;;
    config_file)
        # The first byte picks the file (the target's FILES order).
        for f in server edge limits intents post upstreams dialog router model; do
            printf "\\x$(printf %02x "$i")" | cat - "conf/$f.yaml" >"$dir/$f.yaml"; i=$((i + 1)); done ;;
    reply_filter)
        cut -f1 tests/data/mask_samples.tsv | grep -v '^#' | head -200 | while IFS= read -r l; do
            i=$((i + 1)); printf '%s' "$l" >"$dir/m$i"; done ;;
    router_features)
        cut -f1 tests/data/intent_samples.tsv | grep -v '^#' | head -200 | while IFS= read -r l; do
            i=$((i + 1)); printf '%s' "$l" >"$dir/s$i"; done ;;
    dialog_state)
        printf '\x94\x03\xc2\x83\xa5order\xa3123\xa4size\xc0\xa5color\xc0\x91\x93\xa9logistics\xce\x65\x00\x00\x00\xa6\xe5\x9c\xa8\xe5\x90\x97' >"$dir/state" ;;
    nginx_import)
        for f in lua-compat/fixtures/tengine/nginx.conf lua-compat/fixtures/includes/conf.d/10-limits.conf bench/nginx/nginx.conf.in; do
            cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; done ;;
    esac
}

for t in "${targets[@]}"; do
    seed "$t"
    echo "fuzz: $t for ${seconds}s"
    log=$(mktemp)
    status=0
    cargo +nightly fuzz run -s none "$profile" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|thread .* panicked)' "$log" || true
    if [ "$status" != 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t failed (exit $status); a crash input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    rm -f "$log"
done
