#!/usr/bin/env bash
# Regenerate the HTTP/2 capture of the redaction audit and its truth:
#
#   sudo tests/data/rest/h2/make.sh
#
# Starts server.py (h2c, prior knowledge) on 127.0.0.1:18110, records loopback with tcpdump
# for that port while client.py drives the h2 library, curl and nghttp against it, stops
# tcpdump (fails if the kernel dropped packets), stops the server, then checks the capture
# against the truth with tshark (verify.py) and, if an apitap binary is found ($APITAP, else
# target/{release,debug}/apitap, else under $CARGO_TARGET_DIR), with `apitap replay`.
# Outputs (overwritten): tests/data/rest-h2.pcap, tests/data/rest-h2.truth.json.
# See README.md beside this script.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$(cd "$HERE/../.." && pwd)
ROOT=$(cd "$DATA/../.." && pwd)
# shellcheck source=../../capture-lib.sh
. "$DATA/capture-lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (tcpdump on lo)"
PORT=18110
apt_install_missing tcpdump:tcpdump curl:curl nghttp:nghttp2-client ss:iproute2
tshark_install_optional "no tshark verification"
python3 -c 'import sys; assert sys.version_info >= (3, 10)' || die "python3 >= 3.10 needed"
pip_install_missing h2:h2

APITAP=${APITAP:-}
if [ -z "$APITAP" ]; then
    for c in "$ROOT/target/release/apitap" "$ROOT/target/debug/apitap" \
             "${CARGO_TARGET_DIR:-/nonexistent}/release/apitap" "${CARGO_TARGET_DIR:-/nonexistent}/debug/apitap"; do
        [ -x "$c" ] && { APITAP=$c; break; }
    done
fi

WORK=$(mktemp -d /tmp/apitap-rest-h2.XXXXXX)
SRV_PID=
CAP_PID=
cleanup() {
    set +e
    [ -n "${CAP_PID:-}" ] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null
    [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

port_busy "$PORT" && die "port $PORT already in use on this machine"
pcap="$DATA/rest-h2.pcap"
truth="$DATA/rest-h2.truth.json"
acc="$WORK/access.jsonl"
: > "$acc"

log "server on 127.0.0.1:$PORT"
(cd "$HERE" && exec python3 -B server.py "$PORT" "$acc") 2>"$WORK/server.err" &
SRV_PID=$!
wait_port "$PORT"

capture_start "$pcap" "tcp port $PORT"
(cd "$HERE" && python3 -B client.py "$PORT" "$acc" "$WORK/truth.json") \
    || die "client failed (server stderr: $(tail -5 "$WORK/server.err"))"
capture_stop

kill -TERM "$SRV_PID"; wait "$SRV_PID" || true; SRV_PID=
if grep -q "server error" "$WORK/server.err"; then
    die "server raised: $(grep 'server error' "$WORK/server.err" | head -3)"
fi
mv "$WORK/truth.json" "$truth"

args=("$pcap" "$truth" "$PORT")
if [ -n "$APITAP" ]; then
    "$APITAP" replay "$pcap" -o "jsonl:$WORK/obs.jsonl" >/dev/null 2>"$WORK/apitap.err" \
        || die "apitap replay failed: $(tail -3 "$WORK/apitap.err")"
    args+=(--apitap "$WORK/obs.jsonl")
else
    log "no apitap binary found (set APITAP=...): apitap check skipped"
fi
python3 -B "$HERE/verify.py" "${args[@]}" || die "verification failed"
log "$(du -h "$pcap" | cut -f1) $pcap, $(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["exchanges"]["count"], "exchanges")' "$truth")"
