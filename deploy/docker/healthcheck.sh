#!/bin/bash
# Container health check: GET /healthz on the metrics listener, healthy only on "HTTP/1.x 200".
# Uses bash's /dev/tcp so the image needs no HTTP client. Address from APITAP_HEALTHCHECK_ADDR
# (host:port, default 127.0.0.1:9464), path from APITAP_HEALTHCHECK_PATH (default /healthz).
set -u
addr="${APITAP_HEALTHCHECK_ADDR:-127.0.0.1:9464}"
path="${APITAP_HEALTHCHECK_PATH:-/healthz}"
host="${addr%:*}"
port="${addr##*:}"
host="${host#[}"
host="${host%]}"
# The braces scope the 2>/dev/null to the connect (bash's own message would repeat ours); the
# descriptor 3 that exec opens stays open in this shell.
if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
  echo "apitap-healthcheck: cannot connect to ${addr}" >&2
  exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "${path}" "${addr}" >&3
# A status line longer than this is not one the metrics server sends; the bound keeps a
# misbehaving peer from making the check read forever (HEALTHCHECK --timeout also applies).
status=""
IFS= read -r -t 4 -n 256 status <&3 || true
exec 3<&- 3>&-
case "${status}" in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *)
    echo "apitap-healthcheck: ${path} on ${addr}: ${status:-no response}" >&2
    exit 1
    ;;
esac
