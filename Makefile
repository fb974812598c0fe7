# valuecard: developer and CI entry points. `make help` lists them.
#
#   make test    what CI runs (.ci/run): setup, build, then every test of the workspace
#   make demo    two virtual cards behind pcscd + vpcd, the bank and center, and a card funded
#   make fuzz    the APDU-sequence fuzzer for FUZZ_SECONDS seconds

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# How long `make fuzz` runs.
FUZZ_SECONDS ?= 60
# cargo-fuzz release installed by `make fuzz` when cargo-fuzz is missing.
CARGO_FUZZ_VERSION ?= 0.13.2
FUZZ_CORPUS := fuzz/corpus/apdu_sequence
# Where `make demo` keeps the cards' state files: a new temporary folder unless set.
DEMO_DIR ?=

.PHONY: help setup build build-release test demo bench bench-apdu bench-funding bench-exchange fuzz fuzz-corpus fuzz-tools fmt lint

help:
	@echo "make setup          install pcscd, vpcd and the PC/SC tools (apt), start pcscd"
	@echo "make build          build every binary (debug)"
	@echo "make test           setup + build + cargo test --workspace (what CI runs)"
	@echo "make demo           two virtual cards, the backend, and 300 withdrawn onto card a"
	@echo "make bench          bench-apdu, bench-funding and bench-exchange"
	@echo "make bench-apdu     APDU round trips, tuned socket against a plain one (release)"
	@echo "make bench-funding  blind signatures/s and redemptions/s against openssl speed rsa2048"
	@echo "make bench-exchange exchanges/s in-process and via pcscd, against their cryptography alone"
	@echo "make fuzz           fuzz APDU sequences for FUZZ_SECONDS=$(FUZZ_SECONDS) s"
	@echo "make fuzz-corpus    write the seed corpus from the malformed conformance vectors"
	@echo "make fmt / lint     rustfmt check / clippy with warnings denied"

setup:
	@echo "==> setup: PC/SC packages and pcscd with vpcd"
	@scripts/setup.sh

# The PC/SC tests spawn target/debug/valuecard-card and target/debug/valuecard.
build:
	@echo "==> build"
	$(CARGO) build --workspace --bins --locked

build-release:
	@echo "==> build (release)"
	$(CARGO) build --workspace --release --bins --locked

# The vpcd tests take a file lock among themselves, so the default parallel run is safe.
test: setup build
	@echo "==> test"
	$(CARGO) test --workspace --locked

demo: setup build
	@echo "==> demo"
	@DEMO_DIR="$(DEMO_DIR)" scripts/demo.sh

bench: bench-apdu bench-funding bench-exchange

bench-apdu: setup build-release
	@echo "==> bench: APDU round trips"
	@scripts/bench.sh

# Needs openssl on PATH for the reference figure (Debian: apt-get install openssl).
bench-funding:
	@echo "==> bench: bank blind signatures and center redemptions"
	$(CARGO) bench --locked -p valuecard-backend --bench funding

bench-exchange: setup build-release
	@echo "==> bench: fair exchanges against their cryptography"
	$(CARGO) bench --locked -p valuecard-tests --bench exchange

fuzz-corpus:
	@echo "==> fuzz corpus from the malformed conformance vectors"
	$(CARGO) run --locked -q -p valuecard-apdu-spec --example fuzz_corpus -- $(FUZZ_CORPUS)

fuzz-tools:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || { \
		echo "==> installing cargo-fuzz $(CARGO_FUZZ_VERSION)"; \
		$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked; }

# cargo-fuzz passes -Z flags (sanitizer, coverage) that only nightly accepts; with
# RUSTC_BOOTSTRAP=1 the stable toolchain accepts them too, AddressSanitizer included.
fuzz: fuzz-corpus fuzz-tools
	@echo "==> fuzz apdu_sequence for $(FUZZ_SECONDS) s"
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run apdu_sequence -- -max_total_time=$(FUZZ_SECONDS)

fmt:
	@echo "==> fmt"
	$(CARGO) fmt --all -- --check

lint:
	@echo "==> lint"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
