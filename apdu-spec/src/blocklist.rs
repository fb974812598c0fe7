//! The issuer's block list (PROTOCOLS.md, invariant 5): cards and card makers that staff
//! blocked (a card lost or stolen, a card key known to be extracted, a maker no longer
//! trusted), signed and versioned by the issuer.
//!
//! Cards learn the list at each load (it travels in LOAD APPLY, and the load authorisation
//! covers its version), keep the newest one they have seen, and refuse START, AGREE and
//! CONFIRM when they or the other card are listed: by card id, or by the maker id of the
//! certificate. The center and the arbiter refuse the cards it names.
//!
//! Encoding: `F1 { 80 version (4), then in order any of 81 card id (32) and 82 maker id (32),
//! 9E signature (64) }`. The signature is the issuer's, ECDSA P-256 / SHA-256 over
//! `domain::BLOCK_LIST` and the encoding of every field before it, in order. Version n is
//! the list after the n-th block; a list holds the newest [`MAX_ENTRIES`] entries, which is
//! all the room a card keeps for it (2.3 KB). The center and the arbiter know every block,
//! however old.

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cert::Certificate;
use crate::tlv::{self, Tlv};
use crate::units::SIGNATURE_LEN;

pub const TEMPLATE: u16 = 0xF1;
const VERSION: u16 = 0x80;
const CARD: u16 = 0x81;
const MAKER: u16 = 0x82;
const SIGNATURE: u16 = 0x9E;

/// The most entries a list carries, and a card keeps.
pub const MAX_ENTRIES: usize = 64;

/// One blocked party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum BlockEntry {
    /// A card, by its card id.
    Card(#[serde(with = "hex::serde")] [u8; 32]),
    /// A card maker, by its maker id: every card it vouched for.
    Maker(#[serde(with = "hex::serde")] [u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockListError {
    #[error("the block list is not well formed")]
    Malformed,
    #[error("the block list has more than {MAX_ENTRIES} entries")]
    TooLong,
    #[error("the issuer's signature over the block list does not verify")]
    BadSignature,
}

/// A block list and the issuer's signature over it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    pub version: u32,
    pub entries: Vec<BlockEntry>,
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

impl BlockList {
    fn signed_fields(version: u32, entries: &[BlockEntry]) -> Vec<Tlv> {
        let mut fields = vec![tlv::primitive(VERSION, version.to_be_bytes())];
        for e in entries {
            fields.push(match e {
                BlockEntry::Card(id) => tlv::primitive(CARD, id.to_vec()),
                BlockEntry::Maker(id) => tlv::primitive(MAKER, id.to_vec()),
            });
        }
        fields
    }

    fn signed_message(&self) -> Vec<u8> {
        tlv::encode_all(&Self::signed_fields(self.version, &self.entries))
    }

    /// The issuer signs version `version` of its list: the newest [`MAX_ENTRIES`] entries
    /// of `entries`, oldest first. Deterministic (RFC 6979): the same version signs to the
    /// same bytes every time.
    pub fn sign(issuer: &SigningKey, version: u32, entries: &[BlockEntry]) -> Self {
        let newest = &entries[entries.len().saturating_sub(MAX_ENTRIES)..];
        let mut list = BlockList {
            version,
            entries: newest.to_vec(),
            signature: Vec::new(),
        };
        list.signature =
            crate::domain::sign(issuer, crate::domain::BLOCK_LIST, &list.signed_message()).to_vec();
        list
    }

    /// Checks the issuer's signature.
    pub fn verify(&self, issuer: &VerifyingKey) -> Result<(), BlockListError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(BlockListError::TooLong);
        }
        if crate::domain::verify(
            issuer,
            crate::domain::BLOCK_LIST,
            &self.signed_message(),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(BlockListError::BadSignature)
        }
    }

    pub fn to_tlv(&self) -> Tlv {
        let mut fields = Self::signed_fields(self.version, &self.entries);
        fields.push(tlv::primitive(SIGNATURE, self.signature.clone()));
        tlv::constructed(TEMPLATE, fields)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_tlv().to_vec()
    }

    /// Decodes one `F1` object: the version first, the entries in order, the signature last.
    pub fn from_tlv(object: &Tlv) -> Result<Self, BlockListError> {
        let fields = tlv::find_constructed(std::slice::from_ref(object), TEMPLATE)
            .ok_or(BlockListError::Malformed)?;
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            return Err(BlockListError::Malformed);
        };
        if fields.len() < 2
            || tlv::tag_number(first) != VERSION
            || tlv::tag_number(last) != SIGNATURE
        {
            return Err(BlockListError::Malformed);
        }
        if fields.len() - 2 > MAX_ENTRIES {
            return Err(BlockListError::TooLong);
        }
        let bad = |_| BlockListError::Malformed;
        let version = u32::from_be_bytes(
            tlv::require_array(std::slice::from_ref(first), VERSION).map_err(bad)?,
        );
        let signature: [u8; SIGNATURE_LEN] =
            tlv::require_array(std::slice::from_ref(last), SIGNATURE).map_err(bad)?;
        let mut entries = Vec::with_capacity(fields.len() - 2);
        for f in &fields[1..fields.len() - 1] {
            let t = tlv::tag_number(f);
            let id: [u8; 32] = tlv::require_array(std::slice::from_ref(f), t).map_err(bad)?;
            entries.push(match t {
                CARD => BlockEntry::Card(id),
                MAKER => BlockEntry::Maker(id),
                _ => return Err(BlockListError::Malformed),
            });
        }
        Ok(BlockList {
            version,
            entries,
            signature: signature.to_vec(),
        })
    }

    /// Decodes a byte string that is exactly one `F1` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, BlockListError> {
        match tlv::parse_all(bytes)
            .map_err(|_| BlockListError::Malformed)?
            .as_slice()
        {
            [object] => Self::from_tlv(object),
            _ => Err(BlockListError::Malformed),
        }
    }

    /// Whether the list names the card `card_id`.
    pub fn blocks_card(&self, card_id: &[u8; 32]) -> bool {
        self.entries.contains(&BlockEntry::Card(*card_id))
    }

    /// Whether the list names the card of `certificate`, or its maker.
    pub fn blocks(&self, certificate: &Certificate) -> bool {
        self.blocks_card(&certificate.card_id)
            || self.entries.contains(&BlockEntry::Maker(certificate.maker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: u8) -> SigningKey {
        SigningKey::from_slice(&[secret; 32]).expect("a scalar")
    }

    #[test]
    fn signed_versioned_and_bounded() {
        let issuer = key(0x11);
        let entries: Vec<BlockEntry> = (0..70u8)
            .map(|i| {
                if i % 7 == 0 {
                    BlockEntry::Maker([i; 32])
                } else {
                    BlockEntry::Card([i; 32])
                }
            })
            .collect();
        let list = BlockList::sign(&issuer, 70, &entries);
        assert_eq!(list.entries.len(), MAX_ENTRIES);
        assert_eq!(
            list.entries.first(),
            Some(&BlockEntry::Card([6; 32])),
            "the newest 64"
        );
        assert_eq!(list.verify(issuer.verifying_key()), Ok(()));
        let bytes = list.encode();
        assert!(bytes.len() < 2400, "{}", bytes.len());
        assert_eq!(BlockList::decode(&bytes), Ok(list.clone()));
        assert_eq!(
            BlockList::sign(&issuer, 70, &entries),
            list,
            "deterministic"
        );

        assert!(list.blocks_card(&[69; 32]));
        assert!(!list.blocks_card(&[5; 32]));
        let mut newer = list.clone();
        newer.version = 71;
        assert_eq!(
            newer.verify(issuer.verifying_key()),
            Err(BlockListError::BadSignature)
        );
        let mut fewer = list.clone();
        fewer.entries.pop();
        assert_eq!(
            fewer.verify(issuer.verifying_key()),
            Err(BlockListError::BadSignature)
        );
        assert_eq!(
            list.verify(key(0x33).verifying_key()),
            Err(BlockListError::BadSignature)
        );

        let empty = BlockList::sign(&issuer, 0, &[]);
        assert_eq!(BlockList::decode(&empty.encode()), Ok(empty.clone()));
        assert!(BlockList::decode(&bytes[..bytes.len() - 1]).is_err());
        let too_long = BlockList {
            entries: entries.clone(),
            ..list
        };
        assert_eq!(
            BlockList::decode(&too_long.encode()),
            Err(BlockListError::TooLong)
        );
    }
}
