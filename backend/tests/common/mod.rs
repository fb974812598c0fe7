//! A bank, a center and an arbiter with in-memory databases and a manual clock, behind a
//! real HTTP listener on 127.0.0.1:0, and a client that does what the terminal does.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use rand::RngExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use apdu_spec::cert::{Certificate, encode_public_key};
use apdu_spec::exchange;
use apdu_spec::units::{self, UnitMessage, domains};
use valuecard_backend::arbiter::{self, Arbiter, ArbiterConfig};
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::ManualClock;
use valuecard_backend::db::Dump;
use valuecard_backend::http::{self, Roles, ServerHandle};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;
use valuecard_protocol::keylist::{DenominationKeyInfo, KeyList, SignedKeyList};
use valuecard_protocol::token::{Blinded, DenominationPublicKey, TokenMessage};

/// Not a day boundary, so that a day number never equals a time by accident.
pub const START: u64 = 1_750_000_123;
pub const ADMIN: &str = "test-admin-token-0123456789";
pub const CREDENTIAL: &str = "correct horse battery";

/// An error answer: HTTP status and code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

pub type Answer<T> = Result<T, Failure>;

pub trait ExpectCode<T> {
    /// Asserts an error with `code` and the code's HTTP status.
    fn expect_code(self, code: ErrorCode);
}

impl<T: std::fmt::Debug> ExpectCode<T> for Answer<T> {
    #[track_caller]
    fn expect_code(self, code: ErrorCode) {
        match self {
            Ok(v) => panic!("expected {code}, got success {v:?}"),
            Err(f) => {
                assert_eq!(f.code, code, "wrong code: {f:?}");
                assert_eq!(f.status, code.http_status(), "wrong status: {f:?}");
            }
        }
    }
}

pub struct World {
    pub clock: Arc<ManualClock>,
    pub bank: Arc<Bank>,
    pub center: Arc<Center>,
    /// Takes the center's certificates, as in `all` mode.
    pub arbiter: Arc<Arbiter>,
    pub server: ServerHandle,
    pub agent: ureq::Agent,
    /// The key list as fetched at start, for the amounts asked for.
    pub keys: KeyList,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// The JSON answer of a 200, or the error body's code and the HTTP status.
pub fn answer<R: DeserializeOwned>(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Answer<R> {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    if status == 200 {
        return Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad answer {text}: {e}")));
    }
    Err(failure(status, &text))
}

/// The error answer `text`, which must be an `ErrorBody`.
fn failure(status: u16, text: &str) -> Failure {
    let body: ErrorBody = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not an ErrorBody ({status}) {text}: {e}"));
    Failure {
        status,
        code: body.error.code,
        message: body.error.message,
    }
}

/// A request with any method, content type and body to `url`: the error answer, or the
/// status.
pub fn raw(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer<u16> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    let request = builder.body(body.to_vec()).unwrap();
    let mut response = agent.run(request).expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    if status < 400 {
        return Ok(status);
    }
    Err(failure(status, &text))
}

impl World {
    /// A bank, a center and an arbiter wired to each other's keys, and the bank's keys for
    /// `amounts` imported into the center.
    pub fn new(amounts: &[u64]) -> World {
        let clock = Arc::new(ManualClock::new(START));
        let bank =
            Arc::new(Bank::open(":memory:", clock.clone(), BankConfig::default(), ADMIN).unwrap());
        let arbiter_db = arbiter::open_database(":memory:").unwrap();
        let center = Arc::new(
            Center::open(
                ":memory:",
                clock.clone(),
                CenterConfig {
                    currency: "JPY".into(),
                    bank_public_key: *bank.verifying_key(),
                    arbiter_public_key: arbiter::public_key(&arbiter_db).unwrap(),
                },
                ADMIN,
            )
            .unwrap(),
        );
        let arbiter = Arc::new(
            Arbiter::new(
                arbiter_db,
                clock.clone(),
                ArbiterConfig {
                    issuer_public_key: *center.issuer_verifying_key(),
                },
            )
            .unwrap(),
        );
        let app = http::router(Roles {
            bank: Some(bank.clone()),
            center: Some(center.clone()),
            arbiter: Some(arbiter.clone()),
        });
        let server = ServerHandle::start("127.0.0.1:0", app).unwrap();
        let mut world = World {
            clock,
            bank,
            center,
            arbiter,
            server,
            agent: agent(),
            keys: KeyList {
                bank_public_key: [0; 33],
                issued_at: 0,
                currency: String::new(),
                denominations: vec![],
                keys: vec![],
            },
        };
        world.keys = world.fetch_keys(amounts);
        world
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Answer<R> {
        answer(self.agent.post(self.url(path)).send_json(body))
    }

    pub fn post_admin<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &B,
    ) -> Answer<R> {
        answer(
            self.agent
                .post(self.url(path))
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body),
        )
    }

    pub fn get<R: DeserializeOwned>(&self, path: &str) -> Answer<R> {
        answer(self.agent.get(self.url(path)).call())
    }

    /// A request with any method, content type and body: the error answer, or the status.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer<u16> {
        raw(&self.agent, method, &self.url(path), content_type, body)
    }

    pub fn dumps(&self) -> (Dump, Dump) {
        (
            self.bank.database().dump().unwrap(),
            self.center.database().dump().unwrap(),
        )
    }

    /// Fetches the bank's key list for `amounts` and hands it to the center, as the
    /// terminal does.
    pub fn fetch_keys(&self, amounts: &[u64]) -> KeyList {
        let query = amounts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let signed: SignedKeyList = self.get(&format!("/bank/v1/keys?amounts={query}")).unwrap();
        let list = signed.verify(self.bank.verifying_key()).unwrap();
        let imported: KeysImported = self.post("/center/v1/bank-keys", &signed).unwrap();
        assert!(imported.known >= list.keys.len() as u64);
        list
    }

    /// The current key for `amount` in the list fetched at start.
    pub fn key(&self, amount: u64) -> DenominationKeyInfo {
        self.keys
            .keys
            .iter()
            .filter(|k| k.amount == amount)
            .max_by_key(|k| k.epoch)
            .cloned()
            .unwrap()
    }

    pub fn open_account(&self, deposit: u64) -> String {
        let opened: AccountOpened = self
            .post_admin(
                "/bank/v1/accounts",
                ADMIN,
                &OpenAccountRequest {
                    credential: CREDENTIAL.into(),
                },
            )
            .unwrap();
        if deposit > 0 {
            let answer: DepositAnswer = self
                .post_admin(
                    "/bank/v1/deposits",
                    ADMIN,
                    &DepositRequest {
                        account: opened.account.clone(),
                        amount: deposit,
                        reference: format!("open-{}", opened.account),
                    },
                )
                .unwrap();
            assert_eq!(answer.balance_after, deposit);
        }
        opened.account
    }

    pub fn account_balance(&self, account: &str) -> u64 {
        let b: AccountBalance = self
            .post(
                "/bank/v1/balance",
                &AccountBalanceRequest {
                    account: account.into(),
                    credential: CREDENTIAL.into(),
                },
            )
            .unwrap();
        b.balance
    }

    pub fn challenge(&self, purpose: ChallengePurpose) -> [u8; 32] {
        let c: Challenge = self
            .post("/center/v1/challenges", &ChallengeRequest { purpose })
            .unwrap();
        assert_eq!(c.purpose, purpose);
        c.challenge
    }

    pub fn register_request(&self, card: &SigningKey) -> RegisterRequest {
        let challenge = self.challenge(ChallengePurpose::Register);
        RegisterRequest {
            public_key: encode_public_key(card.verifying_key()),
            proof: CardProof {
                challenge,
                signature: apdu_spec::auth::sign(card, &challenge).to_vec(),
            },
        }
    }

    /// A new card, registered: its key and its id.
    pub fn new_card(&self) -> (SigningKey, [u8; 32]) {
        let card = SigningKey::generate_from_rng(&mut rand::rng());
        let registration: Registration = self
            .post("/center/v1/cards", &self.register_request(&card))
            .unwrap();
        assert!(!registration.replayed);
        (card, registration.card_id)
    }

    /// The card's unit balance in JPY, read with a fresh balance challenge.
    pub fn card_balance(&self, card: &SigningKey) -> u64 {
        let card_id = apdu_spec::card_id(&encode_public_key(card.verifying_key()));
        let balance: CardBalance = self
            .post(
                "/center/v1/balance",
                &CardBalanceRequest {
                    card_id,
                    proof: self.balance_proof(card),
                },
            )
            .unwrap();
        assert_eq!(balance.accounts.len(), 1);
        assert_eq!(balance.accounts[0].asset, "JPY");
        balance.accounts[0].balance
    }

    /// A proof over a fresh balance challenge, signed by `card`.
    pub fn balance_proof(&self, card: &SigningKey) -> CardProof {
        let challenge = self.challenge(ChallengePurpose::Balance);
        CardProof {
            challenge,
            signature: apdu_spec::auth::sign(card, &challenge).to_vec(),
        }
    }

    /// A new card, registered, with units redeemed from one token of each of `amounts`
    /// (keys fetched at start), withdrawn from `account`.
    pub fn funded_card(&self, account: &str, amounts: &[u64]) -> (SigningKey, [u8; 32]) {
        let (card, card_id) = self.new_card();
        for amount in amounts {
            let token = self.token(account, &self.key(*amount), card_id);
            assert!(!self.redeem(&token.redeem).unwrap().replayed);
        }
        assert_eq!(self.card_balance(&card), amounts.iter().sum::<u64>());
        (card, card_id)
    }

    pub fn load(&self, order: &LoadOrder) -> Answer<LoadAuthorisation> {
        self.post("/center/v1/loads", order)
    }

    pub fn cancel(&self, cancel: &LoadCancellation) -> Answer<CancelAcknowledgement> {
        self.post("/center/v1/load-cancellations", cancel)
    }

    pub fn unload(&self, order: &UnloadOrder) -> Answer<UnloadAcknowledgement> {
        self.post("/center/v1/unloads", order)
    }

    pub fn issue_ticket(&self, token: &str, req: &TicketIssueRequest) -> Answer<IssuedTicket> {
        self.post_admin("/center/v1/tickets", token, req)
    }

    /// The card's ledger, read with a fresh balance challenge.
    pub fn ledger(&self, card: &SigningKey) -> CardLedger {
        let card_id = apdu_spec::card_id(&encode_public_key(card.verifying_key()));
        self.post(
            "/center/v1/ledger",
            &LedgerRequest {
                card_id,
                proof: Some(self.balance_proof(card)),
            },
        )
        .unwrap()
    }

    pub fn withdraw(&self, req: &WithdrawRequest) -> Answer<WithdrawAnswer> {
        self.post("/bank/v1/withdrawals", req)
    }

    pub fn redeem(&self, req: &RedeemRequest) -> Answer<Redemption> {
        self.post("/center/v1/redemptions", req)
    }

    /// Withdraws and finalizes one token for `card_id` (the terminal's steps 2 to 5).
    pub fn token(&self, account: &str, key: &DenominationKeyInfo, card_id: [u8; 32]) -> Token {
        let pending = Pending::new(key, card_id, key.amount);
        let answer = self
            .withdraw(&pending.request(account, CREDENTIAL))
            .unwrap();
        assert!(!answer.replayed);
        assert_eq!(answer.amount, key.amount);
        pending.finalize(&answer)
    }
}

/// A token message blinded and journaled, before the bank answers.
#[derive(Clone, Debug)]
pub struct Pending {
    pub message: TokenMessage,
    pub bytes: Vec<u8>,
    pub blinded: Blinded,
    pub key: DenominationPublicKey,
}

/// A finished token, as the terminal sends it to the center.
#[derive(Clone, Debug)]
pub struct Token {
    pub pending: Pending,
    pub blind_signature: Vec<u8>,
    pub redeem: RedeemRequest,
}

impl Pending {
    /// A message for `card_id` worth `amount` (normally the key's amount), blinded for `key`.
    pub fn new(key: &DenominationKeyInfo, card_id: [u8; 32], amount: u64) -> Pending {
        let message = TokenMessage::new(&mut rand::rng(), card_id, key.key_id, amount);
        Self::with_message(key, message)
    }

    pub fn with_message(key: &DenominationKeyInfo, message: TokenMessage) -> Pending {
        let public = key.key().unwrap();
        let bytes = message.encode();
        let blinded = public.blind(&mut rand::rng(), &bytes).unwrap();
        Pending {
            message,
            bytes,
            blinded,
            key: public,
        }
    }

    pub fn request(&self, account: &str, credential: &str) -> WithdrawRequest {
        WithdrawRequest {
            account: account.into(),
            credential: credential.into(),
            key_id: self.key.id(),
            blinded_message: self.blinded.blinded_message.clone(),
        }
    }

    pub fn finalize(self, answer: &WithdrawAnswer) -> Token {
        let signature = self
            .key
            .finalize(&answer.blind_signature, &self.blinded, &self.bytes)
            .unwrap();
        let redeem = RedeemRequest {
            message: self.bytes.clone(),
            randomizer: self.blinded.randomizer,
            signature,
        };
        Token {
            pending: self,
            blind_signature: answer.blind_signature.clone(),
            redeem,
        }
    }
}

// ---- units between center and card ----------------------------------------------------

pub fn jpy(amount: u64) -> UnitValue {
    UnitValue::Asset {
        code: "JPY".into(),
        amount,
    }
}

pub fn ticket(code: &str, serial: &[u8]) -> UnitValue {
    UnitValue::Ticket {
        code: code.into(),
        serial: serial.to_vec(),
    }
}

/// The card's load request for `value` under `counter` (E7), signed as LOAD REQUEST does.
pub fn load_order(card: &SigningKey, counter: u32, value: UnitValue) -> LoadOrder {
    let card_id = apdu_spec::card_id(&encode_public_key(card.verifying_key()));
    let request = UnitMessage {
        card_id,
        counter,
        value,
    }
    .encode_load();
    LoadOrder {
        signature: units::sign(card, domains::LOAD_REQUEST, &request).to_vec(),
        request,
    }
}

/// The card's cancellation of a load request, signed as LOAD CANCEL does.
pub fn cancellation(card: &SigningKey, request: &[u8]) -> LoadCancellation {
    LoadCancellation {
        request: request.to_vec(),
        signature: units::sign(card, domains::LOAD_CANCEL, request).to_vec(),
    }
}

/// The card's unload receipt of `amount` JPY under `counter` (E8), signed as UNLOAD does.
pub fn unload_order(card: &SigningKey, counter: u32, amount: u64) -> UnloadOrder {
    let card_id = apdu_spec::card_id(&encode_public_key(card.verifying_key()));
    let receipt = UnitMessage {
        card_id,
        counter,
        value: jpy(amount),
    }
    .encode_unload();
    UnloadOrder {
        signature: units::sign(card, domains::UNLOAD, &receipt).to_vec(),
        receipt,
    }
}

/// Runs `request`, checks its error code and HTTP status, and checks that neither
/// database changed.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    w: &World,
    code: ErrorCode,
    request: impl FnOnce() -> Answer<T>,
) {
    let before = w.dumps();
    request().expect_code(code);
    assert_eq!(
        w.dumps(),
        before,
        "a refused request ({code}) changed a database"
    );
}

// ---- fair exchange ----------------------------------------------------------------------

/// Five years, like the center's certificates.
pub const CARD_VALIDITY: u64 = 5 * 365 * 86_400;

/// A card in software: its key, and a certificate issued by `issuer` as the center does.
#[derive(Clone, Debug)]
pub struct SoftCard {
    pub key: SigningKey,
    pub id: [u8; 32],
    pub certificate: Vec<u8>,
}

impl SoftCard {
    /// A new card whose certificate is valid from START for five years.
    pub fn new(issuer: &SigningKey) -> SoftCard {
        Self::valid(issuer, START, START + CARD_VALIDITY)
    }

    pub fn valid(issuer: &SigningKey, not_before: u64, not_after: u64) -> SoftCard {
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let cert = Certificate::issue(issuer, key.verifying_key(), not_before, not_after);
        SoftCard {
            id: cert.card_id,
            certificate: cert.encode(),
            key,
        }
    }

    /// The card's signature over `a ‖ s2` under `domain`, as its exchange commands make it.
    pub fn sign(&self, domain: &str, a: &[u8; 32], s2: &[u8; 32]) -> Vec<u8> {
        exchange::sign(&self.key, domain, a, s2).to_vec()
    }
}

/// One exchange session between an initiator and a responder, with s2 and a made as the
/// cards make them: A gives 300 JPY, B gives nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub s2: [u8; 32],
    pub a: [u8; 32],
}

impl Session {
    pub fn new(initiator: &SoftCard, responder: &SoftCard) -> Session {
        let mut rng = rand::rng();
        let (s1, r2): ([u8; 32], [u8; 32]) = (rng.random(), rng.random());
        Session {
            s2: exchange::commitment(&r2),
            a: exchange::agreement(&s1, &Some(jpy(300)), &None, &initiator.id, &responder.id),
        }
    }
}

/// The responder's cancel request, as CANCEL answers it.
pub fn cancel_request(responder: &SoftCard, session: &Session) -> ArbiterCancelRequest {
    ArbiterCancelRequest {
        s2: session.s2,
        a: session.a,
        cancel_signature: responder.sign(exchange::domains::CANCEL, &session.a, &session.s2),
        responder_certificate: responder.certificate.clone(),
    }
}

/// The initiator's resolve request, as RESOLVE answers it.
pub fn resolve_request(
    initiator: &SoftCard,
    responder: &SoftCard,
    session: &Session,
) -> ArbiterResolveRequest {
    ArbiterResolveRequest {
        s2: session.s2,
        a: session.a,
        agreement_signature: responder.sign(exchange::domains::AGREE, &session.a, &session.s2),
        resolve_signature: initiator.sign(exchange::domains::RESOLVE, &session.a, &session.s2),
        initiator_certificate: initiator.certificate.clone(),
        responder_certificate: responder.certificate.clone(),
    }
}
