//! Tokens: the message the bank blind-signs, and the RFC 9474 steps around it.
//!
//! The scheme is RSABSSA-SHA384-PSS-Randomized (RFC 9474, section 5), through the
//! `blind-rsa-signatures` crate: the terminal blinds and finalizes, the bank blind-signs,
//! the center verifies. Nothing here is hand-written cryptography; this module fixes the
//! message layout, the key id, and which variant is used.
//!
//! Token message: `tagged("valuecard/token/v1", nonce (32) || card id (32) || bank key id
//! (32) || amount (8, big-endian))`. The domain tag doubles as the format's version.

use std::fmt;

use apdu_spec::domain;
use blind_rsa_signatures::{
    BlindMessage, BlindSignature, BlindingResult, KeyPairSha384PSSRandomized, MessageRandomizer,
    PublicKeySha384PSSRandomized, Secret, SecretKeySha384PSSRandomized, Signature,
};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Modulus size of the keys the bank makes. Keys of 2048 to 4096 bits are accepted, as
/// RFC 9474 allows (its published test vectors use 4096).
pub const MODULUS_BITS: usize = 2048;
const ACCEPTED_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=512;

const FIELDS_LEN: usize = 32 + 32 + 32 + 8;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token message is not {expected} bytes of the valuecard/token/v1 layout")]
    Malformed { expected: usize },
    #[error("the bank key is not an RSA-PSS public key of 2048 to 4096 bits")]
    BadKey,
    #[error("the blind signature does not unblind to a valid signature")]
    BadBlindSignature,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the blinded message is not one this key can sign")]
    BadBlindedMessage,
    #[error("the blinding failed")]
    Blinding,
}

/// The content of a token: who gets credited (the card id), how much, under which bank key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenMessage {
    /// Random; the center records it as redeemed, once.
    pub nonce: [u8; 32],
    pub card_id: [u8; 32],
    pub key_id: [u8; 32],
    pub amount: u64,
}

impl TokenMessage {
    /// A message with a fresh random nonce.
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        card_id: [u8; 32],
        key_id: [u8; 32],
        amount: u64,
    ) -> Self {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        TokenMessage {
            nonce,
            card_id,
            key_id,
            amount,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        domain::tagged(
            domain::TOKEN,
            &[
                &self.nonce,
                &self.card_id,
                &self.key_id,
                &self.amount.to_be_bytes(),
            ],
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        let prefix_len = domain::TOKEN.len() + 1;
        let expected = prefix_len + FIELDS_LEN;
        let malformed = TokenError::Malformed { expected };
        if bytes.len() != expected || bytes[..prefix_len] != domain::tagged(domain::TOKEN, &[])[..]
        {
            return Err(malformed);
        }
        let fields = &bytes[prefix_len..];
        let take32 = |at: usize| -> [u8; 32] {
            let mut out = [0u8; 32];
            out.copy_from_slice(&fields[at..at + 32]);
            out
        };
        let mut amount = [0u8; 8];
        amount.copy_from_slice(&fields[96..104]);
        Ok(TokenMessage {
            nonce: take32(0),
            card_id: take32(32),
            key_id: take32(64),
            amount: u64::from_be_bytes(amount),
        })
    }
}

/// The id of a denomination key: SHA-256 of its SubjectPublicKeyInfo (PROTOCOLS.md, "Keys").
pub fn key_id(spki: &[u8]) -> [u8; 32] {
    Sha256::digest(spki).into()
}

/// The natural key of a withdrawal: SHA-256 of the blinded message.
pub fn blinded_message_hash(blinded_message: &[u8]) -> [u8; 32] {
    Sha256::digest(blinded_message).into()
}

/// What the terminal keeps between blinding and finalizing. `secret` is the blinding
/// inverse: whoever holds it and the blinded message can link the token to the withdrawal,
/// so it stays in the terminal's journal and is never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blinded {
    #[serde(with = "hex")]
    pub blinded_message: Vec<u8>,
    #[serde(with = "hex")]
    pub secret: Vec<u8>,
    /// RFC 9474's message randomizer (the "Randomized" variant's 32-byte prefix).
    #[serde(with = "hex")]
    pub randomizer: [u8; 32],
}

impl fmt::Debug for Blinded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blinded")
            .field("blinded_message", &hex::encode(&self.blinded_message))
            .field("secret", &"<redacted>")
            .field("randomizer", &hex::encode(self.randomizer))
            .finish()
    }
}

/// A bank denomination key, public half. Always a valid 2048-bit RSA-PSS key.
#[derive(Clone, Debug)]
pub struct DenominationPublicKey {
    key: PublicKeySha384PSSRandomized,
    spki: Vec<u8>,
    id: [u8; 32],
}

impl DenominationPublicKey {
    pub fn from_spki(spki: &[u8]) -> Result<Self, TokenError> {
        let key = PublicKeySha384PSSRandomized::from_spki(spki).map_err(|_| TokenError::BadKey)?;
        Self::new(key)
    }

    fn new(key: PublicKeySha384PSSRandomized) -> Result<Self, TokenError> {
        let spki = key.to_spki().map_err(|_| TokenError::BadKey)?;
        if !ACCEPTED_MODULUS_BYTES.contains(&key.components().n().len()) {
            return Err(TokenError::BadKey);
        }
        let id = key_id(&spki);
        Ok(DenominationPublicKey { key, spki, id })
    }

    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Length in bytes of a blinded message, a blind signature and a signature.
    pub fn modulus_bytes(&self) -> usize {
        self.key.components().n().len()
    }

    /// Blinds `message` (RFC 9474, Blind). The random message randomizer, PSS salt and
    /// blinding factor come from `rng`, in that order.
    pub fn blind<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
    ) -> Result<Blinded, TokenError> {
        let result = self
            .key
            .blind(rng, message)
            .map_err(|_| TokenError::Blinding)?;
        let randomizer = result.msg_randomizer.ok_or(TokenError::Blinding)?.0;
        Ok(Blinded {
            blinded_message: result.blind_message.0,
            secret: result.secret.0,
            randomizer,
        })
    }

    /// Unblinds the bank's answer (RFC 9474, Finalize), and checks the result.
    pub fn finalize(
        &self,
        blind_signature: &[u8],
        blinded: &Blinded,
        message: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let result = BlindingResult {
            blind_message: BlindMessage(blinded.blinded_message.clone()),
            secret: Secret(blinded.secret.clone()),
            msg_randomizer: Some(MessageRandomizer(blinded.randomizer)),
        };
        let signature = self
            .key
            .finalize(&BlindSignature(blind_signature.to_vec()), &result, message)
            .map_err(|_| TokenError::BadBlindSignature)?;
        Ok(signature.0)
    }

    /// Checks a finished token signature (RFC 9474, Verify).
    pub fn verify(
        &self,
        signature: &[u8],
        randomizer: &[u8; 32],
        message: &[u8],
    ) -> Result<(), TokenError> {
        self.key
            .verify(
                &Signature(signature.to_vec()),
                Some(MessageRandomizer(*randomizer)),
                message,
            )
            .map_err(|_| TokenError::BadSignature)
    }
}

/// A bank denomination key with its private half. Only the bank holds one.
#[derive(Clone)]
pub struct DenominationSecretKey {
    key: SecretKeySha384PSSRandomized,
    public: DenominationPublicKey,
}

impl fmt::Debug for DenominationSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DenominationSecretKey")
            .field("id", &hex::encode(self.public.id))
            .field("private", &"<redacted>")
            .finish()
    }
}

impl DenominationSecretKey {
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<Self, TokenError> {
        let pair = KeyPairSha384PSSRandomized::generate(rng, MODULUS_BITS)
            .map_err(|_| TokenError::BadKey)?;
        Self::from_secret(pair.sk)
    }

    /// A key from its parts, as RFC 9474's test vectors give them.
    pub fn from_rsa(key: rsa::RsaPrivateKey) -> Result<Self, TokenError> {
        Self::from_secret(SecretKeySha384PSSRandomized::new(key))
    }

    fn from_secret(key: SecretKeySha384PSSRandomized) -> Result<Self, TokenError> {
        let public = DenominationPublicKey::new(key.public_key().map_err(|_| TokenError::BadKey)?)?;
        Ok(DenominationSecretKey { key, public })
    }

    /// PKCS#8 DER. This is the secret: it goes to the bank's database and nowhere else.
    pub fn to_der(&self) -> Result<Vec<u8>, TokenError> {
        self.key.to_der().map_err(|_| TokenError::BadKey)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, TokenError> {
        Self::from_secret(
            SecretKeySha384PSSRandomized::from_der(der).map_err(|_| TokenError::BadKey)?,
        )
    }

    pub fn public(&self) -> &DenominationPublicKey {
        &self.public
    }

    /// RFC 9474 BlindSign: deterministic for a given blinded message, so that a retried
    /// withdrawal gets the same answer even if the bank had not stored the first.
    pub fn blind_sign(&self, blinded_message: &[u8]) -> Result<Vec<u8>, TokenError> {
        if blinded_message.len() != self.public.modulus_bytes() {
            return Err(TokenError::BadBlindedMessage);
        }
        self.key
            .blind_sign(blinded_message)
            .map(|s| s.0)
            .map_err(|_| TokenError::BadBlindedMessage)
    }
}

/// Splits `amount` into the given denominations, largest first (greedy). With powers of two
/// this is the binary expansion, which needs the fewest tokens. `None` if it does not add up.
pub fn split_amount(amount: u64, denominations: &[u64]) -> Option<Vec<u64>> {
    let mut sorted: Vec<u64> = denominations.iter().copied().filter(|d| *d > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    let mut rest = amount;
    let mut pieces = Vec::new();
    for d in sorted {
        while rest >= d {
            pieces.push(d);
            rest -= d;
        }
    }
    (rest == 0 && amount > 0).then_some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_and_rejects_other_layouts() {
        let mut rng = rand::rng();
        let m = TokenMessage::new(&mut rng, [1; 32], [2; 32], 256);
        let bytes = m.encode();
        assert_eq!(TokenMessage::decode(&bytes), Ok(m.clone()));
        assert!(TokenMessage::decode(&bytes[1..]).is_err());
        let mut other_tag = bytes.clone();
        other_tag[10] ^= 1;
        assert!(TokenMessage::decode(&other_tag).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(TokenMessage::decode(&longer).is_err());
    }

    #[test]
    fn split_is_binary_expansion_for_powers_of_two() {
        let powers: Vec<u64> = (0..21).map(|i| 1u64 << i).collect();
        assert_eq!(split_amount(300, &powers), Some(vec![256, 32, 8, 4]));
        assert_eq!(split_amount(1, &powers), Some(vec![1]));
        assert_eq!(split_amount(0, &powers), None);
        assert_eq!(split_amount(3, &[2]), None);
    }
}
