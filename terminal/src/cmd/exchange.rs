//! `valuecard exchange` and `valuecard sessions`: a fair exchange between two cards, relayed
//! by this terminal and settled by the arbiter when a step fails (see the library's
//! `exchange`).

use std::path::PathBuf;
use std::process::ExitCode;

use apdu_spec::exchange::messages::{Role, SessionInfo};
use apdu_spec::exchange::{Outcome, Value};
use apdu_spec::units::UnitValue;
use serde_json::json;
use valuecard_terminal::Client;
use valuecard_terminal::exchange::{self, Ending, ExchangeError, parse_value, show_value};
use valuecard_terminal::transport::Transport;

use super::{CliError, Endpoints, Result, open_card, pin_from, secret_from, selected_client};
use crate::cli::Global;

impl From<ExchangeError> for CliError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Arbiter(e) => e.into(),
            other => CliError::new(other.to_string()),
        }
    }
}

/// One side of `valuecard exchange`: a reader, or an in-process card's state file.
pub struct Side {
    pub reader: Option<String>,
    pub state: Option<PathBuf>,
    pub pin: Option<String>,
}

fn open_side(global: &Global, side: &Side, which: &str) -> Result<Client<Box<dyn Transport>>> {
    if side.reader.is_some() == side.state.is_some() {
        return Err(CliError::new(format!(
            "name the {which}'s card with --{which} READER or --{which}-state FILE (one of them)"
        ))
        .code(2));
    }
    let transport = open_card(side.reader.as_deref(), side.state.as_deref(), false, global)?;
    let mut client = Client::new(transport);
    client.select()?;
    let pin = secret_from(
        side.pin.clone(),
        &format!("PIN of the {which}'s card"),
        &format!("--{which}-pin PIN"),
        &format!("VALUECARD_{}_PIN", which.to_uppercase()),
    )?;
    let pin = pin_from(Some(pin), &format!("--{which}-pin"), "its PIN variable")?;
    super::pin::refuse_unless_verified(client.verify_pin(&pin)?).map_err(|e| CliError {
        message: format!("the {which}'s card: {}", e.message),
        ..e
    })?;
    Ok(client)
}

pub fn exchange(
    global: &Global,
    endpoints: &Endpoints,
    initiator: Side,
    responder: Side,
    give: &str,
    take: &str,
    json: bool,
) -> Result<ExitCode> {
    let give = parse_value(give).map_err(|e| CliError::new(format!("--give: {e}")).code(2))?;
    let take = parse_value(take).map_err(|e| CliError::new(format!("--take: {e}")).code(2))?;
    if give.is_none() && take.is_none() {
        return Err(
            CliError::new("--give and --take are both nothing: nothing to exchange").code(2),
        );
    }
    let mut a = open_side(global, &initiator, "initiator")?;
    let mut b = open_side(global, &responder, "responder")?;
    // The initiator's shortfall stops everything now; the responder's is left to AGREE,
    // which the protocol ends cleanly (ABORT), and only explains its refusal.
    if let Some((missing, hint)) = lacks(&mut a, &give)? {
        return Err(CliError::new(format!(
            "the initiator's card {missing}; nothing was started"
        ))
        .hint(hint));
    }
    let responder_lacks = lacks(&mut b, &take)?;
    let arbiter = endpoints.arbiter();
    let mut steps = Vec::new();
    let report = exchange::run(&mut a, &mut b, &arbiter, &give, &take, &mut |name, what| {
        if !json {
            println!("{name:<9} {what}");
        }
        steps.push(json!({"step": name, "what": what}));
    })?;
    let describe = |e: &Option<Ending>| e.as_ref().map_or("no session left", Ending::describe);
    // The initiator took V2 on the arbiter's word: the exchange went through.
    let completed = matches!(report.initiator, Some(Ending::Verdict(Outcome::Complete)));
    if json {
        println!(
            "{}",
            json!({
                "give": give,
                "take": take,
                "steps": steps,
                "initiator": describe(&report.initiator),
                "responder": describe(&report.responder),
                "completed": report.failed_step.is_none() || completed,
                "failed_step": report.failed_step.as_ref().map(|(s, why)| json!({"step": s, "why": why})),
                "unsettled": report.unsettled.iter().map(|(card, why)| json!({"card": card, "why": why})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "initiator: {}\nresponder: {}",
            describe(&report.initiator),
            describe(&report.responder)
        );
    }
    if let Some((card, why)) = report.unsettled.first() {
        return Err(
            CliError::new(format!("the {card}'s session is still open: {why}")).hint(format!(
                "run `valuecard recover` with the {card}'s card in a reader: the arbiter settles it"
            )),
        );
    }
    match report.failed_step {
        None => Ok(ExitCode::SUCCESS),
        Some((step, _)) if completed => {
            if !json {
                println!("the exchange went through: the arbiter completed it after {step} failed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some((step, why)) => {
            let error = CliError::new(format!(
                "the exchange did not go through: {step} failed ({why}); each card has its own value back"
            ));
            Err(match responder_lacks {
                Some((missing, hint)) if step == "AGREE" => {
                    error.hint(format!("the responder's card {missing}: {hint}"))
                }
                _ => error,
            })
        }
    }
}

/// What the card lacks of `value`, which it is to give, and what to do about it: START and
/// AGREE refuse a value the card lacks with a bare 6985, which does not say what is missing.
fn lacks<T: Transport>(
    client: &mut Client<T>,
    value: &Value,
) -> Result<Option<(String, &'static str)>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let values = client.info()?.values;
    let (missing, hint) = match value {
        UnitValue::Asset { code, amount } => {
            let available = values
                .assets
                .iter()
                .find(|a| &a.code == code)
                .map_or(0, |a| a.available);
            if available >= *amount {
                return Ok(None);
            }
            (
                format!(
                    "has {available} {code} available, less than the {amount} {code} it would give"
                ),
                "`valuecard load` moves units from the card's account at the center onto it; `valuecard balance` shows both",
            )
        }
        UnitValue::Ticket { code, serial } => {
            let held = values
                .tickets
                .iter()
                .find(|t| &t.asset == code && &t.serial == serial);
            match held {
                Some(t) if !t.escrowed => return Ok(None),
                Some(_) => (
                    format!(
                        "holds the ticket {code} {} in escrow for another exchange",
                        hex::encode_upper(serial)
                    ),
                    "`valuecard recover` settles that exchange first",
                ),
                None => (
                    format!("holds no ticket {code} {}", hex::encode_upper(serial)),
                    "`valuecard tickets` lists the tickets on a card (with --reader or --card-state for that card)",
                ),
            }
        }
    };
    Ok(Some((missing, hint)))
}

fn session_json(s: &SessionInfo) -> serde_json::Value {
    json!({
        "role": s.role.name(),
        "state": s.state.name(),
        "s1": hex::encode_upper(s.s1),
        "s2": s.s2.map(hex::encode_upper),
        "a": s.a.map(hex::encode_upper),
        "v1": s.v1,
        "v2": s.v2,
    })
}

pub fn sessions(global: &Global, json: bool) -> Result<ExitCode> {
    let mut client = selected_client(global)?;
    let sessions = client.sessions()?;
    if json {
        println!(
            "{}",
            json!({"sessions": sessions.iter().map(session_json).collect::<Vec<_>>()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        println!("no open exchange sessions");
    }
    for s in &sessions {
        let (gives, gets) = match s.role {
            Role::Initiator => (&s.v1, &s.v2),
            Role::Responder => (&s.v2, &s.v1),
        };
        let id = s.s2.unwrap_or(s.s1);
        println!(
            "{} {:<7} {}…  gives {}, gets {}",
            s.role.name(),
            s.state.name(),
            hex::encode_upper(&id[..8]),
            show_value(gives),
            show_value(gets)
        );
    }
    if !sessions.is_empty() {
        println!("`valuecard recover` settles them with the arbiter");
    }
    Ok(ExitCode::SUCCESS)
}
