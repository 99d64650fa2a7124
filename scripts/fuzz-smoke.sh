#!/usr/bin/env bash
# Smoke run of every cargo-fuzz target in fuzz/fuzz_targets: each runs for FUZZ_SMOKE_SECONDS
# (default 20) from a scratch corpus made of its committed seeds (fuzz/seeds/TARGET) and crash
# regressions (fuzz/regressions/TARGET), so a regression that comes back fails at once. Long
# runs are described in fuzz/README.md; this only proves that the targets build and that a
# short run finds nothing.
#
# When cargo-fuzz is not installed the smoke is skipped (with a line saying so), not failed:
# installing it costs minutes of build that the test suite should not pay on every machine
# (`cargo install cargo-fuzz --locked` to enable it).
#
# Environment: FUZZ_SMOKE_SECONDS (per target), FUZZ_SMOKE_TARGETS (space-separated subset),
# CARGO_TARGET_DIR (build directory; default fuzz/target). Exit 1 if any target failed; its
# crashing input is kept and its path printed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is not installed; skipped (cargo install cargo-fuzz --locked)"
  exit 0
fi

secs="${FUZZ_SMOKE_SECONDS:-20}"
targets="${FUZZ_SMOKE_TARGETS:-$(for f in fuzz_targets/*.rs; do basename "$f" .rs; done)}"
# cargo-fuzz passes nightly-only flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1

echo "fuzz-smoke: building $(echo "$targets" | wc -w) targets"
cargo fuzz build -O

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in $targets; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  for d in "seeds/$t" "regressions/$t"; do
    [ -d "$d" ] || continue
    find "$d" -maxdepth 1 -type f ! -name '*.md' -exec cp {} "$corpus"/ \;
  done
  log="$work/$t.log"
  if cargo fuzz run -O "$t" "$corpus" -- -max_total_time="$secs" -max_len=8192 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    echo "fuzz-smoke: $t ok (${secs}s, ${execs:-?} execs, ${cov:-cov: ?})"
  else
    keep="$(mktemp -d /tmp/fuzz-smoke-"$t"-XXXXXX)"
    cp -r "$artifacts" "$keep"/ 2>/dev/null || true
    cp "$log" "$keep"/
    echo "fuzz-smoke: $t FAILED; log and crashing input in $keep" >&2
    grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz-smoke: failed: ${failed[*]}" >&2
  exit 1
fi
