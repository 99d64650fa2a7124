#!/usr/bin/env bash
# Validates OpenAPI 3.1 documents against the OpenAPI 3.1 schema with openapi-spec-validator (PyPI),
# installed on first use into a cached virtualenv (only when missing).
#
#   scripts/openapi-validator.sh FILE...    validate; exit 1 if any file is invalid
#   scripts/openapi-validator.sh --install  install only
#
# Exit codes: 0 all valid, 1 a file is invalid, 3 the validator could not be installed (no
# network, no python3) — callers tell "invalid" from "could not check" by it.
# Environment: OPENAPI_SPEC_VALIDATOR_VERSION (default below), APITAP_VALIDATOR_VENV (where the
# virtualenv lives; default ${XDG_CACHE_HOME:-$HOME/.cache}/apitap/openapi-spec-validator-VERSION).
set -euo pipefail

version="${OPENAPI_SPEC_VALIDATOR_VERSION:-0.9.0}"
venv="${APITAP_VALIDATOR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/apitap/openapi-spec-validator-$version}"

cannot_install() {
  echo "openapi-validator: cannot install openapi-spec-validator $version into $venv: $*" >&2
  echo "openapi-validator: needs python3 with venv and access to PyPI (or a pre-filled venv via APITAP_VALIDATOR_VENV)" >&2
  exit 3
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || cannot_install "$1 is missing and there is no apt-get"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "openapi-validator: installing $*" >&2
  $sudo apt-get update -qq >&2 || cannot_install "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null ||
    cannot_install "apt-get install $* failed"
}

install() {
  [ -f "$venv/.installed" ] && return 0
  mkdir -p "$(dirname "$venv")" || cannot_install "cannot create $(dirname "$venv")"
  # Parallel test processes may all get here: one installs, the others wait for it.
  exec 9>"$venv.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  [ -f "$venv/.installed" ] && return 0
  command -v python3 >/dev/null 2>&1 || apt_install python3
  # Debian ships venv without ensurepip unless python3-venv is installed.
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  rm -rf "$venv"
  echo "openapi-validator: installing openapi-spec-validator $version into $venv" >&2
  python3 -m venv "$venv" >&2 || cannot_install "python3 -m venv failed"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "openapi-spec-validator==$version" >&2 || {
    rm -rf "$venv"
    cannot_install "pip install failed"
  }
  touch "$venv/.installed"
}

if [ "$#" -eq 0 ]; then
  echo "usage: $0 FILE... | --install" >&2
  exit 2
fi
install
[ "$1" = "--install" ] && exit 0

status=0
for f in "$@"; do
  if ! "$venv/bin/openapi-spec-validator" --schema 3.1 --validation-errors all "$f"; then
    status=1
  fi
done
exit "$status"
