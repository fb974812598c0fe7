//! `valuecard-card`: a virtual valuecard that pcscd sees through vsmartcard's vpcd driver.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use valuecard_card::storage::FileStorage;
use valuecard_card::vpcd::{self, ServeOptions, Shutdown};
use valuecard_card::{Card, Options};

/// A virtual valuecard smartcard for pcscd's vpcd reader.
///
/// The card connects to the vpcd driver of a running pcscd (Debian package
/// vsmartcard-vpcd) and then shows up as a card in the reader "Virtual PCD 00 <slot>".
/// Its persistent state (key, PIN, values) lives in the state file, written atomically
/// once per command; it survives restarts and power cuts.
///
/// It tells on standard error when it is inserted into the reader and removed from it;
/// --trace adds every APDU in hex (PIN commands included: for development only). It does
/// not read RUST_LOG. Ctrl-C or SIGTERM stops it.
#[derive(Parser, Debug)]
#[command(
    version,
    verbatim_doc_comment,
    after_help = "Examples:
  valuecard-card --slot 0 --state card-a.state
  valuecard-card --slot 1 --state card-b.state --trace
  valuecard-card --vpcd 127.0.0.1:35964 --state card-b.state
  valuecard-card --slot 0 --state /tmp/conformance.state --test-mode   # for `valuecard conformance`"
)]
struct Args {
    /// vpcd slot: 0 connects to port 35963 ("Virtual PCD 00 00"), 1 to 35964.
    #[arg(long, conflicts_with = "vpcd", default_value_t = 0)]
    slot: u16,
    /// vpcd address as HOST:PORT, instead of --slot.
    #[arg(long, value_name = "HOST:PORT")]
    vpcd: Option<String>,
    /// The card's state file; a blank card is created there if it does not exist.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
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

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("valuecard-card: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let storage = FileStorage::open(&args.state)
        .map_err(|e| format!("cannot use state file {}: {e}", args.state.display()))?;
    let mut card = Card::new(
        Box::new(storage),
        Options {
            test_mode: args.test_mode,
            rng_seed: None,
        },
    )
    .map_err(|e| format!("cannot load the card from {}: {e}", args.state.display()))?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Args;

    #[test]
    fn the_command_line_is_consistent_and_has_examples() {
        let command = Args::command();
        command.clone().debug_assert();
        assert!(command.get_about().is_some());
        let after = command.get_after_help().map(|h| h.to_string());
        assert!(after.is_some_and(|h| h.contains("Examples:")));
    }
}
