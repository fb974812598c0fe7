//! `valuecard pin`.

use std::process::ExitCode;

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
        PinCommand::Status => match selected_client(global)?.pin_tries()? {
            PinStatus::Verified => println!("PIN verified in this session"),
            PinStatus::NotVerified { tries_left } => {
                println!("{tries_left} of {} tries left", apdu_spec::PIN_MAX_TRIES)
            }
            PinStatus::Blocked => println!("PIN blocked"),
        },
    }
    Ok(ExitCode::SUCCESS)
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
