//! Feeds a sequence of command APDUs to a new card and lets the card core check its own
//! invariants after each one.
//!
//! An input is a list of APDUs, each framed as a 2-byte big-endian length and the bytes;
//! `run_sequence` splits it and panics on a violated invariant. The seed corpus comes from
//! the malformed conformance vectors: `make fuzz-corpus`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    valuecard_card::fuzz::run_sequence(data);
});
