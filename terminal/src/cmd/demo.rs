//! `valuecard demo`: the whole journey, told as it runs.
//!
//! The demo starts what it needs (the backend, two cards, a recording relay in front of the
//! backend) and then narrates: it runs the real `valuecard` commands, this very program, as
//! child processes, shows each command line and what it printed, reads the balances with the
//! commands' `--json` forms and checks every figure. Whatever happens, it stops what it
//! started before it exits.

mod knowledge;
mod narrator;
mod relay;
mod story;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use valuecard_terminal::backend_client::CenterClient;
use valuecard_terminal::launch::{
    self, Backend, CardOptions, LaunchError, Scheme, VirtualCard, reader_name,
};

use self::narrator::{Cards, Folder, Narrator};
use super::{CliError, Result};
use crate::cli::Global;

#[derive(Args, Debug)]
#[command(
    after_help = "The demo makes a scheme's keys and a test card maker, which makes two cards; it then
opens a bank account, registers and personalises the two cards, withdraws money
for card A through blind signatures and shows what the bank and the center each know, loads
card A, issues two tickets to card B, has card A buy one of them in a fair exchange, buys
the other in an exchange that loses a message and is settled by the arbiter, and unloads
card B. It prints each `valuecard` command it runs, what the command printed, and the
balances after each act, and checks every figure; at the end the auditor
(`valuecard-backend audit`) checks the three databases against each other.

Everything lives in a new temporary folder: the cards' state files, the backend's SQLite
databases, the terminal's journal and the logs. The backend (`valuecard-backend all`) and
the cards are stopped at the end, also when a check fails; the folder is removed unless
--keep or --dir is given. Exits 1 when a check fails, with the logs' last lines.

Without --in-process the cards are virtual cards in vpcd's two readers behind pcscd, which
must be running (`make setup` installs and starts it); the demo waits for other users of
the vpcd readers (tests, another demo) to finish.

The commands run with only the demo's settings: its backend, journal and admin token, and
an empty config file. Of the global options only --trace applies, to every command shown.

Examples:
  valuecard demo
  valuecard demo --in-process
  valuecard demo --in-process --pace 0 --keep"
)]
pub struct DemoArgs {
    /// Emulate the two cards in the `valuecard` commands themselves (--card-state FILE), so
    /// that neither pcscd nor vpcd is needed.
    #[arg(long)]
    pub in_process: bool,

    /// Pause this long between acts [default: 1 when standard output is a terminal, else 0].
    #[arg(long, env = "VALUECARD_DEMO_PACE", value_name = "SECONDS")]
    pub pace: Option<f64>,

    /// Keep the demo's folder (state files, databases, journal, logs), and say where it is.
    #[arg(long)]
    pub keep: bool,

    /// Work in DIR (created if missing; it must be empty) instead of a new temporary folder,
    /// and keep it.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// For the demo's own test: expect one figure that is wrong, so that a check fails.
    #[arg(long, hide = true)]
    pub test_wrong_figure: bool,
}

fn launch_error(e: LaunchError) -> CliError {
    let hint = match &e {
        LaunchError::NoPcscd(_) | LaunchError::NoVpcdReader(_) => Some(
            "`make setup` installs pcscd and vsmartcard-vpcd and starts pcscd; \
             `valuecard demo --in-process` needs neither",
        ),
        LaunchError::SlotBusy(_) => {
            Some("another valuecard-card runs in that slot: stop it, or use --in-process")
        }
        _ => None,
    };
    let error = CliError::new(format!("valuecard demo: {e}"));
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

/// Takes the vpcd lock, saying so when someone else holds it for long.
fn lock_vpcd() -> Result<launch::VpcdLock> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(launch::lock_vpcd());
    });
    let taken = match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(taken) => taken,
        Err(_) => {
            println!(
                "waiting for the vpcd readers: a test or another demo holds {}",
                launch::vpcd_lock_path().display()
            );
            rx.recv()
                .map_err(|_| CliError::new("valuecard demo: could not take the vpcd lock"))?
        }
    };
    taken.map_err(launch_error)
}

fn pace(args: &DemoArgs) -> Result<Duration> {
    let seconds = match args.pace {
        Some(s) => s,
        None if std::io::stdout().is_terminal() => 1.0,
        None => 0.0,
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| CliError::new("--pace: a number of seconds, 0 or more").code(2))
}

pub fn run(global: &Global, args: DemoArgs) -> Result<ExitCode> {
    let pace = pace(&args)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find this program: {e}")))?;
    launch::sibling_binary("valuecard-backend").map_err(launch_error)?;
    if !args.in_process {
        launch::sibling_binary("valuecard-card").map_err(launch_error)?;
        launch::require_vpcd().map_err(launch_error)?;
    }

    // Dropped in the reverse order: the cards, the relay, the backend, the lock, and last
    // the folder they all write into.
    let folder = Folder::new(args.dir.as_deref(), args.keep || args.dir.is_some())
        .map_err(|e| CliError::new(format!("valuecard demo: its folder: {e}")))?;
    let dir = folder.path.clone();
    let _lock = if args.in_process {
        None
    } else {
        Some(lock_vpcd()?)
    };
    let admin_token = hex::encode(rand::random::<[u8; 16]>());
    // The offline steps come first: the scheme operator's keys, a card maker, and the two
    // cards it makes for the scheme's root. The roles then start in any order.
    let scheme = Scheme::create(&dir).map_err(launch_error)?;
    let mut made = Vec::new();
    for name in ["a", "b"] {
        let state = dir.join(format!("card-{name}.state"));
        made.push(scheme.provision(&state).map_err(launch_error)?);
    }
    let backend =
        Backend::start(&dir.join("backend"), &admin_token, &scheme).map_err(launch_error)?;
    let currency = CenterClient::new(&backend.url)
        .info()
        .map_err(|e| CliError::new(format!("valuecard demo: the center: {e}")))?
        .currency;
    let relay = relay::Relay::start(&backend.url)
        .map_err(|e| CliError::new(format!("valuecard demo: the relay: {e}")))?;
    let mut virtual_cards = Vec::new();
    let cards = if args.in_process {
        Cards::States(["card-a.state".into(), "card-b.state".into()])
    } else {
        for (slot, name) in [(0, "a"), (1, "b")] {
            let options = CardOptions {
                log: Some(dir.join(format!("card-{name}.log"))),
                ..CardOptions::default()
            };
            let state = dir.join(format!("card-{name}.state"));
            virtual_cards.push(VirtualCard::start(slot, &state, &options).map_err(launch_error)?);
        }
        Cards::Readers([reader_name(0), reader_name(1)])
    };

    let journal = dir.join("journal.json");
    // The user's own config file (a reader, a bank elsewhere) must not change the story.
    let config = dir.join("config.toml");
    std::fs::write(&config, "# valuecard demo: nothing configured\n")
        .map_err(|e| CliError::new(format!("valuecard demo: {}: {e}", config.display())))?;
    let env = vec![
        ("VALUECARD_BACKEND".to_string(), relay.url.clone()),
        ("VALUECARD_JOURNAL".into(), journal.display().to_string()),
        ("VALUECARD_ADMIN_TOKEN".into(), admin_token),
        ("VALUECARD_CONFIG".into(), config.display().to_string()),
    ];
    let mut n = Narrator::new(exe, dir.clone(), env, cards, global.trace, pace, relay);
    n.currency = currency;
    n.logs.push((
        "valuecard-backend's log".into(),
        dir.join("backend/backend.log"),
    ));
    for (i, name) in ["a", "b"].iter().enumerate().take(virtual_cards.len()) {
        n.logs.push((
            format!("{}'s log", narrator::CARD_NAMES[i]),
            dir.join(format!("card-{name}.log")),
        ));
    }

    n.act(
        "Set-up",
        "A folder holds everything: the scheme's keys, the cards' state files, the SQLite \
         databases of the bank, the center and the arbiter, the terminal's journal and the \
         logs. First the offline steps: the scheme operator makes the root, issuer, arbiter \
         and bank keys at once, a card maker makes its key, and the maker makes the two \
         cards, each with an attestation key and the scheme's root key. Emulated cards are \
         not tamper-resistant, so only this demo's backend trusts this test maker. Then one \
         valuecard-backend process runs the bank, the center and the arbiter. Every HTTP \
         request of the commands below goes through a relay in this demo, which records it, \
         so that the demo can show what each party was told. The commands run in the folder.",
    );
    for (command, output) in [
        (
            "valuecard-backend keys init --out keys",
            &scheme.keys_output,
        ),
        (
            "valuecard-card maker-key --out maker.key",
            &scheme.maker_output,
        ),
    ] {
        println!("$ {command}");
        for line in output.lines() {
            println!("    {line}");
        }
    }
    for (name, output) in ["a", "b"].iter().zip(&made) {
        println!(
            "$ valuecard-card provision --state card-{name}.state --maker-key maker.key --root-key \"$(cat keys/root.pub)\""
        );
        for line in output.lines() {
            println!("    {line}");
        }
    }
    println!("  folder:   {}", dir.display());
    println!(
        "  backend:  valuecard-backend all --keys keys --trust-card-maker {} (pid {}) at {}, \
         databases in backend/",
        scheme.maker_public_key,
        backend.pid(),
        backend.url
    );
    println!("  relay:    {} -> {}", n.relay.url, backend.url);
    for (i, name) in narrator::CARD_NAMES.iter().enumerate() {
        match virtual_cards.get(i) {
            Some(card) => println!(
                "  {name}:   valuecard-card (pid {}) in vpcd slot {}, reader {:?}, state in {}",
                card.pid().unwrap_or(0),
                card.slot,
                card.reader,
                card.state
                    .file_name()
                    .map_or(String::new(), |f| f.to_string_lossy().into_owned())
            ),
            None => println!(
                "  {name}:   in-process: each command opens the card's state file with \
                 --card-state {}",
                ["card-a.state", "card-b.state"][i]
            ),
        }
    }
    println!(
        "$ export VALUECARD_BACKEND={} VALUECARD_JOURNAL={}",
        n.relay.url,
        journal.display()
    );
    println!("$ export VALUECARD_ADMIN_TOKEN=<a random token the demo gave the backend>");

    let plot = story::Plot {
        readers: !args.in_process,
        wrong_figure: args.test_wrong_figure,
        databases: dir.join("backend"),
    };
    let told = story::tell(&mut n, &plot);
    if let Err(narrator::Failed(what)) = &told {
        println!();
        println!("CHECK FAILED: {what}");
        n.show_logs();
    }

    println!();
    println!(
        "stopping {}valuecard-backend and the relay",
        if virtual_cards.is_empty() {
            String::new()
        } else {
            "the two virtual cards, ".to_string()
        }
    );
    drop(virtual_cards);
    drop(n);
    drop(backend);
    if folder.keep() {
        println!("the demo's folder stays: {}", dir.display());
    } else {
        println!("removing {}", dir.display());
    }
    drop(folder);
    match told {
        Ok(()) => {
            println!("the demo ran to the end: every check passed");
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => Err(CliError::new("valuecard demo: a check failed (see above)")
            .hint("`valuecard demo --keep` keeps the demo's folder, with the logs and databases")),
    }
}
