//! Data objects: what GET DATA answers and PERSONALIZE carries.
//!
//! The card encodes them and the terminal decodes them with the same code, so the two can
//! never disagree on a tag.

use serde::{Deserialize, Serialize};

use crate::anchor::{Anchor, AnchorRole};
use crate::commands::LifeCycle;
use crate::tlv::{self, Tlv, TlvError};
use crate::units::InFlight;

/// Tags. GET DATA takes the tag of one object in P1 P2.
pub mod tag {
    /// The card's public key, compressed SEC1 (33 bytes).
    pub const PUBLIC_KEY: u16 = 0xC1;
    /// SHA-256 of the compressed public key.
    pub const CARD_ID: u16 = 0xC2;
    /// The card certificate (see `cert`).
    pub const CERTIFICATE: u16 = 0xC3;
    /// Life-cycle state, one byte.
    pub const LIFE_CYCLE: u16 = 0xC4;
    /// The issuer's public key, compressed SEC1.
    pub const ISSUER_KEY: u16 = 0xC7;
    /// The arbiter's public key, compressed SEC1.
    pub const ARBITER_KEY: u16 = 0xC8;
    /// The PIN: in PERSONALIZE only, never readable.
    pub const PIN: u16 = 0xC9;
    /// The scheme root's public key, compressed SEC1, installed at manufacture.
    pub const ROOT_KEY: u16 = crate::maker::ROOT_KEY;
    /// The maker's certificate over the card's attestation key (`7F23`), from manufacture.
    pub const MAKER_CERTIFICATE: u16 = 0xC6;
    /// Counters: load, unload, PIN tries left.
    pub const COUNTERS: u16 = 0xE5;
    /// The value store: assets and tickets.
    pub const VALUES: u16 = 0xE6;
    /// All readable objects at once (application related data).
    pub const ALL: u16 = 0x6E;

    /// Inside COUNTERS.
    pub const LOAD_COUNTER: u16 = 0x81;
    pub const UNLOAD_COUNTER: u16 = 0x82;
    pub const PIN_TRIES: u16 = 0x83;
    pub const BLOCK_LIST_VERSION: u16 = 0x84;

    /// Inside VALUES: one fungible asset, one ticket.
    pub const ASSET: u16 = 0xE1;
    pub const TICKET: u16 = 0xE2;
    /// Inside ASSET and TICKET.
    pub const ASSET_CODE: u16 = 0x81;
    pub const AVAILABLE: u16 = 0x82;
    pub const ESCROWED: u16 = 0x83;
    pub const SERIAL: u16 = 0x84;
    pub const ISSUER_SIGNATURE: u16 = 0x85;

    /// The FCI answered by SELECT.
    pub const FCI: u16 = 0x6F;
    pub const FCI_AID: u16 = 0x84;
    pub const FCI_PROPRIETARY: u16 = 0xA5;
    pub const FCI_SPEC_VERSION: u16 = 0x80;

    /// Inside CHANGE REFERENCE DATA.
    pub const OLD_PIN: u16 = 0x81;
    pub const NEW_PIN: u16 = 0x82;
}

/// The objects one GET DATA can name.
pub const READABLE: &[u16] = &[
    tag::PUBLIC_KEY,
    tag::CARD_ID,
    tag::CERTIFICATE,
    tag::LIFE_CYCLE,
    tag::ROOT_KEY,
    tag::MAKER_CERTIFICATE,
    tag::ISSUER_KEY,
    tag::ARBITER_KEY,
    tag::COUNTERS,
    tag::VALUES,
    crate::units::tag::IN_FLIGHT,
    tag::ALL,
];

/// The card's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The next load request's number.
    pub load: u32,
    /// The next unload receipt's number.
    pub unload: u32,
    /// PIN tries left (0 when no PIN is installed).
    pub pin_tries: u8,
    /// The version of the issuer's block list the card holds (0: none yet).
    pub block_list: u32,
}

impl Counters {
    pub fn to_tlv(&self) -> Tlv {
        tlv::constructed(
            tag::COUNTERS,
            vec![
                tlv::primitive(tag::LOAD_COUNTER, self.load.to_be_bytes()),
                tlv::primitive(tag::UNLOAD_COUNTER, self.unload.to_be_bytes()),
                tlv::primitive(tag::PIN_TRIES, [self.pin_tries]),
                tlv::primitive(tag::BLOCK_LIST_VERSION, self.block_list.to_be_bytes()),
            ],
        )
    }

    pub fn from_children(children: &[Tlv]) -> Result<Self, TlvError> {
        Ok(Counters {
            load: u32::from_be_bytes(tlv::require_array(children, tag::LOAD_COUNTER)?),
            unload: u32::from_be_bytes(tlv::require_array(children, tag::UNLOAD_COUNTER)?),
            pin_tries: tlv::require_array::<1>(children, tag::PIN_TRIES)?[0],
            block_list: u32::from_be_bytes(tlv::require_array(children, tag::BLOCK_LIST_VERSION)?),
        })
    }
}

/// A fungible asset on the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetBalance {
    /// Asset code, e.g. `JPY`: 1 to 8 printable ASCII bytes.
    pub code: String,
    /// Spendable amount.
    pub available: u64,
    /// Amount held in escrow by open exchanges: not spendable.
    pub escrowed: u64,
}

/// A unique value: a ticket the card holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub asset: String,
    #[serde(with = "hex::serde")]
    pub serial: Vec<u8>,
    /// The issuer's signature over the asset, the serial and the owner card.
    #[serde(with = "hex::serde")]
    pub issuer_signature: Vec<u8>,
    /// Held in escrow by an open exchange.
    pub escrowed: bool,
    /// The card the issuer issued the ticket to, when that is another card and this one
    /// received the ticket by exchange; `None` when it was issued to this card. With the
    /// signature, it is the proof the card shows when it passes the ticket on.
    #[serde(default, with = "hex_option", skip_serializing_if = "Option::is_none")]
    pub owner: Option<[u8; 32]>,
}

/// An optional 32-byte value as a hex string, or nothing.
mod hex_option {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
                Ok(out)
            })
            .transpose()
    }
}

/// The value store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Values {
    pub assets: Vec<AssetBalance>,
    pub tickets: Vec<Ticket>,
}

impl Values {
    pub fn to_tlv(&self) -> Tlv {
        let assets = self.assets.iter().map(|a| {
            tlv::constructed(
                tag::ASSET,
                vec![
                    tlv::primitive(tag::ASSET_CODE, a.code.as_bytes()),
                    tlv::primitive(tag::AVAILABLE, a.available.to_be_bytes()),
                    tlv::primitive(tag::ESCROWED, a.escrowed.to_be_bytes()),
                ],
            )
        });
        let tickets = self.tickets.iter().map(|t| {
            let mut fields = vec![
                tlv::primitive(tag::ASSET_CODE, t.asset.as_bytes()),
                tlv::primitive(tag::SERIAL, t.serial.clone()),
            ];
            if let Some(owner) = t.owner {
                fields.push(tlv::primitive(tag::CARD_ID, owner));
            }
            fields.push(tlv::primitive(
                tag::ISSUER_SIGNATURE,
                t.issuer_signature.clone(),
            ));
            fields.push(tlv::primitive(tag::ESCROWED, [u8::from(t.escrowed)]));
            tlv::constructed(tag::TICKET, fields)
        });
        tlv::constructed(tag::VALUES, assets.chain(tickets).collect())
    }

    pub fn from_children(children: &[Tlv]) -> Result<Self, TlvError> {
        let mut values = Values::default();
        for child in children {
            let tlv::Value::Constructed(fields) = child.value() else {
                return Err(TlvError::Malformed);
            };
            let code = String::from_utf8(tlv::require(fields, tag::ASSET_CODE)?.to_vec())
                .map_err(|_| TlvError::Malformed)?;
            match tlv::tag_number(child) {
                tag::ASSET => values.assets.push(AssetBalance {
                    code,
                    available: u64::from_be_bytes(tlv::require_array(fields, tag::AVAILABLE)?),
                    escrowed: u64::from_be_bytes(tlv::require_array(fields, tag::ESCROWED)?),
                }),
                tag::TICKET => values.tickets.push(Ticket {
                    asset: code,
                    serial: tlv::require(fields, tag::SERIAL)?.to_vec(),
                    issuer_signature: tlv::require(fields, tag::ISSUER_SIGNATURE)?.to_vec(),
                    escrowed: tlv::require_array::<1>(fields, tag::ESCROWED)?[0] != 0,
                    owner: tlv::find_array(fields, tag::CARD_ID)?,
                }),
                _ => return Err(TlvError::Malformed),
            }
        }
        Ok(values)
    }
}

/// Everything GET DATA 006E tells about a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardInfo {
    pub life_cycle: LifeCycle,
    /// From manufacture: the scheme root's key and the maker's certificate.
    pub root_key: Option<Vec<u8>>,
    pub maker_certificate: Option<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub card_id: Option<[u8; 32]>,
    pub certificate: Option<Vec<u8>>,
    pub issuer_key: Option<Vec<u8>>,
    pub arbiter_key: Option<Vec<u8>>,
    pub counters: Counters,
    pub values: Values,
    /// The pending load and the receipts not yet acknowledged.
    pub in_flight: InFlight,
}

impl CardInfo {
    /// The objects inside the 6E template; absent ones are left out.
    pub fn to_tlv(&self) -> Tlv {
        let mut objects = vec![tlv::primitive(tag::LIFE_CYCLE, [self.life_cycle as u8])];
        let optional = [
            (tag::ROOT_KEY, self.root_key.clone()),
            (tag::MAKER_CERTIFICATE, self.maker_certificate.clone()),
            (tag::PUBLIC_KEY, self.public_key.clone()),
            (tag::CARD_ID, self.card_id.map(|id| id.to_vec())),
            (tag::CERTIFICATE, self.certificate.clone()),
            (tag::ISSUER_KEY, self.issuer_key.clone()),
            (tag::ARBITER_KEY, self.arbiter_key.clone()),
        ];
        for (t, v) in optional {
            if let Some(v) = v {
                objects.push(tlv::primitive(t, v));
            }
        }
        objects.push(self.counters.to_tlv());
        objects.push(self.values.to_tlv());
        objects.push(self.in_flight.to_tlv());
        tlv::constructed(tag::ALL, objects)
    }

    /// Decodes the answer to GET DATA 006E.
    pub fn decode(bytes: &[u8]) -> Result<Self, TlvError> {
        let top = tlv::parse_all(bytes)?;
        let objects = tlv::find_constructed(&top, tag::ALL).ok_or(TlvError::Missing(tag::ALL))?;
        let life = tlv::require_array::<1>(objects, tag::LIFE_CYCLE)?[0];
        Ok(CardInfo {
            life_cycle: LifeCycle::from_byte(life).ok_or(TlvError::Malformed)?,
            root_key: tlv::find(objects, tag::ROOT_KEY).map(<[u8]>::to_vec),
            maker_certificate: tlv::find(objects, tag::MAKER_CERTIFICATE).map(<[u8]>::to_vec),
            public_key: tlv::find(objects, tag::PUBLIC_KEY).map(<[u8]>::to_vec),
            card_id: match tlv::find(objects, tag::CARD_ID) {
                Some(id) => Some(id.try_into().map_err(|_| TlvError::Length(tag::CARD_ID))?),
                None => None,
            },
            certificate: tlv::find(objects, tag::CERTIFICATE).map(<[u8]>::to_vec),
            issuer_key: tlv::find(objects, tag::ISSUER_KEY).map(<[u8]>::to_vec),
            arbiter_key: tlv::find(objects, tag::ARBITER_KEY).map(<[u8]>::to_vec),
            counters: Counters::from_children(
                tlv::find_constructed(objects, tag::COUNTERS)
                    .ok_or(TlvError::Missing(tag::COUNTERS))?,
            )?,
            values: Values::from_children(
                tlv::find_constructed(objects, tag::VALUES)
                    .ok_or(TlvError::Missing(tag::VALUES))?,
            )?,
            in_flight: match tlv::find_constructed(objects, crate::units::tag::IN_FLIGHT) {
                Some(children) => InFlight::from_children(children).map_err(|e| match e {
                    crate::units::UnitError::Malformed(e) => e,
                    _ => TlvError::Malformed,
                })?,
                None => InFlight::default(),
            },
        })
    }
}

/// The body of PERSONALIZE: `7F22 issuer anchor, 7F22 arbiter anchor, C3 certificate,
/// C9 PIN`. The anchors are the scheme root's signatures over the issuer and arbiter keys
/// (`anchor`); the card installs the keys only if they verify under the root key it got at
/// manufacture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Personalization {
    pub issuer: Anchor,
    pub arbiter: Anchor,
    pub certificate: Vec<u8>,
    pub pin: Vec<u8>,
}

impl Personalization {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            self.issuer.to_tlv(),
            self.arbiter.to_tlv(),
            tlv::primitive(tag::CERTIFICATE, self.certificate.clone()),
            tlv::primitive(tag::PIN, self.pin.clone()),
        ])
    }

    /// Exactly the four objects, the anchors in either order (told apart by their role).
    pub fn decode(bytes: &[u8]) -> Result<Self, TlvError> {
        let objects = tlv::parse_all(bytes)?;
        if objects.len() != 4 {
            return Err(TlvError::Malformed);
        }
        let mut issuer = None;
        let mut arbiter = None;
        for object in objects
            .iter()
            .filter(|o| tlv::tag_number(o) == crate::anchor::TEMPLATE)
        {
            let anchor = Anchor::from_tlv(object).map_err(|_| TlvError::Malformed)?;
            let slot = match anchor.role {
                AnchorRole::Issuer => &mut issuer,
                AnchorRole::Arbiter => &mut arbiter,
            };
            if slot.replace(anchor).is_some() {
                return Err(TlvError::Malformed);
            }
        }
        Ok(Personalization {
            issuer: issuer.ok_or(TlvError::Missing(crate::anchor::TEMPLATE))?,
            arbiter: arbiter.ok_or(TlvError::Missing(crate::anchor::TEMPLATE))?,
            certificate: tlv::require(&objects, tag::CERTIFICATE)?.to_vec(),
            pin: tlv::require(&objects, tag::PIN)?.to_vec(),
        })
    }
}

/// The body of CHANGE REFERENCE DATA: the current PIN and the new one.
pub fn encode_pin_change(old: &[u8], new: &[u8]) -> Vec<u8> {
    tlv::encode_all(&[
        tlv::primitive(tag::OLD_PIN, old),
        tlv::primitive(tag::NEW_PIN, new),
    ])
}

/// Splits a CHANGE REFERENCE DATA body into (current PIN, new PIN).
pub fn decode_pin_change(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TlvError> {
    let objects = tlv::parse_all(bytes)?;
    Ok((
        tlv::require(&objects, tag::OLD_PIN)?.to_vec(),
        tlv::require(&objects, tag::NEW_PIN)?.to_vec(),
    ))
}

/// Whether a PIN has an acceptable form: 4 to 12 ASCII digits.
pub fn pin_is_well_formed(pin: &[u8]) -> bool {
    (crate::PIN_MIN_LEN..=crate::PIN_MAX_LEN).contains(&pin.len())
        && pin.iter().all(u8::is_ascii_digit)
}

/// The FCI that SELECT answers.
pub fn fci(life_cycle: LifeCycle) -> Vec<u8> {
    tlv::constructed(
        tag::FCI,
        vec![
            tlv::primitive(tag::FCI_AID, crate::AID),
            tlv::constructed(
                tag::FCI_PROPRIETARY,
                vec![
                    tlv::primitive(tag::FCI_SPEC_VERSION, [crate::SPEC_VERSION]),
                    tlv::primitive(tag::LIFE_CYCLE, [life_cycle as u8]),
                ],
            ),
        ],
    )
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_info_round_trips() {
        let info = CardInfo {
            life_cycle: LifeCycle::Active,
            root_key: Some(vec![3; 33]),
            maker_certificate: Some(vec![0x7F, 0x23, 0x00]),
            public_key: Some(vec![2; 33]),
            card_id: Some([7; 32]),
            certificate: Some(vec![1, 2, 3]),
            issuer_key: Some(vec![3; 33]),
            arbiter_key: None,
            counters: Counters {
                load: 4,
                unload: 5,
                pin_tries: 3,
                block_list: 6,
            },
            values: Values {
                assets: vec![AssetBalance {
                    code: "JPY".into(),
                    available: 300,
                    escrowed: 20,
                }],
                tickets: vec![
                    Ticket {
                        asset: "TKT".into(),
                        serial: vec![9],
                        issuer_signature: vec![8; 64],
                        escrowed: true,
                        owner: None,
                    },
                    Ticket {
                        asset: "TKT".into(),
                        serial: vec![10],
                        issuer_signature: vec![7; 64],
                        escrowed: false,
                        owner: Some([6; 32]),
                    },
                ],
            },
            in_flight: InFlight::default(),
        };
        assert_eq!(CardInfo::decode(&info.to_tlv().to_vec()), Ok(info.clone()));
        // The state file keeps the owner only when there is one, and reads files from
        // before it existed.
        let text = toml::to_string(&info.values).expect("serialises");
        assert_eq!(text.matches("owner").count(), 1, "{text}");
        assert_eq!(
            toml::from_str::<Values>(&text).expect("deserialises"),
            info.values
        );
        let old = "assets = []\n[[tickets]]\nasset = \"T\"\nserial = \"01\"\n\
                   issuer_signature = \"02\"\nescrowed = false\n";
        let read: Values = toml::from_str(old).expect("an old state file");
        assert_eq!(read.tickets[0].owner, None);
    }

    #[test]
    fn pin_forms() {
        assert!(pin_is_well_formed(b"1234") && pin_is_well_formed(b"123456789012"));
        assert!(!pin_is_well_formed(b"123") && !pin_is_well_formed(b"12a4"));
        assert_eq!(
            decode_pin_change(&encode_pin_change(b"1234", b"98765")),
            Ok((b"1234".to_vec(), b"98765".to_vec()))
        );
    }
}
