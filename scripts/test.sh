#!/usr/bin/env bash
# The test suite: installs what it needs, then formatting, lints, unit and integration tests
# (including every capture of ../shared/corpus when it is present).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
[[ "${APITAP_SKIP_KAFKA:-}" == 1 ]] || scripts/kafka-broker.sh  # tansu for tests/kafka.rs, once
[ "${APITAP_SKIP_OPENAPI_VALIDATOR:-}" = 1 ] || scripts/openapi-validator.sh --install  # tests/openapi.rs
cargo test --workspace
