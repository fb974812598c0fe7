//! The value store, shared by loads and exchanges: whether a value fits, and how values move
//! in and out of escrow.
//!
//! Every open exchange session keeps room in the store for the value it would bring in
//! (PROTOCOLS.md: a session can always be brought to an end). A load or another session
//! that would take that room is refused when it starts, so that COMMIT, FINISH and APPLY
//! VERDICT never find the store full: they could not refuse without leaving a value that
//! both cards have let go of nowhere.

use apdu_spec::exchange::Value;
use apdu_spec::exchange::messages::TicketProof;
use apdu_spec::objects::{AssetBalance, Ticket, Values};
use apdu_spec::units::{MAX_ASSETS, MAX_TICKETS, UnitValue};

use crate::state::Session;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum StoreError {
    #[error("the value would take an amount past 2^64 - 1")]
    Overflow,
    #[error("the card holds this ticket already, or an open session brings it")]
    DuplicateTicket,
    #[error("the value store has no room left")]
    Full,
    #[error("the value is not available: not held, or in escrow")]
    NotAvailable,
    #[error("the escrow does not hold this value")]
    NotInEscrow,
}

/// The values the open sessions may still bring in.
fn incoming(sessions: &[Session]) -> impl Iterator<Item = &UnitValue> {
    sessions.iter().filter_map(|s| s.incoming().as_ref())
}

/// Whether the store can take `value` on top of what it holds and of what the open sessions
/// may bring in.
pub(super) fn check_room(
    values: &Values,
    sessions: &[Session],
    value: &UnitValue,
) -> Result<(), StoreError> {
    match value {
        UnitValue::Asset { code, amount } => {
            let held = values.assets.iter().find(|a| &a.code == code);
            // Available, escrowed and every amount on its way in together stay a u64, so
            // that neither a release from escrow nor a credit can ever overflow.
            let mut total = held.map_or(Some(0), |a| a.available.checked_add(a.escrowed));
            let mut expected = false;
            for v in incoming(sessions) {
                if let UnitValue::Asset { code: c, amount: a } = v
                    && c == code
                {
                    expected = true;
                    total = total.and_then(|t| t.checked_add(*a));
                }
            }
            total
                .and_then(|t| t.checked_add(*amount))
                .ok_or(StoreError::Overflow)?;
            if held.is_none() && !expected {
                let mut codes: Vec<&str> = values.assets.iter().map(|a| a.code.as_str()).collect();
                for v in incoming(sessions) {
                    if let UnitValue::Asset { code: c, .. } = v
                        && !codes.contains(&c.as_str())
                    {
                        codes.push(c);
                    }
                }
                if codes.len() >= MAX_ASSETS {
                    return Err(StoreError::Full);
                }
            }
            Ok(())
        }
        UnitValue::Ticket { .. } => {
            let same = |v: &UnitValue| v == value;
            if values.tickets.iter().any(|t| same(&ticket_value(t))) || incoming(sessions).any(same)
            {
                return Err(StoreError::DuplicateTicket);
            }
            let expected = incoming(sessions)
                .filter(|v| matches!(v, UnitValue::Ticket { .. }))
                .count();
            if values.tickets.len() + expected >= MAX_TICKETS {
                return Err(StoreError::Full);
            }
            Ok(())
        }
    }
}

/// Whether the store holds room for everything the sessions may bring in: each session's
/// value fits on top of the store and of the sessions before it.
pub(super) fn room_is_kept(values: &Values, sessions: &[Session]) -> bool {
    (0..sessions.len()).all(|i| {
        sessions[i]
            .incoming()
            .as_ref()
            .is_none_or(|v| check_room(values, &sessions[..i], v).is_ok())
    })
}

fn ticket_value(t: &Ticket) -> UnitValue {
    UnitValue::Ticket {
        code: t.asset.clone(),
        serial: t.serial.clone(),
    }
}

fn find_ticket<'a>(values: &'a Values, code: &str, serial: &[u8]) -> Option<&'a Ticket> {
    values
        .tickets
        .iter()
        .find(|t| t.asset == code && t.serial == serial)
}

/// The proof a card shows for a ticket it gives: the card the issuer issued it to (this one,
/// unless it came by exchange) and the issuer's signature.
pub(super) fn proof_of(
    values: &Values,
    value: &Value,
    own_id: &[u8; 32],
) -> Option<Option<TicketProof>> {
    match value {
        Some(UnitValue::Ticket { code, serial }) => {
            let t = find_ticket(values, code, serial)?;
            Some(Some(TicketProof {
                owner: t.owner.unwrap_or(*own_id),
                signature: t.issuer_signature.as_slice().try_into().ok()?,
            }))
        }
        _ => Some(None),
    }
}

/// Adds units to `available`, making the asset's entry when it is new. [`check_room`] has
/// passed, so neither the sum nor the entry count can overflow.
pub(super) fn credit(values: &mut Values, code: &str, amount: u64) -> Result<(), StoreError> {
    match values.assets.iter_mut().find(|a| a.code == code) {
        Some(a) => {
            a.available = a
                .available
                .checked_add(amount)
                .ok_or(StoreError::Overflow)?;
        }
        None => values.assets.push(AssetBalance {
            code: code.to_string(),
            available: amount,
            escrowed: 0,
        }),
    }
    Ok(())
}

/// Takes units out of what is available, for good: they leave the card (UNLOAD).
pub(super) fn debit(values: &mut Values, code: &str, amount: u64) -> Result<(), StoreError> {
    let i = values
        .assets
        .iter()
        .position(|a| a.code == code)
        .ok_or(StoreError::NotAvailable)?;
    let a = &mut values.assets[i];
    a.available = a
        .available
        .checked_sub(amount)
        .ok_or(StoreError::NotAvailable)?;
    drop_if_empty(values, i);
    Ok(())
}

/// An asset with nothing available and nothing in escrow is gone from the store.
fn drop_if_empty(values: &mut Values, i: usize) {
    let a = &values.assets[i];
    if a.available == 0 && a.escrowed == 0 {
        values.assets.remove(i);
    }
}

/// Takes a value out of what is available into escrow: it cannot be offered or spent again.
pub(super) fn reserve(values: &mut Values, value: &Value) -> Result<(), StoreError> {
    match value {
        None => Ok(()),
        Some(UnitValue::Asset { code, amount }) => {
            let a = values
                .assets
                .iter_mut()
                .find(|a| &a.code == code)
                .ok_or(StoreError::NotAvailable)?;
            a.available = a
                .available
                .checked_sub(*amount)
                .ok_or(StoreError::NotAvailable)?;
            a.escrowed = a
                .escrowed
                .checked_add(*amount)
                .ok_or(StoreError::Overflow)?;
            Ok(())
        }
        Some(UnitValue::Ticket { code, serial }) => {
            let t = values
                .tickets
                .iter_mut()
                .find(|t| &t.asset == code && &t.serial == serial && !t.escrowed)
                .ok_or(StoreError::NotAvailable)?;
            t.escrowed = true;
            Ok(())
        }
    }
}

/// Gives a value in escrow back to what is available: the exchange did not happen.
pub(super) fn release(values: &mut Values, value: &Value) -> Result<(), StoreError> {
    match value {
        None => Ok(()),
        Some(UnitValue::Asset { code, amount }) => {
            let a = values
                .assets
                .iter_mut()
                .find(|a| &a.code == code)
                .ok_or(StoreError::NotInEscrow)?;
            a.escrowed = a
                .escrowed
                .checked_sub(*amount)
                .ok_or(StoreError::NotInEscrow)?;
            a.available = a
                .available
                .checked_add(*amount)
                .ok_or(StoreError::Overflow)?;
            Ok(())
        }
        Some(UnitValue::Ticket { code, serial }) => {
            let t = values
                .tickets
                .iter_mut()
                .find(|t| &t.asset == code && &t.serial == serial && t.escrowed)
                .ok_or(StoreError::NotInEscrow)?;
            t.escrowed = false;
            Ok(())
        }
    }
}

/// Drops a value from escrow: the other card has it now.
pub(super) fn hand_over(values: &mut Values, value: &Value) -> Result<(), StoreError> {
    match value {
        None => Ok(()),
        Some(UnitValue::Asset { code, amount }) => {
            let i = values
                .assets
                .iter()
                .position(|a| &a.code == code)
                .ok_or(StoreError::NotInEscrow)?;
            let a = &mut values.assets[i];
            a.escrowed = a
                .escrowed
                .checked_sub(*amount)
                .ok_or(StoreError::NotInEscrow)?;
            drop_if_empty(values, i);
            Ok(())
        }
        Some(UnitValue::Ticket { code, serial }) => {
            let i = values
                .tickets
                .iter()
                .position(|t| &t.asset == code && &t.serial == serial && t.escrowed)
                .ok_or(StoreError::NotInEscrow)?;
            values.tickets.remove(i);
            Ok(())
        }
    }
}

/// Stores a value received by exchange. `sessions` are the sessions still open once the
/// receiving one has ended: the room it kept is free for this value now.
pub(super) fn receive(
    values: &mut Values,
    sessions: &[Session],
    value: &Value,
    proof: Option<TicketProof>,
    own_id: &[u8; 32],
) -> Result<(), StoreError> {
    let Some(v) = value else { return Ok(()) };
    check_room(values, sessions, v)?;
    match v {
        UnitValue::Asset { code, amount } => credit(values, code, *amount),
        UnitValue::Ticket { code, serial } => {
            // AGREE and CONFIRM refused a ticket without its proof; the state decoder
            // refuses a session that lacks it.
            let proof = proof.ok_or(StoreError::NotInEscrow)?;
            values.tickets.push(Ticket {
                asset: code.clone(),
                serial: serial.clone(),
                issuer_signature: proof.signature.to_vec(),
                escrowed: false,
                // A ticket that comes back to the card it was issued to is its own again.
                owner: (proof.owner != *own_id).then_some(proof.owner),
            });
            Ok(())
        }
    }
}

/// Whether the escrow the store shows is exactly what the open sessions hold: for each
/// asset, the escrowed amount is the sum the sessions give of it; each escrowed ticket is
/// given by exactly one session, and each ticket a session gives is held and escrowed.
pub(super) fn escrow_is_consistent(values: &Values, sessions: &[Session]) -> bool {
    let outgoing: Vec<&UnitValue> = sessions
        .iter()
        .filter_map(|s| s.outgoing().as_ref())
        .collect();
    let assets_ok = values.assets.iter().all(|a| {
        let mut sum = Some(0u64);
        for v in &outgoing {
            if let UnitValue::Asset { code, amount } = v
                && code == &a.code
            {
                sum = sum.and_then(|s| s.checked_add(*amount));
            }
        }
        sum == Some(a.escrowed)
    });
    let given_held = outgoing.iter().all(|v| match v {
        UnitValue::Asset { code, .. } => values.assets.iter().any(|a| &a.code == code),
        UnitValue::Ticket { code, serial } => {
            find_ticket(values, code, serial).is_some_and(|t| t.escrowed)
        }
    });
    let tickets_ok = values.tickets.iter().all(|t| {
        let givers = outgoing.iter().filter(|v| ***v == ticket_value(t)).count();
        givers == usize::from(t.escrowed)
    });
    assets_ok && given_held && tickets_ok
}
