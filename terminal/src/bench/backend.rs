//! The backend the HTTP rows measure: a `valuecard-backend all` started for the run, with
//! an account at its bank, its bank's key list at its center, and cards registered there.
//! Everything here goes over HTTP: the terminal does not link the backend.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apdu_spec::cert::{decode_public_key, encode_public_key};
use apdu_spec::maker::{Attestation, MakerCertificate};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use rand::RngExt;
use valuecard_protocol::api::{CardProof, ChallengePurpose, DepositRequest, RegisterRequest};
use valuecard_protocol::keylist::DenominationKeyInfo;

use super::{BenchError, Progress, Result};
use crate::backend_client::{ArbiterClient, BankClient, CenterClient};
use crate::funding::{current_key, fetch_keys, now};
use crate::launch::{Backend, Scheme};

/// Cards registered at the center: the tokens are made out to them, and the arbiter's
/// requests come from them.
const CARDS: usize = 8;
/// The denomination of every token.
pub(super) const AMOUNT: u64 = 1;

/// A card registered at the center: its key and the certificate the center issued.
pub(super) struct Card {
    pub key: SigningKey,
    pub id: [u8; 32],
    pub certificate: Vec<u8>,
}

pub(super) struct Fixture {
    pub backend: Backend,
    pub bank: BankClient,
    pub account: String,
    pub credential: String,
    pub key: DenominationKeyInfo,
    pub cards: Vec<Card>,
    /// The center's issuer key, which the arbiter checks certificates with.
    pub issuer: VerifyingKey,
}

/// 128 random bits in hex: the admin token and the account's credential.
fn random_secret() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

impl Fixture {
    /// Starts the backend and sets it up.
    pub(super) fn start(progress: &Progress, db_dir: &Path, scheme: &Scheme) -> Result<Fixture> {
        let stage =
            progress.wait("starting valuecard-backend all, opening an account, registering cards");
        let admin = random_secret();
        let backend = Backend::start(db_dir, &admin, scheme)?;
        // The cards are simulated here, so their maker's work is too: each card's
        // attestation key, certified by the scheme's test maker, which the backend trusts.
        let maker = scheme.secret("maker")?;
        let (bank, center) = (
            BankClient::new(&backend.url),
            CenterClient::new(&backend.url),
        );
        let info = center.info()?;
        let bank_key = decode_public_key(&info.bank_public_key)
            .ok_or_else(|| BenchError::Check("the center's bank key does not parse".into()))?;
        let issuer = decode_public_key(&info.issuer_public_key)
            .ok_or_else(|| BenchError::Check("the center's issuer key does not parse".into()))?;

        let credential = random_secret();
        let account = bank.open_account(&admin, &credential)?.account;
        bank.deposit(
            &admin,
            &DepositRequest {
                account: account.clone(),
                amount: 1 << 40,
                reference: "valuecard bench".into(),
            },
        )?;
        let keys = fetch_keys(&bank, &bank_key, &[AMOUNT])
            .map_err(|e| BenchError::Check(format!("the bank's key list: {e}")))?;
        let key = current_key(&keys.list, AMOUNT, &info.currency, now())
            .cloned()
            .ok_or_else(|| {
                BenchError::Check(format!("the bank has no current key for {AMOUNT}"))
            })?;
        center.import_bank_keys(&keys.signed)?;

        let mut cards = Vec::new();
        for _ in 0..CARDS {
            let key = SigningKey::generate_from_rng(&mut rand::rng());
            let attestation_key = SigningKey::generate_from_rng(&mut rand::rng());
            let public_key = encode_public_key(key.verifying_key());
            let challenge = center.challenge(ChallengePurpose::Register)?.challenge;
            let attestation = Attestation::sign(
                &attestation_key,
                MakerCertificate::issue(&maker, attestation_key.verifying_key()),
                &public_key,
                &challenge,
            );
            let registration = center.register(&RegisterRequest {
                public_key,
                proof: CardProof {
                    challenge,
                    signature: apdu_spec::auth::sign(&key, &challenge).to_vec(),
                },
                attestation: attestation.encode(),
            })?;
            cards.push(Card {
                key,
                id: registration.card_id,
                certificate: registration.certificate,
            });
        }
        stage.done(&backend.url);
        Ok(Fixture {
            backend,
            bank,
            account,
            credential,
            key,
            cards,
            issuer,
        })
    }

    /// A fresh arbiter client: its own keep-alive connection.
    pub(super) fn arbiter(&self) -> ArbiterClient {
        ArbiterClient::new(&self.backend.url)
    }
}

/// Sends every request from one thread per client, thread `i` taking requests `i`,
/// `i + n`, ...; the time until the last answer. Each client keeps its own connection.
pub(super) fn in_parallel<C: Sync, Q: Sync>(
    clients: &[C],
    requests: &[Q],
    call: impl Fn(&C, &Q) -> Result<()> + Sync,
) -> Result<Duration> {
    let first_error: Mutex<Option<BenchError>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (i, client) in clients.iter().enumerate() {
            let (call, first_error) = (&call, &first_error);
            scope.spawn(move || {
                for request in requests.iter().skip(i).step_by(clients.len()) {
                    if let Err(e) = call(client, request) {
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(elapsed),
    }
}
