//! Fair exchange between two cards (PROTOCOLS.md, "Fair exchange: card to card"): the values
//! offered, the agreement hash, the signatures of the five steps and of the recovery
//! requests, and the arbiter's verdict. The cards, the arbiter and the terminal all build
//! and check these bytes here.
//!
//! | what | bytes signed | signed by | domain |
//! |---|---|---|---|
//! | agreement Sa | `a ‖ s2` | responder B | `valuecard/agree/v1` |
//! | confirmation Se | `a ‖ s2` | initiator A | `valuecard/confirm/v1` |
//! | cancel request Sab | `a ‖ s2` | responder B | `valuecard/cancel/v1` |
//! | resolve request Sr | `a ‖ s2` | initiator A | `valuecard/resolve/v1` |
//! | verdict | `s2 ‖ a ‖ outcome` (1 byte: 01 complete, 02 cancel) | arbiter | `valuecard/verdict/v1` |
//!
//! `a = SHA-256(c ‖ id_A ‖ id_B)` with the value commitment `c = SHA-256(s1 ‖ V1 ‖ V2)`,
//! where s1 is A's 32-byte random, id_A and id_B the two card ids, and V1 and V2 the values'
//! encodings ([`encode_value`]): `E0 00` for nothing (a one-way payment), `E1 { 81 code,
//! 82 amount }` for units, `E2 { 81 code, 84 serial }` for a ticket. Every part has a fixed
//! length or is a TLV object, so the concatenation is unambiguous. `s2 = SHA-256(r2)`.
//!
//! The requests for the arbiter carry c and both certificates: the arbiter recomputes `a`
//! from them and so knows that the two cards it names are the session's initiator and
//! responder, and it learns no values (s1 is random, so c hides V1 and V2).
//!
//! The bodies and answers of the exchange commands, which carry these values, are in
//! [`messages`].

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tlv;
use crate::units::{self, SIGNATURE_LEN, UnitError, UnitValue};

pub mod messages;

/// Open sessions a card holds at most (PROTOCOLS.md asks for at least 4).
pub const MAX_SESSIONS: usize = 8;

/// Domain tags of the exchange's signatures.
pub mod domains {
    pub const AGREE: &str = "valuecard/agree/v1";
    pub const CONFIRM: &str = "valuecard/confirm/v1";
    pub const CANCEL: &str = "valuecard/cancel/v1";
    pub const RESOLVE: &str = "valuecard/resolve/v1";
    pub const VERDICT: &str = "valuecard/verdict/v1";
}

/// The tag of "nothing" in a value slot.
pub const NOTHING: u16 = 0xE0;

/// One side of an exchange: a value, or nothing.
pub type Value = Option<UnitValue>;

/// The encoding of a value in the agreement hash and on the wire: `E0 00`, or the value's
/// `E1` / `E2` object.
pub fn encode_value(value: &Value) -> Vec<u8> {
    value_to_tlv(value).to_vec()
}

/// The value's object: `E0 00`, or its `E1` / `E2`.
pub fn value_to_tlv(value: &Value) -> tlv::Tlv {
    match value {
        None => tlv::constructed(NOTHING, vec![]),
        Some(v) => v.to_tlv(),
    }
}

/// Decodes exactly one value object (`E0`, `E1` or `E2`), and checks its ranges.
pub fn decode_value(bytes: &[u8]) -> Result<Value, UnitError> {
    value_from_tlv(&units::single(bytes)?)
}

/// Decodes one value object (`E0`, `E1` or `E2`), and checks its ranges.
pub fn value_from_tlv(object: &tlv::Tlv) -> Result<Value, UnitError> {
    if tlv::tag_number(object) == NOTHING {
        return match object.value() {
            tlv::Value::Constructed(children) if children.is_empty() => Ok(None),
            _ => Err(tlv::TlvError::Malformed.into()),
        };
    }
    UnitValue::from_tlv(object).map(Some)
}

/// The value commitment `c = SHA-256(s1 ‖ V1 ‖ V2)`.
pub fn values_commitment(s1: &[u8; 32], v1: &Value, v2: &Value) -> [u8; 32] {
    Sha256::new()
        .chain_update(s1)
        .chain_update(encode_value(v1))
        .chain_update(encode_value(v2))
        .finalize()
        .into()
}

/// `a = SHA-256(c ‖ id_A ‖ id_B)`: what the arbiter recomputes from a request.
pub fn agreement_of(c: &[u8; 32], id_a: &[u8; 32], id_b: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(c)
        .chain_update(id_a)
        .chain_update(id_b)
        .finalize()
        .into()
}

/// `a = SHA-256(SHA-256(s1 ‖ V1 ‖ V2) ‖ id_A ‖ id_B)`: what the cards compute.
pub fn agreement(
    s1: &[u8; 32],
    v1: &Value,
    v2: &Value,
    id_a: &[u8; 32],
    id_b: &[u8; 32],
) -> [u8; 32] {
    agreement_of(&values_commitment(s1, v1, v2), id_a, id_b)
}

/// `s2 = SHA-256(r2)`.
pub fn commitment(r2: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(r2).into()
}

/// `a ‖ s2`: what Sa, Se, Sab and Sr sign, each under its own domain.
pub fn session_message(a: &[u8; 32], s2: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(a);
    out[32..].copy_from_slice(s2);
    out
}

/// A card's signature over `a ‖ s2` under `domain` (one of [`domains`] but VERDICT).
pub fn sign(key: &SigningKey, domain: &str, a: &[u8; 32], s2: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    units::sign(key, domain, &session_message(a, s2))
}

pub fn verify(
    key: &VerifyingKey,
    domain: &str,
    a: &[u8; 32],
    s2: &[u8; 32],
    signature: &[u8],
) -> bool {
    units::verify(key, domain, &session_message(a, s2), signature)
}

/// The arbiter's decision on one session, once and for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The exchange happens: A stores V2, B stores V1.
    Complete = 1,
    /// The exchange does not happen: A gets V1 back, B gets V2 back.
    Cancel = 2,
}

impl Outcome {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Outcome::Complete),
            2 => Some(Outcome::Cancel),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Cancel => "cancel",
        }
    }
}

/// `s2 ‖ a ‖ outcome`: what the arbiter signs.
pub fn verdict_message(s2: &[u8; 32], a: &[u8; 32], outcome: Outcome) -> [u8; 65] {
    let mut out = [0u8; 65];
    out[..32].copy_from_slice(s2);
    out[32..64].copy_from_slice(a);
    out[64] = outcome as u8;
    out
}

pub fn sign_verdict(
    arbiter: &SigningKey,
    s2: &[u8; 32],
    a: &[u8; 32],
    outcome: Outcome,
) -> [u8; SIGNATURE_LEN] {
    units::sign(arbiter, domains::VERDICT, &verdict_message(s2, a, outcome))
}

pub fn verify_verdict(
    arbiter: &VerifyingKey,
    s2: &[u8; 32],
    a: &[u8; 32],
    outcome: Outcome,
    signature: &[u8],
) -> bool {
    units::verify(
        arbiter,
        domains::VERDICT,
        &verdict_message(s2, a, outcome),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Generate;

    fn jpy(amount: u64) -> Value {
        Some(UnitValue::Asset {
            code: "JPY".into(),
            amount,
        })
    }

    #[test]
    fn values_round_trip_nothing_included() {
        for v in [
            None,
            jpy(300),
            Some(UnitValue::Ticket {
                code: "CONCERT".into(),
                serial: vec![1, 2],
            }),
        ] {
            assert_eq!(decode_value(&encode_value(&v)), Ok(v.clone()));
        }
        assert_eq!(encode_value(&None), [0xE0, 0x00]);
        assert!(decode_value(&[0xE0, 0x02, 0x81, 0x00]).is_err());
        assert!(decode_value(&[0xE0, 0x00, 0x00]).is_err());
    }

    #[test]
    fn the_agreement_binds_every_part() {
        let base = agreement(&[1; 32], &jpy(300), &None, &[2; 32], &[3; 32]);
        assert_ne!(
            base,
            agreement(&[9; 32], &jpy(300), &None, &[2; 32], &[3; 32])
        );
        assert_ne!(
            base,
            agreement(&[1; 32], &jpy(301), &None, &[2; 32], &[3; 32])
        );
        assert_ne!(
            base,
            agreement(&[1; 32], &None, &jpy(300), &[2; 32], &[3; 32])
        );
        assert_ne!(
            base,
            agreement(&[1; 32], &jpy(300), &None, &[3; 32], &[2; 32])
        );
    }

    #[test]
    fn the_agreement_is_the_commitment_and_the_two_cards() {
        let c = values_commitment(&[1; 32], &jpy(300), &None);
        assert_eq!(
            agreement(&[1; 32], &jpy(300), &None, &[2; 32], &[3; 32]),
            agreement_of(&c, &[2; 32], &[3; 32])
        );
        assert_ne!(c, values_commitment(&[1; 32], &None, &jpy(300)));
        assert_ne!(
            agreement_of(&c, &[2; 32], &[3; 32]),
            agreement_of(&c, &[2; 32], &[4; 32])
        );
    }

    #[test]
    fn signatures_are_bound_to_their_step() {
        let mut rng = rand::rng();
        let card = SigningKey::generate_from_rng(&mut rng);
        let (a, s2) = ([4; 32], commitment(&[5; 32]));
        let sa = sign(&card, domains::AGREE, &a, &s2);
        assert!(verify(card.verifying_key(), domains::AGREE, &a, &s2, &sa));
        for other in [domains::CONFIRM, domains::CANCEL, domains::RESOLVE] {
            assert!(
                !verify(card.verifying_key(), other, &a, &s2, &sa),
                "{other}"
            );
        }
        assert!(!verify(card.verifying_key(), domains::AGREE, &s2, &a, &sa));

        let arbiter = SigningKey::generate_from_rng(&mut rng);
        let v = sign_verdict(&arbiter, &s2, &a, Outcome::Complete);
        assert!(verify_verdict(
            arbiter.verifying_key(),
            &s2,
            &a,
            Outcome::Complete,
            &v
        ));
        assert!(!verify_verdict(
            arbiter.verifying_key(),
            &s2,
            &a,
            Outcome::Cancel,
            &v
        ));
        assert!(!verify_verdict(
            card.verifying_key(),
            &s2,
            &a,
            Outcome::Complete,
            &v
        ));
    }
}
