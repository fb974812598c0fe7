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
use apdu_spec::maker::{Attestation, MakerCertificate, maker_id};
use apdu_spec::units::{self, UnitMessage, domains};
use valuecard_backend::arbiter::{Arbiter, ArbiterConfig};
use valuecard_backend::bank::{Bank, BankConfig};
use valuecard_backend::center::{Center, CenterConfig};
use valuecard_backend::clock::ManualClock;
use valuecard_backend::db::Dump;
use valuecard_backend::http::{self, Roles, ServerHandle};
use valuecard_backend::keys;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;
use valuecard_protocol::keylist::{DenominationKeyInfo, KeyList, SignedKeyList};
use valuecard_protocol::scheme::{Scheme, SchemeKeys};
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

/// The scheme's keys, as `keys init` makes them: the root, the issuer, the arbiter and the
/// bank, and the checked scheme.
#[derive(Clone, Debug)]
pub struct TestScheme {
    pub root: SigningKey,
    pub issuer: SigningKey,
    pub arbiter: SigningKey,
    pub bank: SigningKey,
    pub scheme: Scheme,
    pub keys: SchemeKeys,
}

impl TestScheme {
    pub fn new() -> TestScheme {
        let made = keys::SchemeSecrets::generate();
        TestScheme {
            keys: made.scheme.keys().unwrap(),
            root: made.root,
            issuer: made.issuer,
            arbiter: made.arbiter,
            bank: made.bank,
            scheme: made.scheme,
        }
    }
}

/// A chip as a card maker makes it: an attestation key and the maker's certificate over it.
/// It attests card keys as ATTEST does (it attests any key it is handed: a software stand-in
/// for a card whose attestation key was extracted, or for a genuine card attesting its own).
#[derive(Clone, Debug)]
pub struct Chip {
    pub attestation_key: SigningKey,
    pub certificate: MakerCertificate,
}

impl Chip {
    pub fn made_by(maker: &SigningKey) -> Chip {
        let attestation_key = SigningKey::generate_from_rng(&mut rand::rng());
        Chip {
            certificate: MakerCertificate::issue(maker, attestation_key.verifying_key()),
            attestation_key,
        }
    }

    /// ATTEST's answer for `card` over `challenge`.
    pub fn attest(&self, card: &SigningKey, challenge: &[u8]) -> Vec<u8> {
        Attestation::sign(
            &self.attestation_key,
            self.certificate.clone(),
            &encode_public_key(card.verifying_key()),
            challenge,
        )
        .encode()
    }
}

pub struct World {
    pub clock: Arc<ManualClock>,
    pub scheme: TestScheme,
    /// The test maker the center trusts.
    pub maker: SigningKey,
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
    /// A bank, a center and an arbiter of one scheme, in memory, and the bank's keys for
    /// `amounts` imported into the center. The center trusts one test maker.
    pub fn new(amounts: &[u64]) -> World {
        Self::open(None, amounts)
    }

    /// The same, with the databases in `dir` (bank.sqlite, center.sqlite, arbiter.sqlite).
    pub fn in_dir(dir: &std::path::Path, amounts: &[u64]) -> World {
        Self::open(Some(dir), amounts)
    }

    fn open(dir: Option<&std::path::Path>, amounts: &[u64]) -> World {
        let path = |name: &str| match dir {
            None => ":memory:".to_owned(),
            Some(d) => d.join(name).to_str().unwrap().to_owned(),
        };
        let clock = Arc::new(ManualClock::new(START));
        let scheme = TestScheme::new();
        let maker = SigningKey::generate_from_rng(&mut rand::rng());
        let bank = Arc::new(
            Bank::open(
                &path("bank.sqlite"),
                clock.clone(),
                BankConfig::default(),
                scheme.bank.clone(),
                ADMIN,
            )
            .unwrap(),
        );
        let center = Arc::new(
            Center::open(
                &path("center.sqlite"),
                clock.clone(),
                CenterConfig {
                    currency: "JPY".into(),
                    scheme: scheme.keys.clone(),
                    trusted_makers: vec![*maker.verifying_key()],
                },
                scheme.issuer.clone(),
                ADMIN,
            )
            .unwrap(),
        );
        let arbiter = Arc::new(
            Arbiter::open(
                &path("arbiter.sqlite"),
                clock.clone(),
                ArbiterConfig {
                    issuer_public_key: *scheme.issuer.verifying_key(),
                },
                scheme.arbiter.clone(),
            )
            .unwrap(),
        );
        // As `all` does: the arbiter learns every block at once.
        let to_arbiter = arbiter.clone();
        center.forward_blocks_to(move |list| {
            to_arbiter.take_block_list(list).unwrap();
        });
        let app = http::router(Roles {
            bank: Some(bank.clone()),
            center: Some(center.clone()),
            arbiter: Some(arbiter.clone()),
        });
        let server = ServerHandle::start("127.0.0.1:0", app).unwrap();
        let mut world = World {
            clock,
            scheme,
            maker,
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

    /// A chip made by the test maker the center trusts.
    pub fn chip(&self) -> Chip {
        Chip::made_by(&self.maker)
    }

    /// The registration of `card` on `chip`, over a fresh register challenge, as the
    /// terminal sends it: INTERNAL AUTHENTICATE and ATTEST over the same challenge.
    pub fn register_with(&self, card: &SigningKey, chip: &Chip) -> RegisterRequest {
        let challenge = self.challenge(ChallengePurpose::Register);
        RegisterRequest {
            public_key: encode_public_key(card.verifying_key()),
            proof: CardProof {
                challenge,
                signature: apdu_spec::auth::sign(card, &challenge).to_vec(),
            },
            attestation: chip.attest(card, &challenge),
        }
    }

    /// The registration of `card` on a new chip of the trusted maker.
    pub fn register_request(&self, card: &SigningKey) -> RegisterRequest {
        self.register_with(card, &self.chip())
    }

    pub fn register(&self, req: &RegisterRequest) -> Answer<Registration> {
        self.post("/center/v1/cards", req)
    }

    /// A new card, registered: its key and its id.
    pub fn new_card(&self) -> (SigningKey, [u8; 32]) {
        let (card, registration) = self.new_registered_card();
        (card, registration.card_id)
    }

    /// A new card, registered: its key and its registration.
    pub fn new_registered_card(&self) -> (SigningKey, Registration) {
        let card = SigningKey::generate_from_rng(&mut rand::rng());
        let registration: Registration = self.register(&self.register_request(&card)).unwrap();
        assert!(!registration.replayed);
        (card, registration)
    }

    /// A registered card as the exchange sees it: its key, id and certificate.
    pub fn soft_card(&self) -> SoftCard {
        let (key, registration) = self.new_registered_card();
        SoftCard {
            key,
            id: registration.card_id,
            certificate: registration.certificate,
        }
    }

    /// Blocks `entry` (admin).
    pub fn block(&self, entry: BlockEntry) -> BlockAnswer {
        self.post_admin(
            "/center/v1/blocks",
            ADMIN,
            &BlockRequest {
                entry,
                reason: "test".into(),
            },
        )
        .unwrap()
    }

    /// The float report (admin).
    pub fn float(&self) -> FloatReport {
        answer(
            self.agent
                .get(self.url("/center/v1/float"))
                .header("Authorization", format!("Bearer {ADMIN}"))
                .call(),
        )
        .unwrap()
    }

    /// Every database's dump: bank, center, arbiter.
    pub fn all_dumps(&self) -> (Dump, Dump, Dump) {
        (
            self.bank.database().dump().unwrap(),
            self.center.database().dump().unwrap(),
            self.arbiter.database().dump().unwrap(),
        )
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

/// The tables whose rows differ between two dumps of the three databases.
pub fn changed_tables(before: &(Dump, Dump, Dump), after: &(Dump, Dump, Dump)) -> Vec<String> {
    let mut changed = Vec::new();
    for (role, b, a) in [
        ("bank", &before.0, &after.0),
        ("center", &before.1, &after.1),
        ("arbiter", &before.2, &after.2),
    ] {
        let mut tables: Vec<&String> = b.keys().chain(a.keys()).collect();
        tables.sort();
        tables.dedup();
        for t in tables {
            if b.get(t) != a.get(t) {
                changed.push(format!("{role}.{t}"));
            }
        }
    }
    changed
}

/// Runs `request`, checks its error code and HTTP status, and checks that no database
/// changed.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    w: &World,
    code: ErrorCode,
    request: impl FnOnce() -> Answer<T>,
) {
    let before = w.all_dumps();
    request().expect_code(code);
    let after = w.all_dumps();
    let changed = changed_tables(&before, &after);
    assert!(
        changed.is_empty(),
        "a refused request ({code}) changed {changed:?}"
    );
}

// ---- fair exchange ----------------------------------------------------------------------

/// Five years, like the center's certificates.
pub const CARD_VALIDITY: u64 = 5 * 365 * 86_400;

/// The maker id the certificates of [`SoftCard`] name: a test maker's.
pub fn test_maker_id() -> [u8; 32] {
    maker_id(SigningKey::from_slice(&[0x55; 32]).unwrap().verifying_key())
}

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

    /// A new card of the maker `maker`.
    pub fn made_by(issuer: &SigningKey, maker: [u8; 32]) -> SoftCard {
        Self::issued(issuer, maker, START, START + CARD_VALIDITY)
    }

    pub fn valid(issuer: &SigningKey, not_before: u64, not_after: u64) -> SoftCard {
        Self::issued(issuer, test_maker_id(), not_before, not_after)
    }

    fn issued(issuer: &SigningKey, maker: [u8; 32], not_before: u64, not_after: u64) -> SoftCard {
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let cert = Certificate::issue(issuer, key.verifying_key(), maker, not_before, not_after);
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

/// One exchange session between an initiator and a responder, with c, a and s2 made as the
/// cards make them: A gives 300 JPY, B gives nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub s2: [u8; 32],
    pub a: [u8; 32],
    /// The value commitment c = SHA-256(s1 ‖ V1 ‖ V2).
    pub c: [u8; 32],
}

impl Session {
    pub fn new(initiator: &SoftCard, responder: &SoftCard) -> Session {
        let mut rng = rand::rng();
        let (s1, r2): ([u8; 32], [u8; 32]) = (rng.random(), rng.random());
        let c = exchange::values_commitment(&s1, &Some(jpy(300)), &None);
        Session {
            s2: exchange::commitment(&r2),
            a: exchange::agreement_of(&c, &initiator.id, &responder.id),
            c,
        }
    }

    /// The session that `initiator` and `responder` would have with this one's c and s2: a
    /// made-up agreement that names them.
    pub fn naming(&self, initiator: &SoftCard, responder: &SoftCard) -> Session {
        Session {
            a: exchange::agreement_of(&self.c, &initiator.id, &responder.id),
            ..*self
        }
    }
}

/// The responder's cancel request, as CANCEL answers it.
pub fn cancel_request(
    initiator: &SoftCard,
    responder: &SoftCard,
    session: &Session,
) -> ArbiterCancelRequest {
    ArbiterCancelRequest {
        s2: session.s2,
        a: session.a,
        commitment: session.c,
        cancel_signature: responder.sign(exchange::domains::CANCEL, &session.a, &session.s2),
        initiator_certificate: initiator.certificate.clone(),
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
        commitment: session.c,
        agreement_signature: responder.sign(exchange::domains::AGREE, &session.a, &session.s2),
        resolve_signature: initiator.sign(exchange::domains::RESOLVE, &session.a, &session.s2),
        initiator_certificate: initiator.certificate.clone(),
        responder_certificate: responder.certificate.clone(),
    }
}
