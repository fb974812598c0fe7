#!/usr/bin/env bash
# Installs what the PC/SC tests and the demo need, and makes sure pcscd runs with the vpcd
# driver listening: `make setup`. Safe to run again: it installs only what is missing and
# starts pcscd only when none runs.
set -euo pipefail

PACKAGES=(pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools opensc python3-pyscard openssl)
# vpcd listens on one port per virtual reader: "Virtual PCD 00 00" and "Virtual PCD 00 01".
VPCD_PORTS=(35963 35964)

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${PACKAGES[*]} and start pcscd as root"
    SUDO=(sudo)
fi

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "packages present: ${PACKAGES[*]}"
fi

# Whether vpcd is listening on a port. `ss` only looks: connecting to a vpcd port would count
# as inserting a card.
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
all_listening() {
    local port
    for port in "${VPCD_PORTS[@]}"; do listening "$port" || return 1; done
}

if pgrep -x pcscd >/dev/null; then
    say "pcscd is running (pid $(pgrep -x pcscd | tr '\n' ' ' | sed 's/ $//'))"
else
    say "starting pcscd"
    [ -d /run/pcscd ] || "${SUDO[@]}" mkdir -p /run/pcscd
    # pcscd daemonizes; it loads the vpcd driver from /etc/reader.conf.d/vpcd.
    "${SUDO[@]}" pcscd || die "pcscd failed to start: run 'pcscd --foreground --debug' to see why"
fi

for _ in $(seq 50); do
    all_listening && break
    pgrep -x pcscd >/dev/null || die "pcscd exited: run 'pcscd --foreground --debug' to see why"
    sleep 0.1
done
if ! all_listening; then
    [ -e /etc/reader.conf.d/vpcd ] || die "vsmartcard-vpcd's /etc/reader.conf.d/vpcd is missing"
    die "pcscd runs but vpcd does not listen on ports ${VPCD_PORTS[*]}: if vsmartcard-vpcd was installed after pcscd started, stop pcscd and run 'make setup' again"
fi
say "vpcd listening on ports ${VPCD_PORTS[*]}"
