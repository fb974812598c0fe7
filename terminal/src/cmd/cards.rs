//! `valuecard cards`: the center staff's revocation and the float.

use std::process::ExitCode;

use apdu_spec::cert::decode_public_key;
use apdu_spec::maker::maker_id;
use serde_json::json;
use valuecard_protocol::api::{BlockEntry, BlockList, BlockListStatus, BlockRequest};
use valuecard_terminal::backend_client::BackendError;

use super::bank::admin_token_from;
use super::{CliError, Endpoints, Result};
use crate::cli::CardsCommand;

pub fn run(endpoints: &Endpoints, command: CardsCommand) -> Result<ExitCode> {
    match command {
        CardsCommand::Block {
            card_id,
            maker,
            reason,
            admin,
            json,
        } => {
            let admin_token = admin_token_from(admin.admin_token)?;
            let entry = match (card_id, maker) {
                (Some(id), _) => BlockEntry::Card(id32("--card-id", &id)?),
                (None, Some(maker)) => BlockEntry::Maker(maker_from(&maker)?),
                (None, None) => {
                    return Err(
                        CliError::new("name the card (--card-id) or the maker (--maker)").code(2),
                    );
                }
            };
            block(endpoints, &admin_token, entry, reason, json)
        }
        CardsCommand::Blocked { json } => blocked(endpoints, json),
        CardsCommand::Float { admin, json } => {
            let admin_token = admin_token_from(admin.admin_token)?;
            float(endpoints, &admin_token, json)
        }
    }
}

/// Hands the arbiter the issuer's block list up to `current`, from the version it holds: a
/// list carries only the newest 64 blocks, so every 64th version in between goes first, and
/// no block falls between two lists. The arbiter takes lists from anyone (it checks the
/// issuer's signature) and keeps every entry of every list it is given.
fn relay(endpoints: &Endpoints, current: &BlockList) -> Result<BlockListStatus, BackendError> {
    let (center, arbiter) = (endpoints.center(), endpoints.arbiter());
    let held = arbiter.info()?.block_list_version;
    let step = apdu_spec::blocklist::MAX_ENTRIES as u32;
    let mut version = held.saturating_add(step);
    while version < current.version {
        arbiter.relay_block_list(&center.block_list_at(version)?)?;
        version = version.saturating_add(step);
    }
    arbiter.relay_block_list(current)
}

fn block(
    endpoints: &Endpoints,
    admin_token: &str,
    entry: BlockEntry,
    reason: String,
    json: bool,
) -> Result<ExitCode> {
    let answer = endpoints
        .center()
        .block(admin_token, &BlockRequest { entry, reason })?;
    // The arbiter takes the issuer's signed list from anyone; without it, a blocked card
    // could still have the arbiter settle its own sessions. A failure here leaves the block
    // in place and says how to finish.
    let relayed = relay(endpoints, &answer.block_list);
    if json {
        println!(
            "{}",
            json!({
                "entry": answer.entry,
                "already_blocked": answer.replayed,
                "block_list_version": answer.block_list.version,
                "arbiter_version": relayed.as_ref().ok().map(|s| s.version),
            })
        );
    } else {
        let again = if answer.replayed {
            " (it was already)"
        } else {
            ""
        };
        println!("blocked:     {}{again}", describe(&answer.entry));
        println!("block list:  version {}", answer.block_list.version);
        if let Ok(status) = &relayed {
            println!("arbiter:     holds version {}", status.version);
        }
    }
    match relayed {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::new(format!(
            "the block is recorded at the center, but the arbiter did not take the new list: {e}"
        ))
        .hint("run `valuecard cards blocked` once the arbiter answers: it relays the list again")),
    }
}

fn blocked(endpoints: &Endpoints, json: bool) -> Result<ExitCode> {
    let list = endpoints.center().block_list()?;
    let issuer = decode_public_key(&endpoints.center().info()?.issuer_public_key)
        .ok_or_else(|| CliError::new("the center's issuer key is not a P-256 public key"))?;
    list.verify(&issuer).map_err(|e| {
        CliError::new(format!(
            "the center's block list does not verify under its issuer key: {e}"
        ))
    })?;
    // Relaying is harmless (the arbiter checks the issuer's signature and keeps the newest
    // list), and it brings an arbiter that missed blocks up to date.
    let arbiter = relay(endpoints, &list);
    if json {
        println!(
            "{}",
            json!({
                "version": list.version,
                "entries": list.entries,
                "arbiter_version": arbiter.as_ref().ok().map(|s| s.version),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "block list version {} ({} entries)",
        list.version,
        list.entries.len()
    );
    for entry in &list.entries {
        println!("  {}", describe(entry));
    }
    match arbiter {
        Ok(status) if status.version == list.version => println!("the arbiter holds it too"),
        Ok(status) => println!("the arbiter holds version {}", status.version),
        Err(e) => println!("the arbiter did not answer: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn float(endpoints: &Endpoints, admin_token: &str, json: bool) -> Result<ExitCode> {
    let report = endpoints.center().float(admin_token)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report)
                .map_err(|e| CliError::new(format!("cannot print the float: {e}")))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("on cards, in total (loads - refunds - unloads):");
    if report.floats.is_empty() {
        println!("  nothing loaded yet");
    }
    for f in &report.floats {
        println!("  {:>12} {}", f.amount, f.asset);
    }
    if report.alarms.is_empty() {
        println!("no alarms");
    } else {
        println!(
            "ALARMS: unloads refused because cards would have given back more than they were \
             given (some card key is out of its chip; the card named found the float empty, \
             and is not always the one that minted):"
        );
        for a in &report.alarms {
            println!(
                "  day {}: card {} counter {} asked {} {} with {} on cards",
                a.day,
                hex::encode_upper(a.card_id),
                a.counter,
                a.amount,
                a.asset,
                a.float
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(entry: &BlockEntry) -> String {
    match entry {
        BlockEntry::Card(id) => format!("card {}", hex::encode_upper(id)),
        BlockEntry::Maker(id) => format!("maker {}", hex::encode_upper(id)),
    }
}

fn id32(option: &str, text: &str) -> Result<[u8; 32]> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| CliError::new(format!("{option} takes 64 hex digits")).code(2))?;
    Ok(id)
}

/// A maker by its public key (66 hex digits) or its id (64).
fn maker_from(text: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    if text.len() == 66 {
        let key = hex::decode(text)
            .ok()
            .and_then(|b| decode_public_key(&b))
            .ok_or_else(|| CliError::new("--maker is not a compressed P-256 public key").code(2))?;
        return Ok(maker_id(&key));
    }
    id32("--maker", text)
}
