//! Harness for the PC/SC tier: virtual cards behind pcscd + vpcd, serialised across test
//! processes by a file lock, because vpcd's two slots are shared by the whole machine.
//!
//! These tests fail, never skip, when pcscd or vpcd is missing: `make test` starts pcscd.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use valuecard_terminal::pcsc::list_readers;

/// The reader vpcd shows for a slot.
pub fn reader_name(slot: u16) -> String {
    format!("Virtual PCD 00 {slot:02}")
}

/// Holds the machine-wide vpcd lock: one test at a time uses the vpcd slots.
pub struct VpcdLock(#[allow(dead_code)] File);

pub fn lock_vpcd() -> VpcdLock {
    let file = File::create(std::env::temp_dir().join("valuecard-vpcd.lock"))
        .expect("create the vpcd lock file");
    file.lock().expect("lock the vpcd slots");
    VpcdLock(file)
}

/// A binary of this workspace, built next to the test executables (`make test` builds them
/// first with `cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// Whether pcscd answers and shows both vpcd readers; why not, otherwise. For benchmarks,
/// which may run without them; tests use [`require_pcscd`] and fail instead.
pub fn list_vpcd_readers() -> Result<(), String> {
    let readers = list_readers().map_err(|e| e.to_string())?;
    for slot in 0..2 {
        let name = reader_name(slot);
        if !readers.iter().any(|r| r.name == name) {
            return Err(format!("pcscd has no reader {name:?}"));
        }
    }
    Ok(())
}

/// Fails with a clear message when pcscd or the vpcd readers are not there.
pub fn require_pcscd() {
    let readers = list_readers().unwrap_or_else(|e| {
        panic!("pcscd is not reachable ({e}): install pcscd and vsmartcard-vpcd and start pcscd (make test does both)")
    });
    for slot in 0..2 {
        let name = reader_name(slot);
        assert!(
            readers.iter().any(|r| r.name == name),
            "pcscd has no reader {name:?}: is vsmartcard-vpcd installed? readers: {:?}",
            readers.iter().map(|r| &r.name).collect::<Vec<_>>()
        );
    }
}

fn card_present(slot: u16) -> bool {
    let name = reader_name(slot);
    list_readers()
        .map(|rs| rs.iter().any(|r| r.name == name && r.card_present))
        .unwrap_or(false)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A `valuecard-card` process in a vpcd slot, killed when dropped.
pub struct VirtualCard {
    child: Option<Child>,
    pub slot: u16,
    pub reader: String,
    pub state: PathBuf,
}

impl VirtualCard {
    pub fn start(slot: u16, state: &Path, test_mode: bool) -> Self {
        require_pcscd();
        assert!(
            !card_present(slot),
            "a card is already in {}: another valuecard-card is running",
            reader_name(slot)
        );
        let mut cmd = Command::new(bin("valuecard-card"));
        cmd.args(["--slot", &slot.to_string(), "--state"])
            .arg(state);
        if test_mode {
            cmd.arg("--test-mode");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start valuecard-card");
        let card = VirtualCard {
            child: Some(child),
            slot,
            reader: reader_name(slot),
            state: state.to_path_buf(),
        };
        wait_until(
            &format!("the card in {}", card.reader),
            Duration::from_secs(15),
            || card_present(slot),
        );
        card
    }

    /// Kills the card process (a pulled card) and waits until pcscd sees it gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let slot = self.slot;
            wait_until(
                &format!("the card to leave {}", self.reader),
                Duration::from_secs(15),
                || !card_present(slot),
            );
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `valuecard` CLI, returning (success, stdout, stderr).
pub fn valuecard(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("valuecard"))
        .args(args)
        .output()
        .expect("run valuecard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a CLI run left: its exit code (None when a signal ended it) and its output.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
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
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The admin token the test backends run with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A `valuecard-backend all` process on a free loopback port, killed when dropped. Its log
/// goes to `backend.log` in its database folder.
pub struct Backend {
    child: Child,
    pub url: String,
    pub db_dir: PathBuf,
}

impl Backend {
    pub fn start(db_dir: &Path) -> Self {
        use std::io::{BufRead, BufReader};
        std::fs::create_dir_all(db_dir).expect("create the database folder");
        let log = File::create(db_dir.join("backend.log")).expect("create the backend log");
        let mut child = Command::new(bin("valuecard-backend"))
            .args(["all", "--listen", "127.0.0.1:0", "--db"])
            .arg(db_dir)
            .env("VALUECARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start valuecard-backend");
        let stdout = child.stdout.take().expect("backend stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("valuecard-backend printed its address within 60 s");
        let url = line
            .trim()
            .strip_prefix("valuecard-backend listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from valuecard-backend: {line:?}"))
            .to_string();
        Backend {
            child,
            url,
            db_dir: db_dir.to_path_buf(),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    /// choose it) with the center.
    pub fn new(backend: &Backend, dir: &Path, card: &[&str], deposit: u64) -> Self {
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
