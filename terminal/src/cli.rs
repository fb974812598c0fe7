//! The `valuecard` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The valuecard terminal: talk to a valuecard smartcard in a PC/SC reader, or to an emulated
/// card in this process.
///
/// Without --reader the first reader holding a card is used. pcsc-lite passes APDUs through
/// untouched, so this works with real readers and with the virtual card behind vpcd alike.
#[derive(Parser, Debug)]
#[command(name = "valuecard", version, propagate_version = true)]
#[command(after_help = "Examples:
  valuecard readers
  valuecard --reader 0 info
  valuecard --card-state dev.state pin status
  valuecard --trace apdu '00 A4 04 00 07 F0564341524401 00'")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The reader: its name, part of its name, or its index in `valuecard readers`.
    #[arg(long, short, global = true, env = "VALUECARD_READER", value_name = "R")]
    pub reader: Option<String>,

    /// Use an emulated card in this process, whose state lives in FILE (created blank if
    /// missing), instead of a reader.
    #[arg(long, global = true, value_name = "FILE")]
    pub card_state: Option<PathBuf>,

    /// Give the --card-state emulator TEST RESET, for `conformance` (it erases the card).
    #[arg(long, global = true, hide = true)]
    pub emulator_test_mode: bool,

    /// Print every APDU in hex to stderr, both ways (">>" to the card, "<<" from it).
    #[arg(long, global = true)]
    pub trace: bool,

    /// Wait this many seconds for a card to be inserted (0: do not wait).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0.0)]
    pub wait: f64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the PC/SC readers, whether each holds a card, and the card's ATR.
    #[command(after_help = "A card whose ATR is valuecard's is marked \"valuecard\".

Examples:
  valuecard readers
  valuecard readers --json")]
    Readers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Show what the card tells about itself: life cycle, identity, keys, PIN tries, values.
    #[command(
        after_help = "Runs SELECT, then GET DATA 006E. Nothing on the card changes.

Examples:
  valuecard info
  valuecard --reader \"Virtual PCD 00 01\" info --json"
    )]
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Send raw APDUs and show the answers with the meaning of their status words.
    #[command(
        after_help = "Each argument is one APDU in hex; spaces inside an argument are allowed. Nothing is
selected first. Unless --raw is given, 61xx is followed by GET RESPONSE and 6Cxx by the
same command with the Le the card asks for; the APDUs themselves are sent as written.

Examples:
  valuecard apdu '00 A4 04 00 07 F0564341524401 00' '00 CA 00 6E 00'
  valuecard apdu --raw 00CA00C4"
    )]
    Apdu {
        /// Show the card's answers as they are: no GET RESPONSE, no retry on 6Cxx.
        #[arg(long)]
        raw: bool,
        /// The APDUs, in hex.
        #[arg(required = true, value_name = "HEX")]
        apdus: Vec<String>,
    },

    /// Set a card up: personalisation and development keys.
    #[command(subcommand)]
    Card(CardCommand),

    /// Verify or change the PIN, or see how many tries are left.
    #[command(subcommand)]
    Pin(PinCommand),

    /// Run every conformance vector against the card and show which pass.
    #[command(
        after_help = "The vectors start from a blank, keyed or personalised card and get there with TEST
RESET, which only the emulator in test mode allows: run the card as
`valuecard-card --test-mode --state FILE`. TEST RESET ERASES THE CARD. Exits 1 when a
vector fails, 2 when the card does not allow TEST RESET.

Examples:
  valuecard --reader \"Virtual PCD 00 00\" conformance
  valuecard conformance --filter chain"
    )]
    Conformance {
        /// Run only the vectors whose file or name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },

    /// Measure performance.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// Personalise a card for development: make its key, certify it, install the trust
    /// anchors and the PIN.
    #[command(
        after_help = "For development only: the issuer key is a plain file, and the certificate is issued
here. On a blank card GENERATE KEY runs first; a keyed card keeps its key. A card that is
already personalised is left alone (PERSONALIZE works once).

Examples:
  valuecard card keygen --out issuer.key
  valuecard card keygen --out arbiter.key        # prints the arbiter's public key
  valuecard card init --issuer-key issuer.key --arbiter-key 03A1... --pin 123456"
    )]
    Init {
        /// File holding the issuer's P-256 secret scalar in hex (see `card keygen`).
        #[arg(long, value_name = "FILE")]
        issuer_key: PathBuf,
        /// The arbiter's public key, SEC1 hex (compressed or not).
        #[arg(long, value_name = "HEX")]
        arbiter_key: String,
        /// The PIN to install: 4 to 12 digits.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// How long the certificate is valid, from now.
        #[arg(long, value_name = "N", default_value_t = 3650)]
        validity_days: u64,
    },

    /// Make a random P-256 secret key for development (an issuer or arbiter) and print its
    /// public key.
    #[command(
        after_help = "The secret is written in hex to FILE, which must not exist yet (mode 600). Do not use
these keys for anything real.

Example:
  valuecard card keygen --out issuer.key"
    )]
    Keygen {
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Check the PIN. A wrong one uses up a try.
    #[command(
        after_help = "The verification lasts until the card is reset, which happens when this program ends.

Examples:
  valuecard pin verify --pin 123456
  VALUECARD_PIN=123456 valuecard pin verify"
    )]
    Verify {
        /// The PIN.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        pin: Option<String>,
    },

    /// Replace the PIN, given the current one.
    #[command(after_help = "Example:
  valuecard pin change --old 123456 --new 24680")]
    Change {
        /// The current PIN.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        old: Option<String>,
        /// The new PIN: 4 to 12 digits.
        #[arg(long, env = "VALUECARD_NEW_PIN", hide_env_values = true)]
        new: Option<String>,
    },

    /// Show how many PIN tries are left, without using one.
    #[command(after_help = "Example:
  valuecard pin status")]
    Status,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Time one small APDU round trip (GET DATA of the life-cycle state).
    #[command(
        after_help = "Measures the in-process card, then the card in the chosen reader (--reader, or the
first reader holding a valuecard), then, if asked, a baseline reader for comparison, e.g.
the emulator started with --plain-socket. --trace is ignored here: it would be measured.

Examples:
  valuecard bench apdu
  valuecard --reader 0 bench apdu --baseline-reader 1"
    )]
    Apdu {
        /// Round trips to time on each card.
        #[arg(long, value_name = "N", default_value_t = 2000)]
        iterations: usize,
        /// A second reader to time for comparison.
        #[arg(long, value_name = "R")]
        baseline_reader: Option<String>,
        /// Round trips to time on the baseline reader (a slow one takes ~50 ms each).
        #[arg(long, value_name = "N", default_value_t = 50)]
        baseline_iterations: usize,
    },
}
