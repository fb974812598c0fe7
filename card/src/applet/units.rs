//! LOAD REQUEST, LOAD APPLY, LOAD CANCEL, UNLOAD and UNLOAD ACK: units between the center
//! and the card (PROTOCOLS.md, "Units between center and card"; the messages are in
//! `apdu_spec::units`).
//!
//! Each command is planned first, from `&self`: the plan checks everything and returns the
//! whole next persistent state with the answer. Only a plan that succeeded replaces
//! `self.persistent`, and it is committed at once. A refused command therefore cannot have
//! changed anything: its plan never had a way to.

use apdu_spec::Status;
use apdu_spec::objects::Ticket;
use apdu_spec::units::{
    self, Acknowledgement, LoadApply, MAX_RECEIPTS, Receipt, ReceiptKind, SignedMessage,
    UnitMessage, UnitValue, domains, tag,
};
use p256::ecdsa::{SigningKey, VerifyingKey};

use super::store::{self, StoreError};
use super::{Applet, Plan};
use crate::state::Persistent;

/// Why a units command is refused. Mapped to a status word once, in `From<Refusal>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("the body is not what the command takes")]
    Malformed,
    #[error("the value would take an amount past 2^64 - 1")]
    Overflow,
    #[error("the card already holds this ticket")]
    DuplicateTicket,
    #[error("a load request is already pending")]
    LoadPending,
    #[error("no load request is pending")]
    NoPendingLoad,
    #[error("the counter has reached its last value")]
    CounterExhausted,
    #[error("not that many units of this asset are available")]
    Insufficient,
    #[error("the value store is full")]
    StoreFull,
    #[error("the receipt list is full")]
    ReceiptsFull,
    #[error("the PIN is not verified in this session")]
    PinNotVerified,
    #[error("a signature does not verify")]
    BadSignature,
    #[error("no receipt of this kind with this counter")]
    NoSuchReceipt,
    /// The dispatcher lets these commands through only when active, and `decode` refuses a
    /// state file whose key, issuer key or messages are unusable: out of reach.
    #[error("the card's own key, issuer key or pending message is unusable")]
    Unusable,
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::Malformed | Refusal::Overflow | Refusal::DuplicateTicket => {
                Status::IncorrectDataParameter
            }
            Refusal::LoadPending
            | Refusal::NoPendingLoad
            | Refusal::CounterExhausted
            | Refusal::Insufficient
            | Refusal::Unusable => Status::ConditionsOfUseNotSatisfied,
            Refusal::StoreFull | Refusal::ReceiptsFull => Status::NotEnoughMemory,
            Refusal::PinNotVerified => Status::SecurityStatusNotSatisfied,
            Refusal::BadSignature => Status::VerificationFailed,
            Refusal::NoSuchReceipt => Status::KeyReferenceNotFound,
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::Overflow => Refusal::Overflow,
            StoreError::DuplicateTicket => Refusal::DuplicateTicket,
            StoreError::Full => Refusal::StoreFull,
            // Loads neither reserve nor release escrow.
            StoreError::NotAvailable | StoreError::NotInEscrow => Refusal::Unusable,
        }
    }
}

impl Applet {
    pub(super) fn load_request(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_load_request(body)?;
        self.carry_out(plan)
    }

    pub(super) fn load_apply(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_load_apply(body)?;
        self.carry_out(plan)
    }

    pub(super) fn load_cancel(&mut self) -> Result<Vec<u8>, Status> {
        let plan = self.plan_load_cancel()?;
        self.carry_out(plan)
    }

    pub(super) fn unload(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_unload(body)?;
        self.carry_out(plan)
    }

    pub(super) fn unload_ack(&mut self, kind: ReceiptKind, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_unload_ack(kind, body)?;
        self.carry_out(plan)
    }

    fn plan_load_request(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let value = UnitValue::decode(body).map_err(|_| Refusal::Malformed)?;
        let p = &self.persistent;
        if p.in_flight.pending_load.is_some() {
            // One request at a time: the center authorises exactly the pending one, so a
            // second would leave the first without a way to be applied or cancelled.
            return Err(Refusal::LoadPending);
        }
        // The room the open exchanges keep for what they bring in is not the load's.
        store::check_room(&p.values, &p.sessions, &value)?;
        let counter = p.load_counter;
        // The counter's last value is never used, so that no request can repeat a number.
        let next_counter = counter.checked_add(1).ok_or(Refusal::CounterExhausted)?;
        let message = UnitMessage {
            card_id: self.units_card_id()?,
            counter,
            value,
        }
        .encode_load();
        let signature = units::sign(&self.units_key()?, domains::LOAD_REQUEST, &message);
        let signed = SignedMessage { message, signature };
        let answer = answer(&signed, tag::SIGNED_LOAD)?;

        let mut next = p.clone();
        next.load_counter = next_counter;
        next.in_flight.pending_load = Some(signed);
        Ok((next, answer))
    }

    fn plan_load_apply(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let (pending, request) = self.pending_load()?;
        let apply = LoadApply::decode(body).map_err(|_| Refusal::Malformed)?;
        // The body's shape must fit the request: a ticket signature for a ticket and for
        // nothing else.
        let ticket_signature = match (&request.value, apply.ticket_signature) {
            (UnitValue::Asset { .. }, None) => None,
            (UnitValue::Ticket { .. }, Some(signature)) => Some(signature),
            _ => return Err(Refusal::Malformed),
        };
        let issuer = self.units_issuer()?;
        // The block list travels with every load, signed by the issuer: a list of another
        // key is refused whatever its version, so no terminal can make the card forget a
        // block by handing it a list of its own.
        apply
            .block_list
            .verify(&issuer)
            .map_err(|_| Refusal::BadSignature)?;
        // The authorisation covers the pending request's own bytes (its card id and its
        // counter) and the version of the list beside it. One made for an older request,
        // another card's request or a request this card cancelled covers other bytes and
        // fails here; so does one whose list the terminal withheld or swapped for another
        // version (an older list, say, from before this card's peer was blocked).
        let authorised = units::authorised(&pending.message, apply.block_list.version);
        if !units::verify(
            &issuer,
            domains::LOAD_AUTH,
            &authorised,
            &apply.authorisation,
        ) {
            return Err(Refusal::BadSignature);
        }
        let p = &self.persistent;
        // Checked at LOAD REQUEST already; nothing else adds values while a load is
        // pending, but the store must never take more than it can hold.
        store::check_room(&p.values, &p.sessions, &request.value)?;

        let mut next = p.clone();
        match request.value {
            UnitValue::Asset { code, amount } => store::credit(&mut next.values, &code, amount)?,
            UnitValue::Ticket { code, serial } => {
                let signature = ticket_signature.ok_or(Refusal::Malformed)?;
                // The ticket names its owner: only a ticket issued to this card is taken,
                // so that it can show the ticket as its own to anyone later.
                if !units::verify_ticket(
                    &issuer,
                    &code,
                    &serial,
                    &self.units_card_id()?,
                    &signature,
                ) {
                    return Err(Refusal::BadSignature);
                }
                next.values.tickets.push(Ticket {
                    asset: code,
                    serial,
                    issuer_signature: signature.to_vec(),
                    escrowed: false,
                    owner: None,
                });
            }
        }
        next.in_flight.pending_load = None;
        // The list is kept in the same commit as the credit: a load never lands without
        // the card learning the blocks the center knew when it authorised it. An older
        // version than the card's own (the center's list only grows) is not kept.
        if apply.block_list.version > p.block_list_version() {
            next.block_list = Some(apply.block_list);
        }
        Ok((next, Vec::new()))
    }

    fn plan_load_cancel(&self) -> Result<Plan, Refusal> {
        let (pending, request) = self.pending_load()?;
        let p = &self.persistent;
        if p.in_flight.receipts.len() >= MAX_RECEIPTS {
            return Err(Refusal::ReceiptsFull);
        }
        // The cancellation is the request's own bytes under another domain: the center
        // refunds exactly that request, and the card, whose pending slot is emptied in
        // the same commit, can never apply it afterwards.
        let signed = SignedMessage {
            signature: units::sign(&self.units_key()?, domains::LOAD_CANCEL, &pending.message),
            message: pending.message.clone(),
        };
        let answer = answer(&signed, tag::SIGNED_CANCEL)?;

        let mut next = p.clone();
        next.in_flight.pending_load = None;
        next.in_flight.receipts.push(Receipt {
            kind: ReceiptKind::LoadCancel,
            counter: request.counter,
            signed,
        });
        Ok((next, answer))
    }

    fn plan_unload(&self, body: &[u8]) -> Result<Plan, Refusal> {
        // UNLOAD spends value: the PIN comes before anything else, so that a card without
        // it tells nothing about its store.
        if !self.volatile.pin_verified {
            return Err(Refusal::PinNotVerified);
        }
        let value = UnitValue::decode(body).map_err(|_| Refusal::Malformed)?;
        // Only units go back to the center; a ticket leaves a card by exchange only.
        let UnitValue::Asset { code, amount } = &value else {
            return Err(Refusal::Malformed);
        };
        let p = &self.persistent;
        let mut next = p.clone();
        // Escrowed units are not spendable: only `available` counts. The debit and the
        // receipt that proves it are one commit: the units are never gone from the card
        // without a receipt the center will credit.
        store::debit(&mut next.values, code, *amount).map_err(|_| Refusal::Insufficient)?;
        if p.in_flight.receipts.len() >= MAX_RECEIPTS {
            return Err(Refusal::ReceiptsFull);
        }
        let counter = p.unload_counter;
        let next_counter = counter.checked_add(1).ok_or(Refusal::CounterExhausted)?;
        let message = UnitMessage {
            card_id: self.units_card_id()?,
            counter,
            value,
        }
        .encode_unload();
        let signature = units::sign(&self.units_key()?, domains::UNLOAD, &message);
        let signed = SignedMessage { message, signature };
        let answer = answer(&signed, tag::SIGNED_UNLOAD)?;

        next.unload_counter = next_counter;
        next.in_flight.receipts.push(Receipt {
            kind: ReceiptKind::Unload,
            counter,
            signed,
        });
        Ok((next, answer))
    }

    fn plan_unload_ack(&self, kind: ReceiptKind, body: &[u8]) -> Result<Plan, Refusal> {
        let ack = Acknowledgement::decode(body).map_err(|_| Refusal::Malformed)?;
        let p = &self.persistent;
        let index = p
            .in_flight
            .receipts
            .iter()
            .position(|r| r.kind == kind && r.counter == ack.counter)
            .ok_or(Refusal::NoSuchReceipt)?;
        // The acknowledgement covers this receipt's own bytes under its kind's domain: one
        // for another receipt, or for the other kind, does not verify.
        if !units::verify(
            &self.units_issuer()?,
            kind.ack_domain(),
            &p.in_flight.receipts[index].signed.message,
            &ack.signature,
        ) {
            return Err(Refusal::BadSignature);
        }
        let mut next = p.clone();
        next.in_flight.receipts.remove(index);
        Ok((next, Vec::new()))
    }

    /// The pending load request, and what it says.
    fn pending_load(&self) -> Result<(&SignedMessage, UnitMessage), Refusal> {
        let pending = self
            .persistent
            .in_flight
            .pending_load
            .as_ref()
            .ok_or(Refusal::NoPendingLoad)?;
        let request = UnitMessage::decode_load(&pending.message).map_err(|_| Refusal::Unusable)?;
        Ok((pending, request))
    }

    fn units_key(&self) -> Result<SigningKey, Refusal> {
        self.card_key().ok_or(Refusal::Unusable)
    }

    fn units_card_id(&self) -> Result<[u8; 32], Refusal> {
        self.own_card_id().ok_or(Refusal::Unusable)
    }

    fn units_issuer(&self) -> Result<VerifyingKey, Refusal> {
        self.issuer_key().ok_or(Refusal::Unusable)
    }
}

/// The answer to LOAD REQUEST, LOAD CANCEL or UNLOAD: `wrapper { message, 9E signature }`.
fn answer(signed: &SignedMessage, wrapper: u16) -> Result<Vec<u8>, Refusal> {
    // The message is the card's own encoding, which always parses.
    signed
        .to_tlv(wrapper)
        .map(|t| t.to_vec())
        .map_err(|_| Refusal::Unusable)
}

/// Whether a state file's units are consistent: the pending message is a load request of
/// this card, and every receipt decodes as its kind with its counter. `decode` refuses a
/// state file where they are not.
pub(crate) fn in_flight_is_consistent(state: &Persistent) -> bool {
    let Some(key) = &state.key else {
        return state.in_flight.is_empty();
    };
    let own = apdu_spec::card_id(&key.public);
    let pending_ok = state
        .in_flight
        .pending_load
        .as_ref()
        .is_none_or(|p| UnitMessage::decode_load(&p.message).is_ok_and(|m| m.card_id == own));
    let receipts_ok = state.in_flight.receipts.len() <= MAX_RECEIPTS
        && state.in_flight.receipts.iter().all(|r| {
            r.decode()
                .is_ok_and(|m| m.card_id == own && m.counter == r.counter)
        });
    pending_ok && receipts_ok
}
