//! The subcommands, and what they share: opening the card, errors for people.

mod apdu;
mod bank;
pub mod bench;
mod card;
mod cards;
mod config;
mod conformance;
pub mod demo;
mod exchange;
mod funding;
mod info;
mod pin;
mod readers;
mod units;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use apdu_spec::commands::LifeCycle;
use apdu_spec::objects::CardInfo;
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use valuecard_protocol::ErrorCode;
use valuecard_terminal::backend_client::{
    ArbiterClient, BackendError, BankClient, CenterClient, Role, normalise_base,
};
use valuecard_terminal::funding::FundingError;
use valuecard_terminal::journal::{self, Journal, JournalError};
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
        let hint = match &e {
            TransportError::NoService(_) => Some(
                "start it with `sudo systemctl start pcscd` (or `make setup`); `valuecard readers` checks it".to_string(),
            ),
            TransportError::NoCard { reader } => Some(match reader.strip_prefix("Virtual PCD 00 0") {
                // vpcd's readers: a virtual card goes in with valuecard-card.
                Some(slot) => format!(
                    "start a virtual card there: `valuecard-card --slot {slot} --state card.state`"
                ),
                None => "`valuecard readers` shows which readers hold a card; a virtual card goes in with `valuecard-card --slot 0 --state card.state`".into(),
            }),
            _ => None,
        };
        let error = CliError::new(e.to_string());
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<BackendError> for CliError {
    fn from(e: BackendError) -> Self {
        let hint = backend_hint(&e);
        let error = CliError::new(e.to_string());
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

/// What to do about a backend error, when there is something to say.
fn backend_hint(e: &BackendError) -> Option<String> {
    let option = match e.role() {
        Role::Bank => "--bank or --backend (VALUECARD_BANK, VALUECARD_BACKEND, or the config file)",
        Role::Center => {
            "--center or --backend (VALUECARD_CENTER, VALUECARD_BACKEND, or the config file)"
        }
        Role::Arbiter => {
            "--arbiter or --backend (VALUECARD_ARBITER, VALUECARD_BACKEND, or the config file)"
        }
    };
    Some(match e {
        BackendError::Network { .. } => format!(
            "is the backend running (`valuecard-backend all`)? Its address is set with {option}; `valuecard config` shows where it comes from"
        ),
        BackendError::BadAnswer { .. } => format!(
            "is this the valuecard backend? Its address is set with {option}; `valuecard config` shows where it comes from"
        ),
        BackendError::Api { code, .. } => match code {
            ErrorCode::AdminUnauthorized => {
                "pass the bank's admin token with --admin-token or VALUECARD_ADMIN_TOKEN".into()
            }
            ErrorCode::BadCredential => {
                "pass the account's credential with --credential or VALUECARD_CREDENTIAL".into()
            }
            ErrorCode::UnknownAccount => {
                "check the account number; `valuecard bank open-account` opens one".into()
            }
            ErrorCode::UnknownCard => {
                "register the card with the center first: `valuecard card register`".into()
            }
            ErrorCode::InsufficientFunds => {
                "see the balance with `valuecard bank balance`; pay in with `valuecard bank deposit`"
                    .into()
            }
            _ => return None,
        },
    })
}

impl From<JournalError> for CliError {
    fn from(e: JournalError) -> Self {
        let hint = match &e {
            JournalError::Version { .. } | JournalError::Malformed { .. } => Some(
                "the journal is left as it is; use another one with --journal, or a valuecard that reads it",
            ),
            JournalError::Io { .. } => Some("choose the journal's place with --journal FILE"),
            JournalError::Transition(_) => None,
        };
        let error = CliError::new(e.to_string());
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

impl From<FundingError> for CliError {
    fn from(e: FundingError) -> Self {
        match e {
            FundingError::Backend(e) => e.into(),
            FundingError::Journal(e) => e.into(),
            other => CliError::new(other.to_string()),
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Where the bank and the center are, and whether the user chose it (on the command line, in
/// the environment or in the config file) or it is the default.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub bank: String,
    pub center: String,
    pub arbiter: String,
    /// The user named the bank's or the center's place: it wins over the one a journaled
    /// withdrawal remembers.
    pub bank_chosen: bool,
    pub center_chosen: bool,
}

impl Endpoints {
    fn from(global: &Global) -> Result<Self> {
        crate::settings::check_urls(global)?;
        let backend_chosen = global.sources.backend.is_chosen();
        Ok(Endpoints {
            bank: normalise_base(global.bank.as_deref().unwrap_or(&global.backend)),
            center: normalise_base(global.center.as_deref().unwrap_or(&global.backend)),
            arbiter: normalise_base(global.arbiter.as_deref().unwrap_or(&global.backend)),
            bank_chosen: backend_chosen || global.bank.is_some(),
            center_chosen: backend_chosen || global.center.is_some(),
        })
    }

    pub fn bank(&self) -> BankClient {
        BankClient::new(&self.bank)
    }

    pub fn center(&self) -> CenterClient {
        CenterClient::new(&self.center)
    }

    pub fn arbiter(&self) -> ArbiterClient {
        ArbiterClient::new(&self.arbiter)
    }

    /// The bank for a journaled withdrawal: the one it was made with, unless the user names
    /// one now.
    pub fn bank_for(&self, journaled: &str) -> BankClient {
        BankClient::new(if self.bank_chosen {
            &self.bank
        } else {
            journaled
        })
    }

    pub fn center_for(&self, journaled: &str) -> CenterClient {
        CenterClient::new(if self.center_chosen {
            &self.center
        } else {
            journaled
        })
    }
}

/// The journal the global options choose, open and locked.
pub fn open_journal(global: &Global) -> Result<Journal> {
    let path: PathBuf = match &global.journal {
        Some(path) => path.clone(),
        None => journal::default_path().ok_or_else(|| {
            CliError::new("no place for the journal: neither XDG_DATA_HOME nor HOME is set")
                .hint("choose one with --journal FILE or VALUECARD_JOURNAL")
        })?,
    };
    Ok(Journal::open(&path, || {
        eprintln!(
            "waiting for another valuecard process to finish with the journal {}",
            path.display()
        )
    })?)
}

/// A secret from an option (or its environment variable), else asked for without echo when
/// standard input is a terminal.
pub fn secret_from(value: Option<String>, what: &str, option: &str, env: &str) -> Result<String> {
    if let Some(value) = value {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        return prompt_hidden(&format!("{what}: "));
    }
    Err(CliError::new(format!("no {what} given")).hint(format!("pass {option} or set {env}")))
}

/// Reads a line from the terminal with echo off (through `stty`, where there is one).
pub fn prompt_hidden(label: &str) -> Result<String> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| CliError::new(format!("cannot read from the terminal: {e}")))?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(CliError::new("nothing entered"));
    }
    Ok(value)
}

pub fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let global = crate::settings::resolve(cli.global, matches)?;
    if global.emulator_test_mode && global.card_state.is_none() {
        return Err(CliError::new(
            "--emulator-test-mode applies to the --card-state emulator only",
        ));
    }
    match cli.command {
        Command::Readers { json } => readers::run(json),
        Command::Info { json } => info::run(&global, json),
        Command::Apdu { raw, apdus } => apdu::run(&global, raw, &apdus),
        Command::Card(command) => card::run(&global, &Endpoints::from(&global)?, command),
        Command::Pin(command) => pin::run(&global, command),
        Command::Conformance { filter, json } => conformance::run(&global, filter.as_deref(), json),
        Command::Bench(args) => bench::run(&global, args),
        Command::Demo(args) => demo::run(&global, args),
        Command::Bank(command) => bank::run(&Endpoints::from(&global)?, command),
        Command::Cards(command) => cards::run(&Endpoints::from(&global)?, command),
        Command::Withdraw {
            account,
            amount,
            credential,
            redeem_later,
            json,
        } => funding::withdraw(
            &global,
            &Endpoints::from(&global)?,
            funding::WithdrawArgs {
                account,
                amount,
                credential,
                redeem_later,
                json,
            },
        ),
        Command::Redeem { json } => funding::redeem(&global, &Endpoints::from(&global)?, json),
        Command::Recover { credential, json } => {
            funding::recover(&global, &Endpoints::from(&global)?, credential, json)
        }
        Command::Load {
            amount,
            asset,
            json,
        } => units::load(&global, &Endpoints::from(&global)?, amount, asset, json),
        Command::Unload {
            amount,
            asset,
            pin,
            json,
        } => units::unload(
            &global,
            &Endpoints::from(&global)?,
            amount,
            asset,
            pin,
            json,
        ),
        Command::Tickets { command, json } => {
            units::tickets(&global, &Endpoints::from(&global)?, command, json)
        }
        Command::Exchange {
            initiator,
            initiator_state,
            responder,
            responder_state,
            give,
            take,
            initiator_pin,
            responder_pin,
            json,
        } => exchange::exchange(
            &global,
            &Endpoints::from(&global)?,
            exchange::Side {
                reader: crate::settings::exchange_reader(
                    initiator,
                    initiator_state.as_deref(),
                    &global.sources.initiator,
                ),
                state: initiator_state,
                pin: initiator_pin,
            },
            exchange::Side {
                reader: crate::settings::exchange_reader(
                    responder,
                    responder_state.as_deref(),
                    &global.sources.responder,
                ),
                state: responder_state,
                pin: responder_pin,
            },
            &give,
            &take,
            json,
        ),
        Command::Sessions { json } => exchange::sessions(&global, json),
        Command::Balance { json } => units::balance(&global, &Endpoints::from(&global)?, json),
        Command::Config { json } => config::run(&global, json),
    }
}

/// A progress bar on standard error for `len` steps of long work. Hidden when standard error
/// is not a terminal, and under --trace or RUST_LOG, whose lines would tear it; standard
/// output (results, JSON) never sees it.
pub fn progress(global: &Global, len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || global.trace || std::env::var_os("RUST_LOG").is_some() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:<24} [{bar:30}] {pos}/{len} {elapsed}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    // Dropped on an early return (an error), it clears itself rather than stay half drawn
    // above the message.
    ProgressBar::new(len)
        .with_style(style)
        .with_message(what.to_string())
        .with_finish(ProgressFinish::AndClear)
}

/// A spinner on standard error while one slow step runs (same rules as [`progress`]).
pub fn spinner(global: &Global, what: &str) -> ProgressBar {
    let bar = progress(global, 0, what);
    if bar.is_hidden() {
        return bar;
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn wait(global: &Global) -> Duration {
    Duration::try_from_secs_f64(global.wait).unwrap_or(Duration::ZERO)
}

/// The card the global options choose, traced if asked.
pub fn open(global: &Global) -> Result<Box<dyn Transport>> {
    open_card(
        global.reader.as_deref(),
        global.card_state.as_deref(),
        global.emulator_test_mode,
        global,
    )
}

/// An emulated card whose state lives in `state`, else the card in `reader` (or the first
/// one holding a card); traced if the global options ask.
pub fn open_card(
    reader: Option<&str>,
    state: Option<&Path>,
    test_mode: bool,
    global: &Global,
) -> Result<Box<dyn Transport>> {
    let transport: Box<dyn Transport> = match state {
        Some(path) => Box::new(InProcess::open(path, test_mode)?),
        None => Box::new(PcscTransport::open(reader, wait(global))?),
    };
    Ok(if global.trace {
        Box::new(Traced::new(transport))
    } else {
        transport
    })
}

/// The personalised card's id, from what it tells about itself.
pub fn active_card_id(info: &CardInfo) -> Result<[u8; 32]> {
    match (info.life_cycle, info.card_id) {
        (LifeCycle::Active, Some(id)) => Ok(id),
        (LifeCycle::Keyed, _) => Err(CliError::new("the card is not personalised yet")
            .hint("finish with `valuecard card register`")),
        _ => Err(
            CliError::new("the card has no key yet, so no account at the center")
                .hint("register it with `valuecard card register`"),
        ),
    }
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

/// A new PIN from an option (or its environment variable), else asked twice when standard
/// input is a terminal; checked for form.
pub fn new_pin_from(value: Option<String>, option: &str, env: &str) -> Result<Vec<u8>> {
    if value.is_none() && std::io::stdin().is_terminal() {
        let first = prompt_hidden("new PIN (4 to 12 digits): ")?;
        let again = prompt_hidden("the same PIN again: ")?;
        if first != again {
            return Err(CliError::new("the two PINs differ; nothing was changed"));
        }
        return pin_from(Some(first), option, env);
    }
    pin_from(value, option, env)
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
