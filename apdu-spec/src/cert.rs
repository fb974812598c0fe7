//! The card certificate: a compact signed record (not X.509) of the card id, its public key,
//! its validity and the card maker that vouched for its key, signed by the issuer
//! (PROTOCOLS.md, "Keys").
//!
//! Encoding: `7F21 { 80 card id (32), 81 public key (33, compressed SEC1), 82 not before
//! (8, Unix seconds), 83 not after (8), 84 maker id (32), 5F37 signature (64, r || s) }`,
//! 194 bytes. The signature is ECDSA P-256 / SHA-256 by the issuer over
//! `domain::CERTIFICATE` and the encoding of the five fields 80..84 in that order. The maker
//! id (SHA-256 of the maker's compressed public key, `maker::maker_id`) names the maker whose
//! attestation the center checked at registration: a block list can name it, so that every
//! card of a maker that turned out untrustworthy is refused by the other cards and the
//! arbiter too.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::tlv::{self, Tlv};

const TEMPLATE: u16 = 0x7F21;
const CARD_ID: u16 = 0x80;
const PUBLIC_KEY: u16 = 0x81;
const NOT_BEFORE: u16 = 0x82;
const NOT_AFTER: u16 = 0x83;
const MAKER: u16 = 0x84;
const SIGNATURE: u16 = 0x5F37;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the certificate is not well formed")]
    Malformed,
    #[error("the public key in the certificate is not a P-256 point")]
    BadKey,
    #[error("the card id is not the hash of the certificate's public key")]
    IdMismatch,
    #[error("the issuer's signature does not verify")]
    BadSignature,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub card_id: [u8; 32],
    pub public_key: [u8; 33],
    pub not_before: u64,
    pub not_after: u64,
    /// The maker whose attestation vouched for the card key (`maker::maker_id`).
    pub maker: [u8; 32],
    pub signature: [u8; 64],
}

/// The length of a certificate's encoding: every field has a fixed length.
pub const ENCODED_LEN: usize = 194;

/// A public key in the one encoding valuecard uses: compressed SEC1, 33 bytes.
pub fn encode_public_key(key: &VerifyingKey) -> [u8; 33] {
    let point = key.to_sec1_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Parses a compressed SEC1 public key, in its one canonical form (02 or 03, then x): a key
/// has one encoding, so a card id (its hash) names one key and a key has one card id.
pub fn decode_public_key(bytes: &[u8]) -> Option<VerifyingKey> {
    if bytes.len() != 33 {
        return None;
    }
    let key = VerifyingKey::from_sec1_bytes(bytes).ok()?;
    (encode_public_key(&key).as_slice() == bytes).then_some(key)
}

impl Certificate {
    fn signed_fields(&self) -> Vec<Tlv> {
        vec![
            tlv::primitive(CARD_ID, self.card_id.to_vec()),
            tlv::primitive(PUBLIC_KEY, self.public_key.to_vec()),
            tlv::primitive(NOT_BEFORE, self.not_before.to_be_bytes()),
            tlv::primitive(NOT_AFTER, self.not_after.to_be_bytes()),
            tlv::primitive(MAKER, self.maker.to_vec()),
        ]
    }

    fn signed_message(&self) -> Vec<u8> {
        let tbs = tlv::encode_all(&self.signed_fields());
        crate::domain::tagged(crate::domain::CERTIFICATE, &[&tbs])
    }

    /// The issuer certifies a card key that the maker `maker` vouched for.
    pub fn issue(
        issuer: &SigningKey,
        card_key: &VerifyingKey,
        maker: [u8; 32],
        not_before: u64,
        not_after: u64,
    ) -> Self {
        let public_key = encode_public_key(card_key);
        let mut cert = Certificate {
            card_id: crate::card_id(&public_key),
            public_key,
            not_before,
            not_after,
            maker,
            signature: [0; 64],
        };
        let signature: Signature = issuer.sign(&cert.signed_message());
        cert.signature.copy_from_slice(&signature.to_bytes());
        cert
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_tlv().to_vec()
    }

    /// The `7F21` object.
    pub fn to_tlv(&self) -> Tlv {
        let mut fields = self.signed_fields();
        fields.push(tlv::primitive(SIGNATURE, self.signature.to_vec()));
        tlv::constructed(TEMPLATE, fields)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let top = tlv::parse_all(bytes).map_err(|_| CertError::Malformed)?;
        match top.as_slice() {
            [object] => Self::from_tlv(object),
            _ => Err(CertError::Malformed),
        }
    }

    /// Decodes one `7F21` object.
    pub fn from_tlv(object: &Tlv) -> Result<Self, CertError> {
        let fields = tlv::find_constructed(std::slice::from_ref(object), TEMPLATE)
            .ok_or(CertError::Malformed)?;
        let get = |t| tlv::require(fields, t).map_err(|_| CertError::Malformed);
        let array = |t| -> Result<[u8; 8], CertError> {
            get(t)?.try_into().map_err(|_| CertError::Malformed)
        };
        Ok(Certificate {
            card_id: get(CARD_ID)?.try_into().map_err(|_| CertError::Malformed)?,
            public_key: get(PUBLIC_KEY)?
                .try_into()
                .map_err(|_| CertError::Malformed)?,
            not_before: u64::from_be_bytes(array(NOT_BEFORE)?),
            not_after: u64::from_be_bytes(array(NOT_AFTER)?),
            maker: get(MAKER)?.try_into().map_err(|_| CertError::Malformed)?,
            signature: get(SIGNATURE)?
                .try_into()
                .map_err(|_| CertError::Malformed)?,
        })
    }

    /// The certified key, after checking the issuer's signature and that the card id is the
    /// hash of the key.
    pub fn verify(&self, issuer: &VerifyingKey) -> Result<VerifyingKey, CertError> {
        let key = decode_public_key(&self.public_key).ok_or(CertError::BadKey)?;
        if crate::card_id(&self.public_key) != self.card_id {
            return Err(CertError::IdMismatch);
        }
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| CertError::BadSignature)?;
        issuer
            .verify(&self.signed_message(), &signature)
            .map_err(|_| CertError::BadSignature)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Generate;

    #[test]
    fn a_key_has_one_encoding() {
        let key = SigningKey::from_slice(&[0x21; 32]).expect("a scalar");
        let canonical = encode_public_key(key.verifying_key());
        assert_eq!(decode_public_key(&canonical), Some(*key.verifying_key()));
        // The same point in SEC1's other 33-byte form (tag 05, "compact") is refused.
        let mut compact = canonical;
        compact[0] = 0x05;
        assert_eq!(decode_public_key(&compact), None);
        assert_eq!(decode_public_key(&canonical[..32]), None);
    }

    #[test]
    fn issue_encode_verify() {
        let mut rng = rand::rng();
        let issuer = SigningKey::generate_from_rng(&mut rng);
        let card = SigningKey::generate_from_rng(&mut rng);
        let cert = Certificate::issue(&issuer, card.verifying_key(), [4; 32], 1, 2);
        assert_eq!(cert.encode().len(), ENCODED_LEN);
        let decoded = Certificate::decode(&cert.encode()).expect("decodes");
        assert_eq!(decoded, cert);
        assert_eq!(
            decoded.verify(issuer.verifying_key()),
            Ok(*card.verifying_key())
        );

        let other = SigningKey::generate_from_rng(&mut rng);
        assert_eq!(
            decoded.verify(other.verifying_key()),
            Err(CertError::BadSignature)
        );
        let mut forged = decoded.clone();
        forged.not_after += 1;
        assert_eq!(
            forged.verify(issuer.verifying_key()),
            Err(CertError::BadSignature)
        );
        let mut other_maker = decoded.clone();
        other_maker.maker[0] ^= 1;
        assert_eq!(
            other_maker.verify(issuer.verifying_key()),
            Err(CertError::BadSignature)
        );
        let mut wrong_id = decoded;
        wrong_id.card_id[0] ^= 1;
        assert_eq!(
            wrong_id.verify(issuer.verifying_key()),
            Err(CertError::IdMismatch)
        );
    }
}
