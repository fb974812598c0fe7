//! Exchanges per second: the whole five-step exchange (START, AGREE, CONFIRM, COMMIT,
//! FINISH, relayed by [`crate::exchange::run`]) next to the cryptography one exchange needs,
//! measured alone: two ECDSA P-256 signatures (Sa, Se) and four verifications (both
//! certificates against the issuer, Sa, Se), over the bytes the cards sign. The cards swap
//! 1 JPY for 1 JPY, so their balances never run out.

use std::time::Instant;

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::blocklist::BlockList;
use apdu_spec::cert::{Certificate, decode_public_key};
use apdu_spec::exchange::{self, Value, domains};
use apdu_spec::maker::{Manufacture, maker_id};
use apdu_spec::objects::Personalization;
use apdu_spec::units::{self, LoadApply, UnitValue};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;

use super::{BenchError, Plan, Progress, Result, alternate, on_card, per_second};
use crate::backend_client::ArbiterClient;
use crate::launch::Scheme;
use crate::transport::{InProcess, Transport};
use crate::{Client, PinStatus};

const PIN: &[u8] = b"123456";
/// What each card holds: enough for any number of 1 JPY swaps.
const LOADED: u64 = 1_000_000;

fn jpy(amount: u64) -> Value {
    Some(UnitValue::Asset {
        code: "JPY".into(),
        amount,
    })
}

/// The scheme the benchmark's cards are made for and personalised under: its root, issuer,
/// arbiter and maker keys, read from the folder `launch::Scheme` made.
pub(super) struct Keys {
    pub root: SigningKey,
    pub issuer: SigningKey,
    pub arbiter: SigningKey,
    pub maker: SigningKey,
}

impl Keys {
    pub(super) fn of(scheme: &Scheme) -> Result<Keys> {
        Ok(Keys {
            root: scheme.secret("root")?,
            issuer: scheme.secret("issuer")?,
            arbiter: scheme.secret("arbiter")?,
            maker: scheme.secret("maker")?,
        })
    }

    /// A card as this scheme's maker leaves it, in memory.
    pub(super) fn in_memory_card(&self) -> Result<InProcess> {
        let attestation = SigningKey::generate_from_rng(&mut rand::rng());
        let made = Manufacture::make(&self.maker, self.root.verifying_key(), &attestation);
        Ok(InProcess::provisioned(&made, false)?)
    }
}

/// Makes the card's key, personalises it under the scheme's anchors and issuer, loads JPY
/// onto it (LOAD REQUEST, then LOAD APPLY with the issuer's authorisation and block list)
/// and verifies the PIN. The card must be one of the scheme's maker.
pub(super) fn prepare<T: Transport>(client: &mut Client<T>, keys: &Keys) -> Result<()> {
    client.select().map_err(on_card("SELECT"))?;
    let public = client.generate_key().map_err(on_card("GENERATE KEY"))?;
    let card_key = decode_public_key(&public)
        .ok_or_else(|| BenchError::Check("GENERATE KEY answered no P-256 key".into()))?;
    let maker = maker_id(keys.maker.verifying_key());
    let certificate = Certificate::issue(&keys.issuer, &card_key, maker, 0, u64::MAX).encode();
    client
        .personalize(&Personalization {
            issuer: Anchor::issue(&keys.root, AnchorRole::Issuer, keys.issuer.verifying_key()),
            arbiter: Anchor::issue(
                &keys.root,
                AnchorRole::Arbiter,
                keys.arbiter.verifying_key(),
            ),
            certificate,
            pin: PIN.to_vec(),
        })
        .map_err(on_card("PERSONALIZE"))?;
    let request = client
        .load_request(&UnitValue::Asset {
            code: "JPY".into(),
            amount: LOADED,
        })
        .map_err(on_card("LOAD REQUEST"))?;
    let block_list = BlockList::sign(&keys.issuer, 0, &[]);
    client
        .load_apply(&LoadApply {
            authorisation: units::sign(
                &keys.issuer,
                units::domains::LOAD_AUTH,
                &units::authorised(&request.message, block_list.version),
            ),
            ticket_signature: None,
            block_list,
        })
        .map_err(on_card("LOAD APPLY"))?;
    match client.verify_pin(PIN).map_err(on_card("VERIFY"))? {
        PinStatus::Verified => Ok(()),
        other => Err(BenchError::Check(format!(
            "VERIFY of the bench's PIN answered {other:?}"
        ))),
    }
}

/// One run: `exchanges` exchanges from `a` to `b`; exchanges per second.
pub(super) fn timed<TA: Transport, TB: Transport>(
    a: &mut Client<TA>,
    b: &mut Client<TB>,
    exchanges: usize,
) -> Result<f64> {
    // Never asked: every step succeeds, or the run fails.
    let arbiter = ArbiterClient::new("http://127.0.0.1:9");
    let (give, take) = (jpy(1), jpy(1));
    let start = Instant::now();
    for _ in 0..exchanges {
        let report = crate::exchange::run(a, b, &arbiter, &give, &take, &mut |_, _| {})?;
        if let Some((step, why)) = report.failed_step {
            return Err(BenchError::Check(format!(
                "an exchange failed at {step}: {why}"
            )));
        }
    }
    Ok(per_second(exchanges, start.elapsed()))
}

/// The cryptography of one exchange, as the cards do it, with keys of its own.
pub(super) struct Crypto {
    issuer: p256::ecdsa::VerifyingKey,
    card_a: SigningKey,
    card_b: SigningKey,
    cert_a: Certificate,
    cert_b: Certificate,
}

impl Crypto {
    pub(super) fn new(issuer: &SigningKey) -> Crypto {
        let mut rng = rand::rng();
        let card_a = SigningKey::generate_from_rng(&mut rng);
        let card_b = SigningKey::generate_from_rng(&mut rng);
        let maker = [0; 32];
        Crypto {
            issuer: *issuer.verifying_key(),
            cert_a: Certificate::issue(issuer, card_a.verifying_key(), maker, 0, u64::MAX),
            cert_b: Certificate::issue(issuer, card_b.verifying_key(), maker, 0, u64::MAX),
            card_a,
            card_b,
        }
    }

    /// One run of `exchanges` exchanges' cryptography; exchanges per second.
    pub(super) fn timed(&mut self, exchanges: usize) -> Result<f64> {
        let (a, s2) = ([7u8; 32], exchange::commitment(&[9u8; 32]));
        let bad = |what: &str| BenchError::Check(format!("{what} does not verify"));
        let start = Instant::now();
        for _ in 0..exchanges {
            // B checks A's certificate at AGREE and signs Sa; A checks B's certificate and
            // Sa at CONFIRM and signs Se; B checks Se at COMMIT.
            let key_a = self
                .cert_a
                .verify(&self.issuer)
                .map_err(|_| bad("cert A"))?;
            let sa = exchange::sign(&self.card_b, domains::AGREE, &a, &s2);
            let key_b = self
                .cert_b
                .verify(&self.issuer)
                .map_err(|_| bad("cert B"))?;
            if !exchange::verify(&key_b, domains::AGREE, &a, &s2, &sa) {
                return Err(bad("Sa"));
            }
            let se = exchange::sign(&self.card_a, domains::CONFIRM, &a, &s2);
            if !exchange::verify(&key_a, domains::CONFIRM, &a, &s2, &se) {
                return Err(bad("Se"));
            }
        }
        Ok(per_second(exchanges, start.elapsed()))
    }
}

/// Exchanges per second between two in-process cards (state in memory), and the
/// cryptography's, in alternate runs.
pub(super) fn in_process(plan: &Plan, progress: &Progress, keys: &Keys) -> Result<(f64, f64)> {
    let stage = progress.stage(
        "exchanges between in-process cards, and their cryptography alone",
        plan.runs,
    );
    let mut a = Client::new(keys.in_memory_card()?);
    let mut b = Client::new(keys.in_memory_card()?);
    prepare(&mut a, keys)?;
    prepare(&mut b, keys)?;
    let mut crypto = Crypto::new(&keys.issuer);
    let (exchanges, reference) = alternate(
        plan.runs,
        &stage,
        || timed(&mut a, &mut b, plan.exchanges),
        || crypto.timed(plan.exchanges),
    )?;
    stage.done(format!(
        "{exchanges:.0}/s (cryptography alone: {reference:.0}/s)"
    ));
    Ok((exchanges, reference))
}
