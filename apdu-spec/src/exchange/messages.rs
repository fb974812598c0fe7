//! The bodies and answers of the exchange commands (START, AGREE, CONFIRM, COMMIT, FINISH,
//! ABORT, CANCEL, RESOLVE, APPLY VERDICT, LIST SESSIONS), as they travel between terminal
//! and card. The card decodes the bodies and encodes the answers with these types, and the
//! terminal does the opposite, so the two can never disagree on a tag.
//!
//! Every body and answer is a run of BER-TLV objects with context-specific tags ([`tag`]).
//! A decoder takes the objects in any order, but each at most once, none it does not know,
//! and all that the message needs; a fixed-length field of another length, a value out of
//! range or a certificate that does not parse is malformed too. A ticket's proof travels
//! beside the ticket, and only beside a ticket: a proof for units or nothing, or a ticket
//! without its proof, is malformed.

use serde::{Deserialize, Serialize};

use super::{Outcome, Value, value_from_tlv, value_to_tlv};
use crate::cert::{CertError, Certificate};
use crate::objects::tag::{CARD_ID, ISSUER_SIGNATURE};
use crate::tlv::{self, Tlv, TlvError};
use crate::units::{SIGNATURE_LEN, UnitError, UnitValue};

/// Tags of the exchange messages.
pub mod tag {
    /// s1: the initiator's random, 32 bytes.
    pub const S1: u16 = 0x80;
    /// s2 = SHA-256(r2), 32 bytes: the session's name from AGREE on.
    pub const S2: u16 = 0x81;
    /// a: the agreement hash, 32 bytes.
    pub const AGREEMENT: u16 = 0x82;
    /// r2: the responder's secret, 32 bytes, answered by COMMIT only.
    pub const R2: u16 = 0x83;
    /// The arbiter's outcome, 1 byte: 01 complete, 02 cancel.
    pub const OUTCOME: u16 = 0x84;
    /// A session's role in LIST SESSIONS, 1 byte: 01 initiator, 02 responder.
    pub const ROLE: u16 = 0x87;
    /// A session's state in LIST SESSIONS, 1 byte: 01 START, 02 VALID, 03 PENDING.
    pub const STATE: u16 = 0x88;
    /// Sa: the responder's agreement, 64 bytes.
    pub const AGREE_SIGNATURE: u16 = 0x8A;
    /// Se: the initiator's confirmation, 64 bytes.
    pub const CONFIRM_SIGNATURE: u16 = 0x8B;
    /// Sab: the responder's cancel request, 64 bytes.
    pub const CANCEL_SIGNATURE: u16 = 0x8C;
    /// Sr: the initiator's resolve request, 64 bytes.
    pub const RESOLVE_SIGNATURE: u16 = 0x8D;
    /// The arbiter's verdict signature, 64 bytes.
    pub const VERDICT_SIGNATURE: u16 = 0x8E;
    /// c = SHA-256(s1 ‖ V1 ‖ V2): the value commitment, 32 bytes (CANCEL and RESOLVE).
    pub const VALUES_COMMITMENT: u16 = 0x89;
    /// `A1 { value }`: V1, what the initiator gives.
    pub const V1: u16 = 0xA1;
    /// `A2 { value }`: V2, what the responder gives (at START: what the initiator wants).
    pub const V2: u16 = 0xA2;
    /// `A3 { value }`: the V1 that the responder's user wants (AGREE).
    pub const WANTED: u16 = 0xA3;
    /// `A4 { C2 owner card id, 85 issuer signature }`: the proof of a ticket V1.
    pub const V1_PROOF: u16 = 0xA4;
    /// `A5 { C2, 85 }`: the proof of a ticket V2.
    pub const V2_PROOF: u16 = 0xA5;
    /// `A6 { 7F21 ... }`: the initiator's certificate.
    pub const INITIATOR_CERTIFICATE: u16 = 0xA6;
    /// `A7 { 7F21 ... }`: the responder's certificate.
    pub const RESPONDER_CERTIFICATE: u16 = 0xA7;
    /// LIST SESSIONS: `EF { E3 ... }`.
    pub const SESSIONS: u16 = 0xEF;
    /// One session in LIST SESSIONS.
    pub const SESSION: u16 = 0xE3;
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message is not well formed: {0}")]
    Malformed(#[from] TlvError),
    #[error("a value in the message: {0}")]
    Value(#[from] UnitError),
    #[error("a certificate in the message: {0}")]
    Certificate(#[from] CertError),
    #[error("unexpected object {0:X} in the message")]
    Unexpected(u16),
    #[error("object {0:X} appears more than once")]
    Repeated(u16),
    #[error("a ticket travels with its proof, and nothing else does")]
    Proof,
    #[error("unknown {0} byte {1:02X}")]
    UnknownByte(&'static str, u8),
}

/// Who issued a ticket and to whom: the issuer's signature over the ticket and its owner
/// card at issue time (`units::verify_ticket`). A card that gives a ticket away shows this
/// proof; the card that receives it keeps it, to show it again when it passes it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketProof {
    /// The card the issuer issued the ticket to.
    #[serde(with = "hex::serde")]
    pub owner: [u8; 32],
    /// The issuer's signature in `valuecard/ticket/v1`.
    #[serde(with = "hex::serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl TicketProof {
    fn to_tlv(self, wrapper: u16) -> Tlv {
        tlv::constructed(
            wrapper,
            vec![
                tlv::primitive(CARD_ID, self.owner),
                tlv::primitive(ISSUER_SIGNATURE, self.signature),
            ],
        )
    }

    fn from_children(children: &[Tlv]) -> Result<Self, MessageError> {
        let fields = Fields::new(children, &[CARD_ID, ISSUER_SIGNATURE], &[])?;
        Ok(TicketProof {
            owner: fields.array(CARD_ID)?,
            signature: fields.array(ISSUER_SIGNATURE)?,
        })
    }
}

/// A session's role on a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Card A: gives V1, wants V2; runs START, CONFIRM, FINISH, ABORT, RESOLVE.
    Initiator = 1,
    /// Card B: gives V2; runs AGREE, COMMIT, CANCEL.
    Responder = 2,
}

impl Role {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Initiator),
            2 => Some(Role::Responder),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        }
    }
}

/// A session's state (PROTOCOLS.md, "Fair exchange: card to card").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Initiator after START: V1 reserved, nothing signed.
    Start = 1,
    /// Initiator after CONFIRM, responder after AGREE: the value given is in escrow.
    Valid = 2,
    /// Responder after CANCEL or a confirmation that did not verify: never commits.
    Pending = 3,
}

impl SessionState {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(SessionState::Start),
            2 => Some(SessionState::Valid),
            3 => Some(SessionState::Pending),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionState::Start => "START",
            SessionState::Valid => "VALID",
            SessionState::Pending => "PENDING",
        }
    }
}

/// The objects of one message, each checked to appear at most once and to be one the
/// message knows.
struct Fields<'a> {
    objects: &'a [Tlv],
}

impl<'a> Fields<'a> {
    fn new(objects: &'a [Tlv], required: &[u16], optional: &[u16]) -> Result<Self, MessageError> {
        for (i, object) in objects.iter().enumerate() {
            let t = tlv::tag_number(object);
            if !required.contains(&t) && !optional.contains(&t) {
                return Err(MessageError::Unexpected(t));
            }
            if objects[..i].iter().any(|o| tlv::tag_number(o) == t) {
                return Err(MessageError::Repeated(t));
            }
        }
        for t in required {
            if !objects.iter().any(|o| tlv::tag_number(o) == *t) {
                return Err(TlvError::Missing(*t).into());
            }
        }
        Ok(Fields { objects })
    }

    fn get(&self, t: u16) -> Option<&'a Tlv> {
        self.objects.iter().find(|o| tlv::tag_number(o) == t)
    }

    fn array<const N: usize>(&self, t: u16) -> Result<[u8; N], MessageError> {
        Ok(tlv::require_array(self.objects, t)?)
    }

    fn optional_array<const N: usize>(&self, t: u16) -> Result<Option<[u8; N]>, MessageError> {
        Ok(tlv::find_array(self.objects, t)?)
    }

    fn byte(&self, t: u16) -> Result<u8, MessageError> {
        Ok(self.array::<1>(t)?[0])
    }

    fn children(&self, t: u16) -> Result<&'a [Tlv], MessageError> {
        match self.get(t).map(Tlv::value) {
            Some(tlv::Value::Constructed(children)) => Ok(children),
            Some(tlv::Value::Primitive(_)) => Err(TlvError::Malformed.into()),
            None => Err(TlvError::Missing(t).into()),
        }
    }

    /// `wrapper { value }`: exactly one value object.
    fn value(&self, wrapper: u16) -> Result<Value, MessageError> {
        match self.children(wrapper)? {
            [object] => Ok(value_from_tlv(object)?),
            _ => Err(TlvError::Malformed.into()),
        }
    }

    /// `wrapper { 7F21 ... }`: exactly one certificate.
    fn certificate(&self, wrapper: u16) -> Result<Certificate, MessageError> {
        match self.children(wrapper)? {
            [object] => Ok(Certificate::from_tlv(object)?),
            _ => Err(TlvError::Malformed.into()),
        }
    }

    /// The proof in `wrapper`, which must be there exactly when `value` is a ticket.
    fn proof(&self, wrapper: u16, value: &Value) -> Result<Option<TicketProof>, MessageError> {
        let is_ticket = matches!(value, Some(UnitValue::Ticket { .. }));
        match (self.get(wrapper), is_ticket) {
            (Some(_), true) => TicketProof::from_children(self.children(wrapper)?).map(Some),
            (None, false) => Ok(None),
            _ => Err(MessageError::Proof),
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Vec<Tlv>, MessageError> {
    Ok(tlv::parse_all(bytes)?)
}

fn value_tlv(wrapper: u16, value: &Value) -> Tlv {
    tlv::constructed(wrapper, vec![value_to_tlv(value)])
}

fn certificate_tlv(wrapper: u16, certificate: &Certificate) -> Tlv {
    tlv::constructed(wrapper, vec![certificate.to_tlv()])
}

fn push_proof(objects: &mut Vec<Tlv>, wrapper: u16, proof: Option<TicketProof>) {
    if let Some(p) = proof {
        objects.push(p.to_tlv(wrapper));
    }
}

/// START's body: `A1 { V1 given }, A2 { V2 wanted }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartBody {
    pub v1: Value,
    pub wanted_v2: Value,
}

impl StartBody {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            value_tlv(tag::V1, &self.v1),
            value_tlv(tag::V2, &self.wanted_v2),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(&objects, &[tag::V1, tag::V2], &[])?;
        Ok(StartBody {
            v1: f.value(tag::V1)?,
            wanted_v2: f.value(tag::V2)?,
        })
    }
}

/// START's answer: `80 s1, A1 { V1 }, [A4 V1 proof], A6 { initiator certificate }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartAnswer {
    pub s1: [u8; 32],
    pub v1: Value,
    pub v1_proof: Option<TicketProof>,
    pub initiator_certificate: Certificate,
}

impl StartAnswer {
    pub fn encode(&self) -> Vec<u8> {
        let mut objects = vec![
            tlv::primitive(tag::S1, self.s1),
            value_tlv(tag::V1, &self.v1),
        ];
        push_proof(&mut objects, tag::V1_PROOF, self.v1_proof);
        objects.push(certificate_tlv(
            tag::INITIATOR_CERTIFICATE,
            &self.initiator_certificate,
        ));
        tlv::encode_all(&objects)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[tag::S1, tag::V1, tag::INITIATOR_CERTIFICATE],
            &[tag::V1_PROOF],
        )?;
        let v1 = f.value(tag::V1)?;
        Ok(StartAnswer {
            s1: f.array(tag::S1)?,
            v1_proof: f.proof(tag::V1_PROOF, &v1)?,
            v1,
            initiator_certificate: f.certificate(tag::INITIATOR_CERTIFICATE)?,
        })
    }

    /// AGREE's body for the responder, from this answer, the V2 it gives and the V1 its
    /// user wants.
    pub fn agree_body(&self, v2: Value, wanted_v1: Value) -> AgreeBody {
        AgreeBody {
            s1: self.s1,
            v1: self.v1.clone(),
            v1_proof: self.v1_proof,
            v2,
            wanted_v1,
            initiator_certificate: self.initiator_certificate.clone(),
        }
    }
}

/// AGREE's body: `80 s1, A1 { V1 }, [A4 V1 proof], A2 { V2 given }, A3 { V1 wanted },
/// A6 { initiator certificate }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreeBody {
    pub s1: [u8; 32],
    pub v1: Value,
    pub v1_proof: Option<TicketProof>,
    pub v2: Value,
    pub wanted_v1: Value,
    pub initiator_certificate: Certificate,
}

impl AgreeBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut objects = vec![
            tlv::primitive(tag::S1, self.s1),
            value_tlv(tag::V1, &self.v1),
        ];
        push_proof(&mut objects, tag::V1_PROOF, self.v1_proof);
        objects.push(value_tlv(tag::V2, &self.v2));
        objects.push(value_tlv(tag::WANTED, &self.wanted_v1));
        objects.push(certificate_tlv(
            tag::INITIATOR_CERTIFICATE,
            &self.initiator_certificate,
        ));
        tlv::encode_all(&objects)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::S1,
                tag::V1,
                tag::V2,
                tag::WANTED,
                tag::INITIATOR_CERTIFICATE,
            ],
            &[tag::V1_PROOF],
        )?;
        let v1 = f.value(tag::V1)?;
        Ok(AgreeBody {
            s1: f.array(tag::S1)?,
            v1_proof: f.proof(tag::V1_PROOF, &v1)?,
            v1,
            v2: f.value(tag::V2)?,
            wanted_v1: f.value(tag::WANTED)?,
            initiator_certificate: f.certificate(tag::INITIATOR_CERTIFICATE)?,
        })
    }
}

/// AGREE's answer: `82 a, 81 s2, 8A Sa, A2 { V2 }, [A5 V2 proof], A7 { responder
/// certificate }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreeAnswer {
    pub a: [u8; 32],
    pub s2: [u8; 32],
    pub sa: [u8; SIGNATURE_LEN],
    pub v2: Value,
    pub v2_proof: Option<TicketProof>,
    pub responder_certificate: Certificate,
}

impl AgreeAnswer {
    pub fn encode(&self) -> Vec<u8> {
        let mut objects = vec![
            tlv::primitive(tag::AGREEMENT, self.a),
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::AGREE_SIGNATURE, self.sa),
            value_tlv(tag::V2, &self.v2),
        ];
        push_proof(&mut objects, tag::V2_PROOF, self.v2_proof);
        objects.push(certificate_tlv(
            tag::RESPONDER_CERTIFICATE,
            &self.responder_certificate,
        ));
        tlv::encode_all(&objects)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::AGREEMENT,
                tag::S2,
                tag::AGREE_SIGNATURE,
                tag::V2,
                tag::RESPONDER_CERTIFICATE,
            ],
            &[tag::V2_PROOF],
        )?;
        let v2 = f.value(tag::V2)?;
        Ok(AgreeAnswer {
            a: f.array(tag::AGREEMENT)?,
            s2: f.array(tag::S2)?,
            sa: f.array(tag::AGREE_SIGNATURE)?,
            v2_proof: f.proof(tag::V2_PROOF, &v2)?,
            v2,
            responder_certificate: f.certificate(tag::RESPONDER_CERTIFICATE)?,
        })
    }

    /// CONFIRM's body for the initiator whose START answered `s1`.
    pub fn confirm_body(&self, s1: [u8; 32]) -> ConfirmBody {
        ConfirmBody {
            s1,
            a: self.a,
            s2: self.s2,
            sa: self.sa,
            v2: self.v2.clone(),
            v2_proof: self.v2_proof,
            responder_certificate: self.responder_certificate.clone(),
        }
    }
}

/// CONFIRM's body: `80 s1, 82 a, 81 s2, 8A Sa, A2 { V2 }, [A5 V2 proof], A7 { responder
/// certificate }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmBody {
    pub s1: [u8; 32],
    pub a: [u8; 32],
    pub s2: [u8; 32],
    pub sa: [u8; SIGNATURE_LEN],
    pub v2: Value,
    pub v2_proof: Option<TicketProof>,
    pub responder_certificate: Certificate,
}

impl ConfirmBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut objects = vec![
            tlv::primitive(tag::S1, self.s1),
            tlv::primitive(tag::AGREEMENT, self.a),
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::AGREE_SIGNATURE, self.sa),
            value_tlv(tag::V2, &self.v2),
        ];
        push_proof(&mut objects, tag::V2_PROOF, self.v2_proof);
        objects.push(certificate_tlv(
            tag::RESPONDER_CERTIFICATE,
            &self.responder_certificate,
        ));
        tlv::encode_all(&objects)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::S1,
                tag::AGREEMENT,
                tag::S2,
                tag::AGREE_SIGNATURE,
                tag::V2,
                tag::RESPONDER_CERTIFICATE,
            ],
            &[tag::V2_PROOF],
        )?;
        let v2 = f.value(tag::V2)?;
        Ok(ConfirmBody {
            s1: f.array(tag::S1)?,
            a: f.array(tag::AGREEMENT)?,
            s2: f.array(tag::S2)?,
            sa: f.array(tag::AGREE_SIGNATURE)?,
            v2_proof: f.proof(tag::V2_PROOF, &v2)?,
            v2,
            responder_certificate: f.certificate(tag::RESPONDER_CERTIFICATE)?,
        })
    }
}

/// CONFIRM's answer, which is also COMMIT's body: `81 s2, 8B Se`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfirmAnswer {
    pub s2: [u8; 32],
    pub se: [u8; SIGNATURE_LEN],
}

/// COMMIT's body: CONFIRM's answer, relayed as it is.
pub type CommitBody = ConfirmAnswer;

impl ConfirmAnswer {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::CONFIRM_SIGNATURE, self.se),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(&objects, &[tag::S2, tag::CONFIRM_SIGNATURE], &[])?;
        Ok(ConfirmAnswer {
            s2: f.array(tag::S2)?,
            se: f.array(tag::CONFIRM_SIGNATURE)?,
        })
    }
}

/// COMMIT's answer: `83 r2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitAnswer {
    pub r2: [u8; 32],
}

impl CommitAnswer {
    pub fn encode(&self) -> Vec<u8> {
        tlv::primitive(tag::R2, self.r2).to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(&objects, &[tag::R2], &[])?;
        Ok(CommitAnswer {
            r2: f.array(tag::R2)?,
        })
    }

    /// FINISH's body for the initiator of session `s2`.
    pub fn finish_body(&self, s2: [u8; 32]) -> FinishBody {
        FinishBody { s2, r2: self.r2 }
    }
}

/// FINISH's body: `81 s2, 83 r2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishBody {
    pub s2: [u8; 32],
    pub r2: [u8; 32],
}

impl FinishBody {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::R2, self.r2),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(&objects, &[tag::S2, tag::R2], &[])?;
        Ok(FinishBody {
            s2: f.array(tag::S2)?,
            r2: f.array(tag::R2)?,
        })
    }
}

/// ABORT's body: `80 s1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortBody {
    pub s1: [u8; 32],
}

impl AbortBody {
    pub fn encode(&self) -> Vec<u8> {
        tlv::primitive(tag::S1, self.s1).to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(&objects, &[tag::S1], &[])?;
        Ok(AbortBody {
            s1: f.array(tag::S1)?,
        })
    }
}

fn encode_s2(s2: &[u8; 32]) -> Vec<u8> {
    tlv::primitive(tag::S2, *s2).to_vec()
}

fn decode_s2(bytes: &[u8]) -> Result<[u8; 32], MessageError> {
    let objects = parse(bytes)?;
    Fields::new(&objects, &[tag::S2], &[])?.array(tag::S2)
}

/// CANCEL's body: `81 s2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelBody {
    pub s2: [u8; 32],
}

impl CancelBody {
    pub fn encode(&self) -> Vec<u8> {
        encode_s2(&self.s2)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        decode_s2(bytes).map(|s2| CancelBody { s2 })
    }
}

/// CANCEL's answer, the responder's cancel request for the arbiter: `82 a, 81 s2, 89 c,
/// 8C Sab, 8A Sa, A6 { initiator certificate }, A7 { responder certificate }`. With c and
/// both certificates the arbiter recomputes a, and so checks that the card that signed Sab
/// is the session's responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelAnswer {
    pub a: [u8; 32],
    pub s2: [u8; 32],
    pub c: [u8; 32],
    pub sab: [u8; SIGNATURE_LEN],
    pub sa: [u8; SIGNATURE_LEN],
    pub initiator_certificate: Certificate,
    pub responder_certificate: Certificate,
}

impl CancelAnswer {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::AGREEMENT, self.a),
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::VALUES_COMMITMENT, self.c),
            tlv::primitive(tag::CANCEL_SIGNATURE, self.sab),
            tlv::primitive(tag::AGREE_SIGNATURE, self.sa),
            certificate_tlv(tag::INITIATOR_CERTIFICATE, &self.initiator_certificate),
            certificate_tlv(tag::RESPONDER_CERTIFICATE, &self.responder_certificate),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::AGREEMENT,
                tag::S2,
                tag::VALUES_COMMITMENT,
                tag::CANCEL_SIGNATURE,
                tag::AGREE_SIGNATURE,
                tag::INITIATOR_CERTIFICATE,
                tag::RESPONDER_CERTIFICATE,
            ],
            &[],
        )?;
        Ok(CancelAnswer {
            a: f.array(tag::AGREEMENT)?,
            s2: f.array(tag::S2)?,
            c: f.array(tag::VALUES_COMMITMENT)?,
            sab: f.array(tag::CANCEL_SIGNATURE)?,
            sa: f.array(tag::AGREE_SIGNATURE)?,
            initiator_certificate: f.certificate(tag::INITIATOR_CERTIFICATE)?,
            responder_certificate: f.certificate(tag::RESPONDER_CERTIFICATE)?,
        })
    }
}

/// RESOLVE's body: `81 s2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveBody {
    pub s2: [u8; 32],
}

impl ResolveBody {
    pub fn encode(&self) -> Vec<u8> {
        encode_s2(&self.s2)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        decode_s2(bytes).map(|s2| ResolveBody { s2 })
    }
}

/// RESOLVE's answer, the initiator's resolve request for the arbiter: `82 a, 81 s2, 89 c,
/// 8D Sr, 8A Sa, A6 { initiator certificate }, A7 { responder certificate }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveAnswer {
    pub a: [u8; 32],
    pub s2: [u8; 32],
    pub c: [u8; 32],
    pub sr: [u8; SIGNATURE_LEN],
    pub sa: [u8; SIGNATURE_LEN],
    pub initiator_certificate: Certificate,
    pub responder_certificate: Certificate,
}

impl ResolveAnswer {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::AGREEMENT, self.a),
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::VALUES_COMMITMENT, self.c),
            tlv::primitive(tag::RESOLVE_SIGNATURE, self.sr),
            tlv::primitive(tag::AGREE_SIGNATURE, self.sa),
            certificate_tlv(tag::INITIATOR_CERTIFICATE, &self.initiator_certificate),
            certificate_tlv(tag::RESPONDER_CERTIFICATE, &self.responder_certificate),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::AGREEMENT,
                tag::S2,
                tag::VALUES_COMMITMENT,
                tag::RESOLVE_SIGNATURE,
                tag::AGREE_SIGNATURE,
                tag::INITIATOR_CERTIFICATE,
                tag::RESPONDER_CERTIFICATE,
            ],
            &[],
        )?;
        Ok(ResolveAnswer {
            a: f.array(tag::AGREEMENT)?,
            s2: f.array(tag::S2)?,
            c: f.array(tag::VALUES_COMMITMENT)?,
            sr: f.array(tag::RESOLVE_SIGNATURE)?,
            sa: f.array(tag::AGREE_SIGNATURE)?,
            initiator_certificate: f.certificate(tag::INITIATOR_CERTIFICATE)?,
            responder_certificate: f.certificate(tag::RESPONDER_CERTIFICATE)?,
        })
    }
}

/// APPLY VERDICT's body: `81 s2, 82 a, 84 outcome, 8E arbiter's signature`
/// (`exchange::sign_verdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictBody {
    pub s2: [u8; 32],
    pub a: [u8; 32],
    pub outcome: Outcome,
    pub signature: [u8; SIGNATURE_LEN],
}

impl VerdictBody {
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&[
            tlv::primitive(tag::S2, self.s2),
            tlv::primitive(tag::AGREEMENT, self.a),
            tlv::primitive(tag::OUTCOME, [self.outcome as u8]),
            tlv::primitive(tag::VERDICT_SIGNATURE, self.signature),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let objects = parse(bytes)?;
        let f = Fields::new(
            &objects,
            &[
                tag::S2,
                tag::AGREEMENT,
                tag::OUTCOME,
                tag::VERDICT_SIGNATURE,
            ],
            &[],
        )?;
        let outcome = f.byte(tag::OUTCOME)?;
        Ok(VerdictBody {
            s2: f.array(tag::S2)?,
            a: f.array(tag::AGREEMENT)?,
            outcome: Outcome::from_byte(outcome)
                .ok_or(MessageError::UnknownByte("outcome", outcome))?,
            signature: f.array(tag::VERDICT_SIGNATURE)?,
        })
    }
}

/// One open session, as LIST SESSIONS shows it: `E3 { 87 role, 88 state, 80 s1, [81 s2],
/// [82 a], A1 { V1 }, A2 { V2 } }`. s2 and a are there from AGREE (responder) or CONFIRM
/// (initiator) on; an initiator in START shows the V2 its user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub role: Role,
    pub state: SessionState,
    pub s1: [u8; 32],
    pub s2: Option<[u8; 32]>,
    pub a: Option<[u8; 32]>,
    pub v1: Value,
    pub v2: Value,
}

impl SessionInfo {
    pub fn to_tlv(&self) -> Tlv {
        let mut objects = vec![
            tlv::primitive(tag::ROLE, [self.role as u8]),
            tlv::primitive(tag::STATE, [self.state as u8]),
            tlv::primitive(tag::S1, self.s1),
        ];
        if let Some(s2) = self.s2 {
            objects.push(tlv::primitive(tag::S2, s2));
        }
        if let Some(a) = self.a {
            objects.push(tlv::primitive(tag::AGREEMENT, a));
        }
        objects.push(value_tlv(tag::V1, &self.v1));
        objects.push(value_tlv(tag::V2, &self.v2));
        tlv::constructed(tag::SESSION, objects)
    }

    fn from_children(children: &[Tlv]) -> Result<Self, MessageError> {
        let f = Fields::new(
            children,
            &[tag::ROLE, tag::STATE, tag::S1, tag::V1, tag::V2],
            &[tag::S2, tag::AGREEMENT],
        )?;
        let role = f.byte(tag::ROLE)?;
        let state = f.byte(tag::STATE)?;
        let info = SessionInfo {
            role: Role::from_byte(role).ok_or(MessageError::UnknownByte("role", role))?,
            state: SessionState::from_byte(state)
                .ok_or(MessageError::UnknownByte("state", state))?,
            s1: f.array(tag::S1)?,
            s2: f.optional_array(tag::S2)?,
            a: f.optional_array(tag::AGREEMENT)?,
            v1: f.value(tag::V1)?,
            v2: f.value(tag::V2)?,
        };
        // s2 and a come together, from AGREE or CONFIRM on: only an initiator in START
        // lacks them, and only a responder can be PENDING, never in START.
        let agreed = info.state != SessionState::Start;
        let fits = match info.role {
            Role::Initiator => info.state != SessionState::Pending,
            Role::Responder => agreed,
        };
        if !fits || info.s2.is_some() != agreed || info.a.is_some() != agreed {
            return Err(TlvError::Malformed.into());
        }
        Ok(info)
    }
}

/// LIST SESSIONS' answer: `EF { E3 ... }`, one `E3` per open session, oldest first.
pub fn encode_sessions(sessions: &[SessionInfo]) -> Vec<u8> {
    tlv::constructed(
        tag::SESSIONS,
        sessions.iter().map(SessionInfo::to_tlv).collect(),
    )
    .to_vec()
}

pub fn decode_sessions(bytes: &[u8]) -> Result<Vec<SessionInfo>, MessageError> {
    let objects = parse(bytes)?;
    let f = Fields::new(&objects, &[tag::SESSIONS], &[])?;
    f.children(tag::SESSIONS)?
        .iter()
        .map(
            |session| match (tlv::tag_number(session), session.value()) {
                (tag::SESSION, tlv::Value::Constructed(children)) => {
                    SessionInfo::from_children(children)
                }
                (t, _) => Err(MessageError::Unexpected(t)),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    fn jpy(amount: u64) -> Value {
        Some(UnitValue::Asset {
            code: "JPY".into(),
            amount,
        })
    }

    fn concert() -> Value {
        Some(UnitValue::Ticket {
            code: "CONCERT".into(),
            serial: vec![1, 2, 3],
        })
    }

    fn certificate(secret: u8) -> Certificate {
        let issuer = SigningKey::from_slice(&[0x11; 32]).expect("a scalar");
        let card = SigningKey::from_slice(&[secret; 32]).expect("a scalar");
        Certificate::issue(&issuer, card.verifying_key(), [0x55; 32], 0, u64::MAX)
    }

    fn proof_fits(value: &Value, proof: &Option<TicketProof>) -> bool {
        matches!(value, Some(UnitValue::Ticket { .. })) == proof.is_some()
    }

    fn proof() -> Option<TicketProof> {
        Some(TicketProof {
            owner: [7; 32],
            signature: [8; 64],
        })
    }

    /// Every way of breaking a message that must fail to decode: cut short, a byte too
    /// many, every object left out, every object repeated, an unknown object.
    fn broken_forms(good: &[u8]) -> Vec<(String, Vec<u8>)> {
        let objects = tlv::parse_all(good).expect("the good form parses");
        let mut out = vec![
            ("cut short".to_string(), good[..good.len() - 1].to_vec()),
            ("a byte more".to_string(), [good, &[0]].concat()),
            ("empty".to_string(), Vec::new()),
            (
                "unknown object".to_string(),
                [good, &[0x9F, 0x01, 0x00]].concat(),
            ),
        ];
        for i in 0..objects.len() {
            let t = tlv::tag_number(&objects[i]);
            let mut without = objects.clone();
            without.remove(i);
            out.push((format!("without {t:X}"), tlv::encode_all(&without)));
            let mut twice = objects.clone();
            twice.insert(i, objects[i].clone());
            out.push((format!("{t:X} twice"), tlv::encode_all(&twice)));
        }
        out
    }

    fn round_trip<T: PartialEq + std::fmt::Debug>(
        value: &T,
        encode: impl Fn(&T) -> Vec<u8>,
        decode: impl Fn(&[u8]) -> Result<T, MessageError>,
    ) {
        let bytes = encode(value);
        assert_eq!(
            decode(&bytes).as_ref(),
            Ok(value),
            "{}",
            hex::encode(&bytes)
        );
        for (why, broken) in broken_forms(&bytes) {
            assert!(decode(&broken).is_err(), "{why}: {}", hex::encode(&broken));
        }
        // The objects in another order are the same message.
        let mut objects = tlv::parse_all(&bytes).expect("parses");
        if objects.len() > 1 {
            objects.reverse();
            assert_eq!(decode(&tlv::encode_all(&objects)).as_ref(), Ok(value));
        }
    }

    #[test]
    fn start_round_trips() {
        for (v1, v2) in [(jpy(300), concert()), (None, jpy(1)), (concert(), None)] {
            let body = StartBody {
                v1: v1.clone(),
                wanted_v2: v2,
            };
            round_trip(&body, StartBody::encode, StartBody::decode);
            let answer = StartAnswer {
                s1: [1; 32],
                v1_proof: if v1.is_some() && v1 != jpy(300) {
                    proof()
                } else {
                    None
                },
                v1,
                initiator_certificate: certificate(0x21),
            };
            assert!(proof_fits(&answer.v1, &answer.v1_proof));
            round_trip(&answer, StartAnswer::encode, StartAnswer::decode);
        }
        assert_eq!(
            StartBody {
                v1: None,
                wanted_v2: None
            }
            .encode(),
            [0xA1, 0x02, 0xE0, 0x00, 0xA2, 0x02, 0xE0, 0x00]
        );
    }

    #[test]
    fn a_proof_goes_with_a_ticket_and_only_with_one() {
        let good = StartAnswer {
            s1: [1; 32],
            v1: concert(),
            v1_proof: proof(),
            initiator_certificate: certificate(0x21),
        };
        let without = StartAnswer {
            v1_proof: None,
            ..good.clone()
        };
        assert_eq!(
            StartAnswer::decode(&without.encode()),
            Err(MessageError::Proof)
        );
        let units = StartAnswer {
            v1: jpy(5),
            ..good.clone()
        };
        assert_eq!(
            StartAnswer::decode(&units.encode()),
            Err(MessageError::Proof)
        );
        let agree = good.agree_body(jpy(9), concert());
        assert_eq!(AgreeBody::decode(&agree.encode()), Ok(agree.clone()));
        let no_proof = AgreeBody {
            v1_proof: None,
            ..agree
        };
        assert_eq!(
            AgreeBody::decode(&no_proof.encode()),
            Err(MessageError::Proof)
        );
    }

    #[test]
    fn agree_and_confirm_round_trip() {
        let body = AgreeBody {
            s1: [1; 32],
            v1: concert(),
            v1_proof: proof(),
            v2: jpy(500),
            wanted_v1: concert(),
            initiator_certificate: certificate(0x21),
        };
        round_trip(&body, AgreeBody::encode, AgreeBody::decode);
        let answer = AgreeAnswer {
            a: [2; 32],
            s2: [3; 32],
            sa: [4; 64],
            v2: concert(),
            v2_proof: proof(),
            responder_certificate: certificate(0x22),
        };
        round_trip(&answer, AgreeAnswer::encode, AgreeAnswer::decode);
        let confirm = answer.confirm_body([1; 32]);
        assert_eq!(confirm.responder_certificate, certificate(0x22));
        round_trip(&confirm, ConfirmBody::encode, ConfirmBody::decode);
        let one_way = ConfirmBody {
            v2: None,
            v2_proof: None,
            ..confirm
        };
        round_trip(&one_way, ConfirmBody::encode, ConfirmBody::decode);
    }

    #[test]
    fn the_short_messages_round_trip() {
        let confirm = ConfirmAnswer {
            s2: [3; 32],
            se: [5; 64],
        };
        round_trip(&confirm, ConfirmAnswer::encode, ConfirmAnswer::decode);
        let commit: CommitBody = confirm;
        assert_eq!(CommitBody::decode(&commit.encode()), Ok(confirm));
        let r2 = CommitAnswer { r2: [6; 32] };
        round_trip(&r2, CommitAnswer::encode, CommitAnswer::decode);
        round_trip(
            &r2.finish_body([3; 32]),
            FinishBody::encode,
            FinishBody::decode,
        );
        round_trip(
            &AbortBody { s1: [1; 32] },
            AbortBody::encode,
            AbortBody::decode,
        );
        round_trip(
            &CancelBody { s2: [3; 32] },
            CancelBody::encode,
            CancelBody::decode,
        );
        round_trip(
            &ResolveBody { s2: [3; 32] },
            ResolveBody::encode,
            ResolveBody::decode,
        );
        assert!(CancelBody::decode(&AbortBody { s1: [1; 32] }.encode()).is_err());
        assert!(
            AbortBody::decode(
                &[0x80, 0x1F]
                    .iter()
                    .copied()
                    .chain([0; 31])
                    .collect::<Vec<_>>()
            )
            .is_err(),
            "31 bytes"
        );
    }

    #[test]
    fn the_requests_for_the_arbiter_round_trip() {
        let cancel = CancelAnswer {
            a: [2; 32],
            s2: [3; 32],
            c: [12; 32],
            sab: [9; 64],
            sa: [4; 64],
            initiator_certificate: certificate(0x21),
            responder_certificate: certificate(0x22),
        };
        round_trip(&cancel, CancelAnswer::encode, CancelAnswer::decode);
        let resolve = ResolveAnswer {
            a: [2; 32],
            s2: [3; 32],
            c: [12; 32],
            sr: [10; 64],
            sa: [4; 64],
            initiator_certificate: certificate(0x21),
            responder_certificate: certificate(0x22),
        };
        round_trip(&resolve, ResolveAnswer::encode, ResolveAnswer::decode);
        for outcome in [Outcome::Complete, Outcome::Cancel] {
            let verdict = VerdictBody {
                s2: [3; 32],
                a: [2; 32],
                outcome,
                signature: [11; 64],
            };
            round_trip(&verdict, VerdictBody::encode, VerdictBody::decode);
            let mut bytes = verdict.encode();
            let at = bytes
                .windows(3)
                .position(|w| w == [0x84, 0x01, outcome as u8])
                .expect("the outcome");
            bytes[at + 2] = 3;
            assert_eq!(
                VerdictBody::decode(&bytes),
                Err(MessageError::UnknownByte("outcome", 3))
            );
        }
    }

    #[test]
    fn session_lists_round_trip() {
        let sessions = vec![
            SessionInfo {
                role: Role::Initiator,
                state: SessionState::Start,
                s1: [1; 32],
                s2: None,
                a: None,
                v1: jpy(100),
                v2: concert(),
            },
            SessionInfo {
                role: Role::Responder,
                state: SessionState::Pending,
                s1: [2; 32],
                s2: Some([3; 32]),
                a: Some([4; 32]),
                v1: None,
                v2: jpy(7),
            },
        ];
        let bytes = encode_sessions(&sessions);
        assert_eq!(bytes[0], 0xEF);
        assert_eq!(decode_sessions(&bytes), Ok(sessions.clone()));
        assert_eq!(decode_sessions(&encode_sessions(&[])), Ok(vec![]));
        assert_eq!(encode_sessions(&[]), [0xEF, 0x00]);
        let tlv::Value::Constructed(fields) = sessions[1].to_tlv().value().clone() else {
            panic!("E3 is constructed");
        };
        for (why, broken) in broken_forms(&tlv::encode_all(&fields)) {
            // Forms that do not parse at all cannot be put inside an E3.
            let Ok(objects) = tlv::parse_all(&broken) else {
                continue;
            };
            let wrapped =
                tlv::constructed(tag::SESSIONS, vec![tlv::constructed(tag::SESSION, objects)]);
            assert!(decode_sessions(&wrapped.to_vec()).is_err(), "{why}");
        }
        let mut bad_role = sessions[0].to_tlv().to_vec();
        bad_role[4] = 9;
        let wrapped = [&[0xEF, bad_role.len() as u8][..], &bad_role].concat();
        assert_eq!(
            decode_sessions(&wrapped),
            Err(MessageError::UnknownByte("role", 9))
        );
        for b in 1..=3 {
            let state = SessionState::from_byte(b).expect("a state");
            assert_eq!(state as u8, b);
            assert!(!state.name().is_empty());
        }
        assert_eq!(Role::from_byte(2).map(Role::name), Some("responder"));
        assert_eq!(SessionState::from_byte(0), None);
    }
}
