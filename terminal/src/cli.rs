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
#[command(
    after_help = "Settings come from the command line, then the environment (VALUECARD_READER,
VALUECARD_BACKEND...), then the config file (`valuecard config` shows them all and where each
came from). RUST_LOG=debug logs APDUs and HTTP requests to standard error without their
data: no PIN, credential or token is ever logged. --trace, for development, prints whole
APDUs, PINs included.

Examples:
  valuecard readers
  valuecard --reader 0 info
  valuecard --card-state dev.state pin status       # an emulated card: no reader needed
  valuecard --trace apdu '00 A4 04 00 07 F0564341524401 00'
  valuecard config

With `valuecard-backend all` running, a blank card in the reader, and ACCOUNT and
VALUECARD_CREDENTIAL set to what `valuecard bank open-account` printed:
  valuecard card register --pin 123456
  valuecard withdraw --account \"$ACCOUNT\" --amount 300
  valuecard load --amount 200
  valuecard unload --amount 50 --pin 123456
  valuecard balance
  valuecard recover"
)]
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

    /// Print every APDU in hex to stderr, both ways (">>" to the card, "<<" from it), PINs
    /// included: for development.
    #[arg(long, global = true)]
    pub trace: bool,

    /// Wait this many seconds for a card to be inserted (0: do not wait).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0.0)]
    pub wait: f64,

    /// The valuecard backend (bank, center and arbiter): scheme, host and port. Routes under
    /// /bank, /center and /arbiter are appended.
    #[arg(
        long,
        global = true,
        env = "VALUECARD_BACKEND",
        value_name = "URL",
        default_value = valuecard_terminal::backend_client::DEFAULT_BACKEND
    )]
    pub backend: String,

    /// The bank, when it is not at --backend.
    #[arg(long, global = true, env = "VALUECARD_BANK", value_name = "URL")]
    pub bank: Option<String>,

    /// The center, when it is not at --backend.
    #[arg(long, global = true, env = "VALUECARD_CENTER", value_name = "URL")]
    pub center: Option<String>,

    /// The arbiter, when it is not at --backend.
    #[arg(long, global = true, env = "VALUECARD_ARBITER", value_name = "URL")]
    pub arbiter: Option<String>,

    /// The journal of withdrawals in flight [default: $XDG_DATA_HOME/valuecard/journal.json,
    /// or ~/.local/share/valuecard/journal.json].
    #[arg(long, global = true, env = "VALUECARD_JOURNAL", value_name = "FILE")]
    pub journal: Option<PathBuf>,

    /// The config file, which sets what neither the command line nor the environment does
    /// [default: $XDG_CONFIG_HOME/valuecard/config.toml, or ~/.config/valuecard/config.toml,
    /// if it exists]. See `valuecard config --help`.
    #[arg(long, global = true, env = "VALUECARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where each setting came from, filled in by `settings::resolve`.
    #[arg(skip)]
    pub sources: crate::settings::Sources,
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
    #[command(
        subcommand,
        after_help = "`register` is the way to set up a card for use: the center certifies it. `init` and
`keygen` are for development, with keys in plain files.

Examples:
  valuecard card register --pin 123456      # with the backend running
  valuecard card keygen --out issuer.key"
    )]
    Card(CardCommand),

    /// Verify or change the PIN, or see how many tries are left.
    #[command(
        subcommand,
        after_help = "The PIN is set when the card is personalised (`valuecard card register`). Three wrong
tries in a row block it for good.

Examples:
  valuecard pin status
  valuecard pin verify --pin 123456
  valuecard pin change --old 123456 --new 24680"
    )]
    Pin(PinCommand),

    /// Run every conformance vector against the card and show which pass.
    #[command(
        after_help = "The vectors start from a blank, keyed or personalised card and get there with TEST
RESET, which only the emulator in test mode allows: run the card as
`valuecard-card --test-mode --state FILE`. TEST RESET ERASES THE CARD. Exits 1 when a
vector fails, 2 when the card does not allow TEST RESET.

Examples (the first with `valuecard-card --slot 0 --test-mode --state /tmp/conformance.state`
running; the others need nothing):
  valuecard --reader \"Virtual PCD 00 00\" conformance
  valuecard --card-state /tmp/c.state --emulator-test-mode conformance --filter chain
  valuecard --card-state /tmp/c.state --emulator-test-mode conformance --json"
    )]
    Conformance {
        /// Run only the vectors whose file or name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        /// Print JSON instead of a table: the counts, then every vector with its result.
        #[arg(long)]
        json: bool,
    },

    /// Measure performance: every benchmark, in one table.
    Bench(crate::cmd::bench::BenchArgs),

    /// Watch the whole system work: two cards, the bank, the center and the arbiter.
    Demo(crate::cmd::demo::DemoArgs),

    /// Center staff: block a lost or stolen card, or a card maker, see the block list and
    /// the float.
    #[command(
        subcommand,
        after_help = "A blocked card (or every card of a blocked maker) gets no load, unload, ticket or
balance at the center, no verdict of its own at the arbiter, and other cards refuse to
start an exchange with it once they have loaded the new block list. Its honest
counterparty in an open exchange can still settle.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token; CARD_ID as `valuecard info`
shows it):
  valuecard cards block --card-id \"$CARD_ID\" --reason 'reported stolen'
  valuecard cards blocked
  valuecard cards float"
    )]
    Cards(CardsCommand),

    /// Bank accounts: open one, pay money in, read the balance.
    #[command(
        subcommand,
        after_help = "Examples (with `valuecard-backend all` running and VALUECARD_ADMIN_TOKEN set to its admin
token; ACCOUNT and VALUECARD_CREDENTIAL set to what open-account printed):
  valuecard bank open-account --deposit 1000
  valuecard bank deposit --account \"$ACCOUNT\" --amount 500
  valuecard bank balance --account \"$ACCOUNT\""
    )]
    Bank(BankCommand),

    /// Move money from a bank account to the center account of the card in the reader.
    #[command(
        after_help = "The amount is split into the bank's denominations, one blind token each. The bank
sees the account and the amounts, never the card; the center sees the card and the
amounts, never the account. Every step is written to the journal (--journal) before it is
taken: if this is interrupted, `valuecard recover` finishes it, and nothing is debited or
credited twice. With --redeem-later the tokens wait in the journal until `valuecard
redeem`, so that the time does not link the two either.

The credential comes from --credential, VALUECARD_CREDENTIAL, or a prompt when standard
input is a terminal. Exits 1 on an error, saying what was done and what is left.

Examples (with the backend running, a registered card in the reader, and ACCOUNT and
VALUECARD_CREDENTIAL set to what `valuecard bank open-account` printed):
  valuecard withdraw --account \"$ACCOUNT\" --amount 300
  valuecard withdraw --account \"$ACCOUNT\" --amount 300 --redeem-later --json"
    )]
    Withdraw {
        /// The bank account to debit.
        #[arg(long, value_name = "N")]
        account: String,
        /// The amount, in the currency's smallest unit.
        #[arg(long, value_name = "X")]
        amount: u64,
        /// The account's credential.
        #[arg(
            long,
            env = "VALUECARD_CREDENTIAL",
            hide_env_values = true,
            value_name = "C"
        )]
        credential: Option<String>,
        /// Keep the tokens in the journal; credit them later with `valuecard redeem`.
        #[arg(long)]
        redeem_later: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Credit every signed token in the journal to its card, at the center.
    #[command(
        after_help = "Redeems the tokens of every withdrawal in the journal, those kept with --redeem-later
included. The center credits a token once: running this again is harmless. No card is
needed: each token names its card.

Examples:
  valuecard redeem
  valuecard --journal /tmp/journal.json redeem --json"
    )]
    Redeem {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Finish whatever the journal and the card in the reader hold after an interruption.
    #[command(
        after_help = "Pieces the bank may not have answered are sent again with the same blinded message: the
bank answers the same signature and debits nothing more. This needs the account's
credential (--credential, VALUECARD_CREDENTIAL, or a prompt when standard input is a
terminal). Signed tokens are then redeemed at the center, except those of a withdrawal made
with --redeem-later (see `valuecard redeem`). A piece the bank refuses outright (e.g. too
little money) was never debited, and leaves the journal.

Then the card in the reader (if there is one): a load request still pending on it is sent
to the center again (which answers the same authorisation, and never debits twice) and
applied, or cancelled when the center refuses it; unload receipts and load cancellations it
keeps are sent to the center and cleared with its acknowledgement. Its open exchange
sessions are settled: ABORT for an initiator that has signed nothing, otherwise the
arbiter's verdict, asked for with RESOLVE or CANCEL when it has none yet.

With nothing in the journal or on the card this says \"nothing to recover\" and exits 0;
it exits 1 when something is left.

Examples (VALUECARD_CREDENTIAL set to the account's credential when pieces wait for the bank):
  valuecard recover
  valuecard --reader 1 recover --json"
    )]
    Recover {
        /// The credential of the accounts with pieces to send again.
        #[arg(
            long,
            env = "VALUECARD_CREDENTIAL",
            hide_env_values = true,
            value_name = "C"
        )]
        credential: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Move units from the card's account at the center onto the card.
    #[command(
        after_help = "The card signs a load request for the amount with its next load counter and keeps it
pending (LOAD REQUEST); the center debits the card's account once for that request and
signs an authorisation; the card checks it against its request and credits the amount
(LOAD APPLY). No PIN is needed: nothing leaves the card.

If the center refuses (say, too few units), the card's request is cancelled at once and
nothing moves. If anything else breaks off, the request stays pending on the card and
`valuecard recover` finishes it: the center answers the same request with the same
authorisation, and never debits twice.

Examples (a registered card in the reader, with units at the center: see `valuecard withdraw`):
  valuecard load --amount 200
  valuecard load --amount 200 --json"
    )]
    Load {
        /// The amount, in the asset's smallest unit.
        #[arg(long, value_name = "X")]
        amount: u64,
        /// The asset [default: the center's currency].
        #[arg(long, value_name = "CODE")]
        asset: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Move units from the card back to its account at the center (needs the PIN).
    #[command(
        after_help = "The card debits the amount and signs a receipt with its next unload counter (UNLOAD),
which it keeps until the center acknowledges it; the center credits the card's account
once per receipt, and its signed acknowledgement clears the receipt (UNLOAD ACK). If
anything breaks off after UNLOAD, `valuecard recover` sends the receipt again.

The PIN comes from --pin or VALUECARD_PIN, or is asked when standard input is a terminal.

Examples (a card in the reader holding at least 50 of the center's currency):
  valuecard unload --amount 50 --pin 123456
  VALUECARD_PIN=123456 valuecard unload --amount 50 --json"
    )]
    Unload {
        /// The amount, in the asset's smallest unit.
        #[arg(long, value_name = "X")]
        amount: u64,
        /// The asset [default: the center's currency].
        #[arg(long, value_name = "CODE")]
        asset: Option<String>,
        /// The card's PIN.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// List the tickets on the card, or issue one (center staff) and load it.
    #[command(
        after_help = "Without a subcommand, lists the tickets the card holds (GET DATA; nothing changes).

Examples (issuing needs VALUECARD_ADMIN_TOKEN; CARD_ID is a card id as `valuecard info` shows
it):
  valuecard tickets
  valuecard tickets --json
  valuecard tickets issue --asset CONCERT
  valuecard tickets issue --asset MUSEUM --card-id \"$CARD_ID\" --serial 0001
  valuecard tickets fetch"
    )]
    Tickets {
        #[command(subcommand)]
        command: Option<TicketsCommand>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Swap values between two cards, relayed by this terminal: either both move or neither.
    #[command(
        after_help = "The initiator gives --give and takes --take; the responder gives --take and takes
--give. Either may be `nothing` (a one-way payment). Values are written AMOUNT CODE
(300JPY), ticket:CODE:SERIAL (serial in hex), or nothing.

The five steps run as PROTOCOLS.md gives them: START (the initiator reserves its value),
AGREE (the responder checks the offer and escrows its value), CONFIRM (the initiator
checks the responder's signed agreement and escrows its value), COMMIT (the responder
takes the initiator's value and reveals its secret), FINISH (the initiator takes the
responder's value). This terminal only relays: every message is signed or checked by a
card. When a step fails, each card's session is settled: ABORT where the initiator has
signed nothing, otherwise the arbiter's verdict (a CANCEL request from the responder, a
RESOLVE request from the initiator), applied on the card.

Each card needs its PIN: --initiator-pin and --responder-pin, VALUECARD_INITIATOR_PIN and
VALUECARD_RESPONDER_PIN, or a prompt.

The readers may also come from VALUECARD_INITIATOR and VALUECARD_RESPONDER or the config
file's `initiator` and `responder` (see `valuecard config --help`); --initiator-state and
--responder-state win over those.

Examples (two registered cards, the initiator's holding 300 JPY and the responder's the ticket
CONCERT 00C0FFEE, e.g. from `valuecard --reader 1 tickets issue --asset CONCERT --serial
00C0FFEE`; the PINs in VALUECARD_INITIATOR_PIN and VALUECARD_RESPONDER_PIN):
  valuecard exchange --initiator 0 --responder 1 --give 300JPY --take ticket:CONCERT:00C0FFEE
  valuecard exchange --initiator-state a.state --responder-state b.state --give 50JPY --take nothing"
    )]
    Exchange {
        /// The initiator's reader (name, part of it, or index).
        #[arg(long, value_name = "READER")]
        initiator: Option<String>,
        /// The initiator as an in-process card whose state lives in FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "initiator")]
        initiator_state: Option<PathBuf>,
        /// The responder's reader.
        #[arg(long, value_name = "READER")]
        responder: Option<String>,
        /// The responder as an in-process card whose state lives in FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "responder")]
        responder_state: Option<PathBuf>,
        /// What the initiator gives.
        #[arg(long, value_name = "VALUE")]
        give: String,
        /// What the initiator takes (the responder gives).
        #[arg(long, value_name = "VALUE")]
        take: String,
        /// The initiator card's PIN.
        #[arg(long, env = "VALUECARD_INITIATOR_PIN", hide_env_values = true)]
        initiator_pin: Option<String>,
        /// The responder card's PIN.
        #[arg(long, env = "VALUECARD_RESPONDER_PIN", hide_env_values = true)]
        responder_pin: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// List the open exchange sessions on the card.
    #[command(
        after_help = "Runs LIST SESSIONS; nothing changes. `valuecard recover` settles them.

Examples:
  valuecard sessions
  valuecard --reader 1 sessions --json"
    )]
    Sessions {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Show the card's values and its account at the center, side by side.
    #[command(
        after_help = "The card's side comes from GET DATA: what is available, what is held in escrow by an
open exchange, a load request still pending and receipts not yet acknowledged. The
center's side needs the card to sign a fresh challenge of the center (INTERNAL
AUTHENTICATE, no PIN needed). Nothing changes.

Examples (with the backend running and a registered card in the reader, or in dev.state):
  valuecard balance
  valuecard --card-state dev.state balance --json"
    )]
    Balance {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Show the settings in effect (backend, bank, center, arbiter, reader, journal, the
    /// exchange's readers) and where each came from.
    #[command(after_help = CONFIG_HELP)]
    Config {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A config file with every key, as `valuecard config --help` shows it (a test parses it).
macro_rules! sample_config {
    () => {
        "  backend   = \"http://127.0.0.1:8640\"        # --backend, VALUECARD_BACKEND
  bank      = \"http://bank.example:8641\"     # --bank, VALUECARD_BANK
  center    = \"http://center.example:8642\"   # --center, VALUECARD_CENTER
  arbiter   = \"http://arbiter.example:8643\"  # --arbiter, VALUECARD_ARBITER
  reader    = \"Virtual PCD 00 00\"            # --reader, VALUECARD_READER
  journal   = \"~/valuecard/journal.json\"     # --journal, VALUECARD_JOURNAL
  initiator = \"Virtual PCD 00 00\"            # exchange --initiator, VALUECARD_INITIATOR
  responder = \"Virtual PCD 00 01\"            # exchange --responder, VALUECARD_RESPONDER
"
    };
}
#[cfg(test)]
pub(crate) use sample_config;

/// `valuecard config --help`: the file's format and the order of precedence.
const CONFIG_HELP: &str = concat!(
    "Each setting comes from the first of: the command line (--backend, --reader...), the
environment (VALUECARD_BACKEND, VALUECARD_READER...), the config file, the built-in default.

The config file is --config FILE or VALUECARD_CONFIG, else
$XDG_CONFIG_HOME/valuecard/config.toml or ~/.config/valuecard/config.toml when it exists. It
is TOML; every key is optional, and an unknown key is an error:

",
    sample_config!(),
    "
A relative journal path is taken from the config file's folder, and ~/ is the home folder. A
reader from the environment or the file yields to --card-state (and to --initiator-state and
--responder-state).

Examples:
  valuecard config
  VALUECARD_READER=1 valuecard config --json"
);

#[derive(Subcommand, Debug)]
pub enum TicketsCommand {
    /// Issue a ticket to a card (center staff: needs the admin token), and load it onto the
    /// card in the reader when it is for that card.
    #[command(
        after_help = "The center signs the ticket (its asset code, its serial and the owner card) and keeps it
for the card. Without --card-id the ticket is for the card in the reader, and is loaded
onto it at once, the same way as units (LOAD REQUEST, the center's authorisation, LOAD
APPLY). With --card-id no card is needed; the owner picks the ticket up later with
`valuecard tickets fetch`. Issuing the same asset and serial again to the same card
changes nothing.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token; CARD_ID a registered card's
id, as `valuecard info` shows it):
  valuecard tickets issue --asset CONCERT
  valuecard tickets issue --asset CONCERT --serial 00000001 --card-id \"$CARD_ID\" --json"
    )]
    Issue {
        /// The ticket's asset code: 1 to 8 printable ASCII characters, e.g. CONCERT.
        #[arg(long, value_name = "CODE")]
        asset: String,
        /// The serial in hex, 1 to 32 bytes [default: 16 random bytes chosen by the center].
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// The owner's card id in hex [default: the card in the reader].
        #[arg(long, value_name = "HEX")]
        card_id: Option<String>,
        #[command(flatten)]
        admin: AdminToken,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Load onto the card every ticket the center has issued to it and not delivered yet.
    #[command(
        after_help = "The card proves itself to the center (INTERNAL AUTHENTICATE, no PIN), which lists the
tickets issued to it; each one not yet delivered is loaded like units.

Examples:
  valuecard tickets fetch
  valuecard --reader 1 tickets fetch --json"
    )]
    Fetch {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// Register the card with the center and personalise it with what the center gives.
    #[command(
        after_help = "On a blank card GENERATE KEY runs first. The card signs a challenge of the center
(INTERNAL AUTHENTICATE) to prove it holds its key, and its attestation key, from its card
maker, vouches for the same challenge that the key was made inside it (ATTEST). The center
registers only keys that a card maker it trusts vouches for: it opens the card's unit
account and certifies the key. The certificate, the issuer and arbiter keys (each under
the scheme root's signature, which the card checks against the root it got at
manufacture) and the PIN are then installed with PERSONALIZE, which works once. A card
that is already personalised is left alone.

The PIN comes from --pin, VALUECARD_PIN, or is asked twice when standard input is a
terminal.

Examples (with `valuecard-backend all` running):
  valuecard card register --pin 123456
  valuecard --backend http://127.0.0.1:8640 card register --pin 123456
  VALUECARD_PIN=123456 valuecard --card-state dev.state card register --json"
    )]
    Register {
        /// The PIN to install: 4 to 12 digits.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Personalise a card for development, without a center: make its key, certify it with
    /// the issuer key, install the trust anchors and the PIN.
    #[command(
        after_help = "For development only: the issuer's secret key is read from the keys folder that
`valuecard-backend keys init` wrote (issuer.key, with the anchors in scheme.json), and the
certificate is issued here; no center registers the card, so it has no unit account. The
card must have been made for that scheme's root (`valuecard-card provision`). On a blank
card GENERATE KEY runs first; a keyed card keeps its key. A card that is already
personalised is left alone (PERSONALIZE works once).

Examples:
  valuecard-backend keys init --out keys
  valuecard card keygen --out maker.key
  valuecard-card provision --state dev.state --maker-key maker.key --root-key \"$(cat keys/root.pub)\"
  valuecard --card-state dev.state card init --keys keys --pin 123456"
    )]
    Init {
        /// The folder of `valuecard-backend keys init`: issuer.key and scheme.json are read.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The PIN to install: 4 to 12 digits.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// How long the certificate is valid, from now.
        #[arg(long, value_name = "N", default_value_t = 3650)]
        validity_days: u64,
    },

    /// Make a random P-256 secret key for development (a test card maker's, say) and print
    /// its public key.
    #[command(
        after_help = "The secret is written in hex to FILE, which must not exist yet (mode 600). Do not use
these keys for anything real.

Examples:
  valuecard card keygen --out maker.key
  valuecard card keygen --out /tmp/test.key"
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
    #[command(
        after_help = "A wrong current PIN uses up a try, as with `valuecard pin verify`.

Examples:
  valuecard pin change --old 123456 --new 24680
  VALUECARD_PIN=123456 VALUECARD_NEW_PIN=24680 valuecard pin change"
    )]
    Change {
        /// The current PIN.
        #[arg(long, env = "VALUECARD_PIN", hide_env_values = true)]
        old: Option<String>,
        /// The new PIN: 4 to 12 digits.
        #[arg(long, env = "VALUECARD_NEW_PIN", hide_env_values = true)]
        new: Option<String>,
    },

    /// Show how many PIN tries are left, without using one.
    #[command(
        after_help = "VERIFY without a PIN: the card tells its try counter and uses no try. A card that is not
personalised yet has no PIN, and says so.

Examples:
  valuecard pin status
  valuecard --card-state dev.state pin status --json"
    )]
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CardsCommand {
    /// Block a card or a card maker, for good (center staff: needs the admin token), and
    /// hand the new block list to the arbiter.
    #[command(
        after_help = "The center records the block and signs a new version of its block list; this command
then relays the list to the arbiter, which refuses the blocked card's own requests from
then on. Cards learn the list at their next load. Blocking the same card again changes
nothing.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token):
  valuecard cards block --card-id \"$CARD_ID\" --reason 'reported stolen'
  valuecard cards block --maker 03AB...   --reason 'maker key leaked' --json"
    )]
    Block {
        /// The card's id in hex (64 digits), as `valuecard info` shows it.
        #[arg(
            long,
            value_name = "HEX",
            conflicts_with = "maker",
            required_unless_present = "maker"
        )]
        card_id: Option<String>,
        /// A card maker: its public key (66 hex digits) or its maker id (64).
        #[arg(long, value_name = "HEX")]
        maker: Option<String>,
        /// Why: kept in the center's records, never shown to cards (1 to 200 characters).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        admin: AdminToken,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Show the issuer's block list, and whether the arbiter holds the same version.
    #[command(after_help = "Examples:
  valuecard cards blocked
  valuecard cards blocked --json")]
    Blocked {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Show the float (what cards hold in total, per asset) and the alarms of refused
    /// unloads (center staff: needs the admin token).
    #[command(
        after_help = "The float is loads − refunds − unloads, and never below zero: an unload that would make it
negative means that some card spent more than was ever loaded onto cards (a card key
extracted and used), so the center refuses it and raises an alarm.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token):
  valuecard cards float
  valuecard cards float --json"
    )]
    Float {
        #[command(flatten)]
        admin: AdminToken,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BankCommand {
    /// Open a bank account (bank staff: needs the admin token).
    #[command(
        after_help = "Without --credential a random one is made and printed once: keep it, the bank keeps only
a hash of it. --deposit pays money in at once.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token):
  valuecard bank open-account --deposit 1000
  valuecard bank open-account --credential 'correct horse battery' --json"
    )]
    OpenAccount {
        /// The account's credential, 8 to 128 characters [default: a random one].
        #[arg(
            long,
            env = "VALUECARD_CREDENTIAL",
            hide_env_values = true,
            value_name = "C"
        )]
        credential: Option<String>,
        /// Pay this much in after opening.
        #[arg(long, value_name = "AMOUNT")]
        deposit: Option<u64>,
        #[command(flatten)]
        admin: AdminToken,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Pay money into an account (bank staff: needs the admin token).
    #[command(
        after_help = "The reference makes the deposit safe to repeat: the bank credits a reference once. Without
--reference a random one is made and printed.

Examples (VALUECARD_ADMIN_TOKEN set to the backend's admin token; ACCOUNT an account number):
  valuecard bank deposit --account \"$ACCOUNT\" --amount 500
  valuecard bank deposit --account \"$ACCOUNT\" --amount 500 --reference counter-2041 --json"
    )]
    Deposit {
        /// The account to credit.
        #[arg(long, value_name = "N")]
        account: String,
        /// The amount, in the currency's smallest unit.
        #[arg(long, value_name = "X")]
        amount: u64,
        /// A unique id for this deposit, 1 to 64 characters [default: a random one].
        #[arg(long, value_name = "R")]
        reference: Option<String>,
        #[command(flatten)]
        admin: AdminToken,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Show an account's balance.
    #[command(
        after_help = "The credential comes from --credential, VALUECARD_CREDENTIAL, or a prompt when standard
input is a terminal.

Examples (ACCOUNT and CREDENTIAL as `valuecard bank open-account` printed them):
  valuecard bank balance --account \"$ACCOUNT\"
  VALUECARD_CREDENTIAL=\"$CREDENTIAL\" valuecard bank balance --account \"$ACCOUNT\" --json"
    )]
    Balance {
        /// The account.
        #[arg(long, value_name = "N")]
        account: String,
        /// The account's credential.
        #[arg(
            long,
            env = "VALUECARD_CREDENTIAL",
            hide_env_values = true,
            value_name = "C"
        )]
        credential: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The backend's admin token, which the bank's and the center's staff commands need.
#[derive(Args, Debug, Clone)]
pub struct AdminToken {
    /// The backend's admin token.
    #[arg(
        long,
        env = "VALUECARD_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("valuecard").chain(args.iter().copied()))
    }

    #[test]
    fn funding_commands_parse() {
        let cli = parse(&[
            "--bank",
            "http://bank:1",
            "withdraw",
            "--account",
            "1001",
            "--amount",
            "300",
            "--redeem-later",
            "--journal",
            "/tmp/j.json",
        ])
        .expect("parses");
        assert_eq!(cli.global.bank.as_deref(), Some("http://bank:1"));
        assert_eq!(cli.global.journal, Some(PathBuf::from("/tmp/j.json")));
        match cli.command {
            Command::Withdraw {
                account,
                amount,
                redeem_later,
                json,
                ..
            } => {
                assert_eq!(
                    (account.as_str(), amount, redeem_later, json),
                    ("1001", 300, true, false)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(matches!(
            parse(&["bank", "deposit", "--account", "1", "--amount", "5"]).map(|c| c.command),
            Ok(Command::Bank(BankCommand::Deposit { amount: 5, .. }))
        ));
        assert!(matches!(
            parse(&["card", "register", "--pin", "123456", "--json"]).map(|c| c.command),
            Ok(Command::Card(CardCommand::Register { json: true, .. }))
        ));
        assert!(matches!(
            parse(&["recover", "--json"]).map(|c| c.command),
            Ok(Command::Recover { json: true, .. })
        ));
    }

    #[test]
    fn bad_funding_arguments_are_usage_errors() {
        for args in [
            &["withdraw", "--amount", "300"][..],
            &["withdraw", "--account", "1", "--amount", "-3"],
            &["withdraw", "--account", "1", "--amount", "3.5"],
            &["bank", "deposit", "--account", "1"],
            &["balance", "--account", "1"],
        ] {
            let error = parse(args).expect_err("refused");
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn fault_injection_stays_out_of_the_help() {
        let mut help = Vec::new();
        Cli::command().write_long_help(&mut help).expect("help");
        let help = String::from_utf8_lossy(&help);
        assert!(help.contains("--backend"));
        assert!(!help.contains("VALUECARD_FAULT"));
    }
}
