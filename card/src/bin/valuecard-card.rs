//! `valuecard-card`: a virtual valuecard that pcscd sees through vsmartcard's vpcd driver,
//! and the offline tools of a (test) card maker that make one.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use apdu_spec::cert;
use apdu_spec::maker::{self, Manufacture};
use clap::{Args, Parser, Subcommand};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_card::provision::provision;
use valuecard_card::storage::FileStorage;
use valuecard_card::vpcd::{self, ServeOptions, Shutdown};
use valuecard_card::{Card, Options};

/// A virtual valuecard smartcard for pcscd's vpcd reader.
///
/// Without a subcommand, the card connects to the vpcd driver of a running pcscd (Debian
/// package vsmartcard-vpcd) and then shows up as a card in the reader "Virtual PCD 00
/// <slot>". Its persistent state (key, PIN, values) lives in the state file, written
/// atomically once per command; it survives restarts and power cuts.
///
/// A card must be made by a card maker before it can be registered: `provision` writes a
/// blank card holding an attestation key, the maker's certificate over it and the scheme
/// root's key; `maker-key` makes a test maker's key. An emulated card is not
/// tamper-resistant: whoever holds its state file holds its keys, so only real secure
/// elements belong under a maker key that a production center trusts.
///
/// It tells on standard error when it is inserted into the reader and removed from it;
/// --trace adds every APDU in hex (PIN commands included: for development only). It does
/// not read RUST_LOG. Ctrl-C or SIGTERM stops it.
#[derive(Parser, Debug)]
#[command(
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  valuecard-card maker-key --out maker.key
  valuecard-card provision --state card-a.state --maker-key maker.key --root-key \"$(cat keys/root.pub)\"
  valuecard-card --slot 0 --state card-a.state
  valuecard-card --slot 1 --state card-b.state --trace
  valuecard-card --vpcd 127.0.0.1:35964 --state card-b.state
  valuecard-card --slot 0 --state /tmp/conformance.state --test-mode   # for `valuecard conformance`"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// The card in a vpcd slot (no subcommand).
#[derive(Args, Debug)]
struct RunArgs {
    /// vpcd slot: 0 connects to port 35963 ("Virtual PCD 00 00"), 1 to 35964.
    #[arg(long, conflicts_with = "vpcd", default_value_t = 0)]
    slot: u16,
    /// vpcd address as HOST:PORT, instead of --slot.
    #[arg(long, value_name = "HOST:PORT")]
    vpcd: Option<String>,
    /// The card's state file; a blank card (never manufactured) is created there if it
    /// does not exist: `provision` makes one that can be registered.
    #[arg(long, value_name = "FILE", required = true)]
    state: Option<PathBuf>,
    /// Print every APDU, both ways, to stderr.
    #[arg(long)]
    trace: bool,
    /// Allow TEST RESET (80 7E 00 00), which erases the card: for conformance runs only.
    #[arg(long)]
    test_mode: bool,
    /// Leave TCP_NODELAY and TCP_QUICKACK off: a slow card, as a benchmark baseline only.
    #[arg(long, hide = true)]
    plain_socket: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a card as its maker does: a blank card with a fresh attestation key, the
    /// maker's certificate over it, and the scheme root's public key.
    ///
    /// Offline, on the state file: no APDU can do this. The file must not exist yet, or
    /// hold a blank card that was never manufactured; a card with a manufacture record or
    /// a key is refused and left as it is. The file is written atomically, mode 0600.
    /// Prints the maker id, the attestation key and the root key.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:
  valuecard-card provision --state card-a.state --maker-key maker.key --root-key \"$(cat keys/root.pub)\"
  valuecard-card provision --state /tmp/dev.state --maker-key maker.key --root-key 02a1...   # 66 hex digits"
    )]
    Provision {
        /// The state file to write the card to.
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// The maker's secret key: a file of 64 hex digits (from `maker-key`).
        #[arg(long, value_name = "FILE")]
        maker_key: PathBuf,
        /// The scheme root's public key, compressed SEC1: 66 hex digits (`keys/root.pub`
        /// of `valuecard-backend keys init`).
        #[arg(long, value_name = "HEX")]
        root_key: String,
    },
    /// Make a card maker's key, for tests and demos: a P-256 secret key as 64 hex digits.
    ///
    /// The file is created with mode 0600 and never overwritten. Prints the maker's public
    /// key (66 hex digits: what a center is told to trust, `--trust-card-maker`) and its
    /// maker id (64 hex digits: how certificates and block lists name it). A production
    /// center trusts no such key unless told to.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:
  valuecard-card maker-key --out maker.key
  valuecard-card maker-key --out /tmp/test-maker.key"
    )]
    MakerKey {
        /// Where to write the secret key; must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Provision {
            state,
            maker_key,
            root_key,
        }) => provision_card(&state, &maker_key, &root_key),
        Some(Command::MakerKey { out }) => make_maker_key(&out),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("valuecard-card: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let state = args.state.ok_or("--state FILE is required")?;
    let storage = FileStorage::open(&state)
        .map_err(|e| format!("cannot use state file {}: {e}", state.display()))?;
    let mut card = Card::new(
        Box::new(storage),
        Options {
            test_mode: args.test_mode,
            rng_seed: None,
        },
    )
    .map_err(|e| format!("cannot load the card from {}: {e}", state.display()))?;
    let address = args.vpcd.unwrap_or_else(|| vpcd::slot_address(args.slot));

    let shutdown = Arc::new(Shutdown::default());
    let handler = Arc::clone(&shutdown);
    ctrlc::set_handler(move || handler.trigger())
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    let options = ServeOptions {
        trace: args.trace,
        tuned: !args.plain_socket,
    };
    vpcd::serve(&mut card, &address, options, &shutdown)
        .map_err(|e| format!("vpcd at {address}: {e}"))?;
    // Every command committed before it answered: there is nothing left to save.
    eprintln!("valuecard-card: stopped");
    Ok(())
}

fn provision_card(state: &Path, maker_key: &Path, root_key: &str) -> Result<(), String> {
    let maker = read_maker_key(maker_key)?;
    let root = hex::decode(root_key.trim())
        .ok()
        .and_then(|bytes| cert::decode_public_key(&bytes))
        .ok_or("--root-key must be a compressed P-256 public key: 66 hex digits")?;
    let attestation = SigningKey::generate_from_rng(&mut rand::rng());
    let made = Manufacture::make(&maker, &root, &attestation);
    let mut storage = FileStorage::open(state)
        .map_err(|e| format!("cannot use state file {}: {e}", state.display()))?;
    provision(&mut storage, &made).map_err(|e| format!("{}: {e}", state.display()))?;
    println!("provisioned a blank card in {}", state.display());
    println!("maker id: {}", hex::encode(made.certificate.maker));
    println!(
        "attestation key: {}",
        hex::encode(made.certificate.attestation_key)
    );
    println!("root key: {}", hex::encode(made.root_key));
    Ok(())
}

/// A maker key file: 64 hex digits, surrounding whitespace allowed.
fn read_maker_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the maker key {}: {e}", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| SigningKey::from_slice(&bytes).ok())
        .ok_or_else(|| {
            format!(
                "{} holds no maker key: it must be 64 hex digits, a P-256 secret key",
                path.display()
            )
        })
}

fn make_maker_key(out: &Path) -> Result<(), String> {
    let key = SigningKey::generate_from_rng(&mut rand::rng());
    let mut options = OpenOptions::new();
    // Never over an existing key: a maker key lost is every card it made orphaned.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!(
                "{} exists already: a maker key is never overwritten",
                out.display()
            )
        }
        _ => format!("cannot create {}: {e}", out.display()),
    })?;
    let secret: [u8; 32] = key.to_bytes().into();
    file.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let public = cert::encode_public_key(key.verifying_key());
    println!("maker public key: {}", hex::encode(public));
    println!(
        "maker id: {}",
        hex::encode(maker::maker_id(key.verifying_key()))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent_and_has_examples() {
        let command = Cli::command();
        command.clone().debug_assert();
        let mut all = vec![command.clone()];
        all.extend(command.get_subcommands().cloned());
        for c in all {
            assert!(c.get_about().is_some(), "{} has an about", c.get_name());
            let after = c.get_after_help().map(|h| h.to_string());
            assert!(
                after.is_some_and(|h| h.contains("Examples:")),
                "{} has examples",
                c.get_name()
            );
        }
    }

    #[test]
    fn the_run_mode_reads_as_before() {
        let cli = Cli::try_parse_from([
            "valuecard-card",
            "--slot",
            "1",
            "--state",
            "card.state",
            "--test-mode",
            "--trace",
        ])
        .expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.slot, 1);
        assert!(cli.run.test_mode && cli.run.trace);
        let vpcd = Cli::try_parse_from([
            "valuecard-card",
            "--vpcd",
            "127.0.0.1:35964",
            "--state",
            "b.state",
            "--plain-socket",
        ])
        .expect("parses");
        assert_eq!(vpcd.run.vpcd.as_deref(), Some("127.0.0.1:35964"));
        assert!(
            Cli::try_parse_from(["valuecard-card", "--slot", "0"]).is_err(),
            "--state"
        );
        let provision = Cli::try_parse_from([
            "valuecard-card",
            "provision",
            "--state",
            "a.state",
            "--maker-key",
            "maker.key",
            "--root-key",
            "02ab",
        ])
        .expect("parses");
        assert!(matches!(
            provision.command,
            Some(super::Command::Provision { .. })
        ));
    }
}
