#!/usr/bin/env bash
# The test suite: installs what it needs, then formatting, lints, supply-chain checks, the
# deployment files' checks, unit and integration tests (including every capture of
# ../shared/corpus when it is present) and a short smoke of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
scripts/deny.sh  # licenses, bans, sources; advisories when the RustSec database is reachable
[[ "${APITAP_SKIP_KAFKA:-}" == 1 ]] || scripts/kafka-broker.sh  # tansu for tests/kafka.rs, once
[ "${APITAP_SKIP_OPENAPI_VALIDATOR:-}" = 1 ] || scripts/openapi-validator.sh --install  # tests/openapi.rs
cargo test --workspace
deploy/check.sh  # manifests against the Kubernetes schemas, systemd unit, configs via apitap
FUZZ_SMOKE_SECONDS="${FUZZ_SMOKE_SECONDS:-10}" scripts/fuzz-smoke.sh  # skipped without cargo-fuzz
