//! GET DATA.

use apdu_spec::Status;
use apdu_spec::objects::{CardInfo, Counters, tag};
use apdu_spec::tlv::{self, Tlv};

use super::Applet;

impl Applet {
    pub(super) fn get_data(&self, object: u16) -> Result<Vec<u8>, Status> {
        let tlv = match object {
            tag::ALL => Some(self.info().to_tlv()),
            tag::LIFE_CYCLE => Some(tlv::primitive(tag::LIFE_CYCLE, [self.life_cycle() as u8])),
            tag::COUNTERS => Some(self.counters().to_tlv()),
            tag::VALUES => Some(self.persistent.values.to_tlv()),
            apdu_spec::units::tag::IN_FLIGHT => Some(self.persistent.in_flight.to_tlv()),
            tag::PUBLIC_KEY => self
                .persistent
                .key
                .as_ref()
                .map(|k| tlv::primitive(tag::PUBLIC_KEY, k.public)),
            tag::CARD_ID => self
                .own_card_id()
                .map(|id| tlv::primitive(tag::CARD_ID, id)),
            tag::CERTIFICATE | tag::ISSUER_KEY | tag::ARBITER_KEY => self.personal_object(object),
            tag::ROOT_KEY | tag::MAKER_CERTIFICATE => self.manufacture_object(object),
            _ => return Err(Status::IncorrectP1OrP2Parameter),
        };
        tlv.map(|t| t.to_vec()).ok_or(Status::KeyReferenceNotFound)
    }

    fn personal_object(&self, object: u16) -> Option<Tlv> {
        let p = self.persistent.personalization.as_ref()?;
        let value = match object {
            tag::CERTIFICATE => p.certificate.clone(),
            tag::ISSUER_KEY => p.issuer_key.to_vec(),
            _ => p.arbiter_key.to_vec(),
        };
        Some(tlv::primitive(object, value))
    }

    /// C5 and C6: what manufacture gave the card, public both (the attestation secret is
    /// never readable).
    fn manufacture_object(&self, object: u16) -> Option<Tlv> {
        let m = self.persistent.manufacture.as_ref()?;
        let value = match object {
            tag::ROOT_KEY => m.root_key.to_vec(),
            _ => m.maker_certificate.clone(),
        };
        Some(tlv::primitive(object, value))
    }

    fn counters(&self) -> Counters {
        Counters {
            load: self.persistent.load_counter,
            unload: self.persistent.unload_counter,
            pin_tries: self
                .persistent
                .personalization
                .as_ref()
                .map_or(0, |p| p.pin.tries_left),
            block_list: self.persistent.block_list_version(),
        }
    }

    fn info(&self) -> CardInfo {
        let p = self.persistent.personalization.as_ref();
        let m = self.persistent.manufacture.as_ref();
        CardInfo {
            life_cycle: self.life_cycle(),
            root_key: m.map(|m| m.root_key.to_vec()),
            maker_certificate: m.map(|m| m.maker_certificate.clone()),
            public_key: self.persistent.key.as_ref().map(|k| k.public.to_vec()),
            card_id: self.own_card_id(),
            certificate: p.map(|p| p.certificate.clone()),
            issuer_key: p.map(|p| p.issuer_key.to_vec()),
            arbiter_key: p.map(|p| p.arbiter_key.to_vec()),
            counters: self.counters(),
            values: self.persistent.values.clone(),
            in_flight: self.persistent.in_flight.clone(),
        }
    }
}
