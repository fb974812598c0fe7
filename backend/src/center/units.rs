//! Units between the center and a card (PROTOCOLS.md, "Units between center and card"):
//! loads, their cancellations, unloads, tickets, and a card's ledger.
//!
//! The card signs its messages (apdu-spec `units`); the center takes them exactly as the
//! card answered them and signs the same bytes back under its own domains. Every request
//! runs its checks and writes in one transaction, is idempotent on the card's (card id,
//! counter), and a refusal changes nothing. The balances move only in the schema's
//! triggers (`migrations/sqlite/center/0002_units.sql`), which also refuse by themselves a
//! second load of a counter, an overdraw, a load of a cancelled request, and a ticket
//! delivered twice.
//!
//! A blocked card (or a card of a blocked maker) gets no load, unload or ticket, and no
//! ledger by its own proof; its cancellations still go through, so that what a load took
//! comes back to its unit account rather than staying nowhere. An unload that would take
//! the float (what all cards hold, per asset) below zero is refused as `float_exceeded` and
//! raises an alarm (`blocks`): genuine cards together never give back more than they were
//! loaded with, so some card key left its chip and signed value. That card is not always
//! the one the alarm names: an unload that minted value may have gone through while the
//! float still covered it, and the honest unload after it be the one refused.
//!
//! A cancellation of a request the center never authorised is acknowledged as `voided`
//! rather than refused: the card keeps its signed cancellation until the center
//! acknowledges it, so the center must be able to answer it; and recording it makes sure
//! that the request can never be authorised afterwards (a later load of it is
//! `load_cancelled`). Only a `refunded` cancellation moves units.

use rand::RngExt;

use apdu_spec::cert::Certificate;
use apdu_spec::units::{self, SIGNATURE_LEN, UnitError, UnitMessage, UnitValue, domains};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    CancelAcknowledgement, CancelOutcome, CardLedger, ChallengePurpose, IssuedTicket, LedgerEntry,
    LedgerKind, LedgerRequest, LedgerTotals, LoadAuthorisation, LoadCancellation, LoadOrder,
    TicketIssueRequest, UnloadAcknowledgement, UnloadOrder,
};

use super::blocks::current_version;
use super::{
    AccountTotals, Center, RegisteredCard, check_fits, consume_challenge, today, unit_accounts,
    unknown_card,
};
use crate::db::{Row, Tx, Value};
use crate::error::{ApiError, ApiResult, invalid, signature_bytes};

/// The length of the serial the center picks when the admin gives none.
pub const RANDOM_SERIAL_LEN: usize = 16;

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Conflict, message)
}

fn counter_value(counter: u32) -> Value {
    Value::Int(i64::from(counter))
}

fn card_counter(card_id: &[u8; 32], counter: u32) -> String {
    format!("card {} counter {counter}", hex::encode(card_id))
}

/// Decodes a load request, which must be in the canonical encoding the card makes
/// (`UnitMessage::encode_load`): the schema reads its fields at fixed places, and one
/// request has one byte string.
fn decode_request(bytes: &[u8]) -> ApiResult<UnitMessage> {
    let message = UnitMessage::decode_load(bytes)
        .map_err(|e| invalid(format!("request: not a load request (E7): {e}")))?;
    if message.encode_load() != bytes {
        return Err(invalid(
            "request: the E7 template is not in canonical encoding",
        ));
    }
    Ok(message)
}

/// Decodes an unload receipt (units only, canonical encoding).
fn decode_receipt(bytes: &[u8]) -> ApiResult<UnitMessage> {
    let message = UnitMessage::decode_unload(bytes).map_err(|e| match e {
        UnitError::TicketInReceipt => invalid("receipt: a ticket cannot be unloaded"),
        e => invalid(format!("receipt: not an unload receipt (E8): {e}")),
    })?;
    if message.encode_unload() != bytes {
        return Err(invalid(
            "receipt: the E8 template is not in canonical encoding",
        ));
    }
    Ok(message)
}

impl RegisteredCard {
    /// Checks the card's signature over `message` under `domain`.
    fn verify(&self, domain: &str, message: &[u8], signature: &[u8], what: &str) -> ApiResult<()> {
        if units::verify(&self.key, domain, message, signature) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::BadSignature,
                format!("the signature is not the card's over this {what} under {domain}"),
            ))
        }
    }

    /// The certificate the center issued must be within its validity at `now`.
    fn check_certificate(&self, now: u64) -> ApiResult<()> {
        let cert = Certificate::decode(&self.certificate)
            .map_err(|_| ApiError::internal("a stored certificate does not parse"))?;
        if now < cert.not_before || now > cert.not_after {
            return Err(ApiError::new(
                ErrorCode::CertificateExpired,
                format!(
                    "the card's certificate is valid from {} to {} (Unix time) only",
                    cert.not_before, cert.not_after
                ),
            ));
        }
        Ok(())
    }
}

/// The value of a `loads` row: kind, asset, amount, serial from `first` on.
fn load_value(row: &Row, first: usize) -> ApiResult<UnitValue> {
    let code = row.text(first + 1)?;
    match row.text(first)?.as_str() {
        "asset" => Ok(UnitValue::Asset {
            code,
            amount: row.u64(first + 2)?,
        }),
        "ticket" => Ok(UnitValue::Ticket {
            code,
            serial: row.blob(first + 3)?,
        }),
        other => Err(ApiError::internal(format!("a load of kind {other:?}"))),
    }
}

/// A column that may be NULL: `tickets.delivery_counter`.
fn optional_counter(row: &Row, i: usize) -> ApiResult<Option<u32>> {
    match row.0.get(i) {
        Some(Value::Null) => Ok(None),
        _ => stored_counter(row, i).map(Some),
    }
}

fn stored_counter(row: &Row, i: usize) -> ApiResult<u32> {
    u32::try_from(row.u64(i)?).map_err(|_| ApiError::internal("a stored counter is out of range"))
}

fn outcome_name(outcome: CancelOutcome) -> &'static str {
    match outcome {
        CancelOutcome::Refunded => "refunded",
        CancelOutcome::Voided => "voided",
    }
}

fn outcome_from(name: &str) -> ApiResult<CancelOutcome> {
    match name {
        "refunded" => Ok(CancelOutcome::Refunded),
        "voided" => Ok(CancelOutcome::Voided),
        other => Err(ApiError::internal(format!(
            "a cancellation outcome {other:?}"
        ))),
    }
}

/// The order of a day's entries: what came in, then what went out and came back.
fn kind_rank(kind: LedgerKind) -> u8 {
    match kind {
        LedgerKind::Redeem => 0,
        LedgerKind::TicketIssued => 1,
        LedgerKind::Load => 2,
        LedgerKind::Refund => 3,
        LedgerKind::Unload => 4,
    }
}

/// The balance of the card's unit account for `code`; 0 if it has none.
fn unit_balance(tx: &mut dyn Tx, card_id: &[u8; 32], code: &str) -> ApiResult<u64> {
    Ok(tx
        .query_opt(
            "SELECT balance FROM unit_accounts WHERE card_id = ?1 AND asset = ?2",
            &[card_id.into(), code.into()],
        )?
        .map(|r| r.u64(0))
        .transpose()?
        .unwrap_or(0))
}

/// The float of `asset`: what the cards hold in all; 0 if none of it was ever loaded.
fn float_of(tx: &mut dyn Tx, asset: &str) -> ApiResult<i64> {
    Ok(tx
        .query_opt(
            "SELECT amount FROM floats WHERE asset = ?1",
            &[asset.into()],
        )?
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0))
}

fn add(total: &mut u64, amount: u64) -> ApiResult<()> {
    *total = total
        .checked_add(amount)
        .ok_or_else(|| ApiError::internal("a ledger total overflows"))?;
    Ok(())
}

impl Center {
    fn check_currency(&self, code: &str) -> ApiResult<()> {
        if code == self.config.currency {
            Ok(())
        } else {
            Err(invalid(format!(
                "the center holds units of {} only, not {code}",
                self.config.currency
            )))
        }
    }

    /// The ticket's signature, for the answer to a ticket's load.
    fn ticket_signature(
        tx: &mut dyn Tx,
        value: &UnitValue,
    ) -> ApiResult<Option<[u8; SIGNATURE_LEN]>> {
        let UnitValue::Ticket { code, serial } = value else {
            return Ok(None);
        };
        let row = tx
            .query_opt(
                "SELECT signature FROM tickets WHERE asset = ?1 AND serial = ?2",
                &[code.as_str().into(), serial.as_slice().into()],
            )?
            .ok_or_else(|| ApiError::internal("a loaded ticket is missing"))?;
        Ok(Some(row.array(0)?))
    }

    /// Authorises a card's load request: debits the unit account (or hands the card its
    /// ticket) once per (card id, counter), and answers the issuer's signature over the
    /// request and the current block list's version, with that list. The same request
    /// again gets the same answer (`replayed`: the same authorisation and the same list)
    /// and moves nothing, even once the certificate has expired; a cancelled request is
    /// refused, and so is a blocked card.
    pub fn load(&self, order: &LoadOrder) -> ApiResult<LoadAuthorisation> {
        let message = decode_request(&order.request)?;
        let signature = signature_bytes(&order.signature, "signature")?;
        let now = self.clock.now();
        let answer = |authorisation, ticket_signature, block_list, replayed| LoadAuthorisation {
            card_id: message.card_id,
            counter: message.counter,
            value: message.value.clone(),
            authorisation,
            ticket_signature,
            block_list,
            replayed,
        };
        let key = [message.card_id.into(), counter_value(message.counter)];
        let at = card_counter(&message.card_id, message.counter);
        self.db.transaction(|tx| {
            let card = RegisteredCard::find(tx, &message.card_id)?;
            card.verify(domains::LOAD_REQUEST, &order.request, &signature, "load request")?;
            card.refuse_if_blocked(tx)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM load_cancellations WHERE card_id = ?1 AND counter = ?2",
                    &key,
                )?
                .is_some()
            {
                return Err(ApiError::new(
                    ErrorCode::LoadCancelled,
                    format!("the card cancelled the load request of {at}: it is never authorised"),
                ));
            }
            if let Some(row) = tx.query_opt(
                "SELECT request, authorisation, block_list_version FROM loads
                 WHERE card_id = ?1 AND counter = ?2",
                &key,
            )? {
                if row.blob(0)? != order.request {
                    return Err(conflict(format!(
                        "{at} was authorised for another load request"
                    )));
                }
                let version = u32::try_from(row.u64(2).map_err(|_| {
                    ApiError::internal("a load authorised before block lists cannot be answered again")
                })?)
                .map_err(|_| ApiError::internal("a stored list version is out of range"))?;
                let ticket_signature = Self::ticket_signature(tx, &message.value)?;
                let block_list = self.block_list_at(tx, version)?;
                return Ok(answer(row.array(1)?, ticket_signature, block_list, true));
            }
            card.check_certificate(now)?;
            let (kind, amount, serial, ticket_signature) = match &message.value {
                UnitValue::Asset { code, amount } => {
                    self.check_currency(code)?;
                    let balance = unit_balance(tx, &message.card_id, code)?;
                    if balance < *amount {
                        return Err(ApiError::new(
                            ErrorCode::InsufficientFunds,
                            format!("the unit account holds {balance} {code}, the load asks for {amount}"),
                        ));
                    }
                    // The card's loaded total and the float grow by the amount: neither
                    // may pass 2^63 - 1 (the schema refuses it too).
                    let totals = AccountTotals::read(tx, &message.card_id, code)?;
                    check_fits("the card's loaded total", totals.loaded, *amount)?;
                    check_fits("the float", float_of(tx, code)?, *amount)?;
                    ("asset", Value::uint(*amount)?, Value::Null, None)
                }
                UnitValue::Ticket { code, serial } => {
                    let row = tx.query_opt(
                        "SELECT card_id, signature, delivery_counter FROM tickets
                         WHERE asset = ?1 AND serial = ?2",
                        &[code.as_str().into(), serial.as_slice().into()],
                    )?;
                    let Some(row) = row.filter(|r| r.0.first() == Some(&message.card_id.into()))
                    else {
                        return Err(ApiError::new(
                            ErrorCode::UnknownTicket,
                            format!("no {} was issued to card {}", message.value, hex::encode(message.card_id)),
                        ));
                    };
                    if let Some(counter) = optional_counter(&row, 2)? {
                        return Err(conflict(format!(
                            "{} was delivered already, by load counter {counter}",
                            message.value,
                        )));
                    }
                    ("ticket", Value::Null, serial.as_slice().into(), Some(row.array(1)?))
                }
            };
            // The card takes the list with the credit, and keeps it if it is newer than its
            // own: the authorisation covers its version, so a relay cannot hand it an
            // older one.
            let version = current_version(tx)?;
            let block_list = self.block_list_at(tx, version)?;
            let authorisation = units::sign(
                &self.issuer,
                domains::LOAD_AUTH,
                &units::authorised(&order.request, version),
            );
            // The trigger `loads_debit` debits the unit account and adds to the float
            // (`loads_deliver_ticket` marks the ticket delivered); the primary key makes a
            // second load of this counter impossible, and `loads_not_cancelled` a load of a
            // cancelled one.
            tx.execute(
                "INSERT INTO loads
                     (card_id, counter, request, signature, kind, asset, amount, serial, authorisation, day,
                      block_list_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &[
                    message.card_id.into(),
                    counter_value(message.counter),
                    order.request.as_slice().into(),
                    signature.into(),
                    kind.into(),
                    message.value.code().into(),
                    amount,
                    serial,
                    authorisation.into(),
                    Value::uint(today(now))?,
                    Value::Int(i64::from(version)),
                ],
            )?;
            Ok(answer(authorisation, ticket_signature, block_list, false))
        })
    }

    /// Takes a card's cancellation of a load request, once per (card id, counter). An
    /// authorised request is refunded (its units go back, its ticket is free again); a
    /// request never authorised is voided: nothing moves, and it can never be authorised
    /// (see the module's doc). The same cancellation again gets the same answer. A blocked
    /// card's cancellations are taken too: a refund only moves units back to the center.
    pub fn cancel_load(&self, cancel: &LoadCancellation) -> ApiResult<CancelAcknowledgement> {
        let message = decode_request(&cancel.request)?;
        let signature = signature_bytes(&cancel.signature, "signature")?;
        let now = self.clock.now();
        let answer = |outcome, acknowledgement, replayed| CancelAcknowledgement {
            card_id: message.card_id,
            counter: message.counter,
            value: message.value.clone(),
            outcome,
            acknowledgement,
            replayed,
        };
        let key = [message.card_id.into(), counter_value(message.counter)];
        let at = card_counter(&message.card_id, message.counter);
        self.db.transaction(|tx| {
            let card = RegisteredCard::find(tx, &message.card_id)?;
            card.verify(
                domains::LOAD_CANCEL,
                &cancel.request,
                &signature,
                "load cancellation",
            )?;
            if let Some(row) = tx.query_opt(
                "SELECT request, outcome, acknowledgement FROM load_cancellations
                 WHERE card_id = ?1 AND counter = ?2",
                &key,
            )? {
                if row.blob(0)? != cancel.request {
                    return Err(conflict(format!(
                        "{at} was cancelled with another load request"
                    )));
                }
                return Ok(answer(outcome_from(&row.text(1)?)?, row.array(2)?, true));
            }
            let outcome = match tx.query_opt(
                "SELECT request FROM loads WHERE card_id = ?1 AND counter = ?2",
                &key,
            )? {
                Some(row) if row.blob(0)? == cancel.request => {
                    if let UnitValue::Asset { code, amount } = &message.value {
                        let totals = AccountTotals::read(tx, &message.card_id, code)?;
                        check_fits("the card's refunded total", totals.refunded, *amount)?;
                        check_fits("the card's unit balance", totals.balance, *amount)?;
                    }
                    CancelOutcome::Refunded
                }
                Some(_) => {
                    return Err(conflict(format!(
                        "{at} was authorised for another load request"
                    )));
                }
                None => CancelOutcome::Voided,
            };
            let acknowledgement =
                units::sign(&self.issuer, domains::LOAD_CANCEL_ACK, &cancel.request);
            // The trigger `load_cancellations_settle` refunds a loaded request (and checks
            // that a voided one was never loaded); the primary key makes a second refund
            // impossible.
            tx.execute(
                "INSERT INTO load_cancellations
                     (card_id, counter, request, signature, outcome, acknowledgement, day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    message.card_id.into(),
                    counter_value(message.counter),
                    cancel.request.as_slice().into(),
                    signature.into(),
                    outcome_name(outcome).into(),
                    acknowledgement.into(),
                    Value::uint(today(now))?,
                ],
            )?;
            Ok(answer(outcome, acknowledgement, false))
        })
    }

    /// Credits a card's unload receipt to its unit account, once per (card id, counter),
    /// and answers the issuer's acknowledgement. The same receipt again gets the same
    /// answer. An expired certificate does not stop an unload: the units must come back. A
    /// blocked card is refused, and so is an unload past the float (`float_exceeded`, with
    /// an alarm).
    pub fn unload(&self, order: &UnloadOrder) -> ApiResult<UnloadAcknowledgement> {
        let message = decode_receipt(&order.receipt)?;
        let signature = signature_bytes(&order.signature, "signature")?;
        let UnitValue::Asset { code, amount } = &message.value else {
            return Err(invalid("receipt: a ticket cannot be unloaded"));
        };
        let now = self.clock.now();
        let answer = |acknowledgement, replayed| UnloadAcknowledgement {
            card_id: message.card_id,
            counter: message.counter,
            value: message.value.clone(),
            acknowledgement,
            replayed,
        };
        let key = [message.card_id.into(), counter_value(message.counter)];
        let at = card_counter(&message.card_id, message.counter);
        // Ok(Err(float)): refused for the float, which was `float`; nothing written.
        let outcome =
            self.db
                .transaction(|tx| -> ApiResult<Result<UnloadAcknowledgement, i64>> {
                    let card = RegisteredCard::find(tx, &message.card_id)?;
                    card.verify(
                        domains::UNLOAD,
                        &order.receipt,
                        &signature,
                        "unload receipt",
                    )?;
                    card.refuse_if_blocked(tx)?;
                    self.check_currency(code)?;
                    if let Some(row) = tx.query_opt(
                "SELECT receipt, acknowledgement FROM unloads WHERE card_id = ?1 AND counter = ?2",
                &key,
            )? {
                if row.blob(0)? != order.receipt {
                    return Err(conflict(format!("{at} was unloaded with another receipt")));
                }
                return Ok(Ok(answer(row.array(1)?, true)));
            }
                    // Invariant 5: the cards never give back more than they were loaded with. The
                    // schema refuses it too (CHECK (amount >= 0) on floats); here it is refused
                    // with its own code, and an alarm.
                    let float = float_of(tx, code)?;
                    if i128::from(float) < i128::from(*amount) {
                        return Ok(Err(float));
                    }
                    let totals = AccountTotals::read(tx, &message.card_id, code)?;
                    check_fits("the card's unloaded total", totals.unloaded, *amount)?;
                    check_fits("the card's unit balance", totals.balance, *amount)?;
                    let acknowledgement =
                        units::sign(&self.issuer, domains::UNLOAD_ACK, &order.receipt);
                    // The trigger `unloads_credit` credits the unit account and takes the amount
                    // off the float; the primary key makes a second credit of this counter
                    // impossible.
                    tx.execute(
                        "INSERT INTO unloads
                     (card_id, counter, receipt, signature, asset, amount, acknowledgement, day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        &[
                            message.card_id.into(),
                            counter_value(message.counter),
                            order.receipt.as_slice().into(),
                            signature.into(),
                            code.as_str().into(),
                            Value::uint(*amount)?,
                            acknowledgement.into(),
                            Value::uint(today(now))?,
                        ],
                    )?;
                    Ok(Ok(answer(acknowledgement, false)))
                })?;
        outcome.map_err(|float| {
            self.raise_float_alarm(&message, &order.receipt, &signature, code, *amount, float);
            ApiError::new(
                ErrorCode::FloatExceeded,
                format!(
                    "{at}: the cards hold {float} {code} in all, less than this receipt's {amount}: some card gave back value that no card was loaded with, and the staff have been alerted; the card keeps its receipt, and the unload can be tried again"
                ),
            )
        })
    }

    /// Issues a ticket to a card (admin): the issuer signs (asset, serial, card id). The
    /// same asset and serial again for the same card get the first ticket (`replayed`);
    /// for another card, a conflict. Without a serial the center picks 16 random bytes. A
    /// blocked card gets none.
    pub fn issue_ticket(
        &self,
        admin: Option<&str>,
        req: &TicketIssueRequest,
    ) -> ApiResult<IssuedTicket> {
        self.check_admin(admin)?;
        if !units::asset_code_ok(&req.asset) {
            return Err(invalid(format!(
                "asset: must be 1 to {} printable ASCII characters",
                units::ASSET_CODE_MAX_LEN
            )));
        }
        if req.asset == self.config.currency {
            return Err(invalid(format!(
                "asset: {} is the center's currency, not a ticket",
                req.asset
            )));
        }
        let serial = match &req.serial {
            Some(s) if (1..=units::SERIAL_MAX_LEN).contains(&s.len()) => s.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "serial: must be 1 to {} bytes",
                    units::SERIAL_MAX_LEN
                )));
            }
            None => rand::rng().random::<[u8; RANDOM_SERIAL_LEN]>().to_vec(),
        };
        let now = self.clock.now();
        let answer = |signature, delivered, replayed| IssuedTicket {
            card_id: req.card_id,
            asset: req.asset.clone(),
            serial: serial.clone(),
            signature,
            delivered,
            replayed,
        };
        self.db.transaction(|tx| {
            RegisteredCard::find(tx, &req.card_id)?.refuse_if_blocked(tx)?;
            if let Some(row) = tx.query_opt(
                "SELECT card_id, signature, delivery_counter FROM tickets
                 WHERE asset = ?1 AND serial = ?2",
                &[req.asset.as_str().into(), serial.as_slice().into()],
            )? {
                if row.array::<32>(0)? != req.card_id {
                    return Err(conflict(format!(
                        "ticket {} #{} was issued to another card",
                        req.asset,
                        hex::encode(&serial)
                    )));
                }
                return Ok(answer(
                    row.array(1)?,
                    optional_counter(&row, 2)?.is_some(),
                    true,
                ));
            }
            let signature = units::sign_ticket(&self.issuer, &req.asset, &serial, &req.card_id);
            tx.execute(
                "INSERT INTO tickets (asset, serial, card_id, signature, issued_day)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    req.asset.as_str().into(),
                    serial.as_slice().into(),
                    req.card_id.into(),
                    signature.into(),
                    Value::uint(today(now))?,
                ],
            )?;
            Ok(answer(signature, false, false))
        })
    }

    /// A card's unit accounts, ledger and tickets: for the admin token, or for a proof over
    /// a fresh balance challenge signed by the card (which uses the challenge up), unless
    /// the card is blocked. With the admin token the proof is not looked at.
    ///
    /// The entries are the value movements: redemptions, loads, refunds, unloads, and
    /// tickets issued. A voided cancellation moved nothing and is not an entry.
    pub fn ledger(&self, admin: Option<&str>, req: &LedgerRequest) -> ApiResult<CardLedger> {
        let proof = match (admin, &req.proof) {
            (Some(_), _) => {
                self.check_admin(admin)?;
                None
            }
            (None, Some(proof)) => Some(proof),
            (None, None) => {
                return Err(ApiError::new(
                    ErrorCode::AdminUnauthorized,
                    "give a proof over a balance challenge signed by the card, or the admin token",
                ));
            }
        };
        let now = self.clock.now();
        let card_id = req.card_id;
        self.db.transaction(|tx| {
            match proof {
                Some(proof) => {
                    let card = RegisteredCard::find(tx, &card_id)?;
                    consume_challenge(tx, proof, ChallengePurpose::Balance, &card.key, now)?;
                    card.refuse_if_blocked(tx)?;
                }
                // The staff read any card's ledger: a blocked card's, and one registered
                // before cards were attested.
                None => {
                    if tx
                        .query_opt("SELECT 1 FROM cards WHERE card_id = ?1", &[card_id.into()])?
                        .is_none()
                    {
                        return Err(unknown_card(&card_id));
                    }
                }
            }
            self.read_ledger(tx, card_id)
        })
    }

    fn read_ledger(&self, tx: &mut dyn Tx, card_id: [u8; 32]) -> ApiResult<CardLedger> {
        let id: [Value; 1] = [card_id.into()];
        let accounts = unit_accounts(tx, &card_id)?;

        let mut entries = Vec::new();
        let entry = |day, kind, counter, value| LedgerEntry {
            day,
            kind,
            counter,
            value,
        };
        for r in tx.query(
            "SELECT redeemed_day, asset, amount FROM redemptions WHERE card_id = ?1
             ORDER BY redeemed_day, nonce",
            &id,
        )? {
            let value = UnitValue::Asset {
                code: r.text(1)?,
                amount: r.u64(2)?,
            };
            entries.push(entry(r.u64(0)?, LedgerKind::Redeem, None, value));
        }
        for r in tx.query(
            "SELECT day, counter, kind, asset, amount, serial FROM loads WHERE card_id = ?1
             ORDER BY counter",
            &id,
        )? {
            let value = load_value(&r, 2)?;
            entries.push(entry(
                r.u64(0)?,
                LedgerKind::Load,
                Some(stored_counter(&r, 1)?),
                value,
            ));
        }
        for r in tx.query(
            "SELECT c.day, c.counter, l.kind, l.asset, l.amount, l.serial
             FROM load_cancellations c
             JOIN loads l ON l.card_id = c.card_id AND l.counter = c.counter
             WHERE c.card_id = ?1 AND c.outcome = 'refunded'
             ORDER BY c.counter",
            &id,
        )? {
            let value = load_value(&r, 2)?;
            entries.push(entry(
                r.u64(0)?,
                LedgerKind::Refund,
                Some(stored_counter(&r, 1)?),
                value,
            ));
        }
        for r in tx.query(
            "SELECT day, counter, asset, amount FROM unloads WHERE card_id = ?1 ORDER BY counter",
            &id,
        )? {
            let value = UnitValue::Asset {
                code: r.text(2)?,
                amount: r.u64(3)?,
            };
            entries.push(entry(
                r.u64(0)?,
                LedgerKind::Unload,
                Some(stored_counter(&r, 1)?),
                value,
            ));
        }
        let mut tickets = Vec::new();
        for r in tx.query(
            "SELECT asset, serial, signature, issued_day, delivery_counter FROM tickets
             WHERE card_id = ?1 ORDER BY issued_day, asset, serial",
            &id,
        )? {
            let ticket = IssuedTicket {
                card_id,
                asset: r.text(0)?,
                serial: r.blob(1)?,
                signature: r.array(2)?,
                delivered: optional_counter(&r, 4)?.is_some(),
                replayed: false,
            };
            let value = UnitValue::Ticket {
                code: ticket.asset.clone(),
                serial: ticket.serial.clone(),
            };
            entries.push(entry(r.u64(3)?, LedgerKind::TicketIssued, None, value));
            tickets.push(ticket);
        }
        // Stable: within a day and a kind, the order of the queries (by counter) stays.
        entries.sort_by_key(|e| (e.day, kind_rank(e.kind)));

        let mut totals = LedgerTotals {
            redeemed: 0,
            loaded: 0,
            refunded: 0,
            unloaded: 0,
        };
        for e in &entries {
            let UnitValue::Asset { code, amount } = &e.value else {
                continue;
            };
            if *code != self.config.currency {
                continue;
            }
            let total = match e.kind {
                LedgerKind::Redeem => &mut totals.redeemed,
                LedgerKind::Load => &mut totals.loaded,
                LedgerKind::Refund => &mut totals.refunded,
                LedgerKind::Unload => &mut totals.unloaded,
                LedgerKind::TicketIssued => continue,
            };
            add(total, *amount)?;
        }
        Ok(CardLedger {
            card_id,
            accounts,
            totals,
            entries,
            tickets,
        })
    }
}
