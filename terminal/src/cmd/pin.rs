//! `valuecard pin`.

use std::process::ExitCode;

use apdu_spec::commands::LifeCycle;
use serde_json::json;
use valuecard_terminal::PinStatus;

use super::{CliError, Result, pin_from, selected_client};
use crate::cli::{Global, PinCommand};

pub fn run(global: &Global, command: PinCommand) -> Result<ExitCode> {
    match command {
        PinCommand::Verify { pin } => {
            let pin = pin_from(pin, "--pin", "VALUECARD_PIN")?;
            let status = selected_client(global)?.verify_pin(&pin)?;
            refuse_unless_verified(status)?;
            println!("PIN verified");
        }
        PinCommand::Change { old, new } => {
            let old = pin_from(old, "--old", "VALUECARD_PIN")?;
            let new = pin_from(new, "--new", "VALUECARD_NEW_PIN")?;
            let status = selected_client(global)?.change_pin(&old, &new)?;
            refuse_unless_verified(status)?;
            println!("PIN changed");
        }
        PinCommand::Status { json } => status(global, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn status(global: &Global, json: bool) -> Result<()> {
    let mut client = selected_client(global)?;
    // Before PERSONALIZE there is no PIN, and VERIFY would only answer 6985.
    let life_cycle = client.info()?.life_cycle;
    let status = match life_cycle {
        LifeCycle::Active => Some(client.pin_tries()?),
        _ => None,
    };
    let (state, tries_left) = match status {
        None => ("not_set", None),
        Some(PinStatus::Verified) => ("verified", None),
        Some(PinStatus::NotVerified { tries_left }) => ("not_verified", Some(tries_left)),
        Some(PinStatus::Blocked) => ("blocked", Some(0)),
    };
    if json {
        println!(
            "{}",
            json!({
                "card": client.transport().name(),
                "life_cycle": life_cycle.name(),
                "pin": state,
                "tries_left": tries_left,
                "max_tries": apdu_spec::PIN_MAX_TRIES,
            })
        );
        return Ok(());
    }
    match status {
        None => println!(
            "no PIN yet: the card is {}, not personalised (`valuecard card register` sets the PIN)",
            life_cycle.name()
        ),
        Some(PinStatus::Verified) => println!("PIN verified in this session"),
        Some(PinStatus::NotVerified { tries_left }) => {
            println!("{tries_left} of {} tries left", apdu_spec::PIN_MAX_TRIES)
        }
        Some(PinStatus::Blocked) => println!("PIN blocked"),
    }
    Ok(())
}

pub(super) fn refuse_unless_verified(status: PinStatus) -> Result<()> {
    match status {
        PinStatus::Verified => Ok(()),
        PinStatus::NotVerified { tries_left } => Err(CliError::new(format!(
            "wrong PIN: {tries_left} {} left before the PIN blocks",
            if tries_left == 1 { "try" } else { "tries" }
        ))),
        PinStatus::Blocked => Err(CliError::new(
            "the PIN is blocked after too many wrong tries: the card no longer accepts PIN commands",
        )),
    }
}
