//! VERIFY and CHANGE REFERENCE DATA.

use apdu_spec::{Status, objects};
use rand::RngExt;

use super::Applet;
use crate::state::PinRecord;

impl Applet {
    pub(super) fn verify(&mut self, candidate: &[u8]) -> Result<Vec<u8>, Status> {
        let tries = self.pin()?.tries_left;
        if tries == 0 {
            return Err(Status::OperationBlocked);
        }
        if candidate.is_empty() {
            // The try-count query.
            return if self.volatile.pin_verified {
                Ok(Vec::new())
            } else {
                Err(Status::RemainingRetries(tries))
            };
        }
        self.spend_try_then_compare(candidate)?;
        self.pin_mut()?.tries_left = apdu_spec::PIN_MAX_TRIES;
        self.commit()?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }

    pub(super) fn change_pin(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        if self.pin()?.tries_left == 0 {
            return Err(Status::OperationBlocked);
        }
        let (old, new) =
            objects::decode_pin_change(body).map_err(|_| Status::IncorrectDataParameter)?;
        if !objects::pin_is_well_formed(&new) {
            return Err(Status::IncorrectDataParameter);
        }
        self.spend_try_then_compare(&old)?;
        let salt: [u8; 16] = self.rng.random();
        *self.pin_mut()? = PinRecord::new(&new, salt);
        self.commit()?;
        self.volatile.pin_verified = true;
        Ok(Vec::new())
    }

    /// The try is spent and committed *before* the comparison: cutting the power once the
    /// answer could be told apart never gives a free guess. A right PIN therefore costs a
    /// second commit (the caller's) to give the try back.
    fn spend_try_then_compare(&mut self, candidate: &[u8]) -> Result<(), Status> {
        self.volatile.pin_verified = false;
        let record = self.pin_mut()?;
        record.tries_left -= 1;
        self.commit()?;
        let record = self.pin()?;
        if record.matches(candidate) {
            Ok(())
        } else {
            Err(Status::RemainingRetries(record.tries_left))
        }
    }

    fn pin(&self) -> Result<&PinRecord, Status> {
        self.persistent
            .personalization
            .as_ref()
            .map(|p| &p.pin)
            .ok_or(Status::ConditionsOfUseNotSatisfied)
    }

    fn pin_mut(&mut self) -> Result<&mut PinRecord, Status> {
        self.persistent
            .personalization
            .as_mut()
            .map(|p| &mut p.pin)
            .ok_or(Status::ConditionsOfUseNotSatisfied)
    }
}
