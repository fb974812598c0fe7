//! The one source of truth for valuecard's wire format.
//!
//! The card, the terminal, `SPEC.md` and the conformance vectors all take their bytes from
//! here: nothing else re-types an INS byte, a tag or a status word.

pub mod anchor;
pub mod apdu;
pub mod atr;
pub mod auth;
pub mod blocklist;
pub mod cert;
pub mod commands;
pub mod domain;
pub mod exchange;
pub mod maker;
pub mod objects;
pub mod status;
pub mod tlv;
pub mod units;
pub mod vectors;

pub use apdu::{Apdu, ApduError, Case};
pub use commands::{COMMANDS, CommandDef};
pub use iso7816::Status;

/// The application identifier. RID `F0 56 43 41 52` is in the proprietary range (first nibble
/// F), PIX `44 01` names the valuecard applet, version 1.
pub const AID: &[u8] = &[0xF0, 0x56, 0x43, 0x41, 0x52, 0x44, 0x01];

/// The card's answer to reset: T=1, historical bytes `80 73 80 01 C0` (category 80,
/// card capabilities: command chaining and extended Lc/Le), TCK = 36.
pub const ATR: &[u8] = &[0x3B, 0x85, 0x01, 0x80, 0x73, 0x80, 0x01, 0xC0, 0x36];

/// Interindustry class used by the ISO commands (SELECT, GET RESPONSE, VERIFY, ...).
pub const CLA_ISO: u8 = 0x00;
/// Proprietary class used by valuecard's own commands.
pub const CLA_PROPRIETARY: u8 = 0x80;
/// CLA bit that marks "more of this command follows" (ISO 7816-4, 5.3.3).
pub const CLA_CHAIN: u8 = 0x10;

/// Largest command body the card accepts, whether in one extended APDU or as a chain.
pub const MAX_COMMAND_DATA: usize = 4096;
/// Largest response body in one response APDU: a vpcd frame holds 65535 bytes, SW included.
pub const MAX_RESPONSE_DATA: usize = 65533;
/// The receive buffer a PC/SC client needs for extended responses (MAX_BUFFER_SIZE_EXTENDED).
pub const MAX_BUFFER_SIZE_EXTENDED: usize = 65548;

/// PIN reference in P2 of VERIFY and CHANGE REFERENCE DATA (ISO 7816-4: 0x80 | local ref 1).
pub const PIN_REFERENCE: u8 = 0x81;
/// Wrong tries before the PIN blocks.
pub const PIN_MAX_TRIES: u8 = 3;
/// Allowed PIN lengths (ASCII digits).
pub const PIN_MIN_LEN: usize = 4;
pub const PIN_MAX_LEN: usize = 12;

/// Version of this wire format, reported in the FCI.
pub const SPEC_VERSION: u8 = 1;

/// SHA-256 of the compressed SEC1 public key: the card id (PROTOCOLS.md, "Keys").
pub fn card_id(compressed_public_key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(compressed_public_key).into()
}
