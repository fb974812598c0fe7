#!/usr/bin/env bash
# `make bench`: APDU round trips through pcscd + vpcd, for a card with the tuned socket
# (TCP_NODELAY and TCP_QUICKACK, slot 0) against one with a plain socket (slot 1).
# Needs `make setup` and the release build; the Makefile does both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
if [ -n "${BENCH_DIR:-}" ]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
    cleanup() { stop_cards; }
else
    WORK=$(mktemp -d -t valuecard-bench.XXXXXX)
    cleanup() { stop_cards; rm -rf "$WORK"; }
fi
# shellcheck source=scripts/cards.sh
. scripts/cards.sh
trap cleanup EXIT
lock_vpcd

start_card 0 tuned
start_card 1 baseline --plain-socket
wait_for_cards 10 0 1

say "valuecard bench apdu"
"$BIN/valuecard" bench apdu --reader "Virtual PCD 00 00" --baseline-reader "Virtual PCD 00 01"
