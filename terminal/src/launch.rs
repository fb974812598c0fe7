//! The processes that `valuecard demo`, `valuecard bench` and the PC/SC tests start: virtual
//! cards in vpcd's two slots and a `valuecard-backend all`, each stopped when dropped; and
//! the offline steps before them: a scheme's keys, a test card maker, and cards it makes.
//!
//! vpcd's slots are shared by the whole machine, so every user of them first takes the file
//! lock of [`lock_vpcd`] (the shell scripts take the same lock with flock).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pcsc::list_readers;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "{0} is missing next to this program: build the workspace's binaries first (`cargo build --workspace --bins`, or `make build`)"
    )]
    MissingBinary(PathBuf),
    #[error(
        "pcscd is not reachable ({0}): install pcscd and vsmartcard-vpcd and start pcscd (`make setup` does both)"
    )]
    NoPcscd(String),
    #[error(
        "pcscd has no reader {0:?}: is vsmartcard-vpcd installed, and was pcscd restarted after? (`make setup`)"
    )]
    NoVpcdReader(String),
    #[error("a card is already in {0}: stop the other virtual card first")]
    SlotBusy(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("valuecard-backend did not start: {0}")]
    Backend(String),
    #[error("{0}")]
    Tool(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// The reader vpcd shows for a slot.
pub fn reader_name(slot: u16) -> String {
    format!("Virtual PCD 00 {slot:02}")
}

/// Holds the machine-wide vpcd lock until dropped.
pub struct VpcdLock(#[allow(dead_code)] File);

/// The path of the vpcd lock file, the same for the CLI, the tests and the shell scripts.
pub fn vpcd_lock_path() -> PathBuf {
    std::env::temp_dir().join("valuecard-vpcd.lock")
}

/// Waits for, then takes, the machine-wide vpcd lock.
pub fn lock_vpcd() -> Result<VpcdLock, LaunchError> {
    let path = vpcd_lock_path();
    let file = File::create(&path).map_err(io(format!("create {}", path.display())))?;
    file.lock()
        .map_err(io(format!("lock {}", path.display())))?;
    Ok(VpcdLock(file))
}

/// A binary of this workspace: next to the running program, or one folder up (a test
/// executable lives in target/<profile>/deps).
pub fn sibling_binary(name: &str) -> Result<PathBuf, LaunchError> {
    let exe = std::env::current_exe().map_err(io("find the running program"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [Some(dir.join(name)), dir.parent().map(|p| p.join(name))];
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LaunchError::MissingBinary(dir.join(name)))
}

/// Checks that pcscd answers and shows both vpcd readers.
pub fn require_vpcd() -> Result<(), LaunchError> {
    let readers = list_readers().map_err(|e| LaunchError::NoPcscd(e.to_string()))?;
    for slot in 0..2 {
        let name = reader_name(slot);
        if !readers.iter().any(|r| r.name == name) {
            return Err(LaunchError::NoVpcdReader(name));
        }
    }
    Ok(())
}

fn card_present(slot: u16) -> bool {
    let name = reader_name(slot);
    list_readers()
        .map(|rs| rs.iter().any(|r| r.name == name && r.card_present))
        .unwrap_or(false)
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), LaunchError> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= timeout {
            return Err(LaunchError::Timeout(timeout, what.to_string()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// How a virtual card is started.
#[derive(Clone, Debug, Default)]
pub struct CardOptions {
    /// Allow TEST RESET (`--test-mode`).
    pub test_mode: bool,
    /// An untuned socket (`--plain-socket`): the slow baseline of the APDU benchmark.
    pub plain_socket: bool,
    /// Where the card's output goes; nowhere when `None`.
    pub log: Option<PathBuf>,
}

/// A `valuecard-card` process in a vpcd slot, killed when dropped.
pub struct VirtualCard {
    child: Option<Child>,
    pub slot: u16,
    pub reader: String,
    pub state: PathBuf,
}

impl VirtualCard {
    /// Starts a card whose state lives in `state`, and waits until pcscd sees it.
    pub fn start(slot: u16, state: &Path, options: &CardOptions) -> Result<Self, LaunchError> {
        require_vpcd()?;
        let reader = reader_name(slot);
        if card_present(slot) {
            return Err(LaunchError::SlotBusy(reader));
        }
        let mut cmd = Command::new(sibling_binary("valuecard-card")?);
        cmd.args(["--slot", &slot.to_string(), "--state"])
            .arg(state);
        if options.test_mode {
            cmd.arg("--test-mode");
        }
        if options.plain_socket {
            cmd.arg("--plain-socket");
        }
        let (out, err) = match &options.log {
            Some(path) => {
                let log = File::create(path).map_err(io(format!("create {}", path.display())))?;
                let copy = log
                    .try_clone()
                    .map_err(io(format!("open {}", path.display())))?;
                (Stdio::from(log), Stdio::from(copy))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("start valuecard-card"))?;
        let mut card = VirtualCard {
            child: Some(child),
            slot,
            reader,
            state: state.to_path_buf(),
        };
        let waited = wait_until(
            &format!("the card in {}", card.reader),
            Duration::from_secs(15),
            || card_present(slot),
        );
        if let Err(e) = waited {
            card.kill();
            return Err(e);
        }
        Ok(card)
    }

    /// The card process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the card process (a pulled card) and waits until pcscd sees it gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let slot = self.slot;
            let _ = wait_until("the card to leave", Duration::from_secs(15), || {
                !card_present(slot)
            });
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one of the workspace's tools to its end; its standard output, or its failure with
/// everything it printed.
fn run_tool(binary: &str, args: &[&std::ffi::OsStr]) -> Result<String, LaunchError> {
    let out = Command::new(sibling_binary(binary)?)
        .args(args)
        .output()
        .map_err(io(format!("run {binary}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(LaunchError::Tool(format!(
            "{binary} {} failed ({}):\n{stdout}{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(stdout)
}

/// A scheme of its own for a demo, a benchmark or a test: the operator's keys
/// (`valuecard-backend keys init`) and a test card maker (`valuecard-card maker-key`), both
/// in one folder. Cards are made for it with [`Scheme::provision`], and a [`Backend`] started
/// with it trusts exactly that maker.
#[derive(Clone, Debug)]
pub struct Scheme {
    /// The keys folder: root.key, root.pub, issuer.key, arbiter.key, bank.key, scheme.json.
    pub keys: PathBuf,
    /// The test maker's secret key.
    pub maker_key: PathBuf,
    /// The root's public key, hex: every card of the scheme gets it at manufacture.
    pub root_public_key: String,
    /// The maker's public key, hex: the center trusts it (`--trust-card-maker`).
    pub maker_public_key: String,
    /// What `keys init` and `maker-key` printed, for a narrator to show.
    pub keys_output: String,
    pub maker_output: String,
}

impl Scheme {
    /// Makes the keys in `dir/keys` and the maker's key in `dir/maker.key`.
    pub fn create(dir: &Path) -> Result<Self, LaunchError> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let keys = dir.join("keys");
        let maker_key = dir.join("maker.key");
        let keys_output = run_tool(
            "valuecard-backend",
            &[
                "keys".as_ref(),
                "init".as_ref(),
                "--out".as_ref(),
                keys.as_os_str(),
            ],
        )?;
        let root_pub = keys.join("root.pub");
        let root_public_key = std::fs::read_to_string(&root_pub)
            .map_err(io(format!("read {}", root_pub.display())))?
            .trim()
            .to_string();
        let made = run_tool(
            "valuecard-card",
            &[
                "maker-key".as_ref(),
                "--out".as_ref(),
                maker_key.as_os_str(),
            ],
        )?;
        let maker_public_key = made
            .lines()
            .find_map(|l| l.strip_prefix("maker public key:"))
            .map(|k| k.trim().to_string())
            .ok_or_else(|| {
                LaunchError::Tool(format!(
                    "valuecard-card maker-key printed no \"maker public key:\" line:\n{made}"
                ))
            })?;
        Ok(Scheme {
            keys,
            maker_key,
            root_public_key,
            maker_public_key,
            keys_output,
            maker_output: made,
        })
    }

    /// One of the scheme's secret keys (`root`, `issuer`, `arbiter`, `bank`) or the maker's
    /// (`maker`), for benchmarks and tests that sign in this process what the roles sign.
    pub fn secret(&self, name: &str) -> Result<p256::ecdsa::SigningKey, LaunchError> {
        let path = match name {
            "maker" => self.maker_key.clone(),
            other => self.keys.join(format!("{other}.key")),
        };
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        hex::decode(text.trim())
            .ok()
            .and_then(|bytes| p256::ecdsa::SigningKey::from_slice(&bytes).ok())
            .ok_or_else(|| {
                LaunchError::Tool(format!("{} holds no P-256 secret key", path.display()))
            })
    }

    /// Makes a card of this scheme by its maker: a blank card whose state lives in `state`
    /// (which must not hold a card yet), with an attestation key, the maker's certificate
    /// and the root key. What the tool printed.
    pub fn provision(&self, state: &Path) -> Result<String, LaunchError> {
        run_tool(
            "valuecard-card",
            &[
                "provision".as_ref(),
                "--state".as_ref(),
                state.as_os_str(),
                "--maker-key".as_ref(),
                self.maker_key.as_os_str(),
                "--root-key".as_ref(),
                self.root_public_key.as_ref(),
            ],
        )
    }
}

/// A `valuecard-backend all` process (bank, center and arbiter) on a free loopback port,
/// killed when dropped. Its databases live in `db_dir`, its log in `db_dir/backend.log`.
pub struct Backend {
    child: Child,
    pub url: String,
    pub db_dir: PathBuf,
}

impl Backend {
    /// Starts the services of `scheme`, trusting its maker.
    pub fn start(db_dir: &Path, admin_token: &str, scheme: &Scheme) -> Result<Self, LaunchError> {
        std::fs::create_dir_all(db_dir).map_err(io(format!("create {}", db_dir.display())))?;
        let log_path = db_dir.join("backend.log");
        let log = File::create(&log_path).map_err(io(format!("create {}", log_path.display())))?;
        let mut child = Command::new(sibling_binary("valuecard-backend")?)
            .args(["all", "--listen", "127.0.0.1:0", "--db"])
            .arg(db_dir)
            .arg("--keys")
            .arg(&scheme.keys)
            .args(["--trust-card-maker", &scheme.maker_public_key])
            .env("VALUECARD_ADMIN_TOKEN", admin_token)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io("start valuecard-backend"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(stdout) = stdout {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(url) = line
            .trim()
            .strip_prefix("valuecard-backend listening on ")
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(LaunchError::Backend(format!(
                "its first line was {line:?}; its log ({}):\n{log}",
                log_path.display()
            )));
        };
        Ok(Backend {
            child,
            url,
            db_dir: db_dir.to_path_buf(),
        })
    }

    /// The backend process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `valuecard-backend audit` found in a `valuecard-backend all` folder of databases.
#[derive(Clone, Debug)]
pub struct Audit {
    /// Every invariant holds (the auditor exited 0).
    pub passed: bool,
    /// The report it printed.
    pub report: String,
}

/// Runs the auditor, read-only, over the databases in `db_dir`. A violation is an `Audit`
/// that did not pass; an auditor that could not run at all is an error.
pub fn audit(db_dir: &Path) -> Result<Audit, LaunchError> {
    let out = Command::new(sibling_binary("valuecard-backend")?)
        .args(["audit", "--db"])
        .arg(db_dir)
        .output()
        .map_err(io("run valuecard-backend audit"))?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => Ok(Audit {
            passed: true,
            report,
        }),
        Some(1) => Ok(Audit {
            passed: false,
            report,
        }),
        _ => Err(LaunchError::Tool(format!(
            "valuecard-backend audit --db {} failed ({}):\n{report}{}",
            db_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}
