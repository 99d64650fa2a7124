#!/usr/bin/env bash
# Regenerate the REST API captures (issues #4 and #10) and their ground truth:
#
#   sudo tests/data/rest/make.sh [rest] [risky] [clean]      (default: all three)
#
# For each: start server.py on 127.0.0.1:PORT, start tcpdump on lo for that port, run
# client.py (real keep-alive connections, several at once), stop tcpdump with SIGINT
# (after a second of slack for the last FIN/ACKs; fails if the kernel dropped packets),
# stop the server, then check the pcap against the truth with tshark and, if an apitap
# binary is found ($APITAP, else target/release/apitap, else $CARGO_TARGET_DIR), with
# `apitap replay`. Outputs (overwritten): tests/data/{rest,risky,clean}-api.pcap and
# .truth.json. See tests/data/rest/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$DATA/../.." && pwd)
# shellcheck source=../capture-lib.sh
. "$DATA/capture-lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (tcpdump on lo)"

WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=(rest risky clean)
declare -A PORT=([rest]=18100 [risky]=18101 [clean]=18102)

apt_install_missing tcpdump:tcpdump ss:iproute2
tshark_install_optional "no tshark verification"
python3 -c 'import sys; assert sys.version_info >= (3, 10)' || die "python3 >= 3.10 needed"

APITAP=${APITAP:-}
if [ -z "$APITAP" ]; then
    for c in "$ROOT/target/release/apitap" "${CARGO_TARGET_DIR:-/nonexistent}/release/apitap"; do
        [ -x "$c" ] && { APITAP=$c; break; }
    done
fi

WORK=$(mktemp -d /tmp/apitap-rest.XXXXXX)
SRV_PID=
CAP_PID=
cleanup() {
    set +e
    [ -n "${CAP_PID:-}" ] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null
    [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

for app in "${WANT[@]}"; do
    port=${PORT[$app]:-}
    [ -n "$port" ] || die "unknown capture '$app' (rest, risky, clean)"
    port_busy "$port" && die "port $port already in use on this machine"
    pcap="$DATA/$app-api.pcap"
    truth="$DATA/$app-api.truth.json"
    acc="$WORK/$app.access.jsonl"
    : > "$acc"

    log "$app: server on 127.0.0.1:$port"
    python3 -B "$HERE/server.py" "$app" "$port" "$acc" 2>"$WORK/$app.server.err" &
    SRV_PID=$!
    wait_port "$port"

    capture_start "$pcap" "tcp port $port"
    python3 -B "$HERE/client.py" "$app" "$port" "$WORK/$app.truth.json" "$acc" \
        || die "$app: client failed (server stderr: $(tail -5 "$WORK/$app.server.err"))"
    capture_stop

    kill -TERM "$SRV_PID"; wait "$SRV_PID" || true; SRV_PID=
    if grep -q "server error" "$WORK/$app.server.err"; then
        die "$app: server raised: $(grep 'server error' "$WORK/$app.server.err" | head -3)"
    fi
    mv "$WORK/$app.truth.json" "$truth"

    args=("$pcap" "$truth" "$port")
    if [ -n "$APITAP" ]; then
        "$APITAP" replay "$pcap" -o "jsonl:$WORK/$app.obs.jsonl" --redaction mask >/dev/null 2>"$WORK/$app.apitap.err" \
            || die "$app: apitap replay failed: $(tail -3 "$WORK/$app.apitap.err")"
        args+=(--apitap "$WORK/$app.obs.jsonl")
    else
        log "no apitap binary found (set APITAP=...): apitap check skipped"
    fi
    python3 -B "$HERE/verify.py" "${args[@]}" || die "$app: verification failed"
    log "$app: $(du -h "$pcap" | cut -f1) $pcap, $(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["exchanges"]["count"], "exchanges")' "$truth")"
done
