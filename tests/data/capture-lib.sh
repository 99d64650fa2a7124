# shellcheck shell=bash
# Shared helpers for the capture generators (tests/data/make-captures.sh, tests/data/rest/,
# benches/make-bench-capture.sh).
# Source it; it expects `set -euo pipefail` in the caller.

APITAP_DATA_DIR="${APITAP_DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- tool installation (only what is missing) --------------------------------
APT_UPDATED=0
apt_install_missing() {
    # usage: apt_install_missing cmd:package [cmd:package...]
    local want=() spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*}; pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    log "installing with apt-get: ${want[*]}"
    if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
}

pip_install_missing() {
    # usage: pip_install_missing import_name:pip_name [...]
    local spec mod pkg
    for spec in "$@"; do
        mod=${spec%%:*}; pkg=${spec#*:}
        if ! python3 -c "import $mod" >/dev/null 2>&1; then
            log "installing with pip: $pkg"
            python3 -m pip install -q "$pkg"
        fi
    done
}

# Installs tshark if missing (optional: used only to verify captures); says `$1` when it
# cannot be had. Non-interactive: the setuid-dumpcap question gets its default answer.
tshark_install_optional() {
    command -v tshark >/dev/null 2>&1 && return 0
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    apt_install_missing tshark:tshark || log "tshark unavailable: $1"
}

# ---- ports / processes -------------------------------------------------------
port_busy() { ss -Htln "sport = :$1" | grep -q .; }

wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        port_busy "$port" && return 0
        sleep 0.1
    done
    die "nothing listening on 127.0.0.1:$port after 10 s"
}

# ---- nginx with a private prefix ---------------------------------------------
# nginx_prefix_setup PREFIX: creates html/ content, logs/, tmp/ under PREFIX.
nginx_prefix_setup() {
    local p=$1
    mkdir -p "$p/logs" "$p/tmp" "$p/html"
    python3 "$APITAP_DATA_DIR/nginx/make-site.py" "$p/html"
}

nginx_start() {
    local p=$1
    local conf="$APITAP_DATA_DIR/nginx/nginx.conf"
    nginx -t -q -p "$p/" -c "$conf" -e "$p/logs/error.log"
    nginx -p "$p/" -c "$conf" -e "$p/logs/error.log"
    wait_port 18080
    wait_port 18081
}

nginx_stop() {
    local p=$1 pid i
    [ -f "$p/logs/nginx.pid" ] || return 0
    pid=$(cat "$p/logs/nginx.pid")
    # SIGQUIT = graceful: workers finish and flush the access log.
    kill -QUIT "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
}

# ---- tcpdump -----------------------------------------------------------------
# capture_start FILE FILTER  -> sets CAP_PID
capture_start() {
    local file=$1 filter=$2
    local err; err=$(mktemp /tmp/apitap-tcpdump.XXXXXX)
    rm -f "$file" "$err"
    tcpdump -i lo -s 0 -B 131072 -U -n -Z root -w "$file" "$filter" 2>"$err" &
    CAP_PID=$!
    CAP_ERR=$err
    local i
    for i in $(seq 1 100); do
        grep -q "listening on" "$err" 2>/dev/null && break
        kill -0 "$CAP_PID" 2>/dev/null || die "tcpdump died: $(cat "$err")"
        sleep 0.1
    done
    grep -q "listening on" "$err" || die "tcpdump not ready: $(cat "$err")"
    sleep 0.5   # the BPF filter is attached before the message; a little slack anyway
}

capture_stop() {
    sleep 1     # let the last FIN/ACKs hit the wire
    kill -INT "$CAP_PID"
    wait "$CAP_PID" || true
    log "tcpdump: $(grep -E 'packets (captured|received|dropped)' "$CAP_ERR" | tr '\n' ' ')"
    if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$CAP_ERR"; then
        die "tcpdump dropped packets: $(cat "$CAP_ERR")"
    fi
    rm -f "$CAP_ERR"
    CAP_PID=
}

# nginx JSON access log -> truth lines {"method","target","status"}
log_to_truth() {
    python3 - "$1" "$2" <<'PY'
import json, sys
src, dst = sys.argv[1], sys.argv[2]
n = 0
with open(src) as f, open(dst, "w") as out:
    for line in f:
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        out.write(json.dumps({"method": r["method"], "target": r["target"], "status": r["status"]}) + "\n")
        n += 1
print(n)
PY
}
