//! Card state, split by lifetime (STYLE.md): what survives power-off and what does not.

use std::fmt;

use apdu_spec::commands::LifeCycle;
use apdu_spec::objects::Values;
use apdu_spec::units::InFlight;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Version of the state-file format.
pub const FORMAT: u32 = 1;

/// Everything that survives power-off and reset. Written as a whole, atomically, by
/// [`crate::storage::Storage::commit`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistent {
    pub format: u32,
    pub key: Option<CardKey>,
    pub personalization: Option<Personalization>,
    pub load_counter: u32,
    pub unload_counter: u32,
    pub values: Values,
    /// The pending load request and the receipts the center has not acknowledged yet.
    #[serde(default)]
    pub in_flight: InFlight,
}

impl Persistent {
    pub fn blank() -> Self {
        Persistent {
            format: FORMAT,
            ..Persistent::default()
        }
    }

    pub fn life_cycle(&self) -> LifeCycle {
        match (&self.key, &self.personalization) {
            (None, _) => LifeCycle::Blank,
            (Some(_), None) => LifeCycle::Keyed,
            (Some(_), Some(_)) => LifeCycle::Active,
        }
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

/// What a reset, a power-off or SELECT forgets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volatile {
    pub pin_verified: bool,
}
