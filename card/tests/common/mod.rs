//! What the in-process card tests share: the test keys and PIN, the card options, and a
//! transmit that checks every status word against the command table.
#![allow(dead_code)] // each test binary uses its own part

use apdu_spec::{commands, status};
use p256::ecdsa::SigningKey;
use valuecard_card::{Card, Options};

pub const PIN: &[u8] = b"123456";

/// The issuer the test cards are personalised by.
pub fn issuer() -> SigningKey {
    SigningKey::from_slice(&[0x5A; 32]).expect("a P-256 scalar")
}

/// An issuer the test cards do not trust.
pub fn other_issuer() -> SigningKey {
    SigningKey::from_slice(&[0x6B; 32]).expect("a P-256 scalar")
}

/// A card in test mode with a seeded random generator.
pub fn options(seed: u64) -> Options {
    Options {
        test_mode: true,
        rng_seed: Some(seed),
    }
}

/// Sends one APDU and splits the answer, checking that the status word is one the command
/// table lists for the command (or one of the ISO layer's).
pub fn transmit(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.transmit(apdu);
    let (data, sw) = r.split_at(r.len() - 2);
    let sw = u16::from_be_bytes([sw[0], sw[1]]);
    if let Some(def) = commands::lookup(apdu[0], apdu[1]) {
        assert!(
            def.status_words
                .iter()
                .chain(commands::ISO_LAYER_STATUS_WORDS)
                .any(|pattern| status::sw_matches(pattern, sw)),
            "{} answered {sw:04X}, which its status words do not list",
            def.name
        );
    }
    (data.to_vec(), sw)
}

/// Sends one APDU that must succeed; its answer data.
#[track_caller]
pub fn ok(card: &mut Card, apdu: &[u8]) -> Vec<u8> {
    let (data, sw) = transmit(card, apdu);
    assert_eq!(sw, 0x9000, "{}", hex::encode_upper(apdu));
    data
}
