//! INTERNAL AUTHENTICATE: the card proves that it holds its key by signing a fresh challenge
//! from a server (the center registers a card this way, and asks again before it shows a
//! card's balance).
//!
//! The answer is 64 bytes, `r || s`, of ECDSA P-256 / SHA-256 by the card key over
//! `domain::tagged(domain::AUTH, &[challenge])`. p256 signs deterministically (RFC 6979), so
//! the card keeps nothing and writes nothing.

use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::domain;

/// The shortest challenge the card signs.
pub const CHALLENGE_MIN_LEN: usize = 16;
/// The longest challenge the card signs.
pub const CHALLENGE_MAX_LEN: usize = 64;
/// The length of the answer: `r || s`, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;

/// Whether the card signs a challenge of this length (any other answers 6700).
pub fn challenge_len_ok(len: usize) -> bool {
    (CHALLENGE_MIN_LEN..=CHALLENGE_MAX_LEN).contains(&len)
}

/// The bytes the card signs for a challenge: the AUTH domain tag, a zero byte, the challenge.
pub fn signed_message(challenge: &[u8]) -> Vec<u8> {
    domain::tagged(domain::AUTH, &[challenge])
}

/// The card's answer to a challenge: its signature, `r || s`.
pub fn sign(card_key: &SigningKey, challenge: &[u8]) -> [u8; SIGNATURE_LEN] {
    domain::sign(card_key, domain::AUTH, challenge)
}

/// Whether `signature` (64 bytes, `r || s`) is the card's answer to `challenge` under its
/// public key.
pub fn verify(public_key: &VerifyingKey, challenge: &[u8], signature: &[u8]) -> bool {
    domain::verify(public_key, domain::AUTH, challenge, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;
    use p256::elliptic_curve::Generate;

    #[test]
    fn sign_then_verify() {
        let mut rng = rand::rng();
        let card = SigningKey::generate_from_rng(&mut rng);
        let other = SigningKey::generate_from_rng(&mut rng);
        let challenge = [0xA5; CHALLENGE_MIN_LEN];
        let signature = sign(&card, &challenge);
        assert!(verify(card.verifying_key(), &challenge, &signature));
        assert_eq!(
            signature,
            sign(&card, &challenge),
            "RFC 6979: deterministic"
        );

        assert!(!verify(other.verifying_key(), &challenge, &signature));
        assert!(!verify(card.verifying_key(), &[0xA4; 16], &signature));
        assert!(!verify(card.verifying_key(), &challenge, &signature[..63]));
        assert!(!verify(card.verifying_key(), &challenge, &[0; 64]));
        let mut flipped = signature;
        flipped[10] ^= 1;
        assert!(!verify(card.verifying_key(), &challenge, &flipped));

        // The domain tag keeps a certificate signature (or any other) from passing as this.
        let plain: Signature = card.sign(&challenge);
        assert!(!verify(card.verifying_key(), &challenge, &plain.to_bytes()));
    }

    #[test]
    fn challenge_lengths() {
        assert!(!challenge_len_ok(CHALLENGE_MIN_LEN - 1));
        assert!(challenge_len_ok(CHALLENGE_MIN_LEN));
        assert!(challenge_len_ok(CHALLENGE_MAX_LEN));
        assert!(!challenge_len_ok(CHALLENGE_MAX_LEN + 1));
        assert_eq!(
            signed_message(b"0123456789abcdef"),
            b"valuecard/auth/v1\x000123456789abcdef"
        );
    }
}
