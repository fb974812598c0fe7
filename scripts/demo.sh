#!/usr/bin/env bash
# `make demo`: two virtual cards behind pcscd + vpcd, the bank and center services, and the
# terminal funding card a: open an account with 1000, register and personalise the card
# through the center, withdraw 300 as blind-signed tokens, and read both balances.
# Needs `make setup` (pcscd with vpcd) and `make build` first; the Makefile does both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
WORK=${DEMO_DIR:-$(mktemp -d -t valuecard-demo.XXXXXX)}
mkdir -p "$WORK"
# shellcheck source=scripts/cards.sh
. scripts/cards.sh
BACKEND_PID=
stop_all() {
    stop_cards
    if [ -n "$BACKEND_PID" ]; then
        kill "$BACKEND_PID" 2>/dev/null || true
        wait "$BACKEND_PID" 2>/dev/null || true
    fi
}
trap stop_all EXIT
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

# The demo's own admin token; a real bank reads it from --admin-token-file.
export VALUECARD_ADMIN_TOKEN="demo-admin-token-$RANDOM$RANDOM"
say "valuecard-backend all (bank and center, SQLite files in $WORK/backend)"
"$BIN/valuecard-backend" all --listen 127.0.0.1:0 --db "$WORK/backend" \
    >"$WORK/backend.out" 2>"$WORK/backend.log" 9>&- &
BACKEND_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$WORK/backend.out" 2>/dev/null && break
    sleep 0.1
done
URL=$(sed -n 's/^valuecard-backend listening on //p' "$WORK/backend.out")
if [ -z "$URL" ]; then
    echo "valuecard-backend did not start; its log:" >&2
    cat "$WORK/backend.log" >&2
    exit 1
fi
say "backend at $URL"

export VALUECARD_BACKEND=$URL VALUECARD_JOURNAL=$WORK/journal.json
say "valuecard bank open-account --deposit 1000"
opened=$("$BIN/valuecard" bank open-account --deposit 1000 --json)
ACCOUNT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["account"])' "$opened")
export VALUECARD_CREDENTIAL
VALUECARD_CREDENTIAL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["credential"])' "$opened")
echo "account $ACCOUNT opened with 1000 JPY (its credential stays in this script)"

step "$BIN/valuecard" --reader 0 card register --pin 123456
step "$BIN/valuecard" --reader 0 withdraw --account "$ACCOUNT" --amount 300
step "$BIN/valuecard" --reader 0 balance
step "$BIN/valuecard" bank balance --account "$ACCOUNT"
step "$BIN/valuecard" --reader 0 load --amount 200
step "$BIN/valuecard" --reader 0 unload --amount 50 --pin 123456
step "$BIN/valuecard" --reader 0 tickets issue --asset CONCERT
step "$BIN/valuecard" --reader 0 tickets
step "$BIN/valuecard" --reader 0 balance
step "$BIN/valuecard" --reader 1 card register --pin 654321
step "$BIN/valuecard" --reader 1 tickets issue --asset MUSEUM --serial 0001
step env VALUECARD_INITIATOR_PIN=123456 VALUECARD_RESPONDER_PIN=654321 \
    "$BIN/valuecard" exchange --initiator 0 --responder 1 --give 100JPY --take ticket:MUSEUM:0001
step "$BIN/valuecard" --reader 0 balance
step "$BIN/valuecard" --reader 1 balance
step "$BIN/valuecard" --reader 0 info

if [ "$failed" -ne 0 ]; then
    show_card_logs
    echo "--- backend log" >&2
    tail -n 20 "$WORK/backend.log" >&2 || true
    exit 1
fi
say "demo done; the cards' state files and the databases stay in $WORK"
