//! Card provenance: the card maker's certificate over a card's attestation key, and the
//! card's attestation that its card key was made inside it (PROTOCOLS.md, "Keys": card maker
//! key and attestation key).
//!
//! At manufacture, a card receives an attestation key pair, the maker's certificate over the
//! attestation public key, and the scheme root's public key ([`Manufacture`]). Later, ATTEST
//! answers the maker's certificate and the attestation key's signature over the card's own
//! public key and a server's fresh challenge: the center registers only card keys that a
//! maker it trusts vouches for this way.
//!
//! | object | encoding | signed by | domain |
//! |---|---|---|---|
//! | maker certificate | `7F23 { 80 maker id (32), 81 attestation key (33), 5F37 signature }` | maker, over 80 and 81 | `valuecard/maker/v1` |
//! | attestation | `E9 { 7F23 maker certificate, 9E signature }` | attestation key, over `card public key (33) ‖ challenge` | `valuecard/attest/v1` |
//! | manufacture record (TEST RESET only) | `E4 { C5 root key (33), 80 attestation secret (32), 7F23 maker certificate }` | nobody | |
//!
//! The maker id is SHA-256 of the maker's compressed public key ([`maker_id`]).

use p256::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::cert::{decode_public_key, encode_public_key};
use crate::tlv::{self, Tlv};
use crate::units::SIGNATURE_LEN;

/// The maker certificate's template.
pub const CERTIFICATE: u16 = 0x7F23;
/// ATTEST's answer.
pub const ATTESTATION: u16 = 0xE9;
/// TEST RESET's optional body.
pub const MANUFACTURE: u16 = 0xE4;
/// The root key inside a manufacture record (and GET DATA C5).
pub const ROOT_KEY: u16 = 0xC5;
const MAKER_ID: u16 = 0x80;
const ATTESTATION_KEY: u16 = 0x81;
const ATTESTATION_SECRET: u16 = 0x80;
const SIGNATURE: u16 = 0x5F37;
const ATTESTATION_SIGNATURE: u16 = 0x9E;

/// The length of a maker certificate's encoding.
pub const CERTIFICATE_LEN: usize = 140;

/// SHA-256 of a maker's compressed public key: how certificates and block lists name it.
pub fn maker_id(maker: &VerifyingKey) -> [u8; 32] {
    Sha256::digest(encode_public_key(maker)).into()
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MakerError {
    #[error("the object is not well formed")]
    Malformed,
    #[error("the attestation key is not a P-256 point")]
    BadKey,
    #[error("the maker's signature over the attestation key does not verify")]
    BadCertificate,
    #[error("the attestation signature does not verify for this card key and challenge")]
    BadAttestation,
}

/// The maker's certificate over one card's attestation key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MakerCertificate {
    pub maker: [u8; 32],
    pub attestation_key: [u8; 33],
    pub signature: [u8; SIGNATURE_LEN],
}

impl MakerCertificate {
    fn signed_fields(maker: &[u8; 32], attestation_key: &[u8; 33]) -> Vec<Tlv> {
        vec![
            tlv::primitive(MAKER_ID, maker.to_vec()),
            tlv::primitive(ATTESTATION_KEY, attestation_key.to_vec()),
        ]
    }

    /// The maker certifies an attestation key it put into a card.
    pub fn issue(maker: &SigningKey, attestation_key: &VerifyingKey) -> Self {
        let id = maker_id(maker.verifying_key());
        let attestation_key = encode_public_key(attestation_key);
        let signature = crate::domain::sign(
            maker,
            crate::domain::MAKER,
            &tlv::encode_all(&Self::signed_fields(&id, &attestation_key)),
        );
        MakerCertificate {
            maker: id,
            attestation_key,
            signature,
        }
    }

    pub fn to_tlv(&self) -> Tlv {
        let mut fields = Self::signed_fields(&self.maker, &self.attestation_key);
        fields.push(tlv::primitive(SIGNATURE, self.signature.to_vec()));
        tlv::constructed(CERTIFICATE, fields)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_tlv().to_vec()
    }

    pub fn from_tlv(object: &Tlv) -> Result<Self, MakerError> {
        let fields = tlv::find_constructed(std::slice::from_ref(object), CERTIFICATE)
            .ok_or(MakerError::Malformed)?;
        if fields.len() != 3 {
            return Err(MakerError::Malformed);
        }
        let bad = |_| MakerError::Malformed;
        Ok(MakerCertificate {
            maker: tlv::require_array(fields, MAKER_ID).map_err(bad)?,
            attestation_key: tlv::require_array(fields, ATTESTATION_KEY).map_err(bad)?,
            signature: tlv::require_array(fields, SIGNATURE).map_err(bad)?,
        })
    }

    /// Decodes a byte string that is exactly one `7F23` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, MakerError> {
        match tlv::parse_all(bytes)
            .map_err(|_| MakerError::Malformed)?
            .as_slice()
        {
            [object] => Self::from_tlv(object),
            _ => Err(MakerError::Malformed),
        }
    }

    /// The attestation key, after checking that `maker` signed it. The caller has found
    /// `maker` by this certificate's maker id among the makers it trusts.
    pub fn verify(&self, maker: &VerifyingKey) -> Result<VerifyingKey, MakerError> {
        if maker_id(maker) != self.maker {
            return Err(MakerError::BadCertificate);
        }
        let key = decode_public_key(&self.attestation_key).ok_or(MakerError::BadKey)?;
        let message = tlv::encode_all(&Self::signed_fields(&self.maker, &self.attestation_key));
        if !crate::domain::verify(maker, crate::domain::MAKER, &message, &self.signature) {
            return Err(MakerError::BadCertificate);
        }
        Ok(key)
    }
}

/// What the attestation key signs: the card's public key, then the challenge.
fn attested(card_public_key: &[u8; 33], challenge: &[u8]) -> Vec<u8> {
    [card_public_key.as_slice(), challenge].concat()
}

/// ATTEST's answer: the maker's certificate and the attestation key's signature over the
/// card key and the challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    pub certificate: MakerCertificate,
    pub signature: [u8; SIGNATURE_LEN],
}

impl Attestation {
    /// The card attests its own key (ATTEST): only ever over the key it generated.
    pub fn sign(
        attestation_key: &SigningKey,
        certificate: MakerCertificate,
        card_public_key: &[u8; 33],
        challenge: &[u8],
    ) -> Self {
        Attestation {
            certificate,
            signature: crate::domain::sign(
                attestation_key,
                crate::domain::ATTEST,
                &attested(card_public_key, challenge),
            ),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        tlv::constructed(
            ATTESTATION,
            vec![
                self.certificate.to_tlv(),
                tlv::primitive(ATTESTATION_SIGNATURE, self.signature.to_vec()),
            ],
        )
        .to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MakerError> {
        let top = tlv::parse_all(bytes).map_err(|_| MakerError::Malformed)?;
        let [object] = top.as_slice() else {
            return Err(MakerError::Malformed);
        };
        let fields = tlv::find_constructed(std::slice::from_ref(object), ATTESTATION)
            .ok_or(MakerError::Malformed)?;
        let [a, b] = fields else {
            return Err(MakerError::Malformed);
        };
        let (cert, signature) = if tlv::tag_number(a) == CERTIFICATE {
            (a, b)
        } else {
            (b, a)
        };
        Ok(Attestation {
            certificate: MakerCertificate::from_tlv(cert)?,
            signature: tlv::require_array(std::slice::from_ref(signature), ATTESTATION_SIGNATURE)
                .map_err(|_| MakerError::Malformed)?,
        })
    }

    /// The maker id, after checking the maker's certificate under `maker` and the
    /// attestation of `card_public_key` over `challenge`.
    pub fn verify(
        &self,
        maker: &VerifyingKey,
        card_public_key: &[u8; 33],
        challenge: &[u8],
    ) -> Result<[u8; 32], MakerError> {
        let key = self.certificate.verify(maker)?;
        if !crate::domain::verify(
            &key,
            crate::domain::ATTEST,
            &attested(card_public_key, challenge),
            &self.signature,
        ) {
            return Err(MakerError::BadAttestation);
        }
        Ok(self.certificate.maker)
    }
}

/// What a card receives at manufacture: its attestation key, the maker's certificate over
/// it, and the scheme root's public key. A real card's maker writes it in the factory; the
/// emulator's is written by `valuecard-card provision`, or sent in TEST RESET's body to an
/// emulator in test mode.
#[derive(Clone, PartialEq, Eq)]
pub struct Manufacture {
    pub root_key: [u8; 33],
    pub attestation_secret: [u8; 32],
    pub certificate: MakerCertificate,
}

impl std::fmt::Debug for Manufacture {
    // The attestation secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manufacture")
            .field("root_key", &hex::encode(self.root_key))
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl Manufacture {
    /// A card made by `maker` for the scheme of `root`, with `attestation` as its
    /// attestation key.
    pub fn make(maker: &SigningKey, root: &VerifyingKey, attestation: &SigningKey) -> Self {
        Manufacture {
            root_key: encode_public_key(root),
            attestation_secret: attestation.to_bytes().into(),
            certificate: MakerCertificate::issue(maker, attestation.verifying_key()),
        }
    }

    /// Whether the parts fit: the root key and the certified attestation key are P-256
    /// points, and the secret is the certified key's.
    pub fn is_consistent(&self) -> bool {
        decode_public_key(&self.root_key).is_some()
            && SigningKey::from_slice(&self.attestation_secret).is_ok_and(|k| {
                encode_public_key(k.verifying_key()) == self.certificate.attestation_key
            })
    }

    pub fn encode(&self) -> Vec<u8> {
        tlv::constructed(
            MANUFACTURE,
            vec![
                tlv::primitive(ROOT_KEY, self.root_key.to_vec()),
                tlv::primitive(ATTESTATION_SECRET, self.attestation_secret.to_vec()),
                self.certificate.to_tlv(),
            ],
        )
        .to_vec()
    }

    /// Decodes a TEST RESET body; a record whose parts do not fit is malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, MakerError> {
        let top = tlv::parse_all(bytes).map_err(|_| MakerError::Malformed)?;
        let [object] = top.as_slice() else {
            return Err(MakerError::Malformed);
        };
        let fields = tlv::find_constructed(std::slice::from_ref(object), MANUFACTURE)
            .ok_or(MakerError::Malformed)?;
        if fields.len() != 3 {
            return Err(MakerError::Malformed);
        }
        let cert = fields
            .iter()
            .find(|f| tlv::tag_number(f) == CERTIFICATE)
            .ok_or(MakerError::Malformed)?;
        let bad = |_| MakerError::Malformed;
        let record = Manufacture {
            root_key: tlv::require_array(fields, ROOT_KEY).map_err(bad)?,
            attestation_secret: tlv::require_array(fields, ATTESTATION_SECRET).map_err(bad)?,
            certificate: MakerCertificate::from_tlv(cert)?,
        };
        if !record.is_consistent() {
            return Err(MakerError::BadKey);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: u8) -> SigningKey {
        SigningKey::from_slice(&[secret; 32]).expect("a scalar")
    }

    #[test]
    fn a_card_attests_its_key_and_only_its_maker_vouches() {
        let (maker, root, attestation, card) = (key(0x55), key(0x44), key(0x57), key(0x21));
        let made = Manufacture::make(&maker, root.verifying_key(), &attestation);
        assert!(made.is_consistent());
        assert_eq!(Manufacture::decode(&made.encode()), Ok(made.clone()));
        assert!(!format!("{made:?}").contains(&hex::encode([0x57u8; 32])));
        let cert_bytes = made.certificate.encode();
        assert_eq!(cert_bytes.len(), CERTIFICATE_LEN);
        assert_eq!(
            MakerCertificate::decode(&cert_bytes),
            Ok(made.certificate.clone())
        );

        let card_key = encode_public_key(card.verifying_key());
        let challenge = [0xA5; 32];
        let statement = Attestation::sign(
            &attestation,
            made.certificate.clone(),
            &card_key,
            &challenge,
        );
        assert_eq!(
            Attestation::decode(&statement.encode()),
            Ok(statement.clone())
        );
        assert_eq!(
            statement.verify(maker.verifying_key(), &card_key, &challenge),
            Ok(maker_id(maker.verifying_key()))
        );
        // Another maker, another key, another challenge: refused.
        assert_eq!(
            statement.verify(key(0x56).verifying_key(), &card_key, &challenge),
            Err(MakerError::BadCertificate)
        );
        let other_card = encode_public_key(key(0x22).verifying_key());
        assert_eq!(
            statement.verify(maker.verifying_key(), &other_card, &challenge),
            Err(MakerError::BadAttestation)
        );
        assert_eq!(
            statement.verify(maker.verifying_key(), &card_key, &[0xA4; 32]),
            Err(MakerError::BadAttestation)
        );
        // A certificate whose maker id names the trusted maker but that another key signed.
        let forged = MakerCertificate {
            maker: maker_id(maker.verifying_key()),
            ..MakerCertificate::issue(&key(0x56), attestation.verifying_key())
        };
        assert_eq!(
            forged.verify(maker.verifying_key()),
            Err(MakerError::BadCertificate)
        );

        // A record whose secret is not the certified key's is refused.
        let mismatched = Manufacture {
            attestation_secret: [0x58; 32],
            ..made
        };
        assert!(!mismatched.is_consistent());
        assert_eq!(
            Manufacture::decode(&mismatched.encode()),
            Err(MakerError::BadKey)
        );
    }
}
