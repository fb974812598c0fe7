# valuecard: developer and CI entry points. `make help` lists them.
#
#   make test    what CI runs (.ci/run): setup, build, then every test of the workspace
#   make demo    the whole story told as it runs: two virtual cards behind pcscd + vpcd, the
#                bank, the center and the arbiter (`valuecard demo`)
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
# Where `make demo` works, and keeps its state files, databases and logs afterwards (it must be
# empty): a new temporary folder, removed at the end, unless set.
DEMO_DIR ?=

.PHONY: help setup build build-release test demo bench fuzz fuzz-corpus fuzz-tools fmt lint

help:
	@echo "make setup          install pcscd, vpcd and the PC/SC tools (apt), start pcscd"
	@echo "make build          build every binary (debug)"
	@echo "make test           setup + build + cargo test --workspace (what CI runs)"
	@echo "make demo           the whole story: bank, center, two cards, exchanges, the arbiter"
	@echo "make bench          every benchmark in one table, each against a reference (release)"
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
	target/debug/valuecard demo $(if $(DEMO_DIR),--dir "$(DEMO_DIR)")

# `valuecard bench --help` says what it measures. It needs openssl on PATH for a reference
# figure, which `make setup` installs.
bench: setup build-release
	@echo "==> bench"
	target/release/valuecard bench

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
