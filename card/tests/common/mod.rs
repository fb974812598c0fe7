//! What the in-process card tests share: the test keys and PIN, the card options, a
//! transmit that checks every status word against the command table, and the way to a
//! manufactured and to an active card.
#![allow(dead_code)] // each test binary uses its own part

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::blocklist::{BlockEntry, BlockList};
use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::{self, ins};
use apdu_spec::maker::{self, Manufacture};
use apdu_spec::objects::Personalization;
use apdu_spec::{CLA_PROPRIETARY, status};
use p256::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use valuecard_card::state::Persistent;
use valuecard_card::storage::{MemoryStorage, Storage};
use valuecard_card::{Card, Options};

pub const PIN: &[u8] = b"123456";

/// The scheme root whose key the test cards get at manufacture.
pub fn root() -> SigningKey {
    SigningKey::from_slice(&[0x4F; 32]).expect("a P-256 scalar")
}

/// A root the test cards do not know.
pub fn other_root() -> SigningKey {
    SigningKey::from_slice(&[0x3E; 32]).expect("a P-256 scalar")
}

/// The card maker of the test cards.
pub fn maker() -> SigningKey {
    SigningKey::from_slice(&[0x4D; 32]).expect("a P-256 scalar")
}

/// The maker id the test certificates carry.
pub fn maker_id() -> [u8; 32] {
    maker::maker_id(maker().verifying_key())
}

/// The manufacture record of the test card `seed`: its own attestation key, by [`maker`],
/// for [`root`].
pub fn manufacture(seed: u64) -> Manufacture {
    let secret: [u8; 32] = Sha256::digest(format!("attestation key {seed}")).into();
    let attestation = SigningKey::from_slice(&secret).expect("a P-256 scalar");
    Manufacture::make(&maker(), root().verifying_key(), &attestation)
}

/// A manufactured blank card in memory, in test mode with a seeded random generator.
pub fn new_card(seed: u64) -> Card {
    Card::provisioned(&manufacture(seed), options(seed)).expect("a card")
}

/// A manufactured blank card on `storage`, which must hold nothing yet.
pub fn card_on(mut storage: Box<dyn Storage + Send>, seed: u64) -> Card {
    valuecard_card::provision::provision(storage.as_mut(), &manufacture(seed))
        .expect("provisioned");
    Card::new(storage, options(seed)).expect("a card")
}

/// A state's bytes as the card commits them.
pub fn bytes(state: &Persistent) -> Vec<u8> {
    valuecard_card::applet::encode(state).expect("the state serialises")
}

/// A card restarted from `state` (volatile state lost).
pub fn card_from(
    state: &Persistent,
    seed: u64,
) -> Result<Card, valuecard_card::storage::StorageError> {
    Card::new(
        Box::new(MemoryStorage::with_state(bytes(state))),
        options(seed),
    )
}

/// The issuer's anchor for `issuer` by `root`: a role-bound key.
pub fn anchor(root: &SigningKey, role: AnchorRole, key: &SigningKey) -> Anchor {
    Anchor::issue(root, role, key.verifying_key())
}

/// Version `version` of the test issuer's block list.
pub fn block_list(version: u32, entries: &[BlockEntry]) -> BlockList {
    BlockList::sign(&issuer(), version, entries)
}

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

/// The PERSONALIZE body for a card key: the anchors of [`issuer`] and `arbiter` by
/// [`root`], a certificate by [`issuer`] and [`PIN`].
pub fn personalization(key: &VerifyingKey, arbiter: &SigningKey) -> (Certificate, Personalization) {
    personalization_naming(key, arbiter, maker_id())
}

/// The same, with a certificate that names `maker` as the card's maker.
pub fn personalization_naming(
    key: &VerifyingKey,
    arbiter: &SigningKey,
    maker: [u8; 32],
) -> (Certificate, Personalization) {
    let certificate = Certificate::issue(&issuer(), key, maker, 0, u64::MAX);
    let body = Personalization {
        issuer: anchor(&root(), AnchorRole::Issuer, &issuer()),
        arbiter: anchor(&root(), AnchorRole::Arbiter, arbiter),
        certificate: certificate.encode(),
        pin: PIN.to_vec(),
    };
    (certificate, body)
}

/// A command of ours, extended so that every body and answer fits.
pub fn proprietary(ins: u8, data: &[u8]) -> Vec<u8> {
    apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, 0, 0, data, 65536, true)
}

/// Makes a manufactured blank card's key and personalises it by [`issuer`] with `arbiter`'s
/// key and [`PIN`].
pub fn activate(card: &mut Card, arbiter: &SigningKey) -> Activated {
    activate_naming(card, arbiter, maker_id())
}

/// The same, with a certificate that names `maker` as the card's maker.
pub fn activate_naming(card: &mut Card, arbiter: &SigningKey, maker: [u8; 32]) -> Activated {
    let public = ok(card, &proprietary(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a P-256 key");
    let (certificate, body) = personalization_naming(&key, arbiter, maker);
    ok(card, &proprietary(ins::PERSONALIZE, &body.encode()));
    Activated {
        key,
        id: apdu_spec::card_id(&public),
        certificate,
    }
}
