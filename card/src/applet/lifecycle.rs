//! GENERATE KEY, PERSONALIZE and TEST RESET: the card's life cycle.
//!
//! PERSONALIZE is where a terminal could most cheaply become the card's master: whoever
//! installs the issuer key decides which certificates, loads and tickets the card believes,
//! and whoever installs the arbiter key decides every disputed exchange. So the card takes
//! neither from the terminal's word: each key comes as an anchor, the scheme root's
//! signature over the key *and its role*, checked under the root key the card got at
//! manufacture (never from a terminal). The certificate must verify under the anchored
//! issuer key and certify this card's own key. A terminal holding keys of its own, anchors
//! of another root, the arbiter's anchor relabelled as the issuer's or a certificate of
//! another card gets a refusal, and the card's state stays byte for byte as it was: the
//! command is planned from `&self`, and only a plan that passed every check is committed.

use apdu_spec::anchor::{AnchorError, AnchorRole};
use apdu_spec::cert::{self, CertError, Certificate};
use apdu_spec::maker::Manufacture;
use apdu_spec::objects::{Personalization as Body, pin_is_well_formed, tag};
use apdu_spec::{Status, tlv};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use rand::RngExt;

use super::{Applet, Plan};
use crate::state::{CardKey, ManufactureRecord, Persistent, Personalization, PinRecord};

/// Why PERSONALIZE is refused. Mapped to a status word once, in `From<Refusal>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("the body is not what the command takes")]
    Malformed,
    #[error("the card was never manufactured: it holds no scheme root key to check anchors")]
    NotManufactured,
    #[error("the {0} anchor does not verify under the card's root key for that role")]
    BadAnchor(&'static str),
    #[error("the certificate does not verify under the anchored issuer key")]
    BadCertificate,
    #[error("the certificate is another card's")]
    OtherCard,
    #[error("the PIN is not 4 to 12 ASCII digits")]
    BadPin,
    /// The dispatcher lets PERSONALIZE through only when keyed, and `decode` refuses a
    /// state file whose records are unusable: out of reach.
    #[error("the card's own key or root key is unusable")]
    Unusable,
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::Malformed | Refusal::OtherCard | Refusal::BadPin => {
                Status::IncorrectDataParameter
            }
            Refusal::NotManufactured | Refusal::Unusable => Status::ConditionsOfUseNotSatisfied,
            Refusal::BadAnchor(_) | Refusal::BadCertificate => Status::VerificationFailed,
        }
    }
}

impl Applet {
    pub(super) fn generate_key(&mut self) -> Result<Vec<u8>, Status> {
        let key = SigningKey::generate_from_rng(&mut self.rng);
        let public = cert::encode_public_key(key.verifying_key());
        self.persistent.key = Some(CardKey {
            secret: key.to_bytes().into(),
            public,
        });
        self.commit()?;
        Ok(tlv::primitive(tag::PUBLIC_KEY, public).to_vec())
    }

    pub(super) fn personalize(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let salt: [u8; 16] = self.rng.random();
        let plan = self.plan_personalize(body, salt)?;
        self.carry_out(plan)
    }

    fn plan_personalize(&self, body: &[u8], salt: [u8; 16]) -> Result<Plan, Refusal> {
        // The root key comes from manufacture; without it no anchor can be checked, and a
        // card that took keys unchecked is what this command must never be.
        if self.persistent.manufacture.is_none() {
            return Err(Refusal::NotManufactured);
        }
        let root = self.root_key().ok_or(Refusal::Unusable)?;
        let body = Body::decode(body).map_err(|_| Refusal::Malformed)?;
        // Each anchor is checked for its own role: the role is inside the root's
        // signature, so the arbiter's anchor relabelled as the issuer's (or the other way
        // round) does not verify, and a key the root vouched for as arbiter never signs
        // certificates or loads here.
        let issuer = body
            .issuer
            .verify(&root, AnchorRole::Issuer)
            .map_err(|e| anchor_refusal(e, AnchorRole::Issuer))?;
        body.arbiter
            .verify(&root, AnchorRole::Arbiter)
            .map_err(|e| anchor_refusal(e, AnchorRole::Arbiter))?;
        let certificate = Certificate::decode(&body.certificate).map_err(|_| Refusal::Malformed)?;
        // Under the issuer key just anchored, not under one the terminal names.
        certificate.verify(&issuer).map_err(|e| match e {
            CertError::BadSignature => Refusal::BadCertificate,
            CertError::Malformed | CertError::BadKey | CertError::IdMismatch => Refusal::Malformed,
        })?;
        let own_key = self
            .persistent
            .key
            .as_ref()
            .map(|k| k.public)
            .ok_or(Refusal::Unusable)?;
        // A genuine certificate of another card would make this card show that card's id
        // and sign with a key that does not match it.
        if certificate.public_key != own_key {
            return Err(Refusal::OtherCard);
        }
        if !pin_is_well_formed(&body.pin) {
            return Err(Refusal::BadPin);
        }
        let mut next = self.persistent.clone();
        next.personalization = Some(Personalization {
            issuer_key: body.issuer.public_key,
            arbiter_key: body.arbiter.public_key,
            certificate: body.certificate,
            pin: PinRecord::new(&body.pin, salt),
        });
        Ok((next, Vec::new()))
    }

    /// Erases the card back to blank. With a body, the body is the manufacture record the
    /// blank card then holds (a test harness making a card of its own maker); without one,
    /// the card keeps the record it has, as a real card keeps what its maker gave it.
    pub(super) fn test_reset(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let manufacture = if body.is_empty() {
            self.persistent.manufacture.clone()
        } else {
            let made = Manufacture::decode(body).map_err(|_| Status::IncorrectDataParameter)?;
            Some(ManufactureRecord::from(&made))
        };
        self.persistent = Persistent {
            manufacture,
            ..Persistent::blank()
        };
        self.commit()?;
        self.clear_volatile();
        Ok(Vec::new())
    }
}

fn anchor_refusal(e: AnchorError, role: AnchorRole) -> Refusal {
    match e {
        // A key that is no point was never signed by the root either, but it is a body
        // that cannot be what the command takes.
        AnchorError::Malformed | AnchorError::BadKey => Refusal::Malformed,
        AnchorError::WrongRole { .. } | AnchorError::BadSignature => {
            Refusal::BadAnchor(role.name())
        }
    }
}
