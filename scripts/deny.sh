#!/usr/bin/env bash
# Supply-chain checks of the workspace's dependencies with cargo-deny, configured by
# deny.toml: licenses (an allow-list), bans (duplicate versions are warnings), sources
# (crates.io only) and advisories (the RustSec database).
#
# cargo-deny is installed on first use (`cargo install cargo-deny --locked`, pinned to
# CARGO_DENY_VERSION) and then found in ~/.cargo/bin like any cargo subcommand.
#
# Advisories need the RustSec advisory database, a git repository cargo-deny clones from
# GitHub. Where GitHub is not reachable (this project's machines reach package registries
# only), the database is taken from, in order:
#   1. a fresh fetch (`cargo deny fetch db`), when it works;
#   2. a copy already on disk in cargo-deny's cache ($CARGO_HOME/advisory-dbs, left by an
#      earlier fetch on this machine, or copied from a machine that can reach GitHub), used
#      without fetching and reported with the date of its newest file;
#   3. none: the advisories check is skipped and the script says so. With
#      DENY_REQUIRE_ADVISORIES=1 that is a failure instead.
# Licenses, bans and sources need nothing but the crates already downloaded for the build.
#
# Exit codes: 0 clean (warnings allowed), 1 a check failed, 3 cargo-deny could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

version="${CARGO_DENY_VERSION:-0.20.2}"
if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: installing cargo-deny $version (once)" >&2
  if ! cargo install cargo-deny --locked --version "$version" >&2; then
    echo "deny: cannot install cargo-deny (needs crates.io)" >&2
    exit 3
  fi
fi

checks=(licenses bans sources)
extra=()
db_root="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
have_db() {
  [ -n "$(find "$db_root" -mindepth 1 -maxdepth 3 -name 'crates' -type d 2>/dev/null | head -n 1)" ]
}
if timeout 120 cargo deny fetch db >/dev/null 2>&1; then
  checks+=(advisories)
elif have_db; then
  newest=$(find "$db_root" -maxdepth 4 -name '*.md' -printf '%TY-%Tm-%Td\n' 2>/dev/null | sort | tail -n 1)
  echo "deny: RustSec database not fetched; using the copy in $db_root (newest advisory file ${newest:-unknown})" >&2
  checks+=(advisories)
  extra+=(--disable-fetch)
else
  msg="deny: advisories SKIPPED: the RustSec database (a git clone from GitHub) cannot be fetched from here and no copy is on disk (see scripts/deny.sh)"
  if [ "${DENY_REQUIRE_ADVISORIES:-0}" = 1 ]; then
    echo "$msg" >&2
    exit 1
  fi
  echo "$msg" >&2
fi

echo "deny: cargo deny check ${checks[*]}" >&2
cargo deny --log-level warn check --hide-inclusion-graph "${extra[@]}" "${checks[@]}"
