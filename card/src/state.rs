//! Card state, split by lifetime (STYLE.md): what survives power-off and what does not.

use std::fmt;

use apdu_spec::blocklist::BlockList;
use apdu_spec::commands::LifeCycle;
use apdu_spec::exchange::Value;
use apdu_spec::exchange::messages::{Role, SessionInfo, SessionState, TicketProof};
use apdu_spec::maker::{MakerCertificate, Manufacture};
use apdu_spec::objects::Values;
use apdu_spec::units::{InFlight, SIGNATURE_LEN};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Version of the state-file format. Format 2 (issue 12) added the manufacture record and
/// the block list; a format-1 file is refused, since no card of that format can prove where
/// it was made (see `applet::decode`).
pub const FORMAT: u32 = 2;

/// Everything that survives power-off and reset. Written as a whole, atomically, by
/// [`crate::storage::Storage::commit`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistent {
    pub format: u32,
    /// What the card maker gave the card at manufacture: the attestation key, the maker's
    /// certificate over it, and the scheme root's key. `None` on a card nobody provisioned:
    /// it can make a key, but it can neither attest it nor be personalised.
    pub manufacture: Option<ManufactureRecord>,
    pub key: Option<CardKey>,
    pub personalization: Option<Personalization>,
    pub load_counter: u32,
    pub unload_counter: u32,
    pub values: Values,
    /// The pending load request and the receipts the center has not acknowledged yet.
    #[serde(default)]
    pub in_flight: InFlight,
    /// The open exchange sessions, oldest first.
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// The newest issuer's block list that LOAD APPLY brought (at most
    /// `blocklist::MAX_ENTRIES` entries); `None` before the first load, which counts as
    /// version 0.
    pub block_list: Option<BlockList>,
}

impl Persistent {
    /// A blank card that was never manufactured: for tests of the ISO layer, and what
    /// `valuecard-card` creates for a state file that does not exist yet.
    pub fn blank() -> Self {
        Persistent {
            format: FORMAT,
            ..Persistent::default()
        }
    }

    /// A blank card as its maker leaves it: no key yet, and the manufacture record
    /// installed. `valuecard-card provision` writes this state to a file;
    /// [`crate::Card::provisioned`] makes an in-process card from it.
    pub fn manufactured(manufacture: &Manufacture) -> Self {
        Persistent {
            manufacture: Some(ManufactureRecord::from(manufacture)),
            ..Persistent::blank()
        }
    }

    /// The version of the block list the card holds: 0 before the first load.
    pub fn block_list_version(&self) -> u32 {
        self.block_list.as_ref().map_or(0, |l| l.version)
    }

    pub fn life_cycle(&self) -> LifeCycle {
        match (&self.key, &self.personalization) {
            (None, _) => LifeCycle::Blank,
            (Some(_), None) => LifeCycle::Keyed,
            (Some(_), Some(_)) => LifeCycle::Active,
        }
    }
}

/// What manufacture gave the card (`apdu_spec::maker::Manufacture`), as the state file keeps
/// it. The attestation secret signs only ATTEST's answers, which are always over the card's
/// own key; it never leaves the card through any APDU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManufactureRecord {
    /// The scheme root's key, compressed SEC1: PERSONALIZE takes the issuer and arbiter
    /// keys only under its signature.
    #[serde(with = "hex::serde")]
    pub root_key: [u8; 33],
    pub attestation_secret: Secret,
    /// The maker's certificate over the attestation key, its `7F23` encoding.
    #[serde(with = "hex::serde")]
    pub maker_certificate: Vec<u8>,
}

impl From<&Manufacture> for ManufactureRecord {
    fn from(m: &Manufacture) -> Self {
        ManufactureRecord {
            root_key: m.root_key,
            attestation_secret: Secret(m.attestation_secret),
            maker_certificate: m.certificate.encode(),
        }
    }
}

impl ManufactureRecord {
    /// The record as the wire format has it, when the certificate decodes.
    pub fn to_manufacture(&self) -> Option<Manufacture> {
        Some(Manufacture {
            root_key: self.root_key,
            attestation_secret: self.attestation_secret.0,
            certificate: MakerCertificate::decode(&self.maker_certificate).ok()?,
        })
    }

    /// Whether the parts fit: the certificate decodes, the root key is a point, and the
    /// secret is the certified attestation key's. A state file with anything else is
    /// corrupt.
    pub fn is_consistent(&self) -> bool {
        self.to_manufacture().is_some_and(|m| m.is_consistent())
    }
}

/// The card's key pair. The public key is kept beside the secret so that reading it costs
/// no scalar multiplication.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardKey {
    #[serde(with = "hex::serde")]
    pub secret: [u8; 32],
    #[serde(with = "hex::serde")]
    pub public: [u8; 33],
}

impl CardKey {
    /// Whether the secret is a P-256 scalar and the public key is its point: GENERATE KEY
    /// always makes such a pair; a state file that holds anything else is corrupt.
    pub fn is_consistent(&self) -> bool {
        p256::ecdsa::SigningKey::from_slice(&self.secret)
            .is_ok_and(|k| apdu_spec::cert::encode_public_key(k.verifying_key()) == self.public)
    }
}

impl fmt::Debug for CardKey {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CardKey {{ public: {}, secret: <redacted> }}",
            hex::encode(self.public)
        )
    }
}

/// What PERSONALIZE installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Personalization {
    #[serde(with = "hex::serde")]
    pub issuer_key: [u8; 33],
    #[serde(with = "hex::serde")]
    pub arbiter_key: [u8; 33],
    #[serde(with = "hex::serde")]
    pub certificate: Vec<u8>,
    pub pin: PinRecord,
}

/// The PIN as the card keeps it: a salted hash and the tries left.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    #[serde(with = "hex::serde")]
    salt: [u8; 16],
    #[serde(with = "hex::serde")]
    hash: [u8; 32],
    pub tries_left: u8,
}

impl fmt::Debug for PinRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinRecord {{ tries_left: {}, hash: <redacted> }}",
            self.tries_left
        )
    }
}

const PIN_DOMAIN: &str = "valuecard/pin/v1";

impl PinRecord {
    pub fn new(pin: &[u8], salt: [u8; 16]) -> Self {
        PinRecord {
            salt,
            hash: Self::digest(&salt, pin),
            tries_left: apdu_spec::PIN_MAX_TRIES,
        }
    }

    fn digest(salt: &[u8; 16], pin: &[u8]) -> [u8; 32] {
        Sha256::new()
            .chain_update(apdu_spec::domain::tagged(PIN_DOMAIN, &[salt, pin]))
            .finalize()
            .into()
    }

    /// Compares in constant time, so that timing tells nothing about how much matched.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        Self::digest(&self.salt, candidate).ct_eq(&self.hash).into()
    }
}

/// An open exchange session (PROTOCOLS.md, "Fair exchange: card to card"). Every open
/// session holds the value this card gives in escrow, and the store keeps room for the value
/// it would receive, until the session ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Session {
    Initiator(InitiatorSession),
    Responder(ResponderSession),
}

/// Card A's side: START made it, CONFIRM makes it VALID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiatorSession {
    #[serde(with = "hex::serde")]
    pub s1: [u8; 32],
    /// What this card gives: in escrow from START on.
    pub v1: Value,
    /// What the user asked for at START: CONFIRM takes nothing else.
    pub v2: Value,
    /// What CONFIRM accepted and signed: the session is VALID with it, in START without.
    pub confirmed: Option<Confirmed>,
}

/// The responder's agreement, as CONFIRM checked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    #[serde(with = "hex::serde")]
    pub s2: [u8; 32],
    #[serde(with = "hex::serde")]
    pub a: [u8; 32],
    /// Sa: RESOLVE shows it to the arbiter as the proof that B escrowed V2.
    #[serde(with = "hex::serde")]
    pub sa: [u8; SIGNATURE_LEN],
    /// cert_B, as CONFIRM received it.
    #[serde(with = "hex::serde")]
    pub responder_certificate: Vec<u8>,
    /// The proof of V2 when it is a ticket: kept with the ticket once it is stored.
    #[serde(default)]
    pub v2_proof: Option<TicketProof>,
}

/// Card B's side: AGREE made it VALID; CANCEL or a bad confirmation makes it PENDING.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponderSession {
    #[serde(with = "hex::serde")]
    pub s1: [u8; 32],
    #[serde(with = "hex::serde")]
    pub s2: [u8; 32],
    #[serde(with = "hex::serde")]
    pub a: [u8; 32],
    /// The secret behind s2. It leaves the card only in COMMIT's answer, which ends the
    /// session: whoever holds it knows that B stored V1.
    pub r2: Secret,
    /// What this card receives.
    pub v1: Value,
    /// The proof of V1 when it is a ticket.
    #[serde(default)]
    pub v1_proof: Option<TicketProof>,
    /// What this card gives: in escrow from AGREE on.
    pub v2: Value,
    /// cert_A, as AGREE received it.
    #[serde(with = "hex::serde")]
    pub initiator_certificate: Vec<u8>,
    /// PENDING: the session never commits; only a verdict ends it.
    pub pending: bool,
}

/// 32 secret bytes, kept out of every `Debug` line.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[serde(with = "hex::serde")] pub [u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Session {
    pub fn role(&self) -> Role {
        match self {
            Session::Initiator(_) => Role::Initiator,
            Session::Responder(_) => Role::Responder,
        }
    }

    pub fn state(&self) -> SessionState {
        match self {
            Session::Initiator(i) if i.confirmed.is_none() => SessionState::Start,
            Session::Initiator(_) => SessionState::Valid,
            Session::Responder(r) if r.pending => SessionState::Pending,
            Session::Responder(_) => SessionState::Valid,
        }
    }

    pub fn s1(&self) -> &[u8; 32] {
        match self {
            Session::Initiator(i) => &i.s1,
            Session::Responder(r) => &r.s1,
        }
    }

    /// s2 and a, once the session has them (all but an initiator in START).
    pub fn agreement(&self) -> Option<(&[u8; 32], &[u8; 32])> {
        match self {
            Session::Initiator(i) => i.confirmed.as_ref().map(|c| (&c.s2, &c.a)),
            Session::Responder(r) => Some((&r.s2, &r.a)),
        }
    }

    /// What this card gives, held in escrow while the session is open.
    pub fn outgoing(&self) -> &Value {
        match self {
            Session::Initiator(i) => &i.v1,
            Session::Responder(r) => &r.v2,
        }
    }

    /// What this card would receive: the store keeps room for it.
    pub fn incoming(&self) -> &Value {
        match self {
            Session::Initiator(i) => &i.v2,
            Session::Responder(r) => &r.v1,
        }
    }

    /// The session as LIST SESSIONS shows it.
    pub fn info(&self) -> SessionInfo {
        let (v1, v2) = match self {
            Session::Initiator(i) => (&i.v1, &i.v2),
            Session::Responder(r) => (&r.v1, &r.v2),
        };
        SessionInfo {
            role: self.role(),
            state: self.state(),
            s1: *self.s1(),
            s2: self.agreement().map(|(s2, _)| *s2),
            a: self.agreement().map(|(_, a)| *a),
            v1: v1.clone(),
            v2: v2.clone(),
        }
    }
}

/// What a reset, a power-off or SELECT forgets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volatile {
    pub pin_verified: bool,
}
