//! The narrator: runs `valuecard` commands (this very program) as a user would type them,
//! shows them and what they print, reads balances with their `--json` forms, and checks
//! every figure against the story.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::relay::Relay;

/// A check that failed, or a command that did: what was expected and what was found.
#[derive(Debug)]
pub struct Failed(pub String);

pub type Step<T = ()> = Result<T, Failed>;

/// How the commands name the two cards.
pub enum Cards {
    /// Virtual cards behind pcscd: `--reader NAME`.
    Readers([String; 2]),
    /// In-process cards: `--card-state FILE`, relative to the demo's folder.
    States([String; 2]),
}

pub const CARD_NAMES: [&str; 2] = ["card A", "card B"];

/// One ticket on a card, as `valuecard tickets --json` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket {
    pub asset: String,
    /// Hex, upper case.
    pub serial: String,
    pub escrowed: bool,
}

impl Ticket {
    pub fn new(asset: &str, serial: &str) -> Self {
        Ticket {
            asset: asset.into(),
            serial: serial.into(),
            escrowed: false,
        }
    }
}

/// What a personalised card holds, in the center's currency, and what it has open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardFigures {
    pub available: u64,
    pub escrowed: u64,
    /// The card's account at the center.
    pub center: u64,
    /// Sorted.
    pub tickets: Vec<Ticket>,
    /// Open exchange sessions.
    pub sessions: usize,
    /// A pending load and receipts not yet acknowledged.
    pub in_flight: usize,
}

/// Every figure the demo checks: the bank account (once opened) and each card (once
/// personalised; `None` is a blank card).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub bank: Option<u64>,
    pub cards: [Option<CardFigures>; 2],
}

/// Runs and shows the commands, and keeps what the story needs between acts.
pub struct Narrator {
    exe: PathBuf,
    pub folder: PathBuf,
    /// The environment every command gets (the backend, the journal, the admin token...).
    env: Vec<(String, String)>,
    pub cards: Cards,
    trace: bool,
    pace: Duration,
    acts: usize,
    pub relay: Relay,
    pub account: Option<String>,
    pub currency: String,
    /// Logs whose tails are shown when a check fails: (what, file).
    pub logs: Vec<(String, PathBuf)>,
}

/// An argument as a shell would need it.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A command line as a user would type it.
pub fn command_line(env: &[(&str, &str)], args: &[String]) -> String {
    let mut line = String::new();
    for (name, value) in env {
        let _ = write!(line, "{name}={} ", quote(value));
    }
    line.push_str("valuecard");
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

/// Prints `text` in lines of at most 90 columns, each starting with `indent`; the lines
/// after the first are indented two more.
fn wrap(text: &str, indent: &str) {
    let mut line = indent.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > 90 {
            println!("{line}");
            line = format!("{indent}{}", if indent.is_empty() { "" } else { "  " });
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    if !empty {
        println!("{line}");
    }
}

fn indented(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        println!("    {line}");
    }
}

/// How a command ended, for people.
pub fn ending(output: &Output) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = output.status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    match output.status.code() {
        Some(code) => format!("exit code {code}"),
        None => "no exit code".into(),
    }
}

impl Narrator {
    pub fn new(
        exe: PathBuf,
        folder: PathBuf,
        env: Vec<(String, String)>,
        cards: Cards,
        trace: bool,
        pace: Duration,
        relay: Relay,
    ) -> Self {
        Narrator {
            exe,
            folder,
            env,
            cards,
            trace,
            pace,
            acts: 0,
            relay,
            account: None,
            currency: String::new(),
            logs: Vec::new(),
        }
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
    }

    /// The options that choose card `i` (0 is A, 1 is B).
    pub fn card(&self, i: usize) -> Vec<String> {
        match &self.cards {
            Cards::Readers(names) => vec!["--reader".into(), names[i].clone()],
            Cards::States(files) => vec!["--card-state".into(), files[i].clone()],
        }
    }

    /// `valuecard <card i's options> <rest>`.
    pub fn on(&self, i: usize, rest: &[&str]) -> Vec<String> {
        let mut all = self.card(i);
        all.extend(rest.iter().map(|s| s.to_string()));
        all
    }

    /// The options of `valuecard exchange` that name the initiator and the responder.
    pub fn exchange_sides(&self, initiator: usize, responder: usize) -> Vec<String> {
        let (a, b, suffix) = match &self.cards {
            Cards::Readers(names) => (&names[initiator], &names[responder], ""),
            Cards::States(files) => (&files[initiator], &files[responder], "-state"),
        };
        vec![
            format!("--initiator{suffix}"),
            a.clone(),
            format!("--responder{suffix}"),
            b.clone(),
        ]
    }

    /// Starts an act: a pause after the one before (on a terminal), its heading and what
    /// happens in it.
    pub fn act(&mut self, title: &str, about: &str) {
        self.heading(&format!("{}. {title}", self.acts + 1), about);
        self.acts += 1;
    }

    /// The heading after the last act.
    pub fn finale(&mut self, title: &str, about: &str) {
        self.heading(title, about);
    }

    fn heading(&self, title: &str, about: &str) {
        if self.acts > 0 {
            self.pause();
        }
        println!();
        println!("== {title} ==");
        self.say(about);
    }

    /// A paragraph of the narrator's, wrapped at 90 columns.
    pub fn say(&self, text: &str) {
        wrap(text, "");
    }

    /// A finding of the demo's own, under the commands: indented, wrapped at 90 columns.
    pub fn note(&self, text: &str) {
        wrap(text, "  ");
    }

    /// A short pause inside an act (on a terminal).
    pub fn pause(&self) {
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
    }

    fn spawn(&self, env: &[(&str, &str)], args: &[String]) -> Step<Output> {
        let mut command = Command::new(&self.exe);
        // Only what the demo sets: a VALUECARD_READER or VALUECARD_FAULT of the user's
        // would change the story.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VALUECARD_") {
                command.env_remove(name);
            }
        }
        command
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .envs(env.iter().copied())
            .args(args)
            .current_dir(&self.folder)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Failed(format!("cannot run {}: {e}", self.exe.display())))
    }

    /// Shows a command, runs it and shows what it printed; it must succeed.
    pub fn run(&self, args: &[String]) -> Step<Output> {
        self.run_with(&[], args)
    }

    pub fn run_with(&self, env: &[(&str, &str)], args: &[String]) -> Step<Output> {
        let output = self.show(env, args)?;
        if !output.status.success() {
            return Err(Failed(format!(
                "`{}` failed ({})",
                command_line(env, args),
                ending(&output)
            )));
        }
        Ok(output)
    }

    /// Shows a command, runs it and shows what it printed, however it ends.
    pub fn show(&self, env: &[(&str, &str)], args: &[String]) -> Step<Output> {
        let mut args = args.to_vec();
        if self.trace {
            args.insert(0, "--trace".into());
        }
        println!("$ {}", command_line(env, &args));
        let output = self.spawn(env, &args)?;
        indented(&output.stdout);
        indented(&output.stderr);
        Ok(output)
    }

    /// Runs a `--json` command without showing it, and reads its answer.
    pub fn query(&self, args: &[String]) -> Step<Value> {
        let output = self.spawn(&[], args)?;
        let line = command_line(&[], args);
        if !output.status.success() {
            return Err(Failed(format!(
                "`{line}` failed ({}): {}",
                ending(&output),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| Failed(format!("`{line}` did not print JSON: {e}")))
    }

    fn card_query(&self, i: usize, args: &[&str]) -> Step<Value> {
        self.query(&self.on(i, args))
    }

    /// What card `i` holds: `None` for a blank card.
    fn read_card(&self, i: usize) -> Step<Option<CardFigures>> {
        let info = self.card_query(i, &["info", "--json"])?;
        if info["life_cycle"] != "active" {
            return Ok(None);
        }
        let balance = self.card_query(i, &["balance", "--json"])?;
        let asset = balance["assets"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["asset"] == self.currency.as_str()));
        let figure = |path: &[&str]| {
            asset.map_or(0, |a| {
                path.iter().fold(a, |v, k| &v[*k]).as_u64().unwrap_or(0)
            })
        };
        let mut tickets: Vec<Ticket> = self.card_query(i, &["tickets", "--json"])?["tickets"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|t| Ticket {
                        asset: t["asset"].as_str().unwrap_or("?").into(),
                        serial: t["serial"].as_str().unwrap_or("?").into(),
                        escrowed: t["escrowed"] == true,
                    })
                    .collect()
            })
            .unwrap_or_default();
        tickets.sort();
        let sessions = self.card_query(i, &["sessions", "--json"])?["sessions"]
            .as_array()
            .map_or(0, Vec::len);
        let in_flight = usize::from(!balance["pending_load"].is_null())
            + balance["receipts"].as_array().map_or(0, Vec::len);
        Ok(Some(CardFigures {
            available: figure(&["card", "available"]),
            escrowed: figure(&["card", "escrowed"]),
            center: figure(&["center"]),
            tickets,
            sessions,
            in_flight,
        }))
    }

    /// The bank account's balance, once there is one.
    pub fn read_bank(&self) -> Step<Option<u64>> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        let answer = self.query(&[
            "bank".into(),
            "balance".into(),
            "--account".into(),
            account.clone(),
            "--json".into(),
        ])?;
        Ok(answer["balance"].as_u64())
    }

    pub fn read(&self) -> Step<Figures> {
        Ok(Figures {
            bank: self.read_bank()?,
            cards: [self.read_card(0)?, self.read_card(1)?],
        })
    }

    /// Reads every figure, shows the balances, and checks them against `expected`.
    pub fn balances(&self, expected: &Figures) -> Step {
        let found = self.read()?;
        self.table(&found);
        check(expected, &found)
    }

    fn table(&self, figures: &Figures) {
        println!(
            "  {:<14}{:>9}{:>11}{:>15}  tickets",
            format!("balances, {}", self.currency),
            "on card",
            "in escrow",
            "at the center"
        );
        for (i, card) in figures.cards.iter().enumerate() {
            let name = CARD_NAMES[i];
            let Some(c) = card else {
                println!("  {name:<14}blank: no key yet, no account at the center");
                continue;
            };
            let tickets: Vec<String> = c
                .tickets
                .iter()
                .map(|t| {
                    let escrow = if t.escrowed { " (in escrow)" } else { "" };
                    format!("{} {}{escrow}", t.asset, t.serial)
                })
                .collect();
            let tickets = if tickets.is_empty() {
                "-".to_string()
            } else {
                tickets.join(", ")
            };
            println!(
                "  {name:<14}{:>9}{:>11}{:>15}  {tickets}",
                c.available, c.escrowed, c.center
            );
            if c.sessions > 0 || c.in_flight > 0 {
                println!(
                    "  {:<14}open: {} exchange session(s), {} load/unload in flight",
                    "", c.sessions, c.in_flight
                );
            }
        }
        match (&self.account, figures.bank) {
            (Some(account), Some(balance)) => {
                println!("  bank account {account}: {balance}")
            }
            _ => println!("  bank: no account yet"),
        }
    }

    /// The last lines of every log, for a failure.
    pub fn show_logs(&self) {
        for (what, path) in &self.logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            eprintln!("--- {what} ({}), last {} lines", path.display(), tail.len());
            for line in tail {
                eprintln!("    {line}");
            }
        }
    }
}

/// Every difference between the figures expected and those found.
pub fn check(expected: &Figures, found: &Figures) -> Step {
    let mut wrong = Vec::new();
    let mut differ = |what: String, e: String, f: String| {
        if e != f {
            wrong.push(format!("{what}: expected {e}, found {f}"));
        }
    };
    let show = |v: Option<u64>| v.map_or("no account".to_string(), |v| v.to_string());
    differ("bank account".into(), show(expected.bank), show(found.bank));
    for (i, (e, f)) in expected.cards.iter().zip(&found.cards).enumerate() {
        let name = CARD_NAMES[i];
        let (e, f) = match (e, f) {
            (Some(e), Some(f)) => (e, f),
            (None, None) => continue,
            (e, f) => {
                let state = |c: &Option<CardFigures>| {
                    if c.is_some() { "personalised" } else { "blank" }.to_string()
                };
                differ(name.into(), state(e), state(f));
                continue;
            }
        };
        let tickets = |c: &CardFigures| {
            let list: Vec<String> = c
                .tickets
                .iter()
                .map(|t| {
                    let escrow = if t.escrowed { " in escrow" } else { "" };
                    format!("{} {}{escrow}", t.asset, t.serial)
                })
                .collect();
            format!("[{}]", list.join(", "))
        };
        for (what, e, f) in [
            ("on the card", e.available, f.available),
            ("in escrow", e.escrowed, f.escrowed),
            ("at the center", e.center, f.center),
            (
                "open exchange sessions",
                e.sessions as u64,
                f.sessions as u64,
            ),
            (
                "loads and unloads in flight",
                e.in_flight as u64,
                f.in_flight as u64,
            ),
        ] {
            differ(format!("{name}, {what}"), e.to_string(), f.to_string());
        }
        differ(format!("{name}, tickets"), tickets(e), tickets(f));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Failed(format!(
            "the figures are not what the story expects:\n  {}",
            wrong.join("\n  ")
        )))
    }
}

/// The demo's folder, removed when dropped unless it is to be kept.
pub struct Folder {
    pub path: PathBuf,
    /// The temporary folder that removes itself; `None` when the folder stays.
    temporary: Option<tempfile::TempDir>,
}

impl Folder {
    /// `dir` if given (created if missing, and then it must be empty; it stays), else a new
    /// folder in the system's temporary folder, which stays only if `keep`.
    pub fn new(dir: Option<&Path>, keep: bool) -> std::io::Result<Folder> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
            if std::fs::read_dir(dir)?.next().is_some() {
                return Err(std::io::Error::other(format!(
                    "{} is not empty: the demo starts from nothing",
                    dir.display()
                )));
            }
            return Ok(Folder {
                path: std::path::absolute(dir)?,
                temporary: None,
            });
        }
        // Made with mode 0700: the cards' state files hold their private keys.
        let temporary = tempfile::Builder::new()
            .prefix("valuecard-demo.")
            .tempdir()?;
        if keep {
            return Ok(Folder {
                path: temporary.keep(),
                temporary: None,
            });
        }
        Ok(Folder {
            path: temporary.path().to_path_buf(),
            temporary: Some(temporary),
        })
    }

    /// Whether the folder stays after the demo.
    pub fn keep(&self) -> bool {
        self.temporary.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args: Vec<String> = ["--reader", "Virtual PCD 00 00", "tickets", "it's"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            command_line(&[("VALUECARD_FAULT", "after-confirm")], &args),
            r"VALUECARD_FAULT=after-confirm valuecard --reader 'Virtual PCD 00 00' tickets 'it'\''s'"
        );
    }

    #[test]
    fn checks_name_every_wrong_figure() {
        let card = CardFigures {
            available: 300,
            tickets: vec![Ticket::new("MUSEUM", "0001")],
            ..CardFigures::default()
        };
        let expected = Figures {
            bank: Some(500),
            cards: [Some(card.clone()), None],
        };
        assert!(check(&expected, &expected).is_ok());
        let mut found = expected.clone();
        found.bank = Some(499);
        if let Some(c) = found.cards[0].as_mut() {
            c.tickets[0].escrowed = true;
        }
        found.cards[1] = Some(CardFigures::default());
        let Err(Failed(message)) = check(&expected, &found) else {
            panic!("no failure")
        };
        assert_eq!(
            message,
            "the figures are not what the story expects:
  bank account: expected 500, found 499
  card A, tickets: expected [MUSEUM 0001], found [MUSEUM 0001 in escrow]
  card B: expected blank, found personalised"
        );
    }
}
