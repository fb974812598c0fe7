//! `valuecard-backend`: makes the scheme's keys (`keys init`), runs the bank, the center, the
//! arbiter, or all three over HTTP, and audits their databases (`audit`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use p256::ecdsa::{SigningKey, VerifyingKey};
use tracing_subscriber::EnvFilter;

use valuecard_backend::arbiter::{Arbiter, ArbiterConfig};
use valuecard_backend::audit::{self, Paths};
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::{Clock, DAY, SystemClock};
use valuecard_backend::http::{self, Roles};
use valuecard_backend::keys::{self, KeyFileError, StartError};
use valuecard_protocol::keylist::parse_bank_key;
use valuecard_protocol::scheme::SchemeKeys;

const ADMIN_TOKEN_ENV: &str = "VALUECARD_ADMIN_TOKEN";

/// The valuecard bank, center and arbiter: HTTP and JSON over SQLite.
///
/// Every route lives under its role's prefix (/bank/v1/..., /center/v1/..., /arbiter/v1/...)
/// in every mode, plus GET /healthz. The API documents are at /bank/openapi.json,
/// /center/openapi.json and /arbiter/openapi.json.
///
/// The scheme's keys are made once, offline: `valuecard-backend keys init --out DIR`. Each
/// role then reads its own key file and scheme.json, so the roles start in any order.
///
/// Once listening, the program prints exactly one line to standard output,
/// `valuecard-backend listening on http://IP:PORT`, and logs to standard error: one line per
/// request (method, path, status, error code, time; never bodies nor headers) and the public
/// keys at startup. RUST_LOG sets the level (default `info`; `RUST_LOG=warn` for errors
/// only, `RUST_LOG=debug` for more). SIGTERM or Ctrl-C stops it cleanly.
#[derive(Debug, Parser)]
#[command(
    name = "valuecard-backend",
    version,
    propagate_version = true,
    verbatim_doc_comment,
    after_help = "`valuecard-backend COMMAND --help` tells each command's options.

Examples:
  valuecard-backend keys init --out keys
  VALUECARD_ADMIN_TOKEN=s3cret valuecard-backend all --db /tmp/valuecard --keys keys \\
      --trust-card-maker \"$MAKER_KEY\"
  valuecard-backend audit --db /tmp/valuecard"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The scheme's keys: made once, offline.
    #[command(
        subcommand,
        after_help = "Examples:
  valuecard-backend keys init --out keys"
    )]
    Keys(KeysCommand),
    /// Accounts, denomination keys and withdrawals (routes under /bank).
    #[command(
        after_help = "Examples (admin.token holds the admin token: any secret string, on one line):
  valuecard-backend bank --db bank.sqlite --key keys/bank.key --scheme keys/scheme.json \\
      --admin-token-file admin.token
  valuecard-backend bank --db bank.sqlite --key keys/bank.key --admin-token-file admin.token \\
      --listen 127.0.0.1:8641 --denominations 1,5,10,50,100,500,1000"
    )]
    Bank {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        #[command(flatten)]
        money: Money,
        /// The bank's private key file (bank.key of `keys init`). The database is bound to
        /// its public key on the first start.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// scheme.json of `keys init`: if given, the key must be the scheme's bank key.
        #[arg(long, value_name = "FILE")]
        scheme: Option<PathBuf>,
    },
    /// Card registration, redemptions, loads, unloads, tickets, blocks and the float (routes
    /// under /center).
    #[command(
        after_help = "Registers only cards whose key a trusted card maker vouches for: give each maker's public
key with --trust-card-maker (`valuecard-card maker-key` prints it). Without any, every
registration is refused.

Examples (MAKER_KEY is a card maker's public key, 66 hex digits):
  valuecard-backend center --db center.sqlite --key keys/issuer.key \\
      --scheme keys/scheme.json --admin-token-file admin.token --listen 127.0.0.1:8642 \\
      --trust-card-maker \"$MAKER_KEY\""
    )]
    Center {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        /// The issuer's private key file (issuer.key of `keys init`): it must be the key the
        /// scheme's issuer anchor names. The database is bound to it on the first start.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// scheme.json of `keys init`: the root, its anchors (handed to cards) and the bank
        /// key (the center imports only key lists signed with it).
        #[arg(long, value_name = "FILE")]
        scheme: PathBuf,
        #[command(flatten)]
        makers: Makers,
        /// Currency of the cards' unit accounts.
        #[arg(long, value_name = "CODE", default_value = "JPY")]
        currency: String,
    },
    /// Verdicts on card-to-card exchanges (routes under /arbiter); no admin routes.
    #[command(
        after_help = "Takes the card certificates and block lists of the scheme's issuer. Give it the issuer's
newest block list after every block: POST /arbiter/v1/block-list.

Examples:
  valuecard-backend arbiter --db arbiter.sqlite --key keys/arbiter.key \\
      --scheme keys/scheme.json --listen 127.0.0.1:8643"
    )]
    Arbiter {
        #[command(flatten)]
        service: Service,
        /// The arbiter's private key file (arbiter.key of `keys init`): it must be the key
        /// the scheme's arbiter anchor names. The database is bound to it on the first start.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// scheme.json of `keys init`: the issuer key whose certificates the arbiter takes.
        #[arg(long, value_name = "FILE")]
        scheme: PathBuf,
    },
    /// The bank, the center and the arbiter in one process.
    #[command(
        after_help = "--db is a folder, created if missing, that holds bank.sqlite, center.sqlite and
arbiter.sqlite; `--db :memory:` keeps all three in memory, lost at exit. --keys is the folder
of `keys init`: it reads bank.key, issuer.key, arbiter.key and scheme.json from it (root.key
belongs offline, not there).

Examples:
  valuecard-backend keys init --out keys
  VALUECARD_ADMIN_TOKEN=s3cret valuecard-backend all --db /tmp/valuecard --keys keys \\
      --trust-card-maker \"$MAKER_KEY\"
  valuecard-backend all --db :memory: --keys keys --admin-token-file admin.token \\
      --listen 127.0.0.1:0 --trust-card-maker \"$MAKER_KEY\""
    )]
    All {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        #[command(flatten)]
        money: Money,
        /// The folder of `keys init`: bank.key, issuer.key, arbiter.key and scheme.json.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[command(flatten)]
        makers: Makers,
    },
    /// Checks every invariant the databases can show, read-only, and reports each by name.
    #[command(
        after_help = "Opens the databases read-only (it may run while the services do) and checks the bank's
ledger, the center's units, the float and its backing by the bank's signatures, and the
arbiter's verdicts. Prints one line per invariant: ok, VIOLATION (with what breaks it) or
skipped (a database not given). Exit status: 0 when every invariant holds, 1 on any
violation, 2 when it cannot audit (a usage error, a database that does not open or is of
another version).

Examples:
  valuecard-backend audit --db /tmp/valuecard
  valuecard-backend audit --bank bank.sqlite --center center.sqlite --arbiter arbiter.sqlite
  valuecard-backend audit --center center.sqlite --json"
    )]
    Audit {
        /// The folder of `all --db DIR`: bank.sqlite, center.sqlite, arbiter.sqlite.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["bank", "center", "arbiter"])]
        db: Option<PathBuf>,
        /// The bank's database.
        #[arg(long, value_name = "FILE")]
        bank: Option<PathBuf>,
        /// The center's database.
        #[arg(long, value_name = "FILE")]
        center: Option<PathBuf>,
        /// The arbiter's database.
        #[arg(long, value_name = "FILE")]
        arbiter: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Makes the scheme root, issuer, arbiter and bank keys and scheme.json, in one offline
    /// step.
    #[command(
        after_help = "Writes DIR/root.key, DIR/issuer.key, DIR/arbiter.key, DIR/bank.key (64 hex digits each,
mode 0600), DIR/root.pub (66 hex digits: card makers put it into every card) and
DIR/scheme.json (the root's anchors over the issuer and arbiter keys, and the bank key: every
role reads it). Never overwrites a file. Prints the four public keys on standard output.
Move root.key offline afterwards: it is needed again only to anchor new issuer or arbiter
keys.

Examples:
  valuecard-backend keys init --out keys
  valuecard-backend keys init --out /etc/valuecard/keys"
    )]
    Init {
        /// The folder to write the keys to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The card makers the center trusts.
#[derive(Debug, Args)]
struct Makers {
    /// A card maker's public key (compressed P-256, 66 hex digits): the center registers
    /// cards whose key this maker's attestation vouches for. Repeat for several makers.
    #[arg(long = "trust-card-maker", value_name = "HEX", value_parser = public_key)]
    trusted: Vec<VerifyingKey>,
}

/// Where every role listens and keeps its data.
#[derive(Debug, Args)]
struct Service {
    /// Address to listen on, IP:PORT; port 0 picks a free port (see the line printed on
    /// stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8640")]
    listen: String,

    /// Database: an SQLite file for `bank`, `center` and `arbiter`; for `all`, a folder
    /// that will hold bank.sqlite, center.sqlite and arbiter.sqlite (created if missing).
    /// `:memory:` keeps everything in memory, lost at exit.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
}

/// The admin routes' token (the bank's and the center's).
#[derive(Debug, Args)]
struct Admin {
    /// File holding the admin token for the admin routes (`Authorization: Bearer <token>`;
    /// `all` gives the bank and the center the same one). Without it, the token is read from
    /// the environment variable VALUECARD_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
}

/// The bank's money: currency, denominations, key lifetimes.
#[derive(Debug, Args)]
struct Money {
    /// Currency of the bank's accounts and of the center's unit accounts.
    #[arg(long, value_name = "CODE", default_value = "JPY")]
    currency: String,

    /// Amounts the bank issues tokens for, comma-separated [default: 1,2,4,...,1048576].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    denominations: Option<Vec<u64>>,

    /// Days a denomination key signs withdrawals.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    epoch_days: u64,

    /// Days after its epoch that a key's tokens can still be redeemed.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    redeem_days: u64,
}

impl Money {
    fn bank_config(&self) -> BankConfig {
        BankConfig {
            currency: self.currency.clone(),
            denominations: self
                .denominations
                .clone()
                .unwrap_or_else(|| BankConfig::default().denominations),
            epoch_length: self.epoch_days * DAY,
            redeem_period: self.redeem_days * DAY,
        }
    }
}

/// Why the program stops: what went wrong, and what to do about it.
struct Failure {
    message: String,
    hint: Option<String>,
    /// The exit status: 1, or 2 when the audit cannot run.
    code: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            hint: None,
            code: 1,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl Failure {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("valuecard-backend: {}", e.message);
            if let Some(hint) = e.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.code)
        }
    }
}

fn admin_token(admin: &Admin) -> Result<String, Failure> {
    let token = match &admin.admin_token_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the admin token file {}: {e}", file.display()))?,
        None => std::env::var(ADMIN_TOKEN_ENV).map_err(|_| {
            Failure::from(format!(
                "the admin routes need an admin token: give --admin-token-file FILE or set {ADMIN_TOKEN_ENV}"
            ))
            .hint("any secret string will do; the terminal's staff commands pass the same one with --admin-token or VALUECARD_ADMIN_TOKEN")
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err("the admin token is empty".into());
    }
    Ok(token)
}

/// A compressed P-256 public key in hex, for the key options.
fn public_key(value: &str) -> Result<VerifyingKey, String> {
    parse_bank_key(value).ok_or_else(|| {
        "not a compressed P-256 public key in hex (66 hex digits starting 02 or 03)".into()
    })
}

fn db_path(path: &Path) -> Result<String, Failure> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()).into())
}

/// A key or scheme file that cannot be used, with what to do.
fn key_failure(e: KeyFileError) -> Failure {
    let hint = match &e {
        KeyFileError::Read(..) => {
            "make the keys once with `valuecard-backend keys init --out DIR`, and give the files it wrote"
        }
        KeyFileError::NotAKey(_) => {
            "a key file holds the 64 hex digits `valuecard-backend keys init` wrote; is this the right file?"
        }
        KeyFileError::NotAScheme(..) | KeyFileError::BadScheme(..) => {
            "give the scheme.json that `valuecard-backend keys init` wrote with the key files"
        }
        KeyFileError::Exists(_) => {
            "keys init never overwrites: choose a new folder with --out, or keep the keys that are there"
        }
        KeyFileError::Write(..) => "choose a folder this user may write to with --out",
    };
    Failure::from(e.to_string()).hint(hint)
}

/// A role that would not start, with what to check.
fn start_failure(role: &str, path: &str, e: StartError) -> Failure {
    match e {
        StartError::Database(detail) => {
            let detail = detail.to_string();
            let hint = if detail.contains("not a database") {
                format!("is {path} the {role}'s SQLite database? Name a new file to start afresh")
            } else if detail.contains("newer than this program") {
                "run a valuecard-backend at least as new as the one that last wrote it".into()
            } else {
                "check that its folder exists and that this user may write there; `--db :memory:` keeps everything in memory".into()
            };
            Failure::from(format!("cannot open the {role}'s database {path}: {detail}")).hint(hint)
        }
        StartError::Config(message) => Failure::from(format!("the {role} cannot start: {message}")),
        e @ StartError::KeyMismatch { .. } => Failure::from(format!("{path}: {e}")).hint(format!(
            "start the {role} with the key file this database was first started with, or name a new database with --db"
        )),
        e @ StartError::NotInScheme { .. } => Failure::from(e.to_string()).hint(
            "give the key file and the scheme.json that one `valuecard-backend keys init` wrote together",
        ),
    }
}

fn read_key(path: &Path) -> Result<SigningKey, Failure> {
    keys::read_key(path).map_err(key_failure)
}

fn read_scheme(path: &Path) -> Result<SchemeKeys, Failure> {
    keys::read_scheme(path).map_err(key_failure)
}

/// The center's configuration; warns when no maker is trusted.
fn center_config(currency: String, scheme: SchemeKeys, makers: Makers) -> CenterConfig {
    if makers.trusted.is_empty() {
        tracing::warn!(
            "no card maker is trusted (--trust-card-maker): the center will refuse every registration"
        );
    }
    CenterConfig {
        currency,
        scheme,
        trusted_makers: makers.trusted,
    }
}

/// Wires the center's blocks to the arbiter of the same process (`all`).
fn forward_blocks(center: &Center, arbiter: &Arc<Arbiter>) -> Result<(), Failure> {
    let current = center
        .block_list()
        .map_err(|e| format!("cannot read the center's block list: {e}"))?;
    arbiter
        .take_block_list(&current)
        .map_err(|e| format!("the arbiter refused the center's block list: {e}"))?;
    let arbiter = arbiter.clone();
    center.forward_blocks_to(move |list| {
        if let Err(e) = arbiter.take_block_list(list) {
            tracing::error!(error = %e, "the arbiter did not take the new block list");
        }
    });
    Ok(())
}

/// `keys init`: the keys, and what to do with root.key.
fn keys_init(out: &Path) -> Result<u8, Failure> {
    let made = keys::init(out).map_err(key_failure)?;
    let mut stdout = std::io::stdout().lock();
    for (name, key) in [
        ("root", &made.root),
        ("issuer", &made.issuer),
        ("arbiter", &made.arbiter),
        ("bank", &made.bank),
    ] {
        writeln!(stdout, "{name} public key: {}", keys::public_hex(key))
            .map_err(|e| e.to_string())?;
    }
    stdout.flush().map_err(|e| e.to_string())?;
    for file in &made.files {
        eprintln!("wrote {}", file.display());
    }
    eprintln!(
        "Move {} offline now (keep a backup): it anchors the issuer and arbiter keys, and no role needs it to run.",
        out.join(keys::ROOT_KEY_FILE).display()
    );
    eprintln!(
        "Card makers put {} into every card they make.",
        out.join(keys::ROOT_PUB_FILE).display()
    );
    Ok(0)
}

/// `audit`: the report, and its exit status.
fn audit_command(paths: Paths, json: bool) -> Result<u8, Failure> {
    if paths.bank.is_none() && paths.center.is_none() && paths.arbiter.is_none() {
        return Err(Failure::from(
            "audit needs the databases: give --db DIR, or --bank, --center and --arbiter FILE",
        )
        .hint(
            "`valuecard-backend audit --db DIR` for the folder of `valuecard-backend all --db DIR`",
        )
        .code(2));
    }
    let report = audit::audit_files(&paths).map_err(|e| {
        let hint = if e.to_string().contains("older than this program") {
            "start the role once with this version (it migrates its database), then audit"
        } else {
            "give the databases the roles write (`all --db DIR` keeps bank.sqlite, center.sqlite and arbiter.sqlite in DIR)"
        };
        Failure::from(e.to_string()).hint(hint).code(2)
    })?;
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
    } else {
        report.render()
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    Ok(if report.ok { 0 } else { 1 })
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut keys_to_log: Vec<(&str, String)> = Vec::new();
    let (name, service, roles) = match cli.role {
        Role::Keys(KeysCommand::Init { out }) => return keys_init(&out),
        Role::Audit {
            db,
            bank,
            center,
            arbiter,
            json,
        } => {
            let paths = match db {
                Some(dir) => Paths::in_folder(&dir),
                None => Paths {
                    bank,
                    center,
                    arbiter,
                },
            };
            return audit_command(paths, json);
        }
        Role::Bank {
            service,
            admin,
            money,
            key,
            scheme,
        } => {
            let bank_key = read_key(&key)?;
            if let Some(scheme) = scheme {
                let scheme = read_scheme(&scheme)?;
                keys::check_in_scheme("bank", bank_key.verifying_key(), &scheme.bank)
                    .map_err(|e| start_failure("bank", "", e))?;
            }
            let path = db_path(&service.db)?;
            let token = admin_token(&admin)?;
            let bank = Bank::open(&path, clock, money.bank_config(), bank_key, &token)
                .map_err(|e| start_failure("bank", &path, e))?;
            keys_to_log.push(("bank", hex::encode(bank.public_key())));
            let roles = Roles {
                bank: Some(Arc::new(bank)),
                ..Roles::default()
            };
            ("bank", service, roles)
        }
        Role::Center {
            service,
            admin,
            key,
            scheme,
            makers,
            currency,
        } => {
            let issuer = read_key(&key)?;
            let scheme = read_scheme(&scheme)?;
            let config = center_config(currency, scheme, makers);
            let path = db_path(&service.db)?;
            let token = admin_token(&admin)?;
            let center = Center::open(&path, clock, config, issuer, &token)
                .map_err(|e| start_failure("center", &path, e))?;
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            let roles = Roles {
                center: Some(Arc::new(center)),
                ..Roles::default()
            };
            ("center", service, roles)
        }
        Role::Arbiter {
            service,
            key,
            scheme,
        } => {
            let arbiter_key = read_key(&key)?;
            let scheme = read_scheme(&scheme)?;
            keys::check_in_scheme("arbiter", arbiter_key.verifying_key(), &scheme.arbiter)
                .map_err(|e| start_failure("arbiter", "", e))?;
            let path = db_path(&service.db)?;
            let arbiter = Arbiter::open(
                &path,
                clock,
                ArbiterConfig {
                    issuer_public_key: scheme.issuer,
                },
                arbiter_key,
            )
            .map_err(|e| start_failure("arbiter", &path, e))?;
            keys_to_log.push(("arbiter", keys::public_hex(arbiter.public_key())));
            keys_to_log.push(("issuer", keys::public_hex(&scheme.issuer)));
            let roles = Roles {
                arbiter: Some(Arc::new(arbiter)),
                ..Roles::default()
            };
            ("arbiter", service, roles)
        }
        Role::All {
            service,
            admin,
            money,
            keys: key_dir,
            makers,
        } => {
            let bank_key = read_key(&key_dir.join(keys::BANK_KEY_FILE))?;
            let issuer = read_key(&key_dir.join(keys::ISSUER_KEY_FILE))?;
            let arbiter_key = read_key(&key_dir.join(keys::ARBITER_KEY_FILE))?;
            let scheme = read_scheme(&key_dir.join(keys::SCHEME_FILE))?;
            for (role, key, expected) in [
                ("bank", bank_key.verifying_key(), &scheme.bank),
                ("issuer", issuer.verifying_key(), &scheme.issuer),
                ("arbiter", arbiter_key.verifying_key(), &scheme.arbiter),
            ] {
                keys::check_in_scheme(role, key, expected)
                    .map_err(|e| start_failure(role, "", e))?;
            }
            if key_dir.join(keys::ROOT_KEY_FILE).exists() {
                tracing::warn!(
                    file = %key_dir.join(keys::ROOT_KEY_FILE).display(),
                    "the scheme root key is next to the running services: move it offline"
                );
            }
            let dir = db_path(&service.db)?;
            let path = |name: &str| -> Result<String, Failure> {
                if dir == ":memory:" {
                    return Ok(dir.clone());
                }
                db_path(&Path::new(&dir).join(name))
            };
            if dir != ":memory:" {
                if Path::new(&dir).is_file() {
                    return Err(Failure::from(format!(
                        "--db {dir} is a file, and `all` keeps its three databases in a folder"
                    ))
                    .hint("name a folder (created if missing), or run one role alone: `valuecard-backend bank --db FILE`"));
                }
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Failure::from(format!("cannot create the database folder {dir}: {e}")).hint(
                        "choose a folder this user may write to with --db, or `--db :memory:`",
                    )
                })?;
            }
            let admin = admin_token(&admin)?;
            let bank_db = path("bank.sqlite")?;
            let bank = Bank::open(
                &bank_db,
                clock.clone(),
                money.bank_config(),
                bank_key,
                &admin,
            )
            .map_err(|e| start_failure("bank", &bank_db, e))?;
            let arbiter_db = path("arbiter.sqlite")?;
            let arbiter = Arbiter::open(
                &arbiter_db,
                clock.clone(),
                ArbiterConfig {
                    issuer_public_key: scheme.issuer,
                },
                arbiter_key,
            )
            .map_err(|e| start_failure("arbiter", &arbiter_db, e))?;
            let center_db = path("center.sqlite")?;
            let config = center_config(money.currency.clone(), scheme, makers);
            let center = Center::open(&center_db, clock, config, issuer, &admin)
                .map_err(|e| start_failure("center", &center_db, e))?;
            keys_to_log.push(("bank", hex::encode(bank.public_key())));
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            keys_to_log.push(("arbiter", keys::public_hex(arbiter.public_key())));
            // The arbiter of this process learns every block at once, and the current list
            // at start (in case the process stopped between a block and its forwarding).
            let arbiter = Arc::new(arbiter);
            forward_blocks(&center, &arbiter)?;
            let roles = Roles {
                bank: Some(Arc::new(bank)),
                center: Some(Arc::new(center)),
                arbiter: Some(arbiter),
            };
            ("all", service, roles)
        }
    };
    let app = http::router(roles);
    let listen = service.listen;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| listen_failure(&listen, &e))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = shutdown_signal()?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "valuecard-backend listening on http://{addr}")
                .map_err(|e| e.to_string())?;
            stdout.flush().map_err(|e| e.to_string())?;
        }
        tracing::info!(role = %name, %addr, "listening");
        for (name, key) in &keys_to_log {
            tracing::info!(key = %name, public_key = %key, "public key");
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("server failed: {e}"))?;
        tracing::info!("stopped");
        Ok(0)
    })
}

/// Why --listen did not work, and what to do.
fn listen_failure(listen: &str, e: &std::io::Error) -> Failure {
    let failure = Failure::from(format!("cannot listen on {listen}: {e}"));
    match e.kind() {
        std::io::ErrorKind::AddrInUse => failure.hint(
            "another program (another valuecard-backend?) uses that port: stop it, or choose another with --listen IP:PORT (port 0 picks a free one)",
        ),
        std::io::ErrorKind::PermissionDenied => failure.hint(
            "ports below 1024 need privileges: choose a port of 1024 or more with --listen IP:PORT",
        ),
        std::io::ErrorKind::AddrNotAvailable => failure.hint(
            "that IP address is not one of this machine's: use 127.0.0.1, 0.0.0.0 (every interface) or one of its addresses",
        ),
        _ => failure.hint("give --listen as IP:PORT, e.g. 127.0.0.1:8640 (port 0 picks a free one)"),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are in place when this returns (before the
/// ready line is printed): a SIGTERM sent right after it stops the server cleanly too.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Failure> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| Failure::from(format!("cannot handle signals: {e}"));
        (
            signal(SignalKind::interrupt()).map_err(failed)?,
            signal(SignalKind::terminate()).map_err(failed)?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every role says what it does and shows how to run it.
    #[test]
    fn every_command_has_help_with_examples() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_string();
            if command.get_about().is_none() {
                missing.push(format!("`{path}` has no about text"));
            }
            let after = command
                .get_after_help()
                .or(command.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Example") {
                missing.push(format!("`{path}` has no Example(s) section in its help"));
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
