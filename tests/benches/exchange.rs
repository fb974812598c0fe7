//! Exchanges per second: the whole five-step exchange (START, AGREE, CONFIRM, COMMIT,
//! FINISH) between two cards in this process (state in memory) and between two virtual
//! cards behind pcscd + vpcd, next to the cryptography one exchange needs, measured alone
//! in the same run: two ECDSA P-256 signatures (Sa, Se) and four verifications (cert_A and
//! cert_B against the issuer, Sa, Se), over the same bytes the cards sign.
//!
//! Each figure is the median of RUNS runs of EXCHANGES exchanges. The cards swap 1 JPY for
//! 1 JPY, so their balances never run out. Run with `make bench-exchange`; the pcscd part
//! needs pcscd with vpcd (make setup) and is skipped, with a line saying so, without them.

use std::time::{Duration, Instant};

use apdu_spec::cert::{Certificate, encode_public_key};
use apdu_spec::exchange::{self, domains};
use apdu_spec::objects::Personalization;
use apdu_spec::units::{self, LoadApply, UnitValue};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use valuecard_terminal::backend_client::ArbiterClient;
use valuecard_terminal::pcsc::PcscTransport;
use valuecard_terminal::transport::{InProcess, Transport};
use valuecard_terminal::{Client, PinStatus};

const RUNS: usize = 5;
const EXCHANGES: usize = 200;
const PCSC_EXCHANGES: usize = 50;
const PIN: &[u8] = b"123456";

fn jpy(amount: u64) -> Option<UnitValue> {
    Some(UnitValue::Asset {
        code: "JPY".into(),
        amount,
    })
}

/// Makes the card's key, personalises it under `issuer`, loads 1,000,000 JPY onto it
/// (LOAD REQUEST, then LOAD APPLY with the issuer's authorisation), and verifies the PIN.
fn prepare<T: Transport>(client: &mut Client<T>, issuer: &SigningKey, arbiter: &SigningKey) {
    client.select().expect("select");
    let public = client.generate_key().expect("GENERATE KEY");
    let card_key = apdu_spec::cert::decode_public_key(&public).expect("card key");
    let certificate = Certificate::issue(issuer, &card_key, 0, u64::MAX).encode();
    client
        .personalize(&Personalization {
            issuer_key: encode_public_key(issuer.verifying_key()).to_vec(),
            arbiter_key: encode_public_key(arbiter.verifying_key()).to_vec(),
            certificate,
            pin: PIN.to_vec(),
        })
        .expect("PERSONALIZE");
    let request = client
        .load_request(&UnitValue::Asset {
            code: "JPY".into(),
            amount: 1_000_000,
        })
        .expect("LOAD REQUEST");
    client
        .load_apply(&LoadApply {
            authorisation: units::sign(issuer, units::domains::LOAD_AUTH, &request.message),
            ticket_signature: None,
        })
        .expect("LOAD APPLY");
    assert_eq!(client.verify_pin(PIN).expect("VERIFY"), PinStatus::Verified);
}

/// Exchanges per second over `exchanges` exchanges, median of RUNS runs.
fn exchanges_per_second<TA: Transport, TB: Transport>(
    a: &mut Client<TA>,
    b: &mut Client<TB>,
    exchanges: usize,
) -> f64 {
    // The arbiter is never asked on this path: every step succeeds.
    let arbiter = ArbiterClient::new("http://127.0.0.1:9");
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..exchanges {
                let report = valuecard_terminal::exchange::run(
                    a,
                    b,
                    &arbiter,
                    &jpy(1),
                    &jpy(1),
                    &mut |_, _| {},
                )
                .expect("exchange");
                assert!(report.failed_step.is_none(), "{report:?}");
            }
            exchanges as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

/// The cryptography of one exchange alone, per second: two signatures and four
/// verifications, as the cards make them.
fn crypto_per_second(issuer: &SigningKey) -> f64 {
    let mut rng = rand::rng();
    let card_a = SigningKey::generate_from_rng(&mut rng);
    let card_b = SigningKey::generate_from_rng(&mut rng);
    let cert_a = Certificate::issue(issuer, card_a.verifying_key(), 0, u64::MAX);
    let cert_b = Certificate::issue(issuer, card_b.verifying_key(), 0, u64::MAX);
    let (a, s2) = ([7u8; 32], exchange::commitment(&[9u8; 32]));
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..EXCHANGES {
                let key_a = cert_a.verify(issuer.verifying_key()).expect("cert A");
                let sa = exchange::sign(&card_b, domains::AGREE, &a, &s2);
                let key_b = cert_b.verify(issuer.verifying_key()).expect("cert B");
                assert!(exchange::verify(&key_b, domains::AGREE, &a, &s2, &sa));
                let se = exchange::sign(&card_a, domains::CONFIRM, &a, &s2);
                assert!(exchange::verify(&key_a, domains::CONFIRM, &a, &s2, &se));
            }
            EXCHANGES as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn per_exchange(rate: f64) -> String {
    let d = Duration::from_secs_f64(1.0 / rate);
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let mut rng = rand::rng();
    let issuer = SigningKey::generate_from_rng(&mut rng);
    let arbiter = SigningKey::generate_from_rng(&mut rng);

    let crypto = crypto_per_second(&issuer);

    let mut a = Client::new(InProcess::in_memory(false));
    let mut b = Client::new(InProcess::in_memory(false));
    prepare(&mut a, &issuer, &arbiter);
    prepare(&mut b, &issuer, &arbiter);
    let in_process = exchanges_per_second(&mut a, &mut b, EXCHANGES);

    let pcsc = match valuecard_tests::list_vpcd_readers() {
        Ok(()) => {
            let dir = tempfile::tempdir().expect("temp dir");
            let _lock = valuecard_tests::lock_vpcd();
            let card_a = valuecard_tests::VirtualCard::start(0, &dir.path().join("a.state"), false);
            let card_b = valuecard_tests::VirtualCard::start(1, &dir.path().join("b.state"), false);
            let mut a = Client::new(
                PcscTransport::open(Some(&card_a.reader), Duration::ZERO).expect("reader 0"),
            );
            let mut b = Client::new(
                PcscTransport::open(Some(&card_b.reader), Duration::ZERO).expect("reader 1"),
            );
            prepare(&mut a, &issuer, &arbiter);
            prepare(&mut b, &issuer, &arbiter);
            Some(exchanges_per_second(&mut a, &mut b, PCSC_EXCHANGES))
        }
        Err(why) => {
            println!("pcscd + vpcd: skipped ({why})");
            None
        }
    };

    println!("exchange benchmark (median of {RUNS} runs; units for units, 1 JPY each way)");
    println!("| what | exchanges/s | per exchange | vs crypto |");
    println!("|---|---|---|---|");
    println!(
        "| cryptography alone (2 signs + 4 verifies), same run | {crypto:.0} | {} | 1.00× |",
        per_exchange(crypto)
    );
    println!(
        "| five steps, two cards in-process ({EXCHANGES} per run) | {in_process:.0} | {} | {:.2}× |",
        per_exchange(in_process),
        crypto / in_process
    );
    if let Some(pcsc) = pcsc {
        println!(
            "| five steps, two virtual cards via pcscd + vpcd ({PCSC_EXCHANGES} per run) | {pcsc:.0} | {} | {:.2}× |",
            per_exchange(pcsc),
            crypto / pcsc
        );
    }
    println!("target: in-process ≤ 1.5× the cryptography");
}
