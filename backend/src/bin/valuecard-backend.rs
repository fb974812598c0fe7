//! `valuecard-backend`: runs the bank, the center, the arbiter, or all three over HTTP.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

use apdu_spec::cert::encode_public_key;
use valuecard_backend::arbiter::{self, Arbiter, ArbiterConfig};
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::{Clock, DAY, SystemClock};
use valuecard_backend::http::{self, Roles};
use valuecard_protocol::keylist::parse_bank_key;

const ADMIN_TOKEN_ENV: &str = "VALUECARD_ADMIN_TOKEN";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Accounts, denomination keys and withdrawals (routes under /bank).
    Bank,
    /// Card registration, redemptions, loads, unloads and tickets (routes under /center).
    Center,
    /// Verdicts on card-to-card exchanges (routes under /arbiter).
    Arbiter,
    /// The bank, the center and the arbiter in one process, wired to each other's keys.
    All,
}

/// The valuecard bank, center and arbiter: HTTP and JSON over SQLite.
///
/// Every route lives under its role's prefix (/bank/v1/..., /center/v1/..., /arbiter/v1/...)
/// in every mode, plus GET /healthz. The API documents are at /bank/openapi.json,
/// /center/openapi.json and /arbiter/openapi.json.
///
/// Once listening, the program prints exactly one line to standard output,
/// `valuecard-backend listening on http://IP:PORT`, and logs to standard error (set the
/// level with RUST_LOG, default `info`). SIGTERM or Ctrl-C stops it cleanly.
///
/// Examples:
///
///   VALUECARD_ADMIN_TOKEN=... valuecard-backend all --db /var/lib/valuecard
///
///   valuecard-backend bank --db bank.sqlite --admin-token-file /run/secrets/admin
///
///   valuecard-backend center --db center.sqlite --admin-token-file /run/secrets/admin \
///       --bank-public-key 02ab... --arbiter-public-key 03cd...
///
///   valuecard-backend arbiter --db arbiter.sqlite --issuer-public-key 02ef...
#[derive(Debug, Parser)]
#[command(name = "valuecard-backend", version, verbatim_doc_comment)]
struct Cli {
    /// Which service to run.
    #[arg(value_enum)]
    role: Role,

    /// Address to listen on; port 0 picks a free port (see the line printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8640")]
    listen: String,

    /// Database: an SQLite file for `bank`, `center` and `arbiter`; for `all`, a directory
    /// that will hold bank.sqlite, center.sqlite and arbiter.sqlite (created if missing).
    /// `:memory:` keeps everything in memory, lost at exit.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,

    /// File holding the admin token for the admin routes of the bank and the center
    /// (`Authorization: Bearer <token>`; `all` gives both the same one). Without it, the
    /// token is read from the environment variable VALUECARD_ADMIN_TOKEN. Required, but by
    /// `arbiter`, which has no admin routes.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,

    /// `center` only: the bank's long-term public key (compressed P-256, hex), which the
    /// bank logs at startup. The center imports only key lists signed with it.
    #[arg(long, value_name = "HEX")]
    bank_public_key: Option<String>,

    /// `center` only: the arbiter's public key (compressed P-256, hex), given to cards.
    #[arg(long, value_name = "HEX")]
    arbiter_public_key: Option<String>,

    /// `arbiter` only: the issuer's public key (compressed P-256, hex), which the center
    /// logs at startup. The arbiter takes only card certificates signed with it.
    #[arg(long, value_name = "HEX")]
    issuer_public_key: Option<String>,

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
            eprintln!("valuecard-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_token(cli: &Cli) -> Result<String, String> {
    let token = match &cli.admin_token_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the admin token file {}: {e}", file.display()))?,
        None => std::env::var(ADMIN_TOKEN_ENV).map_err(|_| {
            format!("the admin routes need an admin token: give --admin-token-file FILE or set {ADMIN_TOKEN_ENV}")
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err("the admin token is empty".into());
    }
    Ok(token)
}

fn public_key_arg(
    value: Option<&str>,
    role: &str,
    flag: &str,
) -> Result<p256::ecdsa::VerifyingKey, String> {
    let value = value.ok_or_else(|| format!("`{role}` needs {flag} HEX"))?;
    parse_bank_key(value).ok_or_else(|| format!("{flag}: not a compressed P-256 public key in hex"))
}

fn db_path(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bank_config = || BankConfig {
        currency: cli.currency.clone(),
        denominations: cli
            .denominations
            .clone()
            .unwrap_or_else(|| BankConfig::default().denominations),
        epoch_length: cli.epoch_days * DAY,
        redeem_period: cli.redeem_days * DAY,
    };
    let mut keys_to_log: Vec<(&str, String)> = Vec::new();
    let roles = match cli.role {
        Role::Bank => {
            let bank = Bank::open(
                &db_path(&cli.db)?,
                clock,
                bank_config(),
                &admin_token(&cli)?,
            )?;
            keys_to_log.push(("bank", hex::encode(bank.public_key())));
            Roles {
                bank: Some(Arc::new(bank)),
                ..Roles::default()
            }
        }
        Role::Center => {
            let config = CenterConfig {
                currency: cli.currency.clone(),
                bank_public_key: public_key_arg(
                    cli.bank_public_key.as_deref(),
                    "center",
                    "--bank-public-key",
                )?,
                arbiter_public_key: public_key_arg(
                    cli.arbiter_public_key.as_deref(),
                    "center",
                    "--arbiter-public-key",
                )?,
            };
            let center = Center::open(&db_path(&cli.db)?, clock, config, &admin_token(&cli)?)?;
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            Roles {
                center: Some(Arc::new(center)),
                ..Roles::default()
            }
        }
        Role::Arbiter => {
            let config = ArbiterConfig {
                issuer_public_key: public_key_arg(
                    cli.issuer_public_key.as_deref(),
                    "arbiter",
                    "--issuer-public-key",
                )?,
            };
            let arbiter =
                Arbiter::open(&db_path(&cli.db)?, clock, config).map_err(|e| e.to_string())?;
            keys_to_log.push((
                "arbiter",
                hex::encode(encode_public_key(arbiter.public_key())),
            ));
            keys_to_log.push(("issuer", hex::encode(arbiter.info().issuer_public_key)));
            Roles {
                arbiter: Some(Arc::new(arbiter)),
                ..Roles::default()
            }
        }
        Role::All => {
            if cli.bank_public_key.is_some()
                || cli.arbiter_public_key.is_some()
                || cli.issuer_public_key.is_some()
            {
                return Err("`all` wires the bank, the center and the arbiter to each other's keys: drop --bank-public-key, --arbiter-public-key and --issuer-public-key".into());
            }
            let dir = db_path(&cli.db)?;
            let path = |name: &str| -> Result<String, String> {
                if dir == ":memory:" {
                    return Ok(dir.clone());
                }
                db_path(&Path::new(&dir).join(name))
            };
            if dir != ":memory:" {
                std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
            }
            let admin = admin_token(&cli)?;
            let bank = Bank::open(&path("bank.sqlite")?, clock.clone(), bank_config(), &admin)?;
            // The center hands cards the arbiter's key, and the arbiter takes the center's
            // certificates: the arbiter's key first, then the center, then the arbiter.
            let arbiter_db =
                arbiter::open_database(&path("arbiter.sqlite")?).map_err(|e| e.to_string())?;
            let config = CenterConfig {
                currency: cli.currency.clone(),
                bank_public_key: *bank.verifying_key(),
                arbiter_public_key: arbiter::public_key(&arbiter_db).map_err(|e| e.to_string())?,
            };
            let center = Center::open(&path("center.sqlite")?, clock.clone(), config, &admin)?;
            let arbiter = Arbiter::new(
                arbiter_db,
                clock,
                ArbiterConfig {
                    issuer_public_key: *center.issuer_verifying_key(),
                },
            )
            .map_err(|e| e.to_string())?;
            keys_to_log.push(("bank", hex::encode(bank.public_key())));
            keys_to_log.push(("issuer", hex::encode(center.issuer_public_key())));
            keys_to_log.push((
                "arbiter",
                hex::encode(encode_public_key(arbiter.public_key())),
            ));
            Roles {
                bank: Some(Arc::new(bank)),
                center: Some(Arc::new(center)),
                arbiter: Some(Arc::new(arbiter)),
            }
        }
    };
    let app = http::router(roles);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cli.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "valuecard-backend listening on http://{addr}")
                .map_err(|e| e.to_string())?;
            stdout.flush().map_err(|e| e.to_string())?;
        }
        let role = format!("{:?}", cli.role).to_lowercase();
        tracing::info!(%role, %addr, "listening");
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
