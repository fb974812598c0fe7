//! SELECT by AID.

use apdu_spec::{Apdu, Status, commands, objects};

use super::Applet;

impl Applet {
    pub(super) fn select(&mut self, apdu: &Apdu) -> Result<Vec<u8>, Status> {
        // Only the exact AID: a longer or truncated one names another application.
        if apdu.data != apdu_spec::AID {
            return Err(Status::NotFound);
        }
        self.clear_volatile();
        if apdu.p2 == commands::SELECT_NO_RESPONSE {
            return Ok(Vec::new());
        }
        Ok(objects::fci(self.life_cycle()))
    }
}
