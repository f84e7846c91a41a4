#!/usr/bin/env bash
# Smoke test: the README's curl examples against a running kefu-edge on the shipped
# configuration. Exits non-zero on the first mismatch.
#   KEFU_URL    public listener (default http://127.0.0.1:8080)
#   KEFU_ADMIN  admin listener  (default http://127.0.0.1:9901)
set -euo pipefail
url=${KEFU_URL:-http://127.0.0.1:8080}
admin=${KEFU_ADMIN:-http://127.0.0.1:9901}
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
expect() { # name, haystack, needle
    grep -qF -- "$3" <<<"$2" || fail "$1: expected $3 in: $2"
    echo "smoke: ok: $1"
}

out=$(curl -s "$url/v1/chat" -H 'Content-Type: application/json' -d '{"user_id":"u1","text":"亲，我要退款"}')
expect "rule hit" "$out" '"intent":"refund_apply"'
expect "rule hit source" "$out" '"source":"rule"'

out=$(curl -s "$url/v1/chat" -d '{"user_id":"u1","text":"我朋友今天买比我便宜20 给我补一下呗"}')
expect "model answer" "$out" '"intent":"price_protect"'
expect "model answer source" "$out" '"source":"model"'

out=$(curl -s "$url/v1/chat" -d '{"user_id":"u0","text":"你们老板喜欢吃什么水果"}')
expect "out of scope" "$out" '"intent":"other"'
expect "out of scope is not handed off" "$out" '"handoff":false'

out=$(curl -s "$url/v1/chat" -d '{"user_id":"u4","text":"转人工"}')
expect "hand-off" "$out" '"handoff":true,"handoff_reason":"policy"'

out=$(curl -s -w ' %{http_code}' "$url/v1/chat" -d '{"user_id":"u1"}')
expect "bad request" "$out" '"code":"invalid_field"'
expect "bad request status" "$out" ' 400'

out=$(curl -s -w ' %{http_code}' -A sqlmap "$url/v1/chat" -d '{"user_id":"u1","text":"hi"}')
expect "denied user agent" "$out" ' 403'

codes=$(for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' "$url/v1/chat" -d '{"user_id":"u2","text":"在吗"}'; done)
expect "burst then 429" "$codes" '200 200 200 200 200 200 200 200 200 200 429 429'
out=$(curl -s -i "$url/v1/chat" -d '{"user_id":"u2","text":"在吗"}')
expect "Retry-After" "$(tr 'A-Z' 'a-z' <<<"$out")" 'retry-after:'

out=$(curl -s "$url/v1/chat" -d '{"user_id":"u3","text":"这件外套大了 能换小一号吗 单号4410298736651207"}')
expect "dialogue turn 1" "$out" '"intent":"exchange_goods"'
out=$(curl -s "$url/v1/chat" -d '{"user_id":"u3","text":"算了还是直接退了吧"}')
expect "dialogue follow-up" "$out" '"intent":"return_goods"'
expect "order slot in the reply" "$out" '亲，订单4410298736651207可以在订单页'
out=$(curl -s "$admin/admin/users/u3/latest?intent=return_goods")
expect "latest-intent index" "$out" '"order":"4410298736651207","turn":2'
out=$(curl -s "$url/v1/chat" -d '{"user_id":"u3","text":"好的"}')
expect "acknowledgement keeps the chat open" "$out" '"reply":"亲，还有其他可以帮您的吗~"'
out=$(curl -s "$url/v1/chat" -d '{"user_id":"u3","text":"没有了，谢谢"}')
expect "closing" "$out" '"intent":"thanks_bye"'
expect "closing is not handed off" "$out" '"handoff":false'

before=$(curl -s "$admin/healthz")
out=$(curl -s -X POST "$admin/reload")
expect "reload" "$out" '"ok":true'
after=$(curl -s "$admin/healthz")
expect "reload counted" "$after" '"reloads_ok":'
[ "$before" != "$after" ] || fail "healthz unchanged by reload"

out=$(curl -s "$admin/metrics")
expect "metrics" "$out" 'kefu_http_requests_total{route="chat",status="200"}'
expect "model metrics" "$out" 'kefu_model_requests_total{outcome="answered",version="v2"}'
expect "healthz model" "$after" '"active":{"version":"v2"'
echo "smoke: all checks passed"
