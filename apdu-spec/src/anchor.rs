//! Trust anchors: the scheme root's signature over the issuer key and over the arbiter key
//! (PROTOCOLS.md, "Keys" and "Card life cycle").
//!
//! Every card receives the root's public key at manufacture (`maker::Manufacture`), never
//! from a terminal. PERSONALIZE then installs the issuer and arbiter keys only as anchors
//! that verify under that root, so a terminal cannot swap in keys of its own.
//!
//! Encoding: `7F22 { 80 role (1: 01 issuer, 02 arbiter), 81 public key (33, compressed
//! SEC1), 5F37 signature (64, r || s) }`, 108 bytes. The signature is ECDSA P-256 / SHA-256
//! by the root over `domain::ANCHOR` and the encoding of the fields 80 and 81 in that order:
//! the role is signed with the key, so the arbiter's anchor never passes for the issuer's.

use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::cert::{decode_public_key, encode_public_key};
use crate::tlv::{self, Tlv};
use crate::units::SIGNATURE_LEN;

pub const TEMPLATE: u16 = 0x7F22;
const ROLE: u16 = 0x80;
const PUBLIC_KEY: u16 = 0x81;
const SIGNATURE: u16 = 0x5F37;

/// The length of an anchor's encoding.
pub const ENCODED_LEN: usize = 108;

/// What a key is trusted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnchorRole {
    /// Signs card certificates, load authorisations, acknowledgements, tickets, block lists.
    Issuer = 1,
    /// Signs verdicts.
    Arbiter = 2,
}

impl AnchorRole {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(AnchorRole::Issuer),
            2 => Some(AnchorRole::Arbiter),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AnchorRole::Issuer => "issuer",
            AnchorRole::Arbiter => "arbiter",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error("the anchor is not well formed")]
    Malformed,
    #[error("the anchor's key is not a P-256 point")]
    BadKey,
    #[error("the anchor is for the {found}, not the {expected}")]
    WrongRole {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the root's signature over the anchor does not verify")]
    BadSignature,
}

/// A key the scheme root trusts for a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub role: AnchorRole,
    pub public_key: [u8; 33],
    pub signature: [u8; SIGNATURE_LEN],
}

impl Anchor {
    fn signed_fields(role: AnchorRole, public_key: &[u8; 33]) -> Vec<Tlv> {
        vec![
            tlv::primitive(ROLE, [role as u8]),
            tlv::primitive(PUBLIC_KEY, public_key.to_vec()),
        ]
    }

    fn signed_message(role: AnchorRole, public_key: &[u8; 33]) -> Vec<u8> {
        tlv::encode_all(&Self::signed_fields(role, public_key))
    }

    /// The root vouches for `key` in `role` (an offline step: `valuecard-backend keys init`).
    pub fn issue(root: &SigningKey, role: AnchorRole, key: &VerifyingKey) -> Self {
        let public_key = encode_public_key(key);
        let signature = crate::domain::sign(
            root,
            crate::domain::ANCHOR,
            &Self::signed_message(role, &public_key),
        );
        Anchor {
            role,
            public_key,
            signature,
        }
    }

    pub fn to_tlv(&self) -> Tlv {
        let mut fields = Self::signed_fields(self.role, &self.public_key);
        fields.push(tlv::primitive(SIGNATURE, self.signature.to_vec()));
        tlv::constructed(TEMPLATE, fields)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_tlv().to_vec()
    }

    /// Decodes one `7F22` object (its fields in any order, each once, nothing else).
    pub fn from_tlv(object: &Tlv) -> Result<Self, AnchorError> {
        let fields = tlv::find_constructed(std::slice::from_ref(object), TEMPLATE)
            .ok_or(AnchorError::Malformed)?;
        if fields.len() != 3 {
            return Err(AnchorError::Malformed);
        }
        let role = tlv::require_array::<1>(fields, ROLE).map_err(|_| AnchorError::Malformed)?[0];
        Ok(Anchor {
            role: AnchorRole::from_byte(role).ok_or(AnchorError::Malformed)?,
            public_key: tlv::require_array(fields, PUBLIC_KEY)
                .map_err(|_| AnchorError::Malformed)?,
            signature: tlv::require_array(fields, SIGNATURE).map_err(|_| AnchorError::Malformed)?,
        })
    }

    /// Decodes a byte string that is exactly one `7F22` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, AnchorError> {
        match tlv::parse_all(bytes)
            .map_err(|_| AnchorError::Malformed)?
            .as_slice()
        {
            [object] => Self::from_tlv(object),
            _ => Err(AnchorError::Malformed),
        }
    }

    /// The key, after checking that the root signed it for `role`.
    pub fn verify(
        &self,
        root: &VerifyingKey,
        role: AnchorRole,
    ) -> Result<VerifyingKey, AnchorError> {
        if self.role != role {
            return Err(AnchorError::WrongRole {
                expected: role.name(),
                found: self.role.name(),
            });
        }
        let key = decode_public_key(&self.public_key).ok_or(AnchorError::BadKey)?;
        if !crate::domain::verify(
            root,
            crate::domain::ANCHOR,
            &Self::signed_message(self.role, &self.public_key),
            &self.signature,
        ) {
            return Err(AnchorError::BadSignature);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: u8) -> SigningKey {
        SigningKey::from_slice(&[secret; 32]).expect("a scalar")
    }

    #[test]
    fn issue_encode_verify() {
        let (root, issuer) = (key(0x44), key(0x11));
        let anchor = Anchor::issue(&root, AnchorRole::Issuer, issuer.verifying_key());
        let bytes = anchor.encode();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(Anchor::decode(&bytes), Ok(anchor.clone()));
        assert_eq!(
            anchor.verify(root.verifying_key(), AnchorRole::Issuer),
            Ok(*issuer.verifying_key())
        );
        // The role is signed: the same key and signature under the other role fail.
        assert_eq!(
            anchor.verify(root.verifying_key(), AnchorRole::Arbiter),
            Err(AnchorError::WrongRole {
                expected: "arbiter",
                found: "issuer"
            })
        );
        let relabelled = Anchor {
            role: AnchorRole::Arbiter,
            ..anchor.clone()
        };
        assert_eq!(
            relabelled.verify(root.verifying_key(), AnchorRole::Arbiter),
            Err(AnchorError::BadSignature)
        );
        // Another root's anchor, or a key swapped under the root's signature, fails.
        let other = Anchor::issue(&key(0x33), AnchorRole::Issuer, issuer.verifying_key());
        assert_eq!(
            other.verify(root.verifying_key(), AnchorRole::Issuer),
            Err(AnchorError::BadSignature)
        );
        let swapped = Anchor {
            public_key: encode_public_key(key(0x33).verifying_key()),
            ..anchor.clone()
        };
        assert_eq!(
            swapped.verify(root.verifying_key(), AnchorRole::Issuer),
            Err(AnchorError::BadSignature)
        );
        assert!(Anchor::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Anchor::decode(&[bytes.as_slice(), &[0]].concat()).is_err());
    }
}
