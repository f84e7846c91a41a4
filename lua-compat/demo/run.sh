#!/usr/bin/env bash
# Start the OpenResty tier of the migration demo in the foreground:
#   lua-compat/demo/run.sh PORT REDIS_URL      e.g. run.sh 8081 redis://127.0.0.1:6379
# nginx (Debian: nginx-light libnginx-mod-http-lua lua-resty-core lua-cjson lua-nginx-redis)
# listens on 127.0.0.1:PORT and limits POST /v1/chat by user_id and client address with the
# quotas of lua-compat/demo/conf/limits.yaml, in the same Redis buckets as kefu-edge started
# with `-c lua-compat/demo/conf`. Its files live in a temporary directory, removed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "run.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: run.sh PORT REDIS_URL"
port="$1"
url="$2"
[[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, not '$port'"
[[ "$url" =~ ^redis://([^:/]+)(:([0-9]+))?/?$ ]] || die "REDIS_URL must be redis://HOST[:PORT], not '$url'"
redis_host="${BASH_REMATCH[1]}"
redis_port="${BASH_REMATCH[3]:-6379}"
command -v nginx >/dev/null || die "nginx is not installed (apt-get install nginx-light libnginx-mod-http-lua lua-resty-core lua-cjson lua-nginx-redis)"

# A bucket of limits.yaml in flow style: `per_user: {rate: 2r/s, burst: 10, shared: true}`.
limits="$here/conf/limits.yaml"
quota() {
  local line n unit per
  line="$(grep -E "^$1:" "$limits")" || die "$limits has no $1 bucket"
  [[ "$line" =~ rate:\ *([0-9]+)r/([smh]) ]] || die "$limits: cannot read $1's rate"
  n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[2]}"
  case "$unit" in s) per=1000000 ;; m) per=60000000 ;; h) per=3600000000 ;; esac
  [[ "$line" =~ burst:\ *([0-9]+) ]] || die "$limits: cannot read $1's burst"
  echo "$((per / n)) ${BASH_REMATCH[1]}"
}
read -r ip_interval ip_burst < <(quota per_ip)
read -r user_interval user_burst < <(quota per_user)
# REDIS_TIMEOUT_MS overrides limits.yaml's shared.timeout (the tests run on loaded machines).
timeout_ms="${REDIS_TIMEOUT_MS:-$(sed -nE 's/^ *timeout: *([0-9]+)ms.*/\1/p' "$limits" | head -1)}"

run="$(mktemp -d /tmp/kefu-openresty.XXXXXX)"
chmod 755 "$run"   # nginx workers (not root) reach the stub socket in it
trap 'rm -rf "$run"' EXIT
sed -e "s|@RUN_DIR@|$run|g" -e "s|@LUA_DIR@|$here/..|g" -e "s|@PORT@|$port|g" \
    -e "s|@REDIS_HOST@|$redis_host|g" -e "s|@REDIS_PORT@|$redis_port|g" \
    -e "s|@TIMEOUT_MS@|${timeout_ms:-2}|g" \
    -e "s|@IP_INTERVAL_US@|$ip_interval|g" -e "s|@IP_BURST@|$ip_burst|g" \
    -e "s|@USER_INTERVAL_US@|$user_interval|g" -e "s|@USER_BURST@|$user_burst|g" \
    "$here/nginx.conf" > "$run/nginx.conf"
echo "run.sh: nginx on 127.0.0.1:$port, Redis $redis_host:$redis_port, per_ip ${ip_interval}us/$ip_burst, per_user ${user_interval}us/$user_burst" >&2
# exec would skip the trap; nginx stops on SIGTERM/SIGQUIT forwarded here.
nginx -p "$run" -c "$run/nginx.conf" -e "$run/error.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$run"' EXIT INT TERM
wait $pid
