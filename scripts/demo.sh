#!/usr/bin/env bash
# `make demo`: two virtual cards behind pcscd + vpcd, and the terminal talking to them.
# Needs `make setup` (pcscd with vpcd) and `make build` first; the Makefile does both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
WORK=${DEMO_DIR:-$(mktemp -d -t valuecard-demo.XXXXXX)}
mkdir -p "$WORK"
# shellcheck source=scripts/cards.sh
. scripts/cards.sh
trap stop_cards EXIT
lock_vpcd

say "demo folder: $WORK"
start_card 0 a
start_card 1 b
wait_for_cards 10 0 1

failed=0
step() {
    say "$*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        failed=1
    fi
}
step "$BIN/valuecard" readers
step "$BIN/valuecard" --reader 0 info
step "$BIN/valuecard" --reader 1 info

if [ "$failed" -ne 0 ]; then
    show_card_logs
    exit 1
fi
say "demo done; the cards' state files stay in $WORK"
