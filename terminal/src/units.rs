//! The terminal's steps for units between the center and a card (PROTOCOLS.md, "Units
//! between center and card"): load, unload, and settling whatever a card holds in flight.
//!
//! The terminal keeps nothing here: the card keeps its pending load request and its
//! receipts until they are finished (GET DATA `EB`), and every step can be taken again.
//! The center answers a repeated request with its first answer, and the card takes an
//! authorisation or an acknowledgement only for exactly what it signed. So after any
//! interruption, [`settle`] brings card and center to the same account.
//!
//! The crash tests stop the process before and after every card command and after every
//! center answer (see `fault`).

use apdu_spec::units::{
    Acknowledgement, InFlight, LoadApply, Receipt, ReceiptKind, SignedMessage, UnitMessage,
    UnitValue,
};
use valuecard_protocol::api::{CancelOutcome, LoadCancellation, LoadOrder, UnloadOrder};

use crate::backend_client::{BackendError, CenterClient};
use crate::fault::{self, Point};
use crate::transport::Transport;
use crate::{Client, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error(transparent)]
    Card(#[from] ClientError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The center answered about something else than what was asked.
    #[error("the center's answer does not match the card's {0}")]
    Mismatch(&'static str),
}

impl UnitsError {
    /// The center refused a load for good (not enough units, an unknown ticket...): the
    /// card's request can be cancelled safely, since the center recorded nothing for it.
    pub fn is_center_refusal(&self) -> bool {
        matches!(self, UnitsError::Backend(e) if e.is_refusal())
    }
}

pub type Result<T, E = UnitsError> = std::result::Result<T, E>;

/// What one finished step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// A load request authorised by the center and credited by the card.
    Loaded {
        counter: u32,
        value: UnitValue,
        /// The center had authorised this request before (it debited once).
        replayed: bool,
    },
    /// A load cancellation acknowledged: refunded at the center, or voided there.
    Cancelled {
        counter: u32,
        value: UnitValue,
        outcome: CancelOutcome,
        replayed: bool,
    },
    /// An unload receipt credited at the center and cleared on the card.
    Unloaded {
        counter: u32,
        value: UnitValue,
        replayed: bool,
    },
}

fn decode_load(signed: &SignedMessage) -> Result<UnitMessage> {
    UnitMessage::decode_load(&signed.message).map_err(|e| {
        UnitsError::Card(ClientError::BadAnswer {
            command: "LOAD REQUEST",
            detail: e.to_string(),
        })
    })
}

/// Loads `value` onto the card: LOAD REQUEST, the center's authorisation, LOAD APPLY.
///
/// When the center refuses the request for good, the card's request is cancelled at once
/// (and the center voids it), and the refusal is returned. Any other failure leaves the
/// request pending on the card, for [`settle`].
pub fn load<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    value: &UnitValue,
) -> Result<Settled> {
    fault::reached(Point::BeforeLoadRequest);
    let signed = client.load_request(value)?;
    fault::reached(Point::AfterLoadRequest);
    match finish_load(client, center, &signed) {
        Err(refusal) if refusal.is_center_refusal() => {
            cancel_pending(client, center)?;
            Err(refusal)
        }
        other => other,
    }
}

/// The center's authorisation for a signed request, then LOAD APPLY.
fn finish_load<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    signed: &SignedMessage,
) -> Result<Settled> {
    let request = decode_load(signed)?;
    let auth = center.load(&LoadOrder {
        request: signed.message.clone(),
        signature: signed.signature.to_vec(),
    })?;
    fault::reached(Point::CenterLoadAnswered);
    if auth.card_id != request.card_id
        || auth.counter != request.counter
        || auth.value != request.value
    {
        return Err(UnitsError::Mismatch("load request"));
    }
    fault::reached(Point::BeforeLoadApply);
    // The block list travels with every load, and the authorisation covers its version: the
    // card learns the issuer's newest blocks whenever it takes units.
    client.load_apply(&LoadApply {
        authorisation: auth.authorisation,
        ticket_signature: auth.ticket_signature,
        block_list: auth.block_list,
    })?;
    fault::reached(Point::AfterLoadApply);
    Ok(Settled::Loaded {
        counter: request.counter,
        value: request.value,
        replayed: auth.replayed,
    })
}

/// LOAD CANCEL of the card's pending request, then the center's acknowledgement.
pub fn cancel_pending<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
) -> Result<Settled> {
    fault::reached(Point::BeforeLoadCancel);
    let signed = client.load_cancel()?;
    fault::reached(Point::AfterLoadCancel);
    let counter = decode_load(&signed)?.counter;
    settle_receipt(
        client,
        center,
        &Receipt {
            kind: ReceiptKind::LoadCancel,
            counter,
            signed,
        },
    )
}

/// Unloads `value` from the card (the PIN must be verified): UNLOAD, the center's credit,
/// UNLOAD ACK. A failure after UNLOAD leaves the receipt on the card, for [`settle`].
pub fn unload<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    value: &UnitValue,
) -> Result<Settled> {
    fault::reached(Point::BeforeUnload);
    let signed = client.unload(value)?;
    fault::reached(Point::AfterUnload);
    let receipt = UnitMessage::decode_unload(&signed.message).map_err(|e| {
        UnitsError::Card(ClientError::BadAnswer {
            command: "UNLOAD",
            detail: e.to_string(),
        })
    })?;
    settle_receipt(
        client,
        center,
        &Receipt {
            kind: ReceiptKind::Unload,
            counter: receipt.counter,
            signed,
        },
    )
}

/// Sends one receipt to the center and clears it on the card with the acknowledgement.
pub fn settle_receipt<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    receipt: &Receipt,
) -> Result<Settled> {
    let message = &receipt.signed.message;
    let signature = receipt.signed.signature.to_vec();
    let (answered_counter, acknowledgement, settled) = match receipt.kind {
        ReceiptKind::Unload => {
            let ack = center.unload(&UnloadOrder {
                receipt: message.clone(),
                signature,
            })?;
            fault::reached(Point::CenterUnloadAnswered);
            (
                ack.counter,
                ack.acknowledgement,
                Settled::Unloaded {
                    counter: ack.counter,
                    value: ack.value,
                    replayed: ack.replayed,
                },
            )
        }
        ReceiptKind::LoadCancel => {
            let ack = center.cancel_load(&LoadCancellation {
                request: message.clone(),
                signature,
            })?;
            fault::reached(Point::CenterCancelAnswered);
            (
                ack.counter,
                ack.acknowledgement,
                Settled::Cancelled {
                    counter: ack.counter,
                    value: ack.value,
                    outcome: ack.outcome,
                    replayed: ack.replayed,
                },
            )
        }
    };
    if answered_counter != receipt.counter {
        return Err(UnitsError::Mismatch("receipt"));
    }
    fault::reached(Point::BeforeUnloadAck);
    client.unload_ack(
        receipt.kind,
        &Acknowledgement {
            counter: receipt.counter,
            signature: acknowledgement,
        },
    )?;
    fault::reached(Point::AfterUnloadAck);
    Ok(settled)
}

/// The outcome of settling a card: what was finished, and the first thing that could not
/// be (the rest is left on the card for the next try).
#[derive(Debug, Default)]
pub struct Settlement {
    pub done: Vec<Settled>,
    /// A pending load the center refused for good, cancelled here: why it was refused.
    pub refusals: Vec<(u32, UnitValue, String)>,
    pub error: Option<UnitsError>,
}

/// Finishes everything the card holds in flight, as `in_flight` (GET DATA `EB`, or the
/// card info's copy of it) tells: the pending load (authorised and applied, or cancelled
/// when the center refuses it for good), then every receipt.
pub fn settle<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    in_flight: &InFlight,
) -> Settlement {
    let mut out = Settlement::default();
    if let Some(pending) = &in_flight.pending_load {
        match finish_load(client, center, pending) {
            Ok(done) => out.done.push(done),
            Err(refusal) if refusal.is_center_refusal() => {
                if let Ok(request) = decode_load(pending) {
                    out.refusals
                        .push((request.counter, request.value, refusal.to_string()));
                }
                match cancel_pending(client, center) {
                    Ok(done) => out.done.push(done),
                    Err(e) => {
                        out.error = Some(e);
                        return out;
                    }
                }
            }
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    for receipt in &in_flight.receipts {
        match settle_receipt(client, center, receipt) {
            Ok(done) => out.done.push(done),
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    out
}
