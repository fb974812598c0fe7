//! Harness for the PC/SC tier: virtual cards behind pcscd + vpcd, serialised across test
//! processes by a file lock, because vpcd's two slots are shared by the whole machine.
//!
//! These tests fail, never skip, when pcscd or vpcd is missing: `make test` starts pcscd.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use valuecard_terminal::launch::{self, CardOptions};

pub use valuecard_terminal::launch::{VpcdLock, reader_name};

/// Takes the machine-wide vpcd lock: one test at a time uses the vpcd slots.
pub fn lock_vpcd() -> VpcdLock {
    launch::lock_vpcd().expect("take the vpcd lock")
}

/// A binary of this workspace, built next to the test executables (`make test` builds them
/// first with `cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    launch::sibling_binary(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails with a clear message when pcscd or the vpcd readers are not there.
pub fn require_pcscd() {
    launch::require_vpcd().unwrap_or_else(|e| panic!("{e}"));
}

/// A `valuecard-card` process in a vpcd slot, killed when dropped.
pub struct VirtualCard(launch::VirtualCard);

impl VirtualCard {
    /// Starts a card (with TEST RESET when `test_mode`); fails the test when it cannot.
    pub fn start(slot: u16, state: &Path, test_mode: bool) -> Self {
        let options = CardOptions {
            test_mode,
            ..CardOptions::default()
        };
        VirtualCard(
            launch::VirtualCard::start(slot, state, &options).unwrap_or_else(|e| panic!("{e}")),
        )
    }
}

impl Deref for VirtualCard {
    type Target = launch::VirtualCard;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for VirtualCard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Runs the `valuecard` CLI, returning (success, stdout, stderr).
pub fn valuecard(args: &[&str]) -> (bool, String, String) {
    let run = valuecard_env(args, &[]);
    (run.ok(), run.stdout, run.stderr)
}

/// What a CLI run left: its exit code (None when a signal ended it) and its output.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Ended by the abort that `VALUECARD_FAULT` injects: killed by SIGABRT (no exit code),
    /// or exit code 134 (128 + 6) where the signal comes back as a code.
    pub fn aborted(&self) -> bool {
        self.code.is_none() || self.code == Some(134)
    }

    /// Panics with everything the command printed unless it succeeded.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(
            self.ok(),
            "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the `valuecard` CLI with extra environment variables.
pub fn valuecard_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin("valuecard"))
        .args(args)
        .env_remove("VALUECARD_FAULT")
        .envs(env.iter().copied())
        .output()
        .expect("run valuecard");
    Run::from(out)
}

/// How a run cut by `fault` must end: exit 1 for a failed network call (`fail-...`), else
/// the injected abort.
#[track_caller]
pub fn assert_interrupted(run: &Run, fault: &str) {
    if fault.starts_with("fail-") {
        assert_eq!(run.code, Some(1), "{fault}: expected exit 1, got {run:?}");
    } else {
        assert!(run.aborted(), "{fault}: expected an abort, got {run:?}");
    }
}

/// The admin token the test backends run with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A `valuecard-backend all` process on a free loopback port, running with [`ADMIN_TOKEN`],
/// killed when dropped. Its log goes to `backend.log` in its database folder. It runs a
/// scheme of its own (keys and a test card maker in `<db_dir>/scheme`), and makes the cards
/// its tests use with that maker.
pub struct Backend {
    inner: launch::Backend,
    pub scheme: launch::Scheme,
}

impl Backend {
    pub fn start(db_dir: &Path) -> Self {
        let scheme =
            launch::Scheme::create(&db_dir.join("scheme")).unwrap_or_else(|e| panic!("{e}"));
        let inner =
            launch::Backend::start(db_dir, ADMIN_TOKEN, &scheme).unwrap_or_else(|e| panic!("{e}"));
        Backend { inner, scheme }
    }

    /// Makes a card of this backend's scheme, whose state lives in `state` (which must not
    /// exist yet): the test maker provisions it offline.
    #[track_caller]
    pub fn provision(&self, state: &Path) {
        self.scheme
            .provision(state)
            .unwrap_or_else(|e| panic!("provision {}: {e}", state.display()));
    }

    /// A card of this scheme, made now, in vpcd's slot `slot`.
    #[track_caller]
    pub fn virtual_card(&self, slot: u16, state: &Path) -> VirtualCard {
        self.provision(state);
        VirtualCard::start(slot, state, false)
    }

    /// Runs the auditor over this backend's databases.
    pub fn audit(&self) -> launch::Audit {
        launch::audit(&self.inner.db_dir).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Deref for Backend {
    type Target = launch::Backend;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

// ---- users: an account, a card and a journal against one backend ----------------------

/// The PIN the test users install.
pub const PIN: &str = "123456";

/// One user: a bank account, a card, and a terminal journal, against one backend.
pub struct User {
    pub backend_url: String,
    pub card: Vec<String>,
    pub journal: PathBuf,
    pub account: String,
    pub credential: String,
}

/// The JSON a CLI run printed.
#[track_caller]
pub fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

impl User {
    /// Opens an account holding `deposit` and registers the card `card` (CLI arguments that
    /// choose it) with the center. An in-process card (`--card-state FILE`) whose state file
    /// does not exist yet is made first by the backend's test maker.
    pub fn new(backend: &Backend, dir: &Path, card: &[&str], deposit: u64) -> Self {
        if let ["--card-state", state] = card
            && !Path::new(state).exists()
        {
            backend.provision(Path::new(state));
        }
        let mut user = User {
            backend_url: backend.url.clone(),
            card: card.iter().map(|s| s.to_string()).collect(),
            journal: dir.join("journal.json"),
            account: String::new(),
            credential: String::new(),
        };
        let opened = json(
            &user
                .run(
                    &[
                        "bank",
                        "open-account",
                        "--deposit",
                        &deposit.to_string(),
                        "--json",
                    ],
                    &[("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)],
                )
                .expect_ok("bank open-account"),
        );
        user.account = opened["account"]
            .as_str()
            .expect("account number")
            .to_string();
        user.credential = opened["credential"]
            .as_str()
            .expect("generated credential")
            .to_string();
        assert_eq!(opened["balance"], deposit);

        let registered = json(
            &user
                .run(&["card", "register", "--pin", PIN, "--json"], &[])
                .expect_ok("card register"),
        );
        assert_eq!(registered["already_registered"], false);
        user
    }

    /// A user of an in-process card: its journal in `dir/name/`, its card state in
    /// `dir/name.state` (made by the backend's test maker). Returns the user and the path
    /// of the state file, for the exchange's `--initiator-state` and `--responder-state`.
    pub fn in_process(backend: &Backend, dir: &Path, name: &str, deposit: u64) -> (Self, String) {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
        let state = dir.join(format!("{name}.state"));
        let state = state.to_str().expect("a UTF-8 path").to_string();
        let user = User::new(backend, &home, &["--card-state", &state], deposit);
        (user, state)
    }

    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let journal = self.journal.to_str().expect("utf-8 path");
        let mut all: Vec<&str> = self.card.iter().map(String::as_str).collect();
        all.extend(["--backend", &self.backend_url, "--journal", journal]);
        all.extend(args);
        valuecard_env(&all, env)
    }

    pub fn with_credential(&self, args: &[&str], fault: Option<&str>) -> Run {
        let mut env = vec![("VALUECARD_CREDENTIAL", self.credential.as_str())];
        if let Some(fault) = fault {
            env.push(("VALUECARD_FAULT", fault));
        }
        self.run(args, &env)
    }

    pub fn bank_balance(&self) -> u64 {
        let run = self
            .with_credential(
                &["bank", "balance", "--account", &self.account, "--json"],
                None,
            )
            .expect_ok("bank balance");
        json(&run)["balance"].as_u64().expect("bank balance")
    }

    /// The card's center account in the bank's currency (JPY).
    pub fn center_balance(&self) -> u64 {
        self.balances().center
    }

    /// Card and center side by side, from `valuecard balance --json`.
    pub fn balances(&self) -> Balances {
        let run = self.run(&["balance", "--json"], &[]).expect_ok("balance");
        let answer = json(&run);
        let assets = answer["assets"].as_array().expect("assets");
        let jpy = assets.iter().find(|a| a["asset"] == "JPY");
        let field = |path: &[&str]| {
            jpy.map_or(0, |a| {
                path.iter()
                    .fold(a, |v, k| &v[*k])
                    .as_u64()
                    .unwrap_or_else(|| panic!("{path:?} in {answer}"))
            })
        };
        Balances {
            card: field(&["card", "available"]),
            escrowed: field(&["card", "escrowed"]),
            center: field(&["center"]),
            pending_load: !answer["pending_load"].is_null(),
            receipts: answer["receipts"].as_array().map_or(0, Vec::len),
            tickets: answer["tickets"].as_u64().unwrap_or(0),
        }
    }

    /// `valuecard load` of `amount` JPY, cut by `fault` if given.
    pub fn load(&self, amount: u64, fault: Option<&str>) -> Run {
        let amount = amount.to_string();
        let mut env = vec![];
        if let Some(fault) = fault {
            env.push(("VALUECARD_FAULT", fault));
        }
        self.run(
            &["load", "--amount", &amount, "--asset", "JPY", "--json"],
            &env,
        )
    }

    /// `valuecard unload` of `amount` JPY, cut by `fault` if given.
    pub fn unload(&self, amount: u64, fault: Option<&str>) -> Run {
        let amount = amount.to_string();
        let mut env = vec![("VALUECARD_PIN", PIN)];
        if let Some(fault) = fault {
            env.push(("VALUECARD_FAULT", fault));
        }
        self.run(
            &["unload", "--amount", &amount, "--asset", "JPY", "--json"],
            &env,
        )
    }

    pub fn withdraw(&self, amount: u64, extra: &[&str], fault: Option<&str>) -> Run {
        let amount = amount.to_string();
        let mut args = vec![
            "withdraw",
            "--account",
            &self.account,
            "--amount",
            &amount,
            "--json",
        ];
        args.extend(extra);
        self.with_credential(&args, fault)
    }

    pub fn recover(&self) -> Value {
        json(
            &self
                .with_credential(&["recover", "--json"], None)
                .expect_ok("recover"),
        )
    }
}

/// JPY on both sides of a card's account, and what is in flight between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balances {
    pub card: u64,
    pub escrowed: u64,
    pub center: u64,
    pub pending_load: bool,
    pub receipts: usize,
    pub tickets: u64,
}
