//! Units between the center and a card (PROTOCOLS.md, "Units between center and card"): the
//! messages of LOAD REQUEST, LOAD APPLY, LOAD CANCEL, UNLOAD and UNLOAD ACK, how each is
//! signed, and the tickets the issuer signs.
//!
//! Every message is a TLV template, and every signature covers the template's bytes exactly
//! as they travel, behind its own domain tag:
//!
//! | message | template | signed by | domain |
//! |---|---|---|---|
//! | load request | `E7 { C2 card id, 86 counter, E1 or E2 value }` | card | `valuecard/load-request/v1` |
//! | load authorisation | the load request's bytes, then the block list's version (4 bytes) | issuer | `valuecard/load-auth/v2` |
//! | load cancellation | the load request's bytes | card | `valuecard/load-cancel/v1` |
//! | cancellation acknowledgement | the load request's bytes | issuer | `valuecard/load-cancel-ack/v1` |
//! | unload receipt | `E8 { C2 card id, 86 counter, E1 value }` | card | `valuecard/unload/v1` |
//! | unload acknowledgement | the receipt's bytes | issuer | `valuecard/unload-ack/v1` |
//! | ticket | `E2 { 81 asset, 84 serial, C2 owner card id }` | issuer | `valuecard/ticket/v1` |
//!
//! A value is `E1 { 81 asset code, 82 amount (8 bytes) }` (units of a fungible asset) or
//! `E2 { 81 asset code, 84 serial }` (one ticket). Signatures are ECDSA P-256 / SHA-256,
//! 64 bytes `r || s`, in tag `9E`.

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::objects::tag::{
    ASSET, ASSET_CODE, AVAILABLE, CARD_ID, ISSUER_SIGNATURE, SERIAL, TICKET,
};
use crate::tlv::{self, Tlv, TlvError};

/// The longest asset code: 1 to 8 printable ASCII bytes.
pub const ASSET_CODE_MAX_LEN: usize = 8;
/// The longest ticket serial: 1 to 32 bytes.
pub const SERIAL_MAX_LEN: usize = 32;
/// Fungible assets a card holds at most.
pub const MAX_ASSETS: usize = 8;
/// Tickets a card holds at most.
pub const MAX_TICKETS: usize = 16;
/// Receipts (unloads, load cancellations) a card keeps at most until they are acknowledged.
pub const MAX_RECEIPTS: usize = 8;
/// A signature: ECDSA P-256 `r || s`.
pub const SIGNATURE_LEN: usize = 64;

/// Tags of this module.
pub mod tag {
    /// A load request template.
    pub const LOAD_REQUEST: u16 = 0xE7;
    /// An unload receipt template.
    pub const UNLOAD_RECEIPT: u16 = 0xE8;
    /// GET DATA: everything in flight between card and center.
    pub const IN_FLIGHT: u16 = 0xEB;
    /// A signed load request: `EC { E7, 9E }`. LOAD REQUEST answers one.
    pub const SIGNED_LOAD: u16 = 0xEC;
    /// A signed load cancellation: `ED { E7, 9E }`. LOAD CANCEL answers one.
    pub const SIGNED_CANCEL: u16 = 0xED;
    /// A signed unload receipt: `EE { E8, 9E }`. UNLOAD answers one.
    pub const SIGNED_UNLOAD: u16 = 0xEE;
    /// A counter, 4 bytes big-endian.
    pub const COUNTER: u16 = 0x86;
    /// A signature, `r || s`.
    pub const SIGNATURE: u16 = 0x9E;
    /// The amount inside a value (same number as the store's "available").
    pub const AMOUNT: u16 = super::AVAILABLE;
}

/// P1 of UNLOAD ACK: which kind of receipt the acknowledgement is for.
pub mod ack_kind {
    pub const UNLOAD: u8 = 0x01;
    pub const LOAD_CANCEL: u8 = 0x02;
}

/// Domain tags of this module's signatures.
pub mod domains {
    pub const LOAD_REQUEST: &str = "valuecard/load-request/v1";
    /// Version 2 covers the block list's version after the request (`authorised`).
    pub const LOAD_AUTH: &str = "valuecard/load-auth/v2";
    pub const LOAD_CANCEL: &str = "valuecard/load-cancel/v1";
    pub const LOAD_CANCEL_ACK: &str = "valuecard/load-cancel-ack/v1";
    pub const UNLOAD: &str = "valuecard/unload/v1";
    pub const UNLOAD_ACK: &str = "valuecard/unload-ack/v1";
    pub const TICKET: &str = "valuecard/ticket/v1";
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("the message is not well formed: {0}")]
    Malformed(#[from] TlvError),
    #[error("the asset code must be 1 to 8 printable ASCII characters")]
    BadAssetCode,
    #[error("the amount must be more than zero")]
    ZeroAmount,
    #[error("the ticket serial must be 1 to 32 bytes")]
    BadSerial,
    #[error("a receipt carries units of an asset, not a ticket")]
    TicketInReceipt,
    #[error("unexpected template: tag {0:04X}")]
    WrongTemplate(u16),
}

/// What one load or unload moves: units of a fungible asset, or one ticket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum UnitValue {
    Asset {
        code: String,
        amount: u64,
    },
    Ticket {
        code: String,
        #[serde(with = "hex::serde")]
        serial: Vec<u8>,
    },
}

/// Whether an asset code has the allowed form.
pub fn asset_code_ok(code: &str) -> bool {
    (1..=ASSET_CODE_MAX_LEN).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_graphic())
}

impl UnitValue {
    pub fn code(&self) -> &str {
        match self {
            UnitValue::Asset { code, .. } | UnitValue::Ticket { code, .. } => code,
        }
    }

    /// Checks the ranges: a code of the allowed form, an amount above zero, a serial of 1
    /// to 32 bytes.
    pub fn validate(&self) -> Result<(), UnitError> {
        if !asset_code_ok(self.code()) {
            return Err(UnitError::BadAssetCode);
        }
        match self {
            UnitValue::Asset { amount: 0, .. } => Err(UnitError::ZeroAmount),
            UnitValue::Ticket { serial, .. }
                if serial.is_empty() || serial.len() > SERIAL_MAX_LEN =>
            {
                Err(UnitError::BadSerial)
            }
            _ => Ok(()),
        }
    }

    pub fn to_tlv(&self) -> Tlv {
        match self {
            UnitValue::Asset { code, amount } => tlv::constructed(
                ASSET,
                vec![
                    tlv::primitive(ASSET_CODE, code.as_bytes()),
                    tlv::primitive(tag::AMOUNT, amount.to_be_bytes()),
                ],
            ),
            UnitValue::Ticket { code, serial } => tlv::constructed(
                TICKET,
                vec![
                    tlv::primitive(ASSET_CODE, code.as_bytes()),
                    tlv::primitive(SERIAL, serial.clone()),
                ],
            ),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_tlv().to_vec()
    }

    /// Decodes one `E1` or `E2` value object, and checks its ranges.
    pub fn from_tlv(object: &Tlv) -> Result<Self, UnitError> {
        let tlv::Value::Constructed(fields) = object.value() else {
            return Err(TlvError::Malformed.into());
        };
        let code = String::from_utf8(tlv::require(fields, ASSET_CODE)?.to_vec())
            .map_err(|_| UnitError::BadAssetCode)?;
        let value = match tlv::tag_number(object) {
            ASSET => {
                exact_fields(fields, 2)?;
                UnitValue::Asset {
                    code,
                    amount: u64::from_be_bytes(tlv::require_array(fields, tag::AMOUNT)?),
                }
            }
            TICKET => {
                exact_fields(fields, 2)?;
                UnitValue::Ticket {
                    code,
                    serial: tlv::require(fields, SERIAL)?.to_vec(),
                }
            }
            other => return Err(UnitError::WrongTemplate(other)),
        };
        value.validate()?;
        Ok(value)
    }

    /// Decodes a body that is exactly one value object.
    pub fn decode(bytes: &[u8]) -> Result<Self, UnitError> {
        Self::from_tlv(&single(bytes)?)
    }
}

impl std::fmt::Display for UnitValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitValue::Asset { code, amount } => write!(f, "{amount} {code}"),
            UnitValue::Ticket { code, serial } => {
                write!(f, "ticket {code} #{}", hex::encode_upper(serial))
            }
        }
    }
}

fn exact_fields(fields: &[Tlv], n: usize) -> Result<(), TlvError> {
    if fields.len() == n {
        Ok(())
    } else {
        Err(TlvError::Malformed)
    }
}

/// The fields of `object`, which must be a `template`.
fn template_fields(object: &Tlv, template: u16) -> Result<&[Tlv], UnitError> {
    let found = tlv::tag_number(object);
    if found != template {
        return Err(UnitError::WrongTemplate(found));
    }
    match object.value() {
        tlv::Value::Constructed(fields) => Ok(fields),
        tlv::Value::Primitive(_) => Err(TlvError::Malformed.into()),
    }
}

/// The one object a byte string holds, with nothing after it.
pub(crate) fn single(bytes: &[u8]) -> Result<Tlv, UnitError> {
    let (object, rest) = Tlv::parse(bytes);
    let object = object.map_err(|_| TlvError::Malformed)?;
    if !rest.is_empty() {
        return Err(TlvError::Malformed.into());
    }
    Ok(object)
}

/// A message that moves units: a load request (`E7`) or an unload receipt (`E8`). Both
/// have the same fields; the template tag says which one it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnitMessage {
    #[serde(with = "hex::serde")]
    pub card_id: [u8; 32],
    pub counter: u32,
    pub value: UnitValue,
}

impl UnitMessage {
    fn to_tlv(&self, template: u16) -> Tlv {
        tlv::constructed(
            template,
            vec![
                tlv::primitive(CARD_ID, self.card_id),
                tlv::primitive(tag::COUNTER, self.counter.to_be_bytes()),
                self.value.to_tlv(),
            ],
        )
    }

    fn from_tlv(object: &Tlv, template: u16) -> Result<Self, UnitError> {
        let fields = template_fields(object, template)?;
        exact_fields(fields, 3)?;
        let value = fields
            .iter()
            .find(|f| matches!(tlv::tag_number(f), ASSET | TICKET))
            .ok_or(TlvError::Missing(ASSET))?;
        Ok(UnitMessage {
            card_id: tlv::require_array(fields, CARD_ID)?,
            counter: u32::from_be_bytes(tlv::require_array(fields, tag::COUNTER)?),
            value: UnitValue::from_tlv(value)?,
        })
    }

    /// The bytes of a load request (`E7`).
    pub fn encode_load(&self) -> Vec<u8> {
        self.to_tlv(tag::LOAD_REQUEST).to_vec()
    }

    /// The bytes of an unload receipt (`E8`).
    pub fn encode_unload(&self) -> Vec<u8> {
        self.to_tlv(tag::UNLOAD_RECEIPT).to_vec()
    }

    /// Decodes a load request: exactly one `E7` template, nothing after it.
    pub fn decode_load(bytes: &[u8]) -> Result<Self, UnitError> {
        Self::from_tlv(&single(bytes)?, tag::LOAD_REQUEST)
    }

    /// Decodes an unload receipt: exactly one `E8` template holding units, nothing after it.
    pub fn decode_unload(bytes: &[u8]) -> Result<Self, UnitError> {
        let receipt = Self::from_tlv(&single(bytes)?, tag::UNLOAD_RECEIPT)?;
        if matches!(receipt.value, UnitValue::Ticket { .. }) {
            return Err(UnitError::TicketInReceipt);
        }
        Ok(receipt)
    }
}

/// A message and a signature over it, as the card answers and keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The template's bytes, exactly as signed.
    #[serde(with = "hex::serde")]
    pub message: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedMessage {
    /// `wrapper { message, 9E signature }`.
    pub fn to_tlv(&self, wrapper: u16) -> Result<Tlv, UnitError> {
        let message = single(&self.message)?;
        Ok(tlv::constructed(
            wrapper,
            vec![message, tlv::primitive(tag::SIGNATURE, self.signature)],
        ))
    }

    fn from_children(children: &[Tlv]) -> Result<Self, UnitError> {
        exact_fields(children, 2)?;
        let message = children
            .iter()
            .find(|c| matches!(tlv::tag_number(c), tag::LOAD_REQUEST | tag::UNLOAD_RECEIPT))
            .ok_or(TlvError::Missing(tag::LOAD_REQUEST))?;
        Ok(SignedMessage {
            message: message.to_vec(),
            signature: tlv::require_array(children, tag::SIGNATURE)?,
        })
    }

    /// Decodes an answer that is exactly one `wrapper { message, 9E }`.
    pub fn decode(bytes: &[u8], wrapper: u16) -> Result<Self, UnitError> {
        Self::from_children(template_fields(&single(bytes)?, wrapper)?)
    }
}

/// Which kind of receipt a card keeps until the center acknowledges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// An unload: the card debited units that the center must credit.
    Unload,
    /// A cancelled load: the card will never apply it, and the center must refund it.
    LoadCancel,
}

impl ReceiptKind {
    /// For people: "unload", "cancelled load".
    pub fn describe(self) -> &'static str {
        match self {
            ReceiptKind::Unload => "unload",
            ReceiptKind::LoadCancel => "cancelled load",
        }
    }

    /// P1 of UNLOAD ACK.
    pub fn ack_p1(self) -> u8 {
        match self {
            ReceiptKind::Unload => ack_kind::UNLOAD,
            ReceiptKind::LoadCancel => ack_kind::LOAD_CANCEL,
        }
    }

    pub fn from_ack_p1(p1: u8) -> Option<Self> {
        match p1 {
            ack_kind::UNLOAD => Some(ReceiptKind::Unload),
            ack_kind::LOAD_CANCEL => Some(ReceiptKind::LoadCancel),
            _ => None,
        }
    }

    /// The wrapper tag of the signed message in answers and in GET DATA `EB`.
    pub fn wrapper(self) -> u16 {
        match self {
            ReceiptKind::Unload => tag::SIGNED_UNLOAD,
            ReceiptKind::LoadCancel => tag::SIGNED_CANCEL,
        }
    }

    /// The domain of the card's signature over the message.
    pub fn card_domain(self) -> &'static str {
        match self {
            ReceiptKind::Unload => domains::UNLOAD,
            ReceiptKind::LoadCancel => domains::LOAD_CANCEL,
        }
    }

    /// The domain of the issuer's acknowledgement.
    pub fn ack_domain(self) -> &'static str {
        match self {
            ReceiptKind::Unload => domains::UNLOAD_ACK,
            ReceiptKind::LoadCancel => domains::LOAD_CANCEL_ACK,
        }
    }
}

/// A receipt the card keeps until UNLOAD ACK: the message (an `E8` receipt, or the `E7`
/// request it cancelled), the card's signature, and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub kind: ReceiptKind,
    pub counter: u32,
    pub signed: SignedMessage,
}

impl Receipt {
    /// What the receipt says: an unload receipt, or the load request it cancels.
    pub fn decode(&self) -> Result<UnitMessage, UnitError> {
        match self.kind {
            ReceiptKind::Unload => UnitMessage::decode_unload(&self.signed.message),
            ReceiptKind::LoadCancel => UnitMessage::decode_load(&self.signed.message),
        }
    }
}

/// GET DATA `EB`: everything between card and center that is not finished: the pending
/// load request, if any, and the receipts not yet acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub pending_load: Option<SignedMessage>,
    pub receipts: Vec<Receipt>,
}

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.pending_load.is_none() && self.receipts.is_empty()
    }

    pub fn to_tlv(&self) -> Tlv {
        let mut children = Vec::new();
        if let Some(load) = &self.pending_load
            && let Ok(t) = load.to_tlv(tag::SIGNED_LOAD)
        {
            children.push(t);
        }
        for r in &self.receipts {
            if let Ok(t) = r.signed.to_tlv(r.kind.wrapper()) {
                children.push(t);
            }
        }
        tlv::constructed(tag::IN_FLIGHT, children)
    }

    pub fn from_children(children: &[Tlv]) -> Result<Self, UnitError> {
        let mut out = InFlight::default();
        for child in children {
            let tlv::Value::Constructed(fields) = child.value() else {
                return Err(TlvError::Malformed.into());
            };
            let signed = SignedMessage::from_children(fields)?;
            let kind = match tlv::tag_number(child) {
                tag::SIGNED_LOAD if out.pending_load.is_none() => {
                    UnitMessage::decode_load(&signed.message)?;
                    out.pending_load = Some(signed);
                    continue;
                }
                tag::SIGNED_CANCEL => (
                    ReceiptKind::LoadCancel,
                    UnitMessage::decode_load(&signed.message)?,
                ),
                tag::SIGNED_UNLOAD => (
                    ReceiptKind::Unload,
                    UnitMessage::decode_unload(&signed.message)?,
                ),
                other => return Err(UnitError::WrongTemplate(other)),
            };
            out.receipts.push(Receipt {
                kind: kind.0,
                counter: kind.1.counter,
                signed,
            });
        }
        Ok(out)
    }

    /// Decodes the answer to GET DATA `00EB`.
    pub fn decode(bytes: &[u8]) -> Result<Self, UnitError> {
        Self::from_children(template_fields(&single(bytes)?, tag::IN_FLIGHT)?)
    }
}

/// What a load authorisation signs: the request's bytes exactly as the card signed them,
/// then the version of the issuer's block list that travels with it, 4 bytes big-endian. A
/// terminal that withholds the list, or swaps in an older one, holds an authorisation that
/// does not verify.
pub fn authorised(request: &[u8], block_list_version: u32) -> Vec<u8> {
    [request, &block_list_version.to_be_bytes()].concat()
}

/// The body of LOAD APPLY: the issuer's authorisation, for a ticket the ticket's signature,
/// and the issuer's block list: `9E authorisation [85 ticket signature] F1 block list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadApply {
    pub authorisation: [u8; SIGNATURE_LEN],
    pub ticket_signature: Option<[u8; SIGNATURE_LEN]>,
    pub block_list: crate::blocklist::BlockList,
}

impl LoadApply {
    pub fn encode(&self) -> Vec<u8> {
        let mut objects = vec![tlv::primitive(tag::SIGNATURE, self.authorisation)];
        if let Some(t) = self.ticket_signature {
            objects.push(tlv::primitive(ISSUER_SIGNATURE, t));
        }
        objects.push(self.block_list.to_tlv());
        tlv::encode_all(&objects)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, UnitError> {
        let objects = tlv::parse_all(bytes)?;
        let expected = 2 + usize::from(tlv::find(&objects, ISSUER_SIGNATURE).is_some());
        exact_fields(&objects, expected)?;
        let list = objects
            .iter()
            .find(|o| tlv::tag_number(o) == crate::blocklist::TEMPLATE)
            .ok_or(TlvError::Missing(crate::blocklist::TEMPLATE))?;
        Ok(LoadApply {
            authorisation: tlv::require_array(&objects, tag::SIGNATURE)?,
            ticket_signature: tlv::find_array(&objects, ISSUER_SIGNATURE)?,
            block_list: crate::blocklist::BlockList::from_tlv(list)
                .map_err(|_| TlvError::Malformed)?,
        })
    }
}

/// The body of UNLOAD ACK (the receipt kind is in P1): `86 counter, 9E acknowledgement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub counter: u32,
    pub signature: [u8; SIGNATURE_LEN],
}

impl Acknowledgement {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::COUNTER, self.counter.to_be_bytes()),
            tlv::primitive(tag::SIGNATURE, self.signature),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, UnitError> {
        let objects = tlv::parse_all(bytes)?;
        exact_fields(&objects, 2)?;
        Ok(Acknowledgement {
            counter: u32::from_be_bytes(tlv::require_array(&objects, tag::COUNTER)?),
            signature: tlv::require_array(&objects, tag::SIGNATURE)?,
        })
    }
}

/// The signatures of this module's table: every message under its domain.
pub use crate::domain::{sign, verify};

/// The bytes a ticket's signature covers: `E2 { 81 asset, 84 serial, C2 owner }`.
pub fn ticket_message(code: &str, serial: &[u8], owner: &[u8; 32]) -> Vec<u8> {
    tlv::constructed(
        TICKET,
        vec![
            tlv::primitive(ASSET_CODE, code.as_bytes()),
            tlv::primitive(SERIAL, serial),
            tlv::primitive(CARD_ID, *owner),
        ],
    )
    .to_vec()
}

/// The issuer's signature on a ticket for `owner`.
pub fn sign_ticket(
    issuer: &SigningKey,
    code: &str,
    serial: &[u8],
    owner: &[u8; 32],
) -> [u8; SIGNATURE_LEN] {
    sign(
        issuer,
        domains::TICKET,
        &ticket_message(code, serial, owner),
    )
}

pub fn verify_ticket(
    issuer: &VerifyingKey,
    code: &str,
    serial: &[u8],
    owner: &[u8; 32],
    signature: &[u8],
) -> bool {
    verify(
        issuer,
        domains::TICKET,
        &ticket_message(code, serial, owner),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Generate;

    fn jpy(amount: u64) -> UnitValue {
        UnitValue::Asset {
            code: "JPY".into(),
            amount,
        }
    }

    #[test]
    fn messages_round_trip_and_refuse_the_wrong_template() {
        let m = UnitMessage {
            card_id: [7; 32],
            counter: 3,
            value: jpy(200),
        };
        let load = m.encode_load();
        assert_eq!(load[0], 0xE7);
        assert_eq!(UnitMessage::decode_load(&load), Ok(m.clone()));
        assert_eq!(
            UnitMessage::decode_unload(&load),
            Err(UnitError::WrongTemplate(0xE7))
        );
        assert_eq!(
            UnitMessage::decode_unload(&m.encode_unload()),
            Ok(m.clone())
        );
        let mut trailing = load.clone();
        trailing.push(0);
        assert!(UnitMessage::decode_load(&trailing).is_err());
        assert!(UnitMessage::decode_load(&load[..load.len() - 1]).is_err());

        let ticket = UnitMessage {
            value: UnitValue::Ticket {
                code: "CONCERT".into(),
                serial: vec![1, 2, 3],
            },
            ..m
        };
        assert_eq!(
            UnitMessage::decode_load(&ticket.encode_load()),
            Ok(ticket.clone())
        );
        assert_eq!(
            UnitMessage::decode_unload(&ticket.encode_unload()),
            Err(UnitError::TicketInReceipt)
        );
    }

    #[test]
    fn value_ranges() {
        assert_eq!(jpy(0).validate(), Err(UnitError::ZeroAmount));
        assert_eq!(
            UnitValue::decode(&jpy(0).encode()),
            Err(UnitError::ZeroAmount)
        );
        for bad in ["", "NINECHARS", "J Y", "J\u{e9}"] {
            let v = UnitValue::Asset {
                code: bad.into(),
                amount: 1,
            };
            assert_eq!(v.validate(), Err(UnitError::BadAssetCode), "{bad:?}");
        }
        let serial = |n| UnitValue::Ticket {
            code: "T".into(),
            serial: vec![0; n],
        };
        assert_eq!(serial(0).validate(), Err(UnitError::BadSerial));
        assert_eq!(serial(32).validate(), Ok(()));
        assert_eq!(serial(33).validate(), Err(UnitError::BadSerial));
        assert_eq!(UnitValue::decode(&jpy(5).encode()), Ok(jpy(5)));
        assert_eq!(jpy(5).to_string(), "5 JPY");
    }

    #[test]
    fn in_flight_round_trips() {
        let load = UnitMessage {
            card_id: [1; 32],
            counter: 4,
            value: jpy(10),
        };
        let unload = UnitMessage {
            counter: 9,
            ..load.clone()
        };
        let state = InFlight {
            pending_load: Some(SignedMessage {
                message: load.encode_load(),
                signature: [5; 64],
            }),
            receipts: vec![
                Receipt {
                    kind: ReceiptKind::LoadCancel,
                    counter: 2,
                    signed: SignedMessage {
                        message: UnitMessage {
                            counter: 2,
                            ..load.clone()
                        }
                        .encode_load(),
                        signature: [6; 64],
                    },
                },
                Receipt {
                    kind: ReceiptKind::Unload,
                    counter: 9,
                    signed: SignedMessage {
                        message: unload.encode_unload(),
                        signature: [7; 64],
                    },
                },
            ],
        };
        let bytes = state.to_tlv().to_vec();
        assert_eq!(InFlight::decode(&bytes), Ok(state.clone()));
        let answer = state.receipts[1]
            .signed
            .to_tlv(tag::SIGNED_UNLOAD)
            .map(|t| t.to_vec());
        assert_eq!(
            answer.map(|a| SignedMessage::decode(&a, tag::SIGNED_UNLOAD)),
            Ok(Ok(state.receipts[1].signed.clone()))
        );
        assert_eq!(
            InFlight::decode(&InFlight::default().to_tlv().to_vec()),
            Ok(InFlight::default())
        );
    }

    #[test]
    fn bodies_round_trip() {
        let issuer = SigningKey::from_slice(&[0x11; 32]).expect("a scalar");
        let block_list = crate::blocklist::BlockList::sign(
            &issuer,
            2,
            &[crate::blocklist::BlockEntry::Card([3; 32])],
        );
        let apply = LoadApply {
            authorisation: [1; 64],
            ticket_signature: Some([2; 64]),
            block_list: block_list.clone(),
        };
        assert_eq!(LoadApply::decode(&apply.encode()), Ok(apply));
        let plain = LoadApply {
            authorisation: [1; 64],
            ticket_signature: None,
            block_list,
        };
        assert_eq!(LoadApply::decode(&plain.encode()), Ok(plain.clone()));
        assert!(LoadApply::decode(&[0x9E, 0x01, 0x00]).is_err());
        let without_list = tlv::primitive(tag::SIGNATURE, [1; 64]).to_vec();
        assert!(LoadApply::decode(&without_list).is_err());
        assert_eq!(authorised(b"E7", 0x0102_0304), b"E7\x01\x02\x03\x04");
        let ack = Acknowledgement {
            counter: 7,
            signature: [3; 64],
        };
        assert_eq!(Acknowledgement::decode(&ack.encode()), Ok(ack));
    }

    #[test]
    fn signatures_are_bound_to_their_domain_and_owner() {
        let mut rng = rand::rng();
        let issuer = SigningKey::generate_from_rng(&mut rng);
        let message = b"E7 bytes";
        let s = sign(&issuer, domains::LOAD_AUTH, message);
        assert!(verify(
            issuer.verifying_key(),
            domains::LOAD_AUTH,
            message,
            &s
        ));
        assert!(!verify(
            issuer.verifying_key(),
            domains::LOAD_CANCEL_ACK,
            message,
            &s
        ));
        assert!(!verify(
            issuer.verifying_key(),
            domains::LOAD_AUTH,
            b"other",
            &s
        ));
        assert!(!verify(
            issuer.verifying_key(),
            domains::LOAD_AUTH,
            message,
            &s[..63]
        ));

        let t = sign_ticket(&issuer, "CONCERT", &[1], &[9; 32]);
        assert!(verify_ticket(
            issuer.verifying_key(),
            "CONCERT",
            &[1],
            &[9; 32],
            &t
        ));
        assert!(!verify_ticket(
            issuer.verifying_key(),
            "CONCERT",
            &[1],
            &[8; 32],
            &t
        ));
        assert!(!verify_ticket(
            issuer.verifying_key(),
            "CONCERT",
            &[2],
            &[9; 32],
            &t
        ));
    }
}
