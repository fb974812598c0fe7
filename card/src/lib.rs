//! The valuecard applet emulator: the user's device.
//!
//! Layers, outermost first:
//! - [`vpcd`]: the virtual-card side of vsmartcard's vpcd protocol, so that pcscd sees a card;
//! - [`Card`] (in `iso`): ISO 7816-4 transport concerns (APDU encodings, classes, command
//!   chaining, Le, 61xx and GET RESPONSE), around
//! - [`applet::Applet`]: the card core, which handles complete commands only;
//! - [`state`] and [`storage`]: persistent state, committed atomically once per command.
//!
//! The same [`Card`] runs in-process, behind vpcd, and in the fuzz and property tests.
//!
//! # Manufactured cards
//!
//! A card is made by a card maker ([`provision`]): blank, with an attestation key, the
//! maker's certificate over it and the scheme root's key (`apdu_spec::maker::Manufacture`).
//! Without them it cannot attest its key (ATTEST) or be personalised (PERSONALIZE checks the
//! issuer and arbiter keys under the root). To make one:
//!
//! - in-process, for tests and in-process terminals: [`Card::provisioned`], or
//!   [`state::Persistent::manufactured`] committed to a storage of your own;
//! - in a state file, for `valuecard-card` behind vpcd: `valuecard-card provision --state
//!   FILE --maker-key FILE --root-key HEX` ([`provision::provision`]), with a maker key
//!   from `valuecard-card maker-key --out FILE`;
//! - in test mode, over the wire: TEST RESET with a manufacture record as its body.
//!
//! ```
//! use apdu_spec::maker::Manufacture;
//! use p256::ecdsa::SigningKey;
//! use valuecard_card::{Card, Options};
//!
//! let maker = SigningKey::from_slice(&[0x55; 32]).expect("a scalar");
//! let root = SigningKey::from_slice(&[0x44; 32]).expect("a scalar");
//! let attestation = SigningKey::from_slice(&[0x57; 32]).expect("a scalar");
//! let made = Manufacture::make(&maker, root.verifying_key(), &attestation);
//! let mut card = Card::provisioned(&made, Options::default()).expect("a card");
//! // GET DATA C5: the root key the card got at manufacture.
//! let answer = card.transmit(&[0x00, 0xCA, 0x00, 0xC5, 0x00]);
//! assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
//! ```

pub mod applet;
pub mod fuzz;
mod iso;
pub mod provision;
pub mod state;
pub mod storage;
pub mod vpcd;

pub use iso::{Card, Options};
