//! `valuecard balance`: the center's unit accounts of the card in the reader.

use std::process::ExitCode;

use apdu_spec::commands::LifeCycle;
use serde_json::json;
use valuecard_protocol::api::{CardBalanceRequest, CardProof, ChallengePurpose};

use super::{CliError, Endpoints, Result, selected_client};
use crate::cli::Global;

pub fn run(global: &Global, endpoints: &Endpoints, json: bool) -> Result<ExitCode> {
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
    // The center shows a card's units only to the card: it signs a fresh challenge.
    let challenge = center.challenge(ChallengePurpose::Balance)?;
    let signature = client.internal_authenticate(&challenge.challenge)?;
    let balance = center.balance(&CardBalanceRequest {
        card_id,
        proof: CardProof {
            challenge: challenge.challenge,
            signature: signature.to_vec(),
        },
    })?;
    if json {
        println!(
            "{}",
            json!({
                "card_id": hex::encode_upper(balance.card_id),
                "center": center.base(),
                "accounts": balance.accounts.iter().map(|a| json!({
                    "asset": a.asset,
                    "balance": a.balance,
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("card id:  {}", hex::encode_upper(balance.card_id));
    if balance.accounts.is_empty() {
        println!("units:    none");
    }
    for (i, account) in balance.accounts.iter().enumerate() {
        let label = if i == 0 { "units:" } else { "" };
        println!("{label:<10}{} {}", account.balance, account.asset);
    }
    Ok(ExitCode::SUCCESS)
}
