# Shared by demo.sh and bench.sh (sourced, not run): start virtual cards behind vpcd, wait
# until PC/SC sees them, and always stop them again.
#
# The caller sets BIN (the folder with valuecard-card and valuecard) and WORK (a folder for
# state files and logs) before calling start_card.

CARD_PIDS=()
CARD_LOGS=()

say() { printf '==> %s\n' "$*"; }

# vpcd's two slots are shared by the whole machine: take the lock that the PC/SC tests take
# (terminal/src/launch.rs, lock_vpcd), so that a demo and a test run never fight over them. The
# lock is held on file descriptor 9 until the script exits.
lock_vpcd() {
    exec 9>"${TMPDIR:-/tmp}/valuecard-vpcd.lock"
    if ! flock -n 9; then
        say "waiting for the vpcd slots: another run (tests, demo or bench) holds them"
        flock 9
    fi
}

# Port of a vpcd slot: "Virtual PCD 00 0N" listens on 35963 + N.
slot_port() { echo $((35963 + $1)); }

# start_card SLOT NAME [extra valuecard-card flags...]
start_card() {
    local slot=$1 name=$2
    shift 2
    local port
    port=$(slot_port "$slot")
    # vpcd serves one card per slot: a second one would wait forever.
    if connected "$slot"; then
        echo "slot $slot (port $port) already has a card connected: stop it first" >&2
        return 1
    fi
    local log="$WORK/$name.log"
    # 9>&-: the card must not inherit the vpcd lock and hold it past this script.
    "$BIN/valuecard-card" --slot "$slot" --state "$WORK/$name.state" "$@" >"$log" 2>&1 9>&- &
    CARD_PIDS+=("$!")
    CARD_LOGS+=("$log")
    say "card $name on slot $slot (pid $!, log $log)"
}

stop_cards() {
    local pid
    for pid in "${CARD_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${CARD_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    CARD_PIDS=()
}

show_card_logs() {
    local log
    for log in "${CARD_LOGS[@]}"; do
        echo "--- $log" >&2
        tail -n 20 "$log" >&2 || true
    done
}

connected() { ss -Htn state established "( dport = :$(slot_port "$1") )" 2>/dev/null | grep -q .; }

# Whether each of the given slots has a card connected to vpcd and `valuecard readers`
# reports a valuecard in its reader (pcscd may still report a card that went away in the
# last half second: hence both). Listing the readers does not connect to the cards.
cards_present() {
    local listing slot
    for slot in "$@"; do
        connected "$slot" || return 1
    done
    listing=$("$BIN/valuecard" readers --json 2>/dev/null) || return 1
    python3 -c '
import json, sys
readers = {r["name"]: r for r in json.loads(sys.argv[1])}
for slot in sys.argv[2:]:
    r = readers.get("Virtual PCD 00 0" + slot)
    if not (r and r["card_present"] and r["valuecard"]):
        sys.exit(1)
' "$listing" "$@"
}

cards_alive() {
    local pid
    for pid in "${CARD_PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "a card process (pid $pid) exited" >&2
            show_card_logs
            return 1
        fi
    done
}

# wait_for_cards SECONDS SLOT...
wait_for_cards() {
    local seconds=$1
    shift
    local i
    for ((i = 0; i < seconds * 10; i++)); do
        cards_alive || return 1
        cards_present "$@" && return 0
        sleep 0.1
    done
    echo "valuecard readers does not show valuecards in slots $* after ${seconds} s" >&2
    "$BIN/valuecard" readers >&2 || true
    show_card_logs
    return 1
}
