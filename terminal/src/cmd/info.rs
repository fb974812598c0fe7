//! `valuecard info`.

use std::process::ExitCode;

use apdu_spec::cert::{self, Certificate};
use apdu_spec::maker::MakerCertificate;
use apdu_spec::objects::CardInfo;
use apdu_spec::units::UnitMessage;
use serde_json::json;

use super::{Result, date, selected_client};
use crate::cli::Global;

pub fn run(global: &Global, json: bool) -> Result<ExitCode> {
    let mut client = selected_client(global)?;
    let info = client.info()?;
    let card = client.transport().name();
    if json {
        println!("{}", to_json(&card, &info));
    } else {
        print_text(&card, &info);
    }
    Ok(ExitCode::SUCCESS)
}

/// The certificate as people care about it: its validity, and whether the issuer key on
/// the card signed it for this card's key.
fn certificate_summary(info: &CardInfo) -> Option<(Option<Certificate>, &'static str)> {
    let bytes = info.certificate.as_ref()?;
    let Ok(certificate) = Certificate::decode(bytes) else {
        return Some((None, "not well formed"));
    };
    let issuer = info.issuer_key.as_deref().and_then(cert::decode_public_key);
    let check = match issuer.map(|key| certificate.verify(&key)) {
        None => "issuer key missing, signature not checked",
        Some(Err(_)) => "DOES NOT VERIFY against the card's issuer key",
        Some(Ok(_)) if info.public_key.as_deref() != Some(&certificate.public_key[..]) => {
            "signed, but for another key than the card's"
        }
        Some(Ok(_)) => "signed by the card's issuer key",
    };
    Some((Some(certificate), check))
}

/// The card's maker, from the maker certificate it got at manufacture.
fn maker_summary(info: &CardInfo) -> String {
    match info
        .maker_certificate
        .as_deref()
        .map(MakerCertificate::decode)
    {
        None => "no card maker: the card cannot be registered".to_string(),
        Some(Ok(c)) => format!("maker {}", hex::encode_upper(c.maker)),
        Some(Err(e)) => format!("a maker certificate that does not decode: {e}"),
    }
}

fn hex_or(value: Option<&[u8]>, absent: &str) -> String {
    value
        .map(hex::encode_upper)
        .unwrap_or_else(|| absent.to_string())
}

fn print_text(card: &str, info: &CardInfo) {
    let row = |label: &str, value: &str| println!("{:<16}{value}", format!("{label}:"));
    row("card", card);
    row("life cycle", info.life_cycle.name());
    row("made by", &maker_summary(info));
    row(
        "scheme root",
        &hex_or(info.root_key.as_deref(), "none (not made by a card maker)"),
    );
    row(
        "card id",
        &hex_or(info.card_id.as_ref().map(|id| &id[..]), "none (no key yet)"),
    );
    row(
        "public key",
        &hex_or(info.public_key.as_deref(), "none (no key yet)"),
    );
    let certificate = match certificate_summary(info) {
        None => "not installed".to_string(),
        Some((Some(c), check)) => format!(
            "valid {} to {}, {check}",
            date(c.not_before),
            date(c.not_after)
        ),
        Some((None, check)) => check.to_string(),
    };
    row("certificate", &certificate);
    row(
        "issuer key",
        &hex_or(info.issuer_key.as_deref(), "not installed"),
    );
    row(
        "arbiter key",
        &hex_or(info.arbiter_key.as_deref(), "not installed"),
    );
    let c = &info.counters;
    let tries = match (info.life_cycle, c.pin_tries) {
        (apdu_spec::commands::LifeCycle::Active, 0) => "blocked".to_string(),
        (apdu_spec::commands::LifeCycle::Active, n) => {
            format!("{n} of {} tries left", apdu_spec::PIN_MAX_TRIES)
        }
        _ => "no PIN yet".to_string(),
    };
    row("PIN", &tries);
    row(
        "counters",
        &format!("next load {}, next unload {}", c.load, c.unload),
    );
    row(
        "block list",
        &match c.block_list {
            0 => "none yet (the card gets the issuer's at its next load)".to_string(),
            v => format!("version {v}"),
        },
    );
    let balances = info.values.assets.iter().map(|a| {
        let escrow = if a.escrowed > 0 {
            format!(" ({} more in escrow)", a.escrowed)
        } else {
            String::new()
        };
        format!("{} {}{escrow}", a.available, a.code)
    });
    list("balances", balances.collect());
    let tickets = info.values.tickets.iter().map(|t| {
        let escrow = if t.escrowed { " (in escrow)" } else { "" };
        format!(
            "{} serial {}{escrow}",
            t.asset,
            hex::encode_upper(&t.serial)
        )
    });
    list("tickets", tickets.collect());
    let in_flight = &info.in_flight;
    let mut pending: Vec<String> = in_flight
        .pending_load
        .iter()
        .filter_map(|p| UnitMessage::decode_load(&p.message).ok())
        .map(|m| format!("load {} of {} (pending)", m.counter, m.value))
        .collect();
    pending.extend(in_flight.receipts.iter().map(|r| match r.decode() {
        Ok(m) => format!(
            "{} {} of {} (receipt)",
            r.kind.describe(),
            m.counter,
            m.value
        ),
        Err(_) => format!("{} {} (receipt)", r.kind.describe(), r.counter),
    }));
    if !pending.is_empty() {
        list("in flight", pending);
        println!(
            "{:<16}`valuecard recover` finishes these with the center",
            ""
        );
    }
}

/// A labelled list, one item a line, the label on the first.
fn list(label: &str, items: Vec<String>) {
    if items.is_empty() {
        println!("{:<16}none", format!("{label}:"));
    }
    for (i, item) in items.iter().enumerate() {
        let label = if i == 0 {
            format!("{label}:")
        } else {
            String::new()
        };
        println!("{label:<16}{item}");
    }
}

fn to_json(card: &str, info: &CardInfo) -> serde_json::Value {
    let certificate = certificate_summary(info).map(|(c, check)| {
        json!({
            "not_before": c.as_ref().map(|c| c.not_before),
            "not_after": c.as_ref().map(|c| c.not_after),
            "check": check,
            "hex": info.certificate.as_ref().map(hex::encode_upper),
        })
    });
    json!({
        "card": card,
        "life_cycle": info.life_cycle.name(),
        "root_key": info.root_key.as_ref().map(hex::encode_upper),
        "maker_id": info
            .maker_certificate
            .as_deref()
            .and_then(|c| MakerCertificate::decode(c).ok())
            .map(|c| hex::encode_upper(c.maker)),
        "card_id": info.card_id.map(hex::encode_upper),
        "public_key": info.public_key.as_ref().map(hex::encode_upper),
        "certificate": certificate,
        "issuer_key": info.issuer_key.as_ref().map(hex::encode_upper),
        "arbiter_key": info.arbiter_key.as_ref().map(hex::encode_upper),
        "counters": info.counters,
        "values": info.values,
        "in_flight": {
            "pending_load": info.in_flight.pending_load.is_some(),
            "receipts": info.in_flight.receipts.len(),
        },
    })
}
