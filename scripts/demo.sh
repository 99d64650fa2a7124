#!/usr/bin/env bash
# Quick start: build apitap and replay a bundled capture of real HTTP/1.1 API traffic
# (nginx, curl and h2load on loopback; see tests/data/README.md). No Kafka, no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo build --release --quiet --bin apitap
out=$(mktemp -d)/exchanges.jsonl
./target/release/apitap replay tests/data/h1-nginx.pcap --output "jsonl:$out" --stats-json "${out%.jsonl}.stats.json"
echo
echo "First observations (of $(wc -l <"$out") in $out):"
head -n 3 "$out"
