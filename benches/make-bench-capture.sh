#!/usr/bin/env bash
# Build a large capture of real API traffic for the end-to-end benchmark.
#
#   benches/make-bench-capture.sh [OUT.pcap] [EXCHANGES]
#     OUT.pcap   default bench-data/api-mix.pcap (relative to the repo root; not committed)
#     EXCHANGES  default 200000 (about 100 MB of capture at the default)
#     CONNS      environment, default 32: connections of each GET load (POST loads: half)
#
# nginx (config from tests/data/nginx/, private prefix in a temp dir, 127.0.0.1 only)
# is loaded by four concurrent h2load runs: half of the exchanges over HTTP/1.1 with
# pipelining (--h1 -m 8) on port 18080, half over h2c prior knowledge (-m 10) on 18081;
# 90 % GETs of small JSON documents (and some 404s), 10 % small JSON POSTs.
# tcpdump records both ports from loopback. nginx's JSON access log gives the
# exchange count (written next to the capture as OUT.access.jsonl.gz).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/data/capture-lib.sh
. "$ROOT/tests/data/capture-lib.sh"

OUT=${1:-$ROOT/bench-data/api-mix.pcap}
N=${2:-200000}
CONNS=${CONNS:-32}
[ "$(id -u)" = 0 ] || die "run as root (tcpdump on lo)"
[ "$N" -ge 1000 ] || die "EXCHANGES must be >= 1000"
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

apt_install_missing nginx:nginx h2load:nghttp2-client tcpdump:tcpdump ss:iproute2

for port in 18080 18081; do port_busy "$port" && die "port $port already in use"; done

WORK=$(mktemp -d /tmp/apitap-bench.XXXXXX)
CAP_PID=
cleanup() {
    set +e
    [ -n "${CAP_PID:-}" ] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null
    nginx_stop "$WORK/nginx"
    rm -rf "$WORK"
}
trap cleanup EXIT

nginx_prefix_setup "$WORK/nginx"
nginx_start "$WORK/nginx"
printf '{"event":"page_view","user":"user3","path":"/checkout","ts":1700000000,"props":{"ab":"b","n":3}}' >"$WORK/event.json"

H1=http://127.0.0.1:18080
H2=http://127.0.0.1:18081
PATHS=(/v1/users /v1/users/42 /v1/orders/recent "/v1/search?q=bench&limit=10" /v1/items /healthz
       /v1/users/2 /v2/status "/v1/users/1?expand=orders" /v1/missing)
urls() { local b=$1 p; for p in "${PATHS[@]}"; do printf '%s\n' "$b$p"; done; }

get_n=$(( N * 9 / 20 ))           # per protocol
post_n=$(( N / 2 - get_n ))

capture_start "$OUT" "tcp port 18080 or tcp port 18081"
t0=$(date +%s.%N)
mapfile -t U1 < <(urls "$H1")
mapfile -t U2 < <(urls "$H2")
# The four loads run at the same time, as a mirror port sees them: many connections live at
# once (CONNS for the GET loads, half as many for the POST loads, per protocol). Run one after
# another with few connections, a flow-pinned pipeline spends each phase waiting on whichever
# worker drew more of that phase's connections.
pids=()
h2load --h1 -n "$get_n" -c "$CONNS" -m 8 "${U1[@]}" 2>&1 | grep -E '^(finished|requests):' >&2 &
pids+=($!)
h2load --h1 -n "$post_n" -c "$((CONNS / 2))" -m 8 -d "$WORK/event.json" -H 'content-type: application/json' \
    "$H1/v1/ingest" 2>&1 | grep -E '^requests:' >&2 &
pids+=($!)
h2load -n "$get_n" -c "$CONNS" -m 10 "${U2[@]}" 2>&1 | grep -E '^(finished|requests):' >&2 &
pids+=($!)
h2load -n "$post_n" -c "$((CONNS / 2))" -m 10 -d "$WORK/event.json" -H 'content-type: application/json' \
    "$H2/v1/ingest" 2>&1 | grep -E '^requests:' >&2 &
pids+=($!)
wait "${pids[@]}" # not the capture, which runs in the background too
t1=$(date +%s.%N)
capture_stop
nginx_stop "$WORK/nginx"; sleep 0.5

LOG="$WORK/nginx/logs"
ex=$(cat "$LOG/h1.access.jsonl" "$LOG/h2c.access.jsonl" | wc -l)
gzip -c "$LOG/h1.access.jsonl" "$LOG/h2c.access.jsonl" >"${OUT%.pcap}.access.jsonl.gz"
pk=$(tcpdump -r "$OUT" -nn 2>/dev/null | wc -l)
log "capture: $OUT"
log "size: $(du -h "$OUT" | cut -f1) ($(stat -c %s "$OUT") bytes), packets: $pk"
log "exchanges (nginx log): $ex  (HTTP/1.1: $(wc -l <"$LOG/h1.access.jsonl"), h2c: $(wc -l <"$LOG/h2c.access.jsonl")); traffic took $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?") s"
[ "$ex" -eq "$N" ] || log "WARNING: expected $N exchanges in the nginx log, got $ex"
