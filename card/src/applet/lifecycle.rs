//! GENERATE KEY, PERSONALIZE and TEST RESET: the card's life cycle.

use apdu_spec::cert::{self, Certificate};
use apdu_spec::objects::{Personalization as Body, pin_is_well_formed, tag};
use apdu_spec::{Status, tlv};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use rand::RngExt;

use super::Applet;
use crate::state::{CardKey, Persistent, Personalization, PinRecord};

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
        let body = Body::decode(body).map_err(|_| Status::IncorrectDataParameter)?;
        let issuer =
            cert::decode_public_key(&body.issuer_key).ok_or(Status::IncorrectDataParameter)?;
        cert::decode_public_key(&body.arbiter_key).ok_or(Status::IncorrectDataParameter)?;
        let certificate =
            Certificate::decode(&body.certificate).map_err(|_| Status::IncorrectDataParameter)?;
        certificate
            .verify(&issuer)
            .map_err(|_| Status::IncorrectDataParameter)?;
        let own_key = self
            .persistent
            .key
            .as_ref()
            .map(|k| k.public)
            .ok_or(Status::ConditionsOfUseNotSatisfied)?;
        if certificate.public_key != own_key {
            return Err(Status::IncorrectDataParameter);
        }
        if !pin_is_well_formed(&body.pin) {
            return Err(Status::IncorrectDataParameter);
        }
        let salt: [u8; 16] = self.rng.random();
        self.persistent.personalization = Some(Personalization {
            issuer_key: body
                .issuer_key
                .as_slice()
                .try_into()
                .map_err(|_| Status::IncorrectDataParameter)?,
            arbiter_key: body
                .arbiter_key
                .as_slice()
                .try_into()
                .map_err(|_| Status::IncorrectDataParameter)?,
            certificate: body.certificate,
            pin: PinRecord::new(&body.pin, salt),
        });
        self.commit()?;
        Ok(Vec::new())
    }

    pub(super) fn test_reset(&mut self) -> Result<Vec<u8>, Status> {
        self.persistent = Persistent::blank();
        self.commit()?;
        self.clear_volatile();
        Ok(Vec::new())
    }
}
