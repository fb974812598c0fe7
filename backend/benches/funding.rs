//! Funding throughput: how many withdrawals (blind signatures) the bank and how many
//! redemptions the center complete per second, in-process and over HTTP on loopback, next to
//! the machine's raw RSA-2048 signing speed.
//!
//! Run it (release build, takes about a minute):
//!
//! ```text
//! cargo bench -p valuecard-backend --bench funding
//! ```
//!
//! Each line is the median of `RUNS` runs of a fixed number of operations (ops/s of each
//! run: operations / wall time). Preparing inputs (blinding, making tokens) is not timed.
//! The HTTP lines use a real server on 127.0.0.1:0 and `CLIENTS` client threads with one
//! keep-alive connection each. The reference lines are `openssl speed -seconds 2 rsa2048`
//! (private-key signs/s, run as a subprocess) and `DenominationSecretKey::blind_sign` alone.
//! Environment: `FUNDING_BENCH_RUNS` (default 5), `FUNDING_BENCH_SCALE` (default 1.0,
//! multiplies the operation counts).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;

use apdu_spec::cert::encode_public_key;
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::{Clock, SystemClock};
use valuecard_backend::http::{self, Roles, ServerHandle};
use valuecard_protocol::api::*;
use valuecard_protocol::keylist::{DenominationKeyInfo, SignedKeyList};
use valuecard_protocol::token::{
    Blinded, DenominationPublicKey, DenominationSecretKey, TokenMessage,
};

const ADMIN: &str = "bench-admin-token";
const CREDENTIAL: &str = "bench credential";
const CLIENTS: usize = 4;
const CARDS: usize = 8;

struct Row {
    what: String,
    ops: String,
    rates: Vec<f64>,
    note: String,
}

fn median(rates: &[f64]) -> f64 {
    let mut r = rates.to_vec();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

fn runs() -> usize {
    std::env::var("FUNDING_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5)
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("FUNDING_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(CLIENTS)
}

/// Times `f` over `ops` operations `runs` times; `prepare` builds each run's inputs untimed.
fn measure<I>(
    runs: usize,
    ops: usize,
    mut prepare: impl FnMut() -> I,
    mut f: impl FnMut(&I),
) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let input = prepare();
            let started = Instant::now();
            f(&input);
            let rate = ops as f64 / started.elapsed().as_secs_f64();
            // Dropping the input (e.g. stopping a server) is not timed.
            drop(input);
            rate
        })
        .collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends `bodies` to `url` from CLIENTS threads; every answer must be 200.
fn post_all<T: serde::Serialize + Send + 'static>(url: &str, bodies: Vec<T>) {
    let mut chunks: Vec<Vec<T>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for (i, body) in bodies.into_iter().enumerate() {
        chunks[i % CLIENTS].push(body);
    }
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let agent = agent();
                for body in chunk {
                    let mut response = agent.post(&url).send_json(&body).unwrap();
                    let status = response.status().as_u16();
                    let _ = response.body_mut().read_to_string();
                    assert_eq!(status, 200, "{url}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

struct Pending {
    bytes: Vec<u8>,
    blinded: Blinded,
}

fn blind(key: &DenominationPublicKey, card_id: [u8; 32]) -> Pending {
    let message = TokenMessage::new(&mut rand::rng(), card_id, key.id(), 1);
    let bytes = message.encode();
    let blinded = key.blind(&mut rand::rng(), &bytes).unwrap();
    Pending { bytes, blinded }
}

fn withdraw_request(account: &str, key: &DenominationPublicKey, p: &Pending) -> WithdrawRequest {
    WithdrawRequest {
        account: account.into(),
        credential: CREDENTIAL.into(),
        key_id: key.id(),
        blinded_message: p.blinded.blinded_message.clone(),
    }
}

/// A fresh center with the bank's keys and the cards registered.
fn fresh_center(bank: &Bank, list: &SignedKeyList, cards: &[SigningKey]) -> Arc<Center> {
    let center = Center::open(
        ":memory:",
        Arc::new(SystemClock),
        CenterConfig {
            currency: "JPY".into(),
            bank_public_key: *bank.verifying_key(),
            arbiter_public_key: *SigningKey::generate_from_rng(&mut rand::rng()).verifying_key(),
        },
        ADMIN,
    )
    .unwrap();
    center.import_keys(list).unwrap();
    for card in cards {
        let challenge = center
            .challenge(&ChallengeRequest {
                purpose: ChallengePurpose::Register,
            })
            .unwrap()
            .challenge;
        center
            .register(&RegisterRequest {
                public_key: encode_public_key(card.verifying_key()),
                proof: CardProof {
                    challenge,
                    signature: apdu_spec::auth::sign(card, &challenge).to_vec(),
                },
            })
            .unwrap();
    }
    Arc::new(center)
}

fn openssl_rsa2048() -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa2048"])
        .output()
        .map_err(|e| {
            format!("openssl is not available ({e}): install it for the reference line")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text
        .lines()
        .find(|l| l.contains("sign/s"))
        .ok_or("no sign/s column in openssl's output")?;
    let column = header
        .split_whitespace()
        .position(|t| t == "sign/s")
        .ok_or("no sign/s column")?;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048"))
        .ok_or("no rsa 2048 row in openssl's output")?;
    // The row starts with three label tokens: `rsa 2048 bits`.
    row.split_whitespace()
        .nth(column + 3)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot read sign/s from {row:?}"))
}

fn main() {
    let runs = runs();
    let (sign_ops, bank_ops, center_ops) = (scaled(200), scaled(200), scaled(1000));
    eprintln!("setting up (keys, account, {center_ops} tokens)...");
    let bank = Arc::new(
        Bank::open(
            ":memory:",
            Arc::new(SystemClock),
            BankConfig::default(),
            ADMIN,
        )
        .unwrap(),
    );
    let account = bank
        .open_account(
            Some(ADMIN),
            &OpenAccountRequest {
                credential: CREDENTIAL.into(),
            },
        )
        .unwrap()
        .account;
    bank.deposit(
        Some(ADMIN),
        &DepositRequest {
            account: account.clone(),
            amount: 1 << 40,
            reference: "bench".into(),
        },
    )
    .unwrap();
    let list = bank.key_list(&[1]).unwrap();
    let info: DenominationKeyInfo = list.verify(bank.verifying_key()).unwrap().keys.remove(0);
    let key = info.key().unwrap();
    let cards: Vec<SigningKey> = (0..CARDS)
        .map(|_| SigningKey::generate_from_rng(&mut rand::rng()))
        .collect();
    let card_ids: Vec<[u8; 32]> = cards
        .iter()
        .map(|c| apdu_spec::card_id(&encode_public_key(c.verifying_key())))
        .collect();
    // Tokens for the center lines; each run redeems them at a fresh center.
    let tokens: Vec<RedeemRequest> = (0..center_ops)
        .map(|i| {
            let p = blind(&key, card_ids[i % CARDS]);
            let answer = bank
                .withdraw(&withdraw_request(&account, &key, &p))
                .unwrap();
            let signature = key
                .finalize(&answer.blind_signature, &p.blinded, &p.bytes)
                .unwrap();
            RedeemRequest {
                message: p.bytes,
                randomizer: p.blinded.randomizer,
                signature,
            }
        })
        .collect();
    let mut rows = Vec::new();

    eprintln!("blind_sign...");
    let secret = DenominationSecretKey::generate(&mut rand::rng()).unwrap();
    let messages: Vec<Vec<u8>> = (0..sign_ops)
        .map(|_| blind(secret.public(), [0; 32]).blinded.blinded_message)
        .collect();
    rows.push(Row {
        what: "DenominationSecretKey::blind_sign (1 core)".into(),
        ops: sign_ops.to_string(),
        rates: measure(
            runs,
            sign_ops,
            || (),
            |_| {
                for m in &messages {
                    std::hint::black_box(secret.blind_sign(m).unwrap());
                }
            },
        ),
        note: "reference".into(),
    });

    eprintln!("bank withdraw in-process...");
    rows.push(Row {
        what: "bank withdraw, in-process (1 thread)".into(),
        ops: bank_ops.to_string(),
        rates: measure(
            runs,
            bank_ops,
            || {
                (0..bank_ops)
                    .map(|i| withdraw_request(&account, &key, &blind(&key, card_ids[i % CARDS])))
                    .collect::<Vec<_>>()
            },
            |requests| {
                for r in requests {
                    assert!(!bank.withdraw(r).unwrap().replayed);
                }
            },
        ),
        note: "Bank::withdraw: credential (cached), sign, one transaction".into(),
    });

    eprintln!("bank withdraw over HTTP...");
    {
        let server = ServerHandle::start(
            "127.0.0.1:0",
            http::router(Roles {
                bank: Some(bank.clone()),
                ..Roles::default()
            }),
        )
        .unwrap();
        let url = format!("{}/bank/v1/withdrawals", server.url());
        rows.push(Row {
            what: format!("bank withdraw, HTTP loopback ({CLIENTS} clients)"),
            ops: bank_ops.to_string(),
            rates: measure(
                runs,
                bank_ops,
                || {
                    (0..bank_ops)
                        .map(|i| {
                            withdraw_request(&account, &key, &blind(&key, card_ids[i % CARDS]))
                        })
                        .collect::<Vec<_>>()
                },
                |requests| post_all(&url, requests.clone()),
            ),
            note: "POST /bank/v1/withdrawals".into(),
        });
    }

    eprintln!("center redeem in-process...");
    rows.push(Row {
        what: "center redeem, in-process (1 thread)".into(),
        ops: center_ops.to_string(),
        rates: measure(
            runs,
            center_ops,
            || fresh_center(&bank, &list, &cards),
            |center| {
                for t in &tokens {
                    assert!(!center.redeem(t).unwrap().replayed);
                }
            },
        ),
        note: "Center::redeem: RSA verify, one transaction".into(),
    });

    eprintln!("center redeem over HTTP...");
    rows.push(Row {
        what: format!("center redeem, HTTP loopback ({CLIENTS} clients)"),
        ops: center_ops.to_string(),
        rates: measure(
            runs,
            center_ops,
            || {
                let center = fresh_center(&bank, &list, &cards);
                ServerHandle::start(
                    "127.0.0.1:0",
                    http::router(Roles {
                        center: Some(center),
                        ..Roles::default()
                    }),
                )
                .unwrap()
            },
            |server| {
                post_all(
                    &format!("{}/center/v1/redemptions", server.url()),
                    tokens.clone(),
                )
            },
        ),
        note: "POST /center/v1/redemptions".into(),
    });

    // Last, so that the machine is not still busy with it while the lines above are timed.
    eprintln!("openssl speed rsa2048...");
    rows.insert(
        0,
        match openssl_rsa2048() {
            Ok(rate) => Row {
                what: "RSA-2048 sign, `openssl speed rsa2048` (1 core)".into(),
                ops: "2 s".into(),
                rates: vec![rate],
                note: "reference".into(),
            },
            Err(e) => Row {
                what: "RSA-2048 sign, openssl speed".into(),
                ops: "-".into(),
                rates: vec![],
                note: e,
            },
        },
    );

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!();
    println!(
        "funding benchmark: median of {runs} runs, {cores} cores, unix time {}",
        SystemClock.now()
    );
    println!();
    let (operation, ops, med, range) = ("operation", "ops", "median ops/s", "min..max ops/s");
    println!("| {operation:<48} | {ops:>6} | {med:>12} | {range:>19} | note");
    println!("|{:-<50}|{:->8}|{:->14}|{:->21}|{:-<6}", "", "", "", "", "");
    for row in &rows {
        if row.rates.is_empty() {
            println!(
                "| {:<48} | {:>6} | {:>12} | {:>19} | {}",
                row.what, row.ops, "n/a", "", row.note
            );
            continue;
        }
        let min = row.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = row.rates.iter().copied().fold(0.0, f64::max);
        println!(
            "| {:<48} | {:>6} | {:>12.0} | {:>19} | {}",
            row.what,
            row.ops,
            median(&row.rates),
            format!("{min:.0}..{max:.0}"),
            row.note
        );
    }
}
