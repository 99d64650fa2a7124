#!/usr/bin/env bash
# The test suite: installs what it needs, then formatting, lints, unit and integration tests
# (including every capture of ../shared/corpus when it is present).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
