//! The subcommands, and what they share: opening the card, errors for people.

mod apdu;
mod bench;
mod card;
mod conformance;
mod info;
mod pin;
mod readers;

use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use valuecard_terminal::pcsc::PcscTransport;
use valuecard_terminal::transport::{InProcess, Traced, Transport, TransportError};
use valuecard_terminal::{Client, ClientError};

use crate::cli::{Cli, Command, Global};

/// An error as the user sees it: a message, maybe a hint, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: None,
            code: 1,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

impl From<TransportError> for CliError {
    fn from(e: TransportError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::new(e.to_string())
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

pub fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let mut global = cli.global;
    if global.card_state.is_some() && global.reader.is_some() {
        // A reader named in the environment yields to an explicit --card-state; two
        // explicit choices are a mistake.
        if matches.value_source("reader") == Some(ValueSource::EnvVariable) {
            global.reader = None;
        } else {
            return Err(CliError::new(
                "--reader and --card-state both choose the card: pass one of them",
            ));
        }
    }
    if global.emulator_test_mode && global.card_state.is_none() {
        return Err(CliError::new(
            "--emulator-test-mode applies to the --card-state emulator only",
        ));
    }
    match cli.command {
        Command::Readers { json } => readers::run(json),
        Command::Info { json } => info::run(&global, json),
        Command::Apdu { raw, apdus } => apdu::run(&global, raw, &apdus),
        Command::Card(command) => card::run(&global, command),
        Command::Pin(command) => pin::run(&global, command),
        Command::Conformance { filter } => conformance::run(&global, filter.as_deref()),
        Command::Bench(command) => bench::run(&global, command),
    }
}

pub fn wait(global: &Global) -> Duration {
    Duration::try_from_secs_f64(global.wait).unwrap_or(Duration::ZERO)
}

/// The card the global options choose, traced if asked.
pub fn open(global: &Global) -> Result<Box<dyn Transport>> {
    let transport: Box<dyn Transport> = match &global.card_state {
        Some(path) => Box::new(InProcess::open(path, global.emulator_test_mode)?),
        None => Box::new(PcscTransport::open(global.reader.as_deref(), wait(global))?),
    };
    Ok(if global.trace {
        Box::new(Traced::new(transport))
    } else {
        transport
    })
}

/// A client for the chosen card, with the valuecard application selected.
pub fn selected_client(global: &Global) -> Result<Client<Box<dyn Transport>>> {
    let mut client = Client::new(open(global)?);
    client.select()?;
    Ok(client)
}

/// A PIN from an option (or its environment variable), checked for form before it costs a
/// try on the card.
pub fn pin_from(value: Option<String>, option: &str, env: &str) -> Result<Vec<u8>> {
    let pin = value
        .ok_or_else(|| CliError::new(format!("no PIN given: pass {option} PIN or set {env}")))?;
    let pin = pin.into_bytes();
    if !apdu_spec::objects::pin_is_well_formed(&pin) {
        return Err(CliError::new(format!(
            "a PIN is {} to {} digits, and the one given with {option} is not",
            apdu_spec::PIN_MIN_LEN,
            apdu_spec::PIN_MAX_LEN
        )));
    }
    Ok(pin)
}

/// A Unix time as a UTC date (proleptic Gregorian; days-from-civil inverted).
pub fn date(unix: u64) -> String {
    if unix == u64::MAX {
        return "never".into();
    }
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(951_782_400), "2000-02-29");
        assert_eq!(super::date(1_767_225_599), "2025-12-31");
    }
}
