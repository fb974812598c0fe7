//! `valuecard load`, `unload` and `tickets`, and the card's part of `valuecard recover`:
//! units and tickets between the center and the card in the reader (see the library's
//! `units`).

use std::process::ExitCode;

use apdu_spec::commands::LifeCycle;
use apdu_spec::objects::CardInfo;
use apdu_spec::units::{InFlight, ReceiptKind, UnitMessage, UnitValue};
use serde_json::{Value, json};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{CancelOutcome, LedgerRequest, TicketIssueRequest};
use valuecard_terminal::Client;
use valuecard_terminal::backend_client::CenterClient;
use valuecard_terminal::exchange;
use valuecard_terminal::transport::Transport;
use valuecard_terminal::units::{self, Settled, Settlement, UnitsError};

use super::{
    CliError, Endpoints, Result, active_card_id, open, pin_from, secret_from, selected_client,
};
use crate::cli::{Global, TicketsCommand};

impl From<UnitsError> for CliError {
    fn from(e: UnitsError) -> Self {
        match e {
            UnitsError::Card(e) => e.into(),
            UnitsError::Backend(e) => e.into(),
            other => CliError::new(other.to_string()),
        }
    }
}

/// A card with a load pending cannot take another: say how to finish it.
fn refuse_if_pending(in_flight: &InFlight) -> Result<()> {
    let Some(pending) = &in_flight.pending_load else {
        return Ok(());
    };
    let what = UnitMessage::decode_load(&pending.message)
        .map(|m| format!("load {} of {}", m.counter, m.value))
        .unwrap_or_else(|_| "a load".into());
    Err(CliError::new(format!(
        "the card has a pending {what} that was never finished"
    ))
    .hint("finish it with `valuecard recover`"))
}

fn asset_value(amount: u64, asset: Option<String>, center: &CenterClient) -> Result<UnitValue> {
    if amount == 0 {
        return Err(CliError::new("--amount must be more than 0").code(2));
    }
    let code = match asset {
        Some(code) => code,
        None => center.info()?.currency,
    };
    let value = UnitValue::Asset { code, amount };
    value
        .validate()
        .map_err(|e| CliError::new(format!("--asset: {e}")).code(2))?;
    Ok(value)
}

/// What a load or an unload starts from: the center, the value, and the personalised card
/// in the reader with what it says about itself.
struct UnitsStart {
    center: CenterClient,
    value: UnitValue,
    client: Client<Box<dyn Transport>>,
    info: CardInfo,
}

fn start(
    global: &Global,
    endpoints: &Endpoints,
    amount: u64,
    asset: Option<String>,
) -> Result<UnitsStart> {
    let center = endpoints.center();
    let value = asset_value(amount, asset, &center)?;
    let mut client = selected_client(global)?;
    let info = client.info()?;
    active_card_id(&info)?;
    Ok(UnitsStart {
        center,
        value,
        client,
        info,
    })
}

pub fn load(
    global: &Global,
    endpoints: &Endpoints,
    amount: u64,
    asset: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let UnitsStart {
        center,
        value,
        mut client,
        info,
    } = start(global, endpoints, amount, asset)?;
    refuse_if_pending(&info.in_flight)?;
    let done = units::load(&mut client, &center, &value).map_err(|e| interrupted(e, "load"))?;
    report(&[done], json);
    Ok(ExitCode::SUCCESS)
}

pub fn unload(
    global: &Global,
    endpoints: &Endpoints,
    amount: u64,
    asset: Option<String>,
    pin: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let UnitsStart {
        center,
        value,
        mut client,
        info,
    } = start(global, endpoints, amount, asset)?;
    let available = info
        .values
        .assets
        .iter()
        .find(|a| a.code == value.code())
        .map_or(0, |a| a.available);
    if available < amount {
        return Err(CliError::new(format!(
            "the card has {available} {} available, less than {amount}",
            value.code()
        ))
        .hint("`valuecard balance` shows the card and its account at the center; `valuecard load` moves units onto the card"));
    }
    let pin = secret_from(pin, "PIN", "--pin PIN", "VALUECARD_PIN")?;
    let pin = pin_from(Some(pin), "--pin", "VALUECARD_PIN")?;
    super::pin::refuse_unless_verified(client.verify_pin(&pin)?)?;
    let done = units::unload(&mut client, &center, &value).map_err(|e| interrupted(e, "unload"))?;
    report(&[done], json);
    Ok(ExitCode::SUCCESS)
}

/// An error in the middle of a load or an unload, with what to do about it.
fn interrupted(e: UnitsError, what: &str) -> CliError {
    let refused = e.is_center_refusal();
    let short_of_units =
        matches!(&e, UnitsError::Backend(b) if b.code() == Some(ErrorCode::InsufficientFunds));
    let error = CliError::from(e);
    if refused {
        let note = format!(
            "{}; the card's {what} request was cancelled, nothing moved",
            error.message
        );
        let error = CliError {
            message: note,
            ..error
        };
        // The bank's advice for its accounts does not fit the center's unit account.
        return if short_of_units {
            error.hint(
                "`valuecard balance` shows the card's account at the center; `valuecard withdraw` adds to it",
            )
        } else {
            error
        };
    }
    let hint = match &error.hint {
        Some(h) => format!("{h}; then run `valuecard recover` to finish the {what}"),
        None => format!("run `valuecard recover` to finish the {what}: nothing is lost"),
    };
    error.hint(hint)
}

fn settled_json(s: &Settled) -> Value {
    match s {
        Settled::Loaded {
            counter,
            value,
            replayed,
        } => json!({"action": "loaded", "counter": counter, "value": value, "replayed": replayed}),
        Settled::Cancelled {
            counter,
            value,
            outcome,
            replayed,
        } => json!({"action": "cancelled", "counter": counter, "value": value,
                    "outcome": outcome, "replayed": replayed}),
        Settled::Unloaded {
            counter,
            value,
            replayed,
        } => {
            json!({"action": "unloaded", "counter": counter, "value": value, "replayed": replayed})
        }
    }
}

fn settled_text(s: &Settled) -> String {
    let again = |replayed: bool, what: &str| {
        if replayed {
            format!(" (the center had {what} it before: once only)")
        } else {
            String::new()
        }
    };
    match s {
        Settled::Loaded {
            counter,
            value,
            replayed,
        } => format!(
            "loaded {value} onto the card (load {counter}){}",
            again(*replayed, "authorised")
        ),
        Settled::Cancelled {
            counter,
            value,
            outcome: CancelOutcome::Refunded,
            replayed,
        } => format!(
            "load {counter} of {value} cancelled and refunded to the card's account at the center{}",
            again(*replayed, "refunded")
        ),
        Settled::Cancelled { counter, value, .. } => {
            format!("load {counter} of {value} cancelled: the center had not debited it")
        }
        Settled::Unloaded {
            counter,
            value,
            replayed,
        } => format!(
            "unloaded {value} to the card's account at the center (unload {counter}){}",
            again(*replayed, "credited")
        ),
    }
}

fn report(done: &[Settled], json: bool) {
    if json {
        println!(
            "{}",
            json!({"done": done.iter().map(settled_json).collect::<Vec<_>>()})
        );
    } else {
        for d in done {
            println!("{}", settled_text(d));
        }
    }
}

/// What `valuecard recover` did on the card in the reader.
pub struct CardRecovery {
    pub json: Value,
    pub lines: Vec<String>,
    /// True when the card had nothing in flight.
    pub nothing: bool,
    pub error: Option<CliError>,
}

/// The card's part of `valuecard recover`: finishes its pending load (or cancels it when
/// the center refuses it for good) and sends its receipts. `None` when no card is there
/// and none was asked for.
pub fn recover_card(global: &Global, endpoints: &Endpoints) -> Result<Option<CardRecovery>> {
    let transport = match open(global) {
        Ok(t) => t,
        // Without --reader or --card-state, no card is fine: withdrawals need none.
        Err(_) if global.reader.is_none() && global.card_state.is_none() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut client = Client::new(transport);
    client.select()?;
    let info = client.info()?;
    let Some(card_id) = info
        .card_id
        .filter(|_| info.life_cycle == LifeCycle::Active)
    else {
        return Ok(None);
    };
    let open_sessions = client.sessions()?;
    if info.in_flight.is_empty() && open_sessions.is_empty() {
        return Ok(Some(CardRecovery {
            json: json!({"card_id": hex::encode_upper(card_id), "done": [], "sessions": [], "complete": true}),
            lines: vec![],
            nothing: true,
            error: None,
        }));
    }
    // What is left is read again only when settling may have changed it.
    let (
        Settlement {
            done,
            refusals,
            error,
        },
        left,
    ) = if info.in_flight.is_empty() {
        (Settlement::default(), Some(info.in_flight))
    } else {
        let settlement = units::settle(&mut client, &endpoints.center(), &info.in_flight);
        (settlement, client.in_flight().ok())
    };
    let mut lines: Vec<String> = refusals
        .iter()
        .map(|(counter, value, why)| format!("the center refused load {counter} of {value}: {why}"))
        .collect();
    lines.extend(done.iter().map(settled_text));
    let left_json = left
        .as_ref()
        .map(|l| json!({"pending_load": l.pending_load.is_some(), "receipts": l.receipts.len()}));
    if let Some(l) = &left
        && !l.is_empty()
    {
        lines.push(format!(
            "left on the card: {}{} receipt(s) for the center",
            if l.pending_load.is_some() {
                "a pending load, "
            } else {
                ""
            },
            l.receipts.len()
        ));
    }

    // Open exchange sessions: each ended with ABORT or the arbiter's verdict.
    let mut settled_sessions = Vec::new();
    let mut session_error = None;
    if !open_sessions.is_empty() {
        let result = exchange::settle_listed(
            &mut client,
            "card",
            &endpoints.arbiter(),
            &open_sessions,
            &mut |_, what| {
                lines.push(format!("exchange session {what}"));
                settled_sessions.push(what.to_string());
            },
        );
        if let Err(e) = result {
            let e = CliError::from(e);
            lines.push(format!("exchange sessions not settled: {}", e.message));
            session_error = Some(e);
        }
    }
    Ok(Some(CardRecovery {
        json: json!({
            "card_id": hex::encode_upper(card_id),
            "done": done.iter().map(settled_json).collect::<Vec<_>>(),
            "refused": refusals.iter().map(|(c, v, why)| json!({"counter": c, "value": v, "reason": why})).collect::<Vec<_>>(),
            "left": left_json,
            "sessions": settled_sessions,
            "complete": error.is_none() && session_error.is_none(),
        }),
        lines,
        nothing: false,
        error: error.map(CliError::from).or(session_error),
    }))
}

pub fn tickets(
    global: &Global,
    endpoints: &Endpoints,
    command: Option<TicketsCommand>,
    json: bool,
) -> Result<ExitCode> {
    match command {
        None => list_tickets(global, json),
        Some(TicketsCommand::Issue {
            asset,
            serial,
            card_id,
            admin,
            json: sub_json,
        }) => issue_ticket(
            global,
            endpoints,
            asset,
            serial,
            card_id,
            admin.admin_token,
            json || sub_json,
        ),
        Some(TicketsCommand::Fetch { json: sub_json }) => {
            fetch_tickets(global, endpoints, json || sub_json)
        }
    }
}

fn list_tickets(global: &Global, json: bool) -> Result<ExitCode> {
    let mut client = selected_client(global)?;
    let info = client.info()?;
    let tickets = &info.values.tickets;
    if json {
        println!(
            "{}",
            json!({"tickets": tickets.iter().map(|t| json!({
                "asset": t.asset,
                "serial": hex::encode_upper(&t.serial),
                "escrowed": t.escrowed,
            })).collect::<Vec<_>>()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if tickets.is_empty() {
        println!("no tickets on the card");
    }
    for t in tickets {
        println!(
            "{:<8}  {}{}",
            t.asset,
            hex::encode_upper(&t.serial),
            if t.escrowed { "  (in escrow)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_hex(text: &str, what: &str) -> Result<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).map_err(|e| CliError::new(format!("{what}: not hex ({e})")).code(2))
}

fn issue_ticket(
    global: &Global,
    endpoints: &Endpoints,
    asset: String,
    serial: Option<String>,
    card_id: Option<String>,
    admin_token: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    if !apdu_spec::units::asset_code_ok(&asset) {
        return Err(
            CliError::new("--asset: 1 to 8 printable ASCII characters, e.g. CONCERT").code(2),
        );
    }
    let serial = serial.map(|s| parse_hex(&s, "--serial")).transpose()?;
    if let Some(s) = &serial
        && (s.is_empty() || s.len() > apdu_spec::units::SERIAL_MAX_LEN)
    {
        return Err(CliError::new("--serial: 1 to 32 bytes").code(2));
    }
    let admin_token = admin_token.ok_or_else(|| {
        CliError::new("this needs the backend's admin token")
            .hint("pass --admin-token TOKEN or set VALUECARD_ADMIN_TOKEN")
    })?;
    let center = endpoints.center();
    // Without --card-id the ticket is for the card in the reader, and goes onto it now.
    let (card_id, mut client) = match card_id {
        Some(text) => {
            let id: [u8; 32] = parse_hex(&text, "--card-id")?
                .try_into()
                .map_err(|_| CliError::new("--card-id: 32 bytes of hex").code(2))?;
            (id, None)
        }
        None => {
            let mut client = selected_client(global)?;
            let info = client.info()?;
            let id = active_card_id(&info)?;
            refuse_if_pending(&info.in_flight)?;
            (id, Some(client))
        }
    };
    let ticket = center.issue_ticket(
        &admin_token,
        &TicketIssueRequest {
            card_id,
            asset,
            serial,
        },
    )?;
    let value = UnitValue::Ticket {
        code: ticket.asset.clone(),
        serial: ticket.serial.clone(),
    };
    let loaded = match client.as_mut() {
        Some(client) if !ticket.delivered => {
            Some(units::load(client, &center, &value).map_err(|e| interrupted(e, "ticket load"))?)
        }
        _ => None,
    };
    if json {
        println!(
            "{}",
            json!({
                "card_id": hex::encode_upper(card_id),
                "asset": ticket.asset,
                "serial": hex::encode_upper(&ticket.serial),
                "replayed": ticket.replayed,
                "loaded": loaded.is_some(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ticket {} #{} issued to card {}{}",
        ticket.asset,
        hex::encode_upper(&ticket.serial),
        hex::encode_upper(card_id),
        if ticket.replayed {
            " (it had been issued before)"
        } else {
            ""
        }
    );
    match (loaded, client.is_some()) {
        (Some(_), _) => println!("loaded onto the card"),
        (None, true) => println!("it was delivered to the card before"),
        (None, false) => println!("the card picks it up with `valuecard tickets fetch`"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The center's ledger of the card in the reader, shown to the card's own proof.
fn ledger<T: Transport>(
    client: &mut Client<T>,
    center: &CenterClient,
    card_id: [u8; 32],
) -> Result<valuecard_protocol::api::CardLedger> {
    let challenge = center.challenge(valuecard_protocol::api::ChallengePurpose::Balance)?;
    let signature = client.internal_authenticate(&challenge.challenge)?;
    Ok(center.ledger(
        &LedgerRequest {
            card_id,
            proof: Some(valuecard_protocol::api::CardProof {
                challenge: challenge.challenge,
                signature: signature.to_vec(),
            }),
        },
        None,
    )?)
}

fn fetch_tickets(global: &Global, endpoints: &Endpoints, json: bool) -> Result<ExitCode> {
    let center = endpoints.center();
    let mut client = selected_client(global)?;
    let info = client.info()?;
    let card_id = active_card_id(&info)?;
    refuse_if_pending(&info.in_flight)?;
    let ledger = ledger(&mut client, &center, card_id)?;
    let mut done = Vec::new();
    for t in ledger.tickets.iter().filter(|t| !t.delivered) {
        let value = UnitValue::Ticket {
            code: t.asset.clone(),
            serial: t.serial.clone(),
        };
        done.push(
            units::load(&mut client, &center, &value).map_err(|e| interrupted(e, "ticket load"))?,
        );
    }
    if done.is_empty() && !json {
        println!("no tickets waiting at the center");
    }
    report(&done, json);
    Ok(ExitCode::SUCCESS)
}

/// `valuecard balance`: the card's values and the center's account, side by side.
pub fn balance(global: &Global, endpoints: &Endpoints, json: bool) -> Result<ExitCode> {
    let mut client = selected_client(global)?;
    let info = client.info()?;
    let card_id = match (info.life_cycle, info.card_id) {
        (LifeCycle::Blank, _) | (_, None) => {
            return Err(
                CliError::new("the card has no key yet, so no account at the center")
                    .hint("register it with `valuecard card register`"),
            );
        }
        (_, Some(id)) => id,
    };
    let center = endpoints.center();
    let ledger = ledger(&mut client, &center, card_id)?;
    let pending = info
        .in_flight
        .pending_load
        .as_ref()
        .and_then(|p| UnitMessage::decode_load(&p.message).ok());
    let receipts: Vec<(ReceiptKind, UnitMessage)> = info
        .in_flight
        .receipts
        .iter()
        .filter_map(|r| r.decode().ok().map(|m| (r.kind, m)))
        .collect();

    // One row per asset that either side knows.
    let mut assets: Vec<String> = ledger.accounts.iter().map(|a| a.asset.clone()).collect();
    for a in &info.values.assets {
        if !assets.contains(&a.code) {
            assets.push(a.code.clone());
        }
    }
    let rows: Vec<(String, u64, u64, u64)> = assets
        .iter()
        .map(|code| {
            let card = info.values.assets.iter().find(|a| &a.code == code);
            let center = ledger
                .accounts
                .iter()
                .find(|a| &a.asset == code)
                .map_or(0, |a| a.balance);
            (
                code.clone(),
                card.map_or(0, |a| a.available),
                card.map_or(0, |a| a.escrowed),
                center,
            )
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({
                "card_id": hex::encode_upper(card_id),
                "center": center.base(),
                "assets": rows.iter().map(|(code, available, escrowed, at_center)| json!({
                    "asset": code,
                    "card": {"available": available, "escrowed": escrowed},
                    "center": at_center,
                })).collect::<Vec<_>>(),
                "tickets": info.values.tickets.len(),
                "pending_load": pending.as_ref().map(|m| json!({"counter": m.counter, "value": m.value})),
                "receipts": receipts.iter().map(|(kind, m)| json!({"kind": kind, "counter": m.counter, "value": m.value})).collect::<Vec<_>>(),
                "center_totals": ledger.totals,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("card id:  {}", hex::encode_upper(card_id));
    println!(
        "{:<8}  {:>14}  {:>14}  {:>14}",
        "asset", "card available", "card escrowed", "center"
    );
    for (code, available, escrowed, at_center) in &rows {
        println!("{code:<8}  {available:>14}  {escrowed:>14}  {at_center:>14}");
    }
    if rows.is_empty() {
        println!("(no units on either side)");
    }
    if !info.values.tickets.is_empty() {
        println!(
            "tickets:  {} on the card (`valuecard tickets` lists them)",
            info.values.tickets.len()
        );
    }
    if let Some(m) = &pending {
        println!(
            "pending:  load {} of {} not finished: `valuecard recover` finishes it",
            m.counter, m.value
        );
    }
    for (kind, m) in &receipts {
        println!(
            "receipt:  {} {} of {} not yet acknowledged by the center: `valuecard recover` sends it",
            kind.describe(),
            m.counter,
            m.value
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_lines_read_well() {
        let jpy = UnitValue::Asset {
            code: "JPY".into(),
            amount: 200,
        };
        assert_eq!(
            settled_text(&Settled::Loaded {
                counter: 3,
                value: jpy.clone(),
                replayed: true
            }),
            "loaded 200 JPY onto the card (load 3) (the center had authorised it before: once only)"
        );
        assert_eq!(
            settled_text(&Settled::Cancelled {
                counter: 4,
                value: jpy.clone(),
                outcome: CancelOutcome::Voided,
                replayed: false
            }),
            "load 4 of 200 JPY cancelled: the center had not debited it"
        );
        assert_eq!(
            settled_json(&Settled::Unloaded {
                counter: 1,
                value: jpy,
                replayed: false
            })["value"],
            json!({"kind": "asset", "code": "JPY", "amount": 200})
        );
    }

    #[test]
    fn a_pending_load_is_refused_with_a_hint() {
        let request = UnitMessage {
            card_id: [1; 32],
            counter: 2,
            value: UnitValue::Asset {
                code: "JPY".into(),
                amount: 5,
            },
        };
        let in_flight = InFlight {
            pending_load: Some(apdu_spec::units::SignedMessage {
                message: request.encode_load(),
                signature: [0; 64],
            }),
            receipts: vec![],
        };
        let error = refuse_if_pending(&in_flight).expect_err("pending");
        assert!(
            error.message.contains("load 2 of 5 JPY"),
            "{}",
            error.message
        );
        assert_eq!(
            error.hint.as_deref(),
            Some("finish it with `valuecard recover`")
        );
        assert!(refuse_if_pending(&InFlight::default()).is_ok());
    }
}
