//! Provisioning: what a card maker does to a card at manufacture, here to an emulated
//! card's state. It is offline and never an APDU (TEST RESET, in test mode only, is the one
//! exception), so nothing a terminal sends can give a card another root key or attestation
//! key.
//!
//! An emulated card is not tamper-resistant: whoever holds its state file holds its card
//! key and its attestation key, and so can make any key "attested". Only real secure
//! elements belong under a maker key that a production center trusts; the emulator's maker
//! is a test maker.

use apdu_spec::maker::Manufacture;

use crate::state::Persistent;
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the card was manufactured already: a card is provisioned once")]
    AlreadyManufactured,
    #[error("the card has a key already: only a blank card can be provisioned")]
    HasKey,
    #[error("the manufacture record does not fit together")]
    Inconsistent,
}

/// Writes a blank card holding `manufacture` to `storage`, atomically. Storage that holds
/// nothing, or a blank card that was never manufactured, is provisioned; anything else is
/// refused and left as it is: provisioning never takes a card's identity away.
pub fn provision(
    storage: &mut dyn Storage,
    manufacture: &Manufacture,
) -> Result<Persistent, ProvisionError> {
    if !manufacture.is_consistent() {
        return Err(ProvisionError::Inconsistent);
    }
    if let Some(bytes) = storage.load()? {
        let current = crate::applet::decode(&bytes)?;
        if current.manufacture.is_some() {
            return Err(ProvisionError::AlreadyManufactured);
        }
        if current.key.is_some() {
            return Err(ProvisionError::HasKey);
        }
    }
    let state = Persistent::manufactured(manufacture);
    storage.commit(&crate::applet::encode(&state)?)?;
    Ok(state)
}
