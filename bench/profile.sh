#!/usr/bin/env bash
# Profile the router under load with py-spy: where does a request's CPU time go?
#
#   bash bench/profile.sh [SECONDS] [openai|anthropic] [stream|paced] [CONNECTIONS]
#
# Same topology as bench/run.sh: the router alone on CPU 0; wrk (32 connections, or
# CONNECTIONS) and the nginx upstream on CPU 1.  "paced" streams 14 events 20 ms apart
# (nginx's echo module, as the paced-* rows of the bench).  Writes bench/results/profile-<time>/ with py-spy's raw
# (collapsed) stacks and a summary of the hottest functions and packages.
set -euo pipefail
SECONDS_TO_PROFILE="${1:-10}"
FAMILY="${2:-openai}"
STREAM="${3:-}"
CONNS="${4:-32}"
ulimit -n 65536 2>/dev/null || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/_venv.sh
ensure_venv requirements/dev.lock
command -v wrk >/dev/null && command -v nginx >/dev/null \
    && [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] \
    || apt-get install -y wrk nginx libnginx-mod-http-echo >/dev/null
[ -x "$VENV/bin/py-spy" ] || "$VENV/bin/pip" install --quiet py-spy

RUN="$ROOT/bench/results/profile-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN/nginx/upstream-tmp"
"$VENV/bin/python" bench/profile_setup.py "$RUN" "$FAMILY" "$STREAM"

taskset -c 1 nginx -c "$RUN/upstream.conf" & NGINX=$!
taskset -c 0 "$VENV/bin/python" main.py --config "$RUN/router.json" --port 18299 \
    --log-level warning > "$RUN/router.log" 2>&1 & ROUTER=$!
trap 'kill $ROUTER $NGINX 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:18299/health >/dev/null && break; sleep 0.1; done
# Refuse to profile a router that cannot reach its upstream (that measures failures).
probe=$(curl -s -o /dev/null -w "%{http_code}" -H "content-type: application/json" \
    --data @"$RUN/body.json" "http://127.0.0.1:18299/$FAMILY/v1/$([ "$FAMILY" = openai ] && echo chat/completions || echo messages)")
[ "$probe" = 200 ] || { echo "router answered $probe, not 200: see $RUN" >&2; exit 1; }

URL="http://127.0.0.1:18299/$FAMILY/v1/$([ "$FAMILY" = openai ] && echo chat/completions || echo messages)"
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$RUN/post.lua" "$URL" > /dev/null   # warm-up
"$VENV/bin/py-spy" record -p "$ROUTER" -d "$SECONDS_TO_PROFILE" -r 200 -f raw \
    -o "$RUN/profile.txt" --nonblocking > /dev/null 2>&1 & SPY=$!
taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECONDS_TO_PROFILE}s" -s "$RUN/post.lua" "$URL" | tee "$RUN/wrk.txt"
wait $SPY
"$VENV/bin/python" bench/profile_setup.py --summarize "$RUN/profile.txt" | tee "$RUN/summary.txt"
