#!/usr/bin/env bash
# The Kafka broker of the Kafka tests: tansu (crates.io), an Apache-Kafka-compatible broker.
#
#   scripts/kafka-broker.sh            install tansu when it is missing (cargo install, ~10 min
#                                      on 2 cores; cached in ~/.cargo/bin afterwards)
#   scripts/kafka-broker.sh run PORT [DIR]
#                                      run a broker on 127.0.0.1:PORT, storing in DIR/tansu.db
#                                      (SQLite, survives restarts) or in memory without DIR
#
# The features matter: the default build has no storage engine and refuses memory://;
# `dynostore` brings memory:// and `libsql` brings sqlite://. tests/kafka.rs finds the binary
# on PATH, in $CARGO_HOME/bin or ~/.cargo/bin, or at $APITAP_TANSU.
set -euo pipefail

TANSU_VERSION=0.6.0

find_tansu() {
    if [[ -n "${APITAP_TANSU:-}" && -x "$APITAP_TANSU" ]]; then
        echo "$APITAP_TANSU"
        return
    fi
    for t in "$(command -v tansu 2>/dev/null || true)" \
        "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" "$HOME/.cargo/bin/tansu"; do
        if [[ -n "$t" && -x "$t" ]]; then
            echo "$t"
            return
        fi
    done
}

install_tansu() {
    local t
    t=$(find_tansu)
    if [[ -n "$t" ]]; then
        return
    fi
    echo "kafka-broker.sh: installing tansu $TANSU_VERSION (Kafka-compatible broker for the" \
        "Kafka tests); this builds from source and takes ~10 minutes once" >&2
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
}

case "${1:-install}" in
install)
    install_tansu
    ;;
run)
    port=${2:?usage: kafka-broker.sh run PORT [DIR]}
    install_tansu
    t=$(find_tansu)
    storage=memory://tansu/
    if [[ -n "${3:-}" ]]; then
        mkdir -p "$3"
        cd "$3"
        storage=sqlite://tansu.db
    fi
    exec "$t" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage"
    ;;
*)
    echo "usage: kafka-broker.sh [install | run PORT [DIR]]" >&2
    exit 2
    ;;
esac
