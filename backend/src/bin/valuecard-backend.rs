//! `valuecard-backend`: runs the bank, the center, the arbiter, or all three over HTTP.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use p256::ecdsa::VerifyingKey;
use tracing_subscriber::EnvFilter;

use apdu_spec::cert::encode_public_key;
use valuecard_backend::arbiter::{self, Arbiter, ArbiterConfig};
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::{Clock, DAY, SystemClock};
use valuecard_backend::http::{self, Roles};
use valuecard_protocol::keylist::parse_bank_key;

const ADMIN_TOKEN_ENV: &str = "VALUECARD_ADMIN_TOKEN";

/// The valuecard bank, center and arbiter: HTTP and JSON over SQLite.
///
/// Every route lives under its role's prefix (/bank/v1/..., /center/v1/..., /arbiter/v1/...)
/// in every mode, plus GET /healthz. The API documents are at /bank/openapi.json,
/// /center/openapi.json and /arbiter/openapi.json.
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
    after_help = "`valuecard-backend ROLE --help` tells each role's options.

Examples:
  VALUECARD_ADMIN_TOKEN=s3cret valuecard-backend all --db /tmp/valuecard
  valuecard-backend all --db :memory: --admin-token-file admin.token --listen 127.0.0.1:0
  RUST_LOG=warn valuecard-backend bank --db bank.sqlite --admin-token-file admin.token"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Accounts, denomination keys and withdrawals (routes under /bank).
    #[command(
        after_help = "Logs its long-term public key at startup (`public key key=bank`): the center needs it
as --bank-public-key.

Examples (admin.token holds the admin token: any secret string, on one line):
  valuecard-backend bank --db bank.sqlite --admin-token-file admin.token
  valuecard-backend bank --db bank.sqlite --admin-token-file admin.token \\
      --listen 127.0.0.1:8641 --denominations 1,5,10,50,100,500,1000"
    )]
    Bank {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        #[command(flatten)]
        money: Money,
    },
    /// Card registration, redemptions, loads, unloads and tickets (routes under /center).
    #[command(
        after_help = "Logs the issuer's public key at startup (`public key key=issuer`): the arbiter needs it
as --issuer-public-key.

Examples (BANK_KEY as the bank logs it, ARBITER_KEY as the arbiter logs it):
  valuecard-backend center --db center.sqlite --admin-token-file admin.token \\
      --listen 127.0.0.1:8642 \\
      --bank-public-key \"$BANK_KEY\" --arbiter-public-key \"$ARBITER_KEY\""
    )]
    Center {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        /// The bank's long-term public key (compressed P-256, hex), which the bank logs at
        /// startup. The center imports only key lists signed with it.
        #[arg(long, value_name = "HEX", value_parser = public_key)]
        bank_public_key: VerifyingKey,
        /// The arbiter's public key (compressed P-256, hex), given to cards.
        #[arg(long, value_name = "HEX", value_parser = public_key)]
        arbiter_public_key: VerifyingKey,
        /// Currency of the cards' unit accounts.
        #[arg(long, value_name = "CODE", default_value = "JPY")]
        currency: String,
    },
    /// Verdicts on card-to-card exchanges (routes under /arbiter); no admin routes.
    #[command(
        after_help = "Logs its own public key at startup (`public key key=arbiter`): the center needs it as
--arbiter-public-key. Its key is made on the first start and kept in the database.

Examples (ISSUER_KEY as the center logs it):
  valuecard-backend arbiter --db arbiter.sqlite --listen 127.0.0.1:8643 \\
      --issuer-public-key \"$ISSUER_KEY\""
    )]
    Arbiter {
        #[command(flatten)]
        service: Service,
        /// The issuer's public key (compressed P-256, hex), which the center logs at
        /// startup. The arbiter takes only card certificates signed with it.
        #[arg(long, value_name = "HEX", value_parser = public_key)]
        issuer_public_key: VerifyingKey,
    },
    /// The bank, the center and the arbiter in one process, wired to each other's keys.
    #[command(
        after_help = "--db is a folder, created if missing, that holds bank.sqlite, center.sqlite and
arbiter.sqlite; `--db :memory:` keeps all three in memory, lost at exit.

Examples:
  VALUECARD_ADMIN_TOKEN=s3cret valuecard-backend all --db /tmp/valuecard
  valuecard-backend all --db :memory: --admin-token-file admin.token --listen 127.0.0.1:0"
    )]
    All {
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        admin: Admin,
        #[command(flatten)]
        money: Money,
    },
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
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            hint: None,
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valuecard-backend: {}", e.message);
            if let Some(hint) = e.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
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
        "not a compressed P-256 public key in hex (66 hex digits starting 02 or 03, as the other role logs it at startup)".into()
    })
}

fn db_path(path: &Path) -> Result<String, Failure> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()).into())
}

/// A database that would not open, with what to check.
fn db_failure(role: &str, path: &str, detail: impl std::fmt::Display) -> Failure {
    let detail = detail.to_string();
    let hint = if detail.contains("not a database") {
        format!("is {path} the {role}'s SQLite database? Name a new file to start afresh")
    } else if detail.contains("newer than this program") {
        "run a valuecard-backend at least as new as the one that last wrote it".into()
    } else {
        "check that its folder exists and that this user may write there; `--db :memory:` keeps everything in memory".into()
    };
    Failure::from(format!(
        "cannot open the {role}'s database {path}: {detail}"
    ))
    .hint(hint)
}

fn run(cli: Cli) -> Result<(), Failure> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut keys_to_log: Vec<(&str, String)> = Vec::new();
    let (name, service, roles) = match cli.role {
        Role::Bank {
            service,
            admin,
            money,
        } => {
            let path = db_path(&service.db)?;
            let token = admin_token(&admin)?;
            let bank = Bank::open(&path, clock, money.bank_config(), &token)
                .map_err(|e| db_failure("bank", &path, e))?;
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
            bank_public_key,
            arbiter_public_key,
            currency,
        } => {
            let config = CenterConfig {
                currency,
                bank_public_key,
                arbiter_public_key,
            };
            let path = db_path(&service.db)?;
            let token = admin_token(&admin)?;
            let center = Center::open(&path, clock, config, &token)
                .map_err(|e| db_failure("center", &path, e))?;
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            let roles = Roles {
                center: Some(Arc::new(center)),
                ..Roles::default()
            };
            ("center", service, roles)
        }
        Role::Arbiter {
            service,
            issuer_public_key,
        } => {
            let path = db_path(&service.db)?;
            let arbiter = Arbiter::open(&path, clock, ArbiterConfig { issuer_public_key })
                .map_err(|e| db_failure("arbiter", &path, e))?;
            keys_to_log.push((
                "arbiter",
                hex::encode(encode_public_key(arbiter.public_key())),
            ));
            keys_to_log.push(("issuer", hex::encode(arbiter.info().issuer_public_key)));
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
        } => {
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
            let bank = Bank::open(&bank_db, clock.clone(), money.bank_config(), &admin)
                .map_err(|e| db_failure("bank", &bank_db, e))?;
            // The center hands cards the arbiter's key, and the arbiter takes the center's
            // certificates: the arbiter's key first, then the center, then the arbiter.
            let arbiter_path = path("arbiter.sqlite")?;
            let arbiter_db = arbiter::open_database(&arbiter_path)
                .map_err(|e| db_failure("arbiter", &arbiter_path, e))?;
            let config = CenterConfig {
                currency: money.currency.clone(),
                bank_public_key: *bank.verifying_key(),
                arbiter_public_key: arbiter::public_key(&arbiter_db)
                    .map_err(|e| db_failure("arbiter", &arbiter_path, e))?,
            };
            let center_db = path("center.sqlite")?;
            let center = Center::open(&center_db, clock.clone(), config, &admin)
                .map_err(|e| db_failure("center", &center_db, e))?;
            let arbiter = Arbiter::new(
                arbiter_db,
                clock,
                ArbiterConfig {
                    issuer_public_key: *center.issuer_verifying_key(),
                },
            )
            .map_err(|e| db_failure("arbiter", &arbiter_path, e))?;
            keys_to_log.push(("bank", hex::encode(bank.public_key())));
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            keys_to_log.push((
                "arbiter",
                hex::encode(encode_public_key(arbiter.public_key())),
            ));
            let roles = Roles {
                bank: Some(Arc::new(bank)),
                center: Some(Arc::new(center)),
                arbiter: Some(Arc::new(arbiter)),
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
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| format!("server failed: {e}"))?;
        tracing::info!("stopped");
        Ok(())
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

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
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
