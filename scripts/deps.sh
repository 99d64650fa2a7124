#!/usr/bin/env bash
# Installs what building and testing apitap needs, only when missing (Debian/Ubuntu).
# Sourced by the other scripts; safe to run on its own.
set -euo pipefail
missing=()
dpkg -s libpcap-dev >/dev/null 2>&1 || missing+=(libpcap-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "apitap: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "apitap: no Rust toolchain; install one with https://rustup.rs (Debian's cargo is too old), then re-run" >&2
  exit 1
fi
