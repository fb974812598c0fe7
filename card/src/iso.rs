//! The ISO 7816-4 layer around the applet: APDU encodings, classes, command chaining, Le,
//! 61xx and GET RESPONSE. The applet below it only ever sees complete, well-formed commands.

use std::borrow::Cow;

use apdu_spec::commands::ins;
use apdu_spec::{Apdu, CLA_CHAIN, CLA_ISO, MAX_COMMAND_DATA, MAX_RESPONSE_DATA, Status};

use apdu_spec::maker::Manufacture;

use crate::applet::Applet;
use crate::state::Persistent;
use crate::storage::{MemoryStorage, Storage, StorageError};

/// How a card is built.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Allow TEST RESET, which erases the card: for conformance runs only.
    pub test_mode: bool,
    /// A fixed RNG seed, for reproducible tests; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
}

/// A half-received command chain.
struct Chain {
    /// CLA without the chaining bit, INS, P1, P2: every link must repeat them.
    header: [u8; 4],
    data: Vec<u8>,
}

/// A smartcard: feed it command APDUs, get response APDUs.
pub struct Card {
    applet: Applet,
    chain: Option<Chain>,
    /// Response data announced by 61xx and not fetched yet.
    pending: Option<Vec<u8>>,
}

impl Card {
    pub fn new(storage: Box<dyn Storage + Send>, options: Options) -> Result<Self, StorageError> {
        Ok(Card {
            applet: Applet::new(storage, options.test_mode, options.rng_seed)?,
            chain: None,
            pending: None,
        })
    }

    /// A card as its maker leaves it, its state in memory: blank, holding `manufacture`
    /// (its attestation key, the maker's certificate over it and the scheme root's key).
    /// Tests and in-process terminals make their cards this way; `valuecard-card
    /// provision` makes the same state in a file.
    pub fn provisioned(manufacture: &Manufacture, options: Options) -> Result<Self, StorageError> {
        let state = crate::applet::encode(&Persistent::manufactured(manufacture))?;
        Self::new(Box::new(MemoryStorage::with_state(state)), options)
    }

    /// A card whose state lives in memory, never manufactured: it can make a key, but it
    /// can neither attest it nor be personalised (TEST RESET with a manufacture record, in
    /// test mode, makes it one that can).
    pub fn in_memory(options: Options) -> Self {
        // A fresh memory store loads nothing and commits without failing.
        match Self::new(Box::new(MemoryStorage::default()), options) {
            Ok(card) => card,
            Err(e) => unreachable!("memory storage failed: {e}"),
        }
    }

    pub fn applet(&self) -> &Applet {
        &self.applet
    }

    /// Whether a command chain is half received (for tests of the ISO rules).
    pub fn chain_in_progress(&self) -> bool {
        self.chain.is_some()
    }

    /// Whether response data waits for GET RESPONSE (for tests of the ISO rules).
    pub fn response_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Warm reset: volatile state is gone, persistent state stays.
    pub fn reset(&mut self) {
        self.chain = None;
        self.pending = None;
        self.applet.clear_volatile();
    }

    /// Power off: the same as a reset for what the card remembers.
    pub fn power_off(&mut self) {
        self.reset();
    }

    /// One command APDU in, one response APDU (data, SW1, SW2) out. Never panics.
    pub fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.transmit_into(command, &mut out);
        out
    }

    /// Like [`Card::transmit`], writing into a caller's buffer (cleared first).
    pub fn transmit_into(&mut self, command: &[u8], out: &mut Vec<u8>) {
        out.clear();
        // Any command but GET RESPONSE drops a pending response; GET RESPONSE consumes it.
        let pending = self.pending.take();
        let status = match self.handle(command, pending, out) {
            Ok(status) => status,
            Err(status) => {
                // Error status words never carry data, and an error ends any chain.
                out.clear();
                self.chain = None;
                self.pending = None;
                status
            }
        };
        out.extend_from_slice(&u16::from(status).to_be_bytes());
    }

    fn handle(
        &mut self,
        raw: &[u8],
        pending: Option<Vec<u8>>,
        out: &mut Vec<u8>,
    ) -> Result<Status, Status> {
        check_class(*raw.first().ok_or(Status::WrongLength)?)?;
        let apdu = Apdu::parse(raw).map_err(|_| Status::WrongLength)?;
        if apdu.data.len() > MAX_COMMAND_DATA {
            return Err(Status::WrongLength);
        }
        let header = [apdu.cla & !CLA_CHAIN, apdu.ins, apdu.p1, apdu.p2];
        let more_follows = apdu.cla & CLA_CHAIN != 0;
        let is_select = header[0] == CLA_ISO && apdu.ins == ins::SELECT;

        let body: Cow<[u8]> = match self.chain.take() {
            Some(mut chain) if chain.header == header => {
                if chain.data.len() + apdu.data.len() > MAX_COMMAND_DATA {
                    return Err(Status::WrongLength);
                }
                chain.data.extend_from_slice(apdu.data);
                if more_follows {
                    self.chain = Some(chain);
                    return Ok(Status::Success);
                }
                Cow::Owned(chain.data)
            }
            // SELECT starts afresh; anything else must continue the chain.
            Some(_) if !is_select => return Err(Status::LastCommandOfChainExpected),
            _ if more_follows => {
                self.chain = Some(Chain {
                    header,
                    data: apdu.data.to_vec(),
                });
                return Ok(Status::Success);
            }
            _ => Cow::Borrowed(apdu.data),
        };
        let command = Apdu {
            cla: header[0],
            data: &body,
            ..apdu
        };

        if command.cla == CLA_ISO && command.ins == ins::GET_RESPONSE {
            if command.p1p2() != 0 {
                return Err(Status::IncorrectP1OrP2Parameter);
            }
            if !command.data.is_empty() {
                return Err(Status::WrongLength);
            }
            let data = pending.ok_or(Status::ConditionsOfUseNotSatisfied)?;
            return Ok(self.respond(data, command.ne, out));
        }
        let data = self.applet.process(&command)?;
        Ok(self.respond(data, command.ne, out))
    }

    /// Answers min(Ne, available) bytes and keeps the rest for GET RESPONSE.
    fn respond(&mut self, mut data: Vec<u8>, ne: usize, out: &mut Vec<u8>) -> Status {
        let take = data.len().min(ne).min(MAX_RESPONSE_DATA);
        out.extend_from_slice(&data[..take]);
        if take == data.len() {
            return Status::Success;
        }
        let rest = data.split_off(take);
        // 61 00 stands for 256 bytes or more.
        let announced = if rest.len() >= 256 {
            0
        } else {
            rest.len() as u8
        };
        self.pending = Some(rest);
        Status::MoreAvailable(announced)
    }
}

/// Classes: 00 and 80, each with the chaining bit. Channels and secure messaging are not
/// supported; anything else is an unknown class.
fn check_class(cla: u8) -> Result<(), Status> {
    match cla {
        0xFF => Err(Status::ClassNotSupported),
        // First interindustry (00-1F) and our proprietary class laid out the same (80-9F):
        // b1-b2 logical channel, b3-b4 secure messaging, b5 chaining.
        0x00..=0x1F | 0x80..=0x9F => {
            if cla & 0x03 != 0 {
                Err(Status::LogicalChannelNotSupported)
            } else if cla & 0x0C != 0 {
                Err(Status::SecureMessagingNotSupported)
            } else {
                Ok(())
            }
        }
        // Further interindustry: logical channels 4 to 19.
        0x40..=0x7F => Err(Status::LogicalChannelNotSupported),
        _ => Err(Status::ClassNotSupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_byte_strings_answer_a_bare_status_word() {
        let mut card = Card::in_memory(Options {
            test_mode: true,
            rng_seed: Some(1),
        });
        for len in 0..=3usize {
            for first in [0x00u8, 0x10, 0x80, 0x90, 0xFF] {
                let cmd: Vec<u8> = std::iter::once(first)
                    .chain(std::iter::repeat(0xCA))
                    .take(len)
                    .collect();
                let want: &[u8] = if first == 0xFF && len > 0 {
                    &[0x6E, 0x00]
                } else {
                    &[0x67, 0x00]
                };
                assert_eq!(card.transmit(&cmd), want, "{cmd:02X?}");
            }
        }
    }

    #[test]
    fn remaining_retries_is_63cx() {
        assert_eq!(u16::from(Status::RemainingRetries(2)), 0x63C2);
        assert_eq!(u16::from(Status::MoreAvailable(0)), 0x6100);
    }
}
