#!/usr/bin/env bash
# Regenerate the real-traffic test captures in tests/data/ and their ground truth.
#
#   tests/data/make-captures.sh [h1] [h2c] [upgrade] [grpc]     (default: all)
#
# Every server listens on 127.0.0.1 only; tcpdump records loopback (-i lo -s 0)
# filtered on the one front port of each capture. Idempotent: re-running
# overwrites the outputs. Installs missing tools with apt-get / pip only if absent.
# See tests/data/README.md for what each capture contains.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=capture-lib.sh
. "$HERE/capture-lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (tcpdump on lo)"

WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=(h1 h2c upgrade grpc)
want() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

apt_install_missing nginx:nginx h2load:nghttp2-client nghttp:nghttp2-client \
    nghttpd:nghttp2-server nghttpx:nghttp2-proxy tcpdump:tcpdump curl:curl ss:iproute2
tshark_install_optional "verification with tcpdump only"

WORK=$(mktemp -d /tmp/apitap-captures.XXXXXX)
PIDS=()
CAP_PID=
cleanup() {
    set +e
    [ -n "${CAP_PID:-}" ] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null
    nginx_stop "$WORK/nginx"
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for port in 18080 18081 18082 18083 18090; do
    port_busy "$port" && die "port $port already in use on this machine"
done

H1=http://127.0.0.1:18080
H2=http://127.0.0.1:18081
UP=http://127.0.0.1:18082
C="curl -sS -o /dev/null"
# get URL...: GET several URLs in one curl run (one keep-alive connection), bodies discarded
# (arguments that start with http:// are URLs, anything else is passed to curl as is)
get() { local a=() u; for u in "$@"; do case $u in http://*) a+=(-o /dev/null "$u");; *) a+=("$u");; esac; done; curl -sS "${a[@]}"; }

# Request bodies
mkdir -p "$WORK/bodies"
nginx_prefix_setup "$WORK/nginx"
cp "$WORK/nginx/html/files/big.json" "$WORK/bodies/upload-200k.json"
printf '{"name":"widget","qty":3,"tags":["a","b"]}' > "$WORK/bodies/order.json"
printf '{"name":"renamed"}' > "$WORK/bodies/patch.json"
printf '{"id":7,"name":"user7","email":"user7@example.test"}' > "$WORK/bodies/user7.json"
python3 - "$WORK/bodies/medium.json" <<'PY'
import json, sys
json.dump({"events": [{"seq": i, "kind": "click", "x": i * 3, "y": i * 7} for i in range(150)]}, open(sys.argv[1], "w"))
PY

start_servers() {
    python3 "$HERE/nginx/backend.py" 18090 & PIDS+=($!)
    wait_port 18090
    nginx_start "$WORK/nginx"
}

# Loopback captures can hold segments out of order (two CPUs, GSO): let tshark
# reassemble them anyway (its default is to give up on such a stream).
TSHARK="tshark -o tcp.reassemble_out_of_order:TRUE"

# count_tshark FILE PORT PROTO FIELD: number of FIELD occurrences (several per frame are comma-joined)
count_tshark() {
    $TSHARK -r "$1" -d "tcp.port==$2,$3" -Y "$4" -T fields -e "$4" 2>/dev/null | tr ',' '\n' | grep -c .
}

# verify_statuses NAME TRUTH "STATUS LINES FROM THE CAPTURE": same multiset of final statuses
verify_statuses() {
    local want got
    want=$(python3 -c 'import json,sys; print("\n".join(sorted(str(json.loads(l)["status"]) for l in open(sys.argv[1]))))' "$2")
    got=$(printf '%s\n' "$3" | grep -E '^[2-5][0-9][0-9]$' | sort)
    [ "$want" = "$got" ] || die "$1: status multiset differs: $(diff <(echo "$want" | uniq -c) <(echo "$got" | uniq -c) | tr '\n' ' ')"
    log "$1: final status codes match ($(echo "$got" | uniq -c | awk '{printf "%s:%s ", $2, $1}'))"
}

verify_count() {
    # verify_count NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then die "$1: truth has $2 requests but the capture shows $3"; fi
    log "$1: $2 requests in truth and capture"
}

# ------------------------------------------------------------------------------
h1_traffic() {
    # 1. keep-alive sequences: several URLs in one curl reuse one connection
    get "$H1/v1/users" "$H1/v1/users/1" "$H1/v1/users/2" "$H1/v1/users/3" "$H1/v1/items"
    get "$H1/index.html" "$H1/v1/search?q=alice&limit=10" "$H1/v1/search?q=a%20b&sort=-created_at&page=2" \
       "$H1/v1/users?fields=id,name" "$H1/v2/status"
    # mixed methods on one connection (--next keeps the connection)
    $C "$H1/v1/orders" \
       --next -o /dev/null -X POST -H 'content-type: application/json' -H 'Expect:' --data-binary @"$WORK/bodies/order.json" "$H1/api/orders" \
       --next -o /dev/null -X PATCH -H 'content-type: application/json' --data-binary @"$WORK/bodies/patch.json" "$H1/api/orders/1001" \
       --next -o /dev/null -X PUT -H 'content-type: application/json' --data-binary @"$WORK/bodies/user7.json" "$H1/api/users/7" \
       --next -o /dev/null -X DELETE "$H1/api/orders/1001" \
       --next -o /dev/null "$H1/api/orders?status=open&limit=5"

    # 2. pipelining: h2load HTTP/1.1, 4 connections x depth 8
    h2load --h1 -n 2000 -c 4 -m 8 "$H1/v1/users" "$H1/v1/users/42" "$H1/v1/search?q=bob&limit=3" \
        "$H1/healthz" "$H1/v1/nope" >"$WORK/h2load-h1.txt"
    grep -E '^requests:' "$WORK/h2load-h1.txt" >&2

    # 3. gzip + chunked responses (nginx streams gzip without Content-Length)
    get -H 'Accept-Encoding: gzip' "$H1/v1/catalog" "$H1/v1/catalog.json" "$H1/docs/readme.txt"
    curl -sS --compressed -o /dev/null "$H1/files/big.json"
    # 4. 200 KB bodies: static download and uploads
    $C "$H1/files/big.bin"
    $C -X POST -H 'content-type: application/json' -H 'Expect:' --data-binary @"$WORK/bodies/upload-200k.json" "$H1/api/uploads"
    # 100-continue: curl waits for nginx's "HTTP/1.1 100 Continue" before the body
    $C -X POST -H 'content-type: application/json' -H 'Expect: 100-continue' \
       --data-binary @"$WORK/bodies/upload-200k.json" "$H1/api/uploads?mode=expect"
    # chunked request body
    $C -X POST -H 'content-type: application/json' -H 'Transfer-Encoding: chunked' -H 'Expect:' \
       --data-binary @"$WORK/bodies/medium.json" "$H1/api/events"
    # WebDAV PUT/DELETE handled by nginx itself (201, 204, 204, 404)
    $C -T "$WORK/bodies/order.json" -H 'Expect:' "$H1/dav/obj-1.json" \
       --next -o /dev/null -T "$WORK/bodies/upload-200k.json" -H 'Expect:' "$H1/dav/obj-1.json" \
       --next -o /dev/null -X DELETE "$H1/dav/obj-1.json" \
       --next -o /dev/null -X DELETE "$H1/dav/obj-1.json"
    # 5. 404s, HEAD, redirects, 204
    get "$H1/does/not/exist" "$H1/v1/users/999" "$H1/api/missing/thing?x=1"
    get -I "$H1/v1/users" "$H1/files/big.bin" "$H1/nothing-here"
    get "$H1/old-path" "$H1/v1/noop" "$H1/healthz"
    # 6. conditional requests -> 304
    curl -sS -o /dev/null --etag-save "$WORK/etag.txt" "$H1/v1/items"
    curl -sS -o /dev/null --etag-compare "$WORK/etag.txt" "$H1/v1/items"
    $C -H 'If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT' "$H1/v1/users/1"
    $C -H 'If-None-Match: "nope"' "$H1/v1/users/2"
    # 7. other client styles: HTTP/1.0, python http.client keep-alive
    get --http1.0 "$H1/v1/users/3" "$H1/index.html"
    python3 - <<'PY'
import http.client, json
c = http.client.HTTPConnection("127.0.0.1", 18080)
for method, path, body in [
    ("GET", "/v1/users?page=1&per_page=2", None),
    ("POST", "/api/sessions", json.dumps({"user": "alice", "password": "x"})),
    ("PUT", "/api/users/8", json.dumps({"name": "user8"})),
    ("OPTIONS", "/v1/users", None),
    ("DELETE", "/api/sessions/abc123", None),
    ("GET", "/v1/users/42", None),
]:
    headers = {"content-type": "application/json"} if body else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
c.close()
PY
}

make_h1() {
    log "== h1-nginx.pcap"
    : > "$WORK/nginx/logs/h1.access.jsonl"
    capture_start "$HERE/h1-nginx.pcap" "tcp port 18080"
    h1_traffic
    capture_stop
    kill -USR1 "$(cat "$WORK/nginx/logs/nginx.pid")"; sleep 0.5   # reopen = flush
    local n
    n=$(log_to_truth "$WORK/nginx/logs/h1.access.jsonl" "$HERE/h1-nginx.truth.jsonl")
    cp "$WORK/nginx/logs/h1.access.jsonl" "$HERE/h1-nginx.access.jsonl"
    # tcpdump alone: every HTTP/1.x request line in the payloads (pipelined ones included)
    verify_count "h1-nginx (tcpdump -A)" "$n" "$(tcpdump -r "$HERE/h1-nginx.pcap" -A -nn 2>/dev/null |
        grep -cE '(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) /[^ ]* HTTP/1\.[01]')"
    if command -v tshark >/dev/null; then
        local m
        m=$(count_tshark "$HERE/h1-nginx.pcap" 18080 http http.request.method)
        verify_count h1-nginx "$n" "$m"
        verify_statuses h1-nginx "$HERE/h1-nginx.truth.jsonl" \
            "$($TSHARK -r "$HERE/h1-nginx.pcap" -d tcp.port==18080,http -Y http.response -T fields -e http.response.code 2>/dev/null | tr ',' '\n')"
    fi
}

# ------------------------------------------------------------------------------
h2c_traffic() {
    local P=--http2-prior-knowledge
    # 1. h2load: 4 connections x 10 concurrent streams, round-robin over the URIs
    h2load -n 2000 -c 4 -m 10 "$H2/v1/users" "$H2/v1/users/42" "$H2/v1/search?q=carol&limit=20&offset=40" \
        "$H2/v2/status?verbose=1" "$H2/healthz" "$H2/v1/missing" >"$WORK/h2load-h2c.txt"
    grep -E '^requests:' "$WORK/h2load-h2c.txt" >&2
    # 2. nghttp: multiplexed GETs on one connection
    nghttp -n -m 10 "$H2/v1/items?page=3"
    nghttp -n "$H2/v1/users/1" "$H2/v1/users/2" "$H2/v1/users/3" "$H2/index.html" "$H2/v1/catalog" "$H2/nope.json"
    nghttp -n -d "$WORK/bodies/order.json" -H 'content-type: application/json' "$H2/api/orders?source=nghttp"
    # 3. curl h2c prior knowledge: JSON POSTs and other methods. curl 7.88.1 fails
    #    ("Error in the HTTP2 framing layer") when it reuses a prior-knowledge h2c
    #    connection (--next, several URLs or -Z), so each curl makes one request.
    local J=(-H 'content-type: application/json')
    pk() { curl -sS $P -o /dev/null "$@"; }
    pk -d @"$WORK/bodies/order.json" "${J[@]}" "$H2/api/orders"
    pk -d @"$WORK/bodies/user7.json" "${J[@]}" "$H2/api/users"
    pk -X PUT -d @"$WORK/bodies/user7.json" "${J[@]}" "$H2/api/users/7"
    pk -X PATCH -d @"$WORK/bodies/patch.json" "${J[@]}" "$H2/api/users/7?notify=false"
    pk -X DELETE "$H2/api/users/7"
    pk "$H2/api/missing/order/1"
    # 4. bodies: gzip, 200 KB download and upload (flow control, WINDOW_UPDATE), DAV
    pk --compressed "$H2/v1/catalog.json"
    pk --compressed "$H2/docs/readme.txt"
    pk "$H2/files/big.bin"
    pk -d @"$WORK/bodies/upload-200k.json" "${J[@]}" "$H2/api/uploads?via=h2"
    pk -T "$WORK/bodies/medium.json" "$H2/dav/h2-obj.json"
    pk -X DELETE "$H2/dav/h2-obj.json"
    # 5. 404s, HEAD, 204, 301, 304
    pk "$H2/does/not/exist"
    pk "$H2/v1/users/999?x=%2Fy"
    pk -I "$H2/v1/users"
    pk -I "$H2/nothing-here"
    pk "$H2/v1/noop"
    pk "$H2/old-path"
    pk --etag-save "$WORK/etag2.txt" "$H2/v1/users/2"
    pk --etag-compare "$WORK/etag2.txt" "$H2/v1/users/2"
    pk -H 'If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT' "$H2/v1/users/3"
}

make_h2c() {
    log "== h2c-nginx.pcap"
    : > "$WORK/nginx/logs/h2c.access.jsonl"
    capture_start "$HERE/h2c-nginx.pcap" "tcp port 18081"
    h2c_traffic
    capture_stop
    kill -USR1 "$(cat "$WORK/nginx/logs/nginx.pid")"; sleep 0.5
    local n
    n=$(log_to_truth "$WORK/nginx/logs/h2c.access.jsonl" "$HERE/h2c-nginx.truth.jsonl")
    cp "$WORK/nginx/logs/h2c.access.jsonl" "$HERE/h2c-nginx.access.jsonl"
    if command -v tshark >/dev/null; then
        verify_count h2c-nginx "$n" "$(count_tshark "$HERE/h2c-nginx.pcap" 18081 http2 http2.headers.method)"
        verify_statuses h2c-nginx "$HERE/h2c-nginx.truth.jsonl" \
            "$($TSHARK -r "$HERE/h2c-nginx.pcap" -d tcp.port==18081,http2 -Y http2.headers.status -T fields -e http2.headers.status 2>/dev/null | tr ',' '\n')"
    fi
}

# ------------------------------------------------------------------------------
# h2c via HTTP/1.1 Upgrade. nghttpd (nghttp2-server 1.52) does not implement the
# Upgrade: h2c handshake (it answers with an HTTP/2 SETTINGS frame at once), so
# the server is nghttpx (nghttp2-proxy, same nghttp2 release) on 127.0.0.1:18082
# without TLS, which accepts HTTP/1.1, Upgrade: h2c and prior knowledge, in front
# of the nginx h1 server. Only port 18082 is captured.
start_nghttpx() {
    nghttpx --conf=/dev/null --frontend='127.0.0.1,18082;no-tls' --backend='127.0.0.1,18080' \
        --workers=1 --accesslog-file="$WORK/nghttpx.access.jsonl" \
        --accesslog-format='{"method":"$method","target":"$path","status":$status,"alpn":"$alpn","request_time":$request_time}' \
        --errorlog-file="$WORK/nghttpx.error.log" & PIDS+=($!)
    wait_port 18082
}

upgrade_traffic() {
    # nghttp -u: the first URI is the HTTP/1.1 upgrade request (answered on stream 1),
    # the others are HTTP/2 streams 3, 5, ... on the upgraded connection
    nghttp -u -n "$UP/v1/users.json"
    nghttp -u -n "$UP/v1/users" "$UP/v1/items?page=2" "$UP/nope" "$UP/v1/catalog"
    nghttp -u -n -m 5 "$UP/v1/search?q=upgrade&n=5"
    # with a request body nghttp upgrades with "OPTIONS *" first, then POSTs on stream 3
    nghttp -u -n -d "$WORK/bodies/order.json" -H 'content-type: application/json' "$UP/api/orders?via=upgrade"
    # curl --http2 on cleartext: Upgrade: h2c on the first request, later URLs on new streams
    get --http2 "$UP/v1/users/1" "$UP/v1/users/2?fields=name" "$UP/missing/thing"
    get --http2 --compressed "$UP/v1/catalog.json"
    # (a 200 KB answer to the upgrade request itself overflows curl 7.88's upgrade
    #  buffer: "connection buffer size is too small", so it goes on stream 3)
    get --http2 "$UP/healthz" "$UP/files/big.bin"
    get --http2 -I "$UP/v1/users"
    curl -sS --http2 -o /dev/null -d @"$WORK/bodies/order.json" -H 'content-type: application/json' "$UP/api/orders"
    # plain HTTP/1.1 (no upgrade) on the same port
    get --http1.1 "$UP/v1/users/3" "$UP/v2/status"
}

make_upgrade() {
    log "== h2c-upgrade.pcap"
    : > "$WORK/nghttpx.access.jsonl"
    capture_start "$HERE/h2c-upgrade.pcap" "tcp port 18082"
    upgrade_traffic
    capture_stop
    kill -USR1 "${NGHTTPX_PID}" 2>/dev/null || true; sleep 0.5   # reopen logs
    local n
    n=$(log_to_truth "$WORK/nghttpx.access.jsonl" "$HERE/h2c-upgrade.truth.jsonl")
    if command -v tshark >/dev/null; then
        local f="$HERE/h2c-upgrade.pcap"
        local h1 h2
        h1=$(count_tshark "$f" 18082 http http.request.method)
        h2=$(count_tshark "$f" 18082 http http2.headers.method)
        verify_count h2c-upgrade "$n" "$((h1 + h2))"
        verify_statuses h2c-upgrade "$HERE/h2c-upgrade.truth.jsonl" "$(
            $TSHARK -r "$f" -d tcp.port==18082,http -Y 'http.response || http2.headers.status' -T fields \
                -e http.response.code -e http2.headers.status 2>/dev/null | tr ',\t' '\n\n' | grep -v '^101$')"
    fi
}

# ------------------------------------------------------------------------------
make_grpc() {
    log "== grpc.pcap"
    pip_install_missing grpc:grpcio
    python3 "$HERE/grpc/grpc_pair.py" server 18083 >"$WORK/grpc-server.log" 2>&1 & PIDS+=($!)
    wait_port 18083
    capture_start "$HERE/grpc.pcap" "tcp port 18083"
    local n
    n=$(python3 "$HERE/grpc/grpc_pair.py" client 18083 "$HERE/grpc.truth.jsonl")
    capture_stop
    if command -v tshark >/dev/null; then
        local f="$HERE/grpc.pcap"
        verify_count grpc "$n" "$(count_tshark "$f" 18083 http2 http2.headers.method)"
        # grpc-status values seen in the capture vs the truth
        local want got
        want=$(python3 -c 'import json,sys; print("\n".join(sorted(str(json.loads(l)["grpc_status"]) for l in open(sys.argv[1]))))' "$HERE/grpc.truth.jsonl")
        got=$($TSHARK -r "$f" -d tcp.port==18083,http2 -Y 'http2.header.name == "grpc-status"' -T fields -E 'aggregator=|' \
              -e http2.header.name -e http2.header.value 2>/dev/null | python3 -c '
import sys
for line in sys.stdin:
    names, values = line.rstrip("\n").split("\t")
    for n, v in zip(names.split("|"), values.split("|")):
        if n == "grpc-status":
            print(v)' | sort)
        [ "$want" = "$got" ] || die "grpc: grpc-status multiset differs"
        local msgs_truth msgs_cap
        msgs_truth=$(python3 -c 'import json,sys; print(sum(json.loads(l)["request_messages"] + json.loads(l)["response_messages"] for l in open(sys.argv[1])))' "$HERE/grpc.truth.jsonl")
        msgs_cap=$(count_tshark "$f" 18083 http2 grpc.message_length)
        [ "$msgs_truth" = "$msgs_cap" ] || die "grpc: $msgs_truth messages in truth, $msgs_cap in capture"
        log "grpc: $msgs_cap gRPC messages in truth and capture"
        log "grpc: grpc-status values match ($(echo "$got" | uniq -c | awk '{printf "%s:%s ", $2, $1}'))"
    fi
}

want h1 || want h2c || want upgrade && start_servers
want upgrade && { start_nghttpx; NGHTTPX_PID=${PIDS[-1]}; }
want h1 && make_h1
want h2c && make_h2c
want upgrade && make_upgrade
want grpc && make_grpc
log "done"
