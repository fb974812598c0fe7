//! The ISO-layer invariants, checked after every APDU. The cargo-fuzz target and the
//! property test both drive the card through [`run_sequence`] / [`Checker`].

use apdu_spec::{Apdu, CLA_CHAIN, CLA_ISO, status};

use crate::{Card, Options};

/// A frame length that stands for a warm reset instead of an APDU.
pub const RESET_FRAME: u16 = 0xFFFF;

/// Splits fuzz input into frames (2-byte big-endian length, then that many bytes; the length
/// [`RESET_FRAME`] is a reset) and runs them through a fresh in-memory card, checking every
/// response. Panics on a violated invariant, which is what a fuzzer looks for.
pub fn run_sequence(data: &[u8]) {
    let mut checker = Checker::new(Card::in_memory(Options {
        test_mode: true,
        rng_seed: Some(0),
    }));
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = u16::from_be_bytes(*len);
        if len == RESET_FRAME {
            checker.reset();
            rest = tail;
            continue;
        }
        let take = (len as usize).min(tail.len());
        let (command, tail) = tail.split_at(take);
        if let Err(violation) = checker.step(command) {
            panic!("{violation}");
        }
        rest = tail;
    }
}

/// A card under test, and the checks made after each command.
pub struct Checker {
    pub card: Card,
}

impl Checker {
    pub fn new(card: Card) -> Self {
        Checker { card }
    }

    pub fn reset(&mut self) {
        self.card.reset();
        assert!(
            !self.card.chain_in_progress() && !self.card.response_pending(),
            "reset left volatile state"
        );
    }

    /// Sends one command and checks the response against CONFORMANCE.md. Returns the
    /// response, or what was violated.
    pub fn step(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        let chain_before = self.card.chain_in_progress();
        let response = self.card.transmit(command);
        let fail = |what: &str| {
            Err(format!(
                "{what}: {} -> {}",
                hex::encode_upper(command),
                hex::encode_upper(&response)
            ))
        };
        let Some((data, sw)) = response.split_last_chunk::<2>() else {
            return fail("response shorter than a status word");
        };
        let sw = u16::from_be_bytes(*sw);
        if !status::is_card_status(sw) {
            return fail("status word the card does not define");
        }
        if !status::allows_data(sw) && !data.is_empty() {
            return fail("data with an error status");
        }
        let more = sw >> 8 == 0x61;
        if self.card.response_pending() != more {
            return fail("a pending response must exist exactly when 61xx was answered");
        }
        let is_error = !(sw == 0x9000 || more || sw >> 8 == 0x63);
        if is_error && self.card.chain_in_progress() {
            return fail("an error must clear the chain");
        }
        let parsed = Apdu::parse(command).ok();
        if let Some(apdu) = parsed {
            if data.len() > apdu.ne {
                return fail("more data than Ne");
            }
            let chained = apdu.cla & CLA_CHAIN != 0;
            if self.card.chain_in_progress() && !(chained && sw == 0x9000 && data.is_empty()) {
                return fail(
                    "a chain may only be left open by a chained link answered with a bare 9000",
                );
            }
            let is_select =
                apdu.cla & !CLA_CHAIN == CLA_ISO && apdu.ins == apdu_spec::commands::ins::SELECT;
            if is_select && !chained && self.card.chain_in_progress() {
                return fail("SELECT must clear the chain");
            }
        } else if self.card.chain_in_progress() && !chain_before {
            return fail("a malformed APDU started a chain");
        }
        // Whatever came in, the state is one the state file's checks accept: among them,
        // the escrow is exactly what the open exchange sessions hold.
        let state = match crate::applet::encode(self.card.applet().persistent()) {
            Ok(state) => state,
            Err(e) => return fail(&format!("the state cannot be serialised ({e})")),
        };
        if let Err(e) = crate::applet::decode(&state) {
            return fail(&format!("the state fails its checks ({e})"));
        }
        Ok(response)
    }
}
