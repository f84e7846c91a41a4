#!/usr/bin/env bash
# Installs what building and testing kefu-edge needs on a Debian/Ubuntu machine that has
# Rust: cmake (pingora builds zlib-ng with it), a C compiler, curl (the smoke test),
# with --test nginx and its Lua packages (the OpenResty tier of the shared-limits test),
# redis-server and redis-cli (the dialogue tests start their own servers and a cluster; the
# standalone tests use the Redis on 127.0.0.1:6379, which `setup.sh --test` starts if none
# answers; the server's shipped default keeps dialogue state in memory and needs no Redis).
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
# ss: the binary-upgrade helper (systemd/kefu-edge-upgrade) waits for the upgrade socket with it.
command -v ss >/dev/null || need+=(iproute2)
# The shared-limits test runs the OpenResty tier of lua-compat/demo (a real nginx + Lua);
# without these packages that one test says why it skips, so a failed install is not fatal.
lua_tier=()
if [ "${1:-}" = --test ]; then
    command -v nginx >/dev/null || lua_tier+=(nginx-light)
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || lua_tier+=(libnginx-mod-http-lua)
    [ -f /usr/share/lua/5.1/resty/core.lua ] || lua_tier+=(lua-resty-core)
    [ -f /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || lua_tier+=(lua-cjson)
    [ -f /usr/share/lua/5.1/nginx/redis.lua ] || lua_tier+=(lua-nginx-redis)
fi
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "setup: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ((${#lua_tier[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "setup: installing ${lua_tier[*]} (the OpenResty side of the shared-limits test)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${lua_tier[@]}" >/dev/null; } ||
        echo "setup: could not install ${lua_tier[*]}; the OpenResty shared-limits test will skip" >&2
fi
if [ "${1:-}" = --test ] && ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    echo "setup: starting redis-server on 127.0.0.1:6379 (for the tests)"
    redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: Rust is missing: install it from https://rustup.rs" >&2; exit 1; }

# ONNX Runtime for the model stage: the shared library from the `onnxruntime` wheel on PyPI
# (ort loads it at run time; conf/model.yaml points here). Only the library is used, so the
# wheel is unpacked without its Python dependencies.
ORT_VERSION=1.31.1
ort_dir="$(dirname "$0")/../third_party/onnxruntime"
if [ ! -f "$ort_dir/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" ]; then
    python3 -m pip --version >/dev/null 2>&1 || {
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
    }
    echo "setup: installing onnxruntime==$ORT_VERSION into third_party/onnxruntime"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
        --target "$ort_dir" "onnxruntime==$ORT_VERSION"
fi

# With --test: a KServe v2 inference server for the remote model backend's test
# (tests/kserve.rs runs bench/kserve/intent_server.py): the kserve package in a virtual
# environment of its own. Without it that test says why it skips.
kserve_venv="$(dirname "$0")/../third_party/kserve-venv"
if [ "${1:-}" = --test ] && ! "$kserve_venv/bin/python" -c 'import kserve, onnxruntime' >/dev/null 2>&1; then
    python3 -m venv "$kserve_venv" >/dev/null 2>&1 || {
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        rm -rf "$kserve_venv"; python3 -m venv "$kserve_venv"
    } || true
    echo "setup: installing kserve into third_party/kserve-venv (the remote model backend's test)"
    "$kserve_venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$(dirname "$0")/../bench/kserve/requirements.txt" ||
        echo "setup: could not install kserve; the remote model backend's test will skip" >&2
fi
