//! The bank's and the center's HTTP API, as typed calls (bodies from `valuecard_protocol::api`).
//!
//! Every route carries its role's prefix (`/bank/...`, `/center/...`) whether the roles run
//! in one process or apart, so a base URL is just scheme, host and port, and the bank and the
//! center may share one. An answer outside 2xx is the API's `ErrorBody`, kept as
//! [`BackendError::Api`] with its stable code; anything that kept the request from getting an
//! answer is [`BackendError::Network`]: the request may or may not have been processed.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::Agent;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    self, AccountBalance, AccountBalanceRequest, AccountOpened, CardBalance, CardBalanceRequest,
    CenterInfo, Challenge, ChallengePurpose, ChallengeRequest, DepositAnswer, DepositRequest,
    ErrorBody, KeysImported, OpenAccountRequest, RedeemRequest, Redemption, RegisterRequest,
    Registration, WithdrawAnswer, WithdrawRequest,
};
use valuecard_protocol::api::{
    ArbiterCancelRequest, ArbiterInfo, ArbiterResolveRequest, BlockAnswer, BlockList,
    BlockListStatus, BlockRequest, FloatReport, Verdict, VerdictAnswer,
};
use valuecard_protocol::api::{
    CancelAcknowledgement, CardLedger, IssuedTicket, LedgerRequest, LoadAuthorisation,
    LoadCancellation, LoadOrder, TicketIssueRequest, UnloadAcknowledgement, UnloadOrder,
};
use valuecard_protocol::keylist::SignedKeyList;

use crate::fault::{self, Point};

/// Where the backend listens when nothing else is said.
pub const DEFAULT_BACKEND: &str = "http://127.0.0.1:8640";

/// How long an ordinary request may take, end to end.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The bank makes missing denomination keys on demand, one RSA key generation each.
const KEYS_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No answer of this API comes near this; a larger one is not ours.
const MAX_ANSWER: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Bank,
    Center,
    Arbiter,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Bank => "bank",
            Role::Center => "center",
            Role::Arbiter => "arbiter",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The server answered with an error: nothing changed there (the API's promise).
    #[error("the {role} refused: {message} ({code})")]
    Api {
        role: Role,
        url: String,
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// No answer: the request may or may not have been carried out.
    #[error("cannot reach the {role} at {url}: {detail}")]
    Network {
        role: Role,
        url: String,
        detail: String,
    },
    /// An answer, but not one this API gives (another server on that port, a proxy...).
    #[error("the {role} at {url} answered HTTP {status}, which is not the valuecard API: {detail}")]
    BadAnswer {
        role: Role,
        url: String,
        status: u16,
        detail: String,
    },
}

impl BackendError {
    /// The API error code, when the server answered one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            BackendError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            BackendError::Api { role, .. }
            | BackendError::Network { role, .. }
            | BackendError::BadAnswer { role, .. } => *role,
        }
    }

    /// True when the server certainly did not carry the request out: it answered an API
    /// error, which leaves its state as it was. A network error or a foreign answer leaves
    /// the outcome unknown.
    pub fn is_refusal(&self) -> bool {
        matches!(self, BackendError::Api { .. })
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// One role's server: its base URL and a connection pool.
#[derive(Clone)]
struct Server {
    role: Role,
    base: String,
    agent: Agent,
}

fn agent() -> Agent {
    Agent::config_builder()
        // Error answers carry an ErrorBody worth reading.
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .user_agent(concat!("valuecard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A base URL as given, without trailing slashes.
pub fn normalise_base(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl Server {
    fn new(role: Role, base: &str) -> Self {
        Server {
            role,
            base: normalise_base(base),
            agent: agent(),
        }
    }

    fn url(&self, path: &str) -> String {
        let prefix = match self.role {
            Role::Bank => api::BANK_PREFIX,
            Role::Center => api::CENTER_PREFIX,
            Role::Arbiter => api::ARBITER_PREFIX,
        };
        format!("{}{prefix}{path}", self.base)
    }

    fn network(&self, url: &str, detail: impl fmt::Display) -> BackendError {
        BackendError::Network {
            role: self.role,
            url: url.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The crash tests' `fail-bank` / `fail-center`: the request fails before it leaves.
    fn injected_failure(&self, url: &str) -> Result<()> {
        let point = match self.role {
            Role::Bank => Point::FailBank,
            Role::Center => Point::FailCenter,
            Role::Arbiter => Point::FailArbiter,
        };
        if fault::fail_request(point) {
            return Err(self.network(url, format!("injected fault {}", point.name())));
        }
        Ok(())
    }

    fn get<A: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<A> {
        self.get_as(path, query, timeout, None)
    }

    /// A GET of an admin route.
    fn get_with_admin<A: DeserializeOwned>(&self, path: &str, admin_token: &str) -> Result<A> {
        self.get_as(path, &[], TIMEOUT, Some(admin_token))
    }

    fn get_as<A: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
        bearer: Option<&str>,
    ) -> Result<A> {
        let url = self.url(path);
        self.injected_failure(&url)?;
        let mut request = self.agent.get(&url);
        for (name, value) in query {
            request = request.query(*name, value);
        }
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let started = Instant::now();
        let answer = request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call();
        self.answer("GET", &url, started, answer)
    }

    fn post<B: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        bearer: Option<&str>,
    ) -> Result<A> {
        let url = self.url(path);
        self.injected_failure(&url)?;
        let mut request = self.agent.post(&url);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let started = Instant::now();
        let answer = request.send_json(body);
        self.answer("POST", &url, started, answer)
    }

    /// The answer to a request, logged at DEBUG: method, URL, status and time. Never the
    /// bodies nor the headers, which carry credentials and the admin token.
    fn answer<A: DeserializeOwned>(
        &self,
        method: &'static str,
        url: &str,
        started: Instant,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<A> {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let role = self.role.to_string();
        let mut response = match answer {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(%role, method, url, error = %e, elapsed_ms, "HTTP request failed");
                return Err(self.network(url, e));
            }
        };
        let status = response.status().as_u16();
        tracing::debug!(%role, method, url, status, elapsed_ms, "HTTP");
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| self.network(url, format!("the answer broke off: {e}")))?;
        let bad_answer = |detail: String| BackendError::BadAnswer {
            role: self.role,
            url: url.to_string(),
            status,
            detail,
        };
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| bad_answer(e.to_string()));
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(BackendError::Api {
                role: self.role,
                url: url.to_string(),
                status,
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(bad_answer(excerpt(&text))),
        }
    }
}

/// The start of a foreign answer, enough to recognise it.
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "an empty body".into();
    }
    let mut cut: String = one_line.chars().take(120).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    format!("\"{cut}\"")
}

/// The arbiter's routes.
#[derive(Clone)]
pub struct ArbiterClient {
    server: Server,
}

impl ArbiterClient {
    pub fn new(base: &str) -> Self {
        ArbiterClient {
            server: Server::new(Role::Arbiter, base),
        }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    pub fn info(&self) -> Result<ArbiterInfo> {
        self.server.get("/v1/info", &[], TIMEOUT)
    }

    /// The responder's cancel request: the recorded verdict, or CANCEL.
    pub fn cancel(&self, request: &ArbiterCancelRequest) -> Result<Verdict> {
        self.server.post("/v1/cancellations", request, None)
    }

    /// The initiator's resolve request: the recorded verdict, or COMPLETE.
    pub fn resolve(&self, request: &ArbiterResolveRequest) -> Result<Verdict> {
        self.server.post("/v1/resolutions", request, None)
    }

    /// The verdict recorded for the session (a, s2), if any.
    pub fn verdict(&self, a: &[u8; 32], s2: &[u8; 32]) -> Result<Option<Verdict>> {
        let path = format!("/v1/verdicts/{}/{}", hex::encode(a), hex::encode(s2));
        let answer: VerdictAnswer = self.server.get(&path, &[], TIMEOUT)?;
        Ok(answer.verdict)
    }

    /// `POST /arbiter/v1/block-list`: relays the issuer's signed block list (anyone may).
    pub fn relay_block_list(&self, list: &BlockList) -> Result<BlockListStatus> {
        self.server.post("/v1/block-list", list, None)
    }
}

/// The bank's routes.
#[derive(Clone)]
pub struct BankClient {
    server: Server,
}

impl BankClient {
    pub fn new(base: &str) -> Self {
        BankClient {
            server: Server::new(Role::Bank, base),
        }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// `POST /bank/v1/accounts` (admin).
    pub fn open_account(&self, admin_token: &str, credential: &str) -> Result<AccountOpened> {
        let body = OpenAccountRequest {
            credential: credential.to_string(),
        };
        self.server.post("/v1/accounts", &body, Some(admin_token))
    }

    /// `POST /bank/v1/deposits` (admin).
    pub fn deposit(&self, admin_token: &str, request: &DepositRequest) -> Result<DepositAnswer> {
        self.server.post("/v1/deposits", request, Some(admin_token))
    }

    /// `POST /bank/v1/balance`.
    pub fn balance(&self, account: &str, credential: &str) -> Result<AccountBalance> {
        let body = AccountBalanceRequest {
            account: account.to_string(),
            credential: credential.to_string(),
        };
        self.server.post("/v1/balance", &body, None)
    }

    /// `GET /bank/v1/keys`, with the current keys for `amounts` (the bank makes missing ones,
    /// which takes a while). Not verified: see `SignedKeyList::verify`.
    pub fn keys(&self, amounts: &[u64]) -> Result<SignedKeyList> {
        let mut query = Vec::new();
        if !amounts.is_empty() {
            let list: Vec<String> = amounts.iter().map(u64::to_string).collect();
            query.push(("amounts", list.join(",")));
        }
        self.server.get("/v1/keys", &query, KEYS_TIMEOUT)
    }

    /// `POST /bank/v1/withdrawals`: idempotent on the blinded message.
    pub fn withdraw(&self, request: &WithdrawRequest) -> Result<WithdrawAnswer> {
        self.server.post("/v1/withdrawals", request, None)
    }
}

/// The center's routes.
#[derive(Clone)]
pub struct CenterClient {
    server: Server,
}

impl CenterClient {
    pub fn new(base: &str) -> Self {
        CenterClient {
            server: Server::new(Role::Center, base),
        }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// `GET /center/v1/info`.
    pub fn info(&self) -> Result<CenterInfo> {
        self.server.get("/v1/info", &[], TIMEOUT)
    }

    /// `POST /center/v1/challenges`.
    pub fn challenge(&self, purpose: ChallengePurpose) -> Result<Challenge> {
        self.server
            .post("/v1/challenges", &ChallengeRequest { purpose }, None)
    }

    /// `POST /center/v1/cards`.
    pub fn register(&self, request: &RegisterRequest) -> Result<Registration> {
        self.server.post("/v1/cards", request, None)
    }

    /// `POST /center/v1/bank-keys`.
    pub fn import_bank_keys(&self, list: &SignedKeyList) -> Result<KeysImported> {
        self.server.post("/v1/bank-keys", list, None)
    }

    /// `POST /center/v1/redemptions`: idempotent on the token nonce.
    pub fn redeem(&self, request: &RedeemRequest) -> Result<Redemption> {
        self.server.post("/v1/redemptions", request, None)
    }

    /// `POST /center/v1/balance`.
    pub fn balance(&self, request: &CardBalanceRequest) -> Result<CardBalance> {
        self.server.post("/v1/balance", request, None)
    }

    pub fn load(&self, order: &LoadOrder) -> Result<LoadAuthorisation> {
        self.server.post("/v1/loads", order, None)
    }

    pub fn cancel_load(&self, cancellation: &LoadCancellation) -> Result<CancelAcknowledgement> {
        self.server
            .post("/v1/load-cancellations", cancellation, None)
    }

    pub fn unload(&self, order: &UnloadOrder) -> Result<UnloadAcknowledgement> {
        self.server.post("/v1/unloads", order, None)
    }

    /// Issues a ticket to a card (center staff: needs the admin token).
    pub fn issue_ticket(
        &self,
        admin_token: &str,
        request: &TicketIssueRequest,
    ) -> Result<IssuedTicket> {
        self.server.post("/v1/tickets", request, Some(admin_token))
    }

    /// A card's ledger: with the card's proof, or with the admin token.
    pub fn ledger(&self, request: &LedgerRequest, admin_token: Option<&str>) -> Result<CardLedger> {
        self.server.post("/v1/ledger", request, admin_token)
    }

    /// Blocks a card or a card maker (center staff: needs the admin token).
    pub fn block(&self, admin_token: &str, request: &BlockRequest) -> Result<BlockAnswer> {
        self.server.post("/v1/blocks", request, Some(admin_token))
    }

    /// `GET /center/v1/block-list`: the issuer's signed block list, as it is now.
    pub fn block_list(&self) -> Result<BlockList> {
        self.server.get("/v1/block-list", &[], TIMEOUT)
    }

    /// `GET /center/v1/block-list?version=N`: an earlier version of the list, as signed then.
    pub fn block_list_at(&self, version: u32) -> Result<BlockList> {
        self.server.get(
            "/v1/block-list",
            &[("version", version.to_string())],
            TIMEOUT,
        )
    }

    /// `GET /center/v1/float` (admin): what cards hold per asset, and the alarms.
    pub fn float(&self, admin_token: &str) -> Result<FloatReport> {
        self.server.get_with_admin("/v1/float", admin_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_role_prefix() {
        let bank = BankClient::new("http://127.0.0.1:8640/ ");
        assert_eq!(bank.base(), "http://127.0.0.1:8640");
        assert_eq!(
            bank.server.url("/v1/keys"),
            "http://127.0.0.1:8640/bank/v1/keys"
        );
        let center = CenterClient::new("https://example.invalid");
        assert_eq!(
            center.server.url("/v1/info"),
            "https://example.invalid/center/v1/info"
        );
    }

    /// A one-shot HTTP server on loopback that answers `status` and `body` to one request.
    fn serve_once(status: u16, body: &'static str) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", server.server_addr().to_ip().expect("address"));
        std::thread::spawn(move || {
            let request = server.recv().expect("a request");
            let content_type = tiny_http::Header::from_bytes("content-type", "application/json")
                .expect("a header");
            let answer = tiny_http::Response::from_string(body)
                .with_status_code(status)
                .with_header(content_type);
            request.respond(answer).expect("answered");
        });
        base
    }

    #[test]
    fn error_bodies_keep_their_code_and_message() {
        let base = serve_once(
            422,
            r#"{"error":{"code":"insufficient_funds","message":"the balance is 100"}}"#,
        );
        let error = BankClient::new(&base)
            .balance("1001", "secret")
            .expect_err("an error answer");
        assert!(error.is_refusal());
        assert_eq!(error.code(), Some(ErrorCode::InsufficientFunds));
        match error {
            BackendError::Api {
                status, message, ..
            } => {
                assert_eq!(status, 422);
                assert_eq!(message, "the balance is 100");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn a_foreign_error_page_is_a_bad_answer() {
        let base = serve_once(502, "<html>bad gateway</html>");
        let error = CenterClient::new(&base)
            .info()
            .expect_err("an error answer");
        assert!(matches!(error, BackendError::BadAnswer { status: 502, .. }));
        assert!(!error.is_refusal());
    }

    #[test]
    fn answers_are_parsed() {
        let base = serve_once(200, r#"{"account":"1001","balance":700,"currency":"JPY"}"#);
        let balance = BankClient::new(&base)
            .balance("1001", "secret")
            .expect("an answer");
        assert_eq!(balance.balance, 700);
    }

    #[test]
    fn nothing_listening_is_a_network_error() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let center = CenterClient::new(&format!("http://127.0.0.1:{port}"));
        match center.info() {
            Err(e @ BackendError::Network { .. }) => {
                assert!(!e.is_refusal());
                assert_eq!(e.role(), Role::Center);
            }
            other => panic!("expected a network error, got {other:?}"),
        }
    }

    #[test]
    fn foreign_answers_are_cut_short() {
        assert_eq!(excerpt("  "), "an empty body");
        assert_eq!(excerpt("<h1>502\n Bad</h1>"), "\"<h1>502 Bad</h1>\"");
        assert!(excerpt(&"x".repeat(500)).ends_with("…\""));
    }
}
