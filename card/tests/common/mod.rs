//! What the in-process card tests share: the test keys and PIN, the card options, a
//! transmit that checks every status word against the command table, and the way to an
//! active card.
#![allow(dead_code)] // each test binary uses its own part

use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::{self, ins};
use apdu_spec::objects::Personalization;
use apdu_spec::{CLA_PROPRIETARY, status};
use p256::ecdsa::{SigningKey, VerifyingKey};
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

/// An active card: its key, its card id and the certificate it was personalised with.
pub struct Activated {
    pub key: VerifyingKey,
    pub id: [u8; 32],
    pub certificate: Certificate,
}

/// Makes a blank card's key and personalises it by [`issuer`] with `arbiter`'s key and
/// [`PIN`].
pub fn activate(card: &mut Card, arbiter: &SigningKey) -> Activated {
    let command =
        |ins, data: &[u8]| apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, 0, 0, data, 256, false);
    let public = ok(card, &command(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a P-256 key");
    let certificate = Certificate::issue(&issuer(), &key, 0, u64::MAX);
    let body = Personalization {
        issuer_key: cert::encode_public_key(issuer().verifying_key()).to_vec(),
        arbiter_key: cert::encode_public_key(arbiter.verifying_key()).to_vec(),
        certificate: certificate.encode(),
        pin: PIN.to_vec(),
    }
    .encode();
    ok(card, &command(ins::PERSONALIZE, &body));
    Activated {
        key,
        id: apdu_spec::card_id(&public),
        certificate,
    }
}
