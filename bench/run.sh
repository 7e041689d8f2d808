#!/usr/bin/env bash
# Benchmark the router against direct / nginx-proxy / bare Python forwarders; see bench/README.md.
# Usage: bash bench/run.sh [--quick] [--only NAME[,NAME...]] [--help for more]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- system tools: wrk (closed-loop load), nginx (upstream + reference proxy) and its echo
#     module, taskset, curl
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v taskset >/dev/null || need+=(util-linux)
# nginx's echo module paces the LLM-like streams of the paced-* rows
[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing ${need[*]}"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    # Debian starts no service from a package install inside containers (policy-rc.d); the
    # bench runs its own nginx instances with their own config and pid files either way.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- Python: the project's venv (created from the dev lock if missing)
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "== creating .venv from requirements/dev.lock"
    (. scripts/_venv.sh; ensure_venv requirements/dev.lock)
fi
PY="$ROOT/.venv/bin/python"
"$PY" -c 'import aiohttp, httpx, uvicorn, uvloop, httptools' 2>/dev/null || {
    echo "the venv lacks aiohttp/httpx/uvicorn/uvloop/httptools: run scripts/test once" >&2
    exit 1
}

# --- the orchestrator itself runs on the load CPU, away from the systems under test
LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || LOAD_CPU=0
exec taskset -c "$LOAD_CPU" "$PY" "$ROOT/bench/bench.py" "$@"
