//! HTTP: the axum routers of the roles, their OpenAPI documents, and the rules every
//! answer follows.
//!
//! - Every route of a role lives under its prefix (`/bank`, `/center`, `/arbiter`), whether
//!   the role runs alone or with the others; `GET /healthz` is outside them.
//! - The router and the OpenAPI document come from one table: each role's routes are
//!   registered with `utoipa_axum::routes!`, which adds a handler to the router and its
//!   `#[utoipa::path]` to the document at once (a test checks both directions).
//! - Every error is an `ErrorBody` with its code's HTTP status: refused requests, malformed
//!   JSON, a body over [`MAX_BODY`], unknown routes and methods alike.
//! - The roles' cores are synchronous (SQLite, RSA, Argon2): handlers run them on tokio's
//!   blocking threads.
//! - One log line per request: method, path, status, error code, latency. Bodies and headers
//!   are never logged (they carry credentials and the admin token).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    ARBITER_PREFIX, AccountBalance, AccountBalanceRequest, AccountOpened, ArbiterCancelRequest,
    ArbiterInfo, ArbiterResolveRequest, BANK_PREFIX, BlockAnswer, BlockList, BlockListStatus,
    BlockRequest, CENTER_PREFIX, CancelAcknowledgement, CardBalance, CardBalanceRequest,
    CardLedger, CenterInfo, Challenge, ChallengeRequest, DepositAnswer, DepositRequest, ErrorBody,
    FloatReport, IssuedTicket, KeysImported, LedgerRequest, LoadAuthorisation, LoadCancellation,
    LoadOrder, OpenAccountRequest, RedeemRequest, Redemption, RegisterRequest, Registration,
    TicketIssueRequest, UnloadAcknowledgement, UnloadOrder, Verdict, VerdictAnswer, WithdrawAnswer,
    WithdrawRequest,
};
use valuecard_protocol::keylist::SignedKeyList;

use crate::arbiter::Arbiter;
use crate::bank::Bank;
use crate::center::Center;
use crate::error::{ApiError, ApiResult};

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// How the issuer's signed block list (`apdu_spec::blocklist::BlockList`, which knows
/// nothing of OpenAPI) travels as JSON: for the documents only.
#[derive(utoipa::ToSchema)]
#[schema(as = BlockList)]
#[allow(dead_code)]
struct BlockListSchema {
    /// The number of blocks staff have made: version n is the list after the n-th block.
    version: u32,
    /// The newest 64 blocks at most, oldest first.
    entries: Vec<BlockEntrySchema>,
    /// The issuer's signature (valuecard/block-list/v1) over the F1 encoding of the
    /// version and the entries, r || s, hex.
    signature: String,
}

/// A blocked card (`{"kind": "card", "id": "<64 hex>"}`) or card maker (`{"kind": "maker",
/// ...}`).
#[derive(utoipa::ToSchema)]
#[schema(as = BlockEntry)]
#[allow(dead_code)]
struct BlockEntrySchema {
    /// `card` or `maker`.
    kind: String,
    /// The card id or maker id, 32 bytes, hex.
    id: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        // For the request log line.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// `Json` whose rejections are `ErrorBody`s: BodyTooLarge (413) or MalformedRequest.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the body is larger than {MAX_BODY} bytes"),
                ))
            }
            Err(rejection) => Err(ApiError::new(
                ErrorCode::MalformedRequest,
                rejection.body_text(),
            )),
        }
    }
}

/// Runs a role's synchronous core on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request worker failed: {e}")))?
}

/// The token of `Authorization: Bearer <token>`, if the header has that form.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

// ---- bank ----------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "valuecard bank",
        description = "Accounts, the signed list of denomination keys, and withdrawals that debit \
                       an account and blind-sign one token (RFC 9474, RSABSSA-SHA384-PSS-Randomized). \
                       Every error is an ErrorBody with a stable code. Money-moving requests are \
                       idempotent on their natural key: a deposit's reference, a withdrawal's \
                       blinded message.",
        version = "1"
    ),
    components(schemas(ErrorBody)),
    modifiers(&AdminSecurity),
    tags((name = "bank"))
)]
struct BankDoc;

struct AdminSecurity;

impl utoipa::Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Opens an account with a zero balance.
#[utoipa::path(post, path = "/v1/accounts", tag = "bank", request_body = OpenAccountRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = AccountOpened),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field"),
        (status = 401, body = ErrorBody, description = "admin_unauthorized"),
    ))]
async fn open_account(
    State(bank): State<Arc<Bank>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenAccountRequest>,
) -> ApiResult<Json<AccountOpened>> {
    let admin = bearer(&headers);
    blocking(move || bank.open_account(admin.as_deref(), &req))
        .await
        .map(Json)
}

/// Credits cash paid in. A retry with the same reference returns the first answer.
#[utoipa::path(post, path = "/v1/deposits", tag = "bank", request_body = DepositRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = DepositAnswer),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field"),
        (status = 401, body = ErrorBody, description = "admin_unauthorized"),
        (status = 404, body = ErrorBody, description = "unknown_account"),
        (status = 409, body = ErrorBody, description = "conflict: the reference was used for another deposit"),
    ))]
async fn deposit(
    State(bank): State<Arc<Bank>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<DepositRequest>,
) -> ApiResult<Json<DepositAnswer>> {
    let admin = bearer(&headers);
    blocking(move || bank.deposit(admin.as_deref(), &req))
        .await
        .map(Json)
}

/// The account holder reads the balance.
#[utoipa::path(post, path = "/v1/balance", tag = "bank", request_body = AccountBalanceRequest,
    responses(
        (status = 200, body = AccountBalance),
        (status = 401, body = ErrorBody, description = "bad_credential"),
        (status = 404, body = ErrorBody, description = "unknown_account"),
    ))]
async fn account_balance(
    State(bank): State<Arc<Bank>>,
    ApiJson(req): ApiJson<AccountBalanceRequest>,
) -> ApiResult<Json<AccountBalance>> {
    blocking(move || bank.balance(&req)).await.map(Json)
}

/// The bank's signed list of the denomination keys whose tokens can still be redeemed.
///
/// With `amounts`, the bank first makes the current epoch's key for each of them if it does
/// not exist yet (this can take a second per key). Without it, no key is made.
#[utoipa::path(get, path = "/v1/keys", tag = "bank",
    params(("amounts" = Option<String>, Query, description = "Comma-separated amounts, e.g. `256,32`")),
    responses(
        (status = 200, body = SignedKeyList),
        (status = 400, body = ErrorBody, description = "invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_key: not one of the bank's denominations"),
    ))]
async fn keys(
    State(bank): State<Arc<Bank>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<SignedKeyList>> {
    let amounts = parse_amounts(query.as_deref())?;
    blocking(move || bank.key_list(&amounts)).await.map(Json)
}

fn parse_amounts(query: Option<&str>) -> ApiResult<Vec<u64>> {
    let mut amounts = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "amounts" {
            continue;
        }
        for part in value
            .split([','])
            .flat_map(|p| p.split("%2C"))
            .filter(|p| !p.is_empty())
        {
            let amount = part.parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    format!("amounts: {part:?} is not an amount"),
                )
            })?;
            amounts.push(amount);
        }
    }
    if amounts.len() > 64 {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "amounts: at most 64",
        ));
    }
    Ok(amounts)
}

/// Debits the account by the key's amount and blind-signs the blinded message. A retry
/// with the same blinded message returns the same blind signature and debits nothing more.
#[utoipa::path(post, path = "/v1/withdrawals", tag = "bank", request_body = WithdrawRequest,
    responses(
        (status = 200, body = WithdrawAnswer),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field"),
        (status = 401, body = ErrorBody, description = "bad_credential"),
        (status = 404, body = ErrorBody, description = "unknown_account, unknown_key"),
        (status = 409, body = ErrorBody, description = "conflict: the blinded message was signed for another account or key"),
        (status = 422, body = ErrorBody, description = "insufficient_funds, key_expired"),
    ))]
async fn withdraw(
    State(bank): State<Arc<Bank>>,
    ApiJson(req): ApiJson<WithdrawRequest>,
) -> ApiResult<Json<WithdrawAnswer>> {
    blocking(move || bank.withdraw(&req)).await.map(Json)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "bank",
    responses((status = 200, description = "The bank's OpenAPI document", content_type = "application/json")))]
async fn bank_openapi_json() -> Json<serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    served_document(&DOC, bank_openapi)
}

fn bank_routes() -> OpenApiRouter<Arc<Bank>> {
    OpenApiRouter::with_openapi(BankDoc::openapi()).nest(
        BANK_PREFIX,
        OpenApiRouter::new()
            .routes(routes!(open_account))
            .routes(routes!(deposit))
            .routes(routes!(account_balance))
            .routes(routes!(keys))
            .routes(routes!(withdraw))
            .routes(routes!(bank_openapi_json)),
    )
}

/// The bank's OpenAPI document, as served at `/bank/openapi.json`.
pub fn bank_openapi() -> utoipa::openapi::OpenApi {
    with_health(bank_routes())
}

// ---- center --------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "valuecard center",
        description = "Card registration (a unit account per card public key, for cards whose \
                       key a trusted card maker vouches for), the bank's keys, token redemption, \
                       and units between the center and a card: loads, load cancellations, \
                       unloads and tickets (PROTOCOLS.md, \"Units between center and card\"); \
                       the issuer's block list and the float (invariant 5). The card's signed \
                       messages (E9 attestations, E7 load requests, E8 unload receipts) travel \
                       as hex, exactly as the card answered them (apdu-spec `maker`, `units`), \
                       and the center answers the issuer's signatures over the same bytes. A \
                       blocked card (by its id or its maker's) gets no registration, load, \
                       unload, ticket, balance or ledger by card proof; its load cancellations \
                       still go through. An unload that would take the float (loads − refunds \
                       − unloads, what all cards hold) below zero is refused and raises an \
                       alarm. No total passes 2^63 − 1. Every error is an ErrorBody with a \
                       stable code, and a refused request changes nothing (but a \
                       float_exceeded unload records its alarm). Money-moving requests are \
                       idempotent on their natural key: a token's nonce, a load's, \
                       cancellation's or unload's (card id, counter), a ticket's (asset, \
                       serial), a block's (kind, id); a retry returns the first answer with \
                       `replayed` set. All times the center keeps are days.",
        version = "1"
    ),
    components(schemas(ErrorBody)),
    modifiers(&AdminSecurity),
    tags((name = "center"))
)]
struct CenterDoc;

/// The keys a card is personalised with (the root's anchors over the issuer and the arbiter
/// keys), the scheme root, the bank the center trusts, and the card makers whose cards it
/// registers.
#[utoipa::path(get, path = "/v1/info", tag = "center", responses((status = 200, body = CenterInfo)))]
async fn info(State(center): State<Arc<Center>>) -> Json<CenterInfo> {
    Json(center.info())
}

/// A fresh challenge for the card to sign (INTERNAL AUTHENTICATE): one use, two minutes.
#[utoipa::path(post, path = "/v1/challenges", tag = "center", request_body = ChallengeRequest,
    responses(
        (status = 200, body = Challenge),
        (status = 400, body = ErrorBody, description = "malformed_request"),
    ))]
async fn challenges(
    State(center): State<Arc<Center>>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> ApiResult<Json<Challenge>> {
    blocking(move || center.challenge(&req)).await.map(Json)
}

/// Registers a card and issues its certificate (which names the card's maker), with the
/// root's anchors for PERSONALIZE. The card signs a register challenge (INTERNAL
/// AUTHENTICATE) and attests its key over the same challenge (ATTEST): the center takes only
/// keys that a maker it trusts vouches for, one card key per attestation key, and neither a
/// blocked card nor a card of a blocked maker. A card registered before gets its first
/// certificate again (`replayed`). A refusal writes nothing and leaves the challenge unused.
#[utoipa::path(post, path = "/v1/cards", tag = "center", request_body = RegisterRequest,
    responses(
        (status = 200, body = Registration),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field: the public key is not a compressed P-256 point"),
        (status = 403, body = ErrorBody, description = "untrusted_maker: the attestation's maker is not one this center trusts; card_blocked: the card, or its maker, is blocked"),
        (status = 409, body = ErrorBody, description = "attestation_reused: this chip's attestation key registered another card key already; already_registered: the card key is registered with another chip's attestation, or was registered before cards were attested"),
        (status = 422, body = ErrorBody, description = "bad_challenge: unknown, used, expired or for another purpose; bad_signature: the proof is not the card's; bad_attestation: none, malformed, not over this key and challenge, or not certified by the maker it names"),
    ))]
async fn register(
    State(center): State<Arc<Center>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Json<Registration>> {
    blocking(move || center.register(&req)).await.map(Json)
}

/// Imports the bank's signed key list (anyone may relay it).
#[utoipa::path(post, path = "/v1/bank-keys", tag = "center", request_body = SignedKeyList,
    responses(
        (status = 200, body = KeysImported),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field"),
        (status = 422, body = ErrorBody, description = "bad_signature"),
    ))]
async fn bank_keys(
    State(center): State<Arc<Center>>,
    ApiJson(list): ApiJson<SignedKeyList>,
) -> ApiResult<Json<KeysImported>> {
    blocking(move || center.import_keys(&list)).await.map(Json)
}

/// Credits a token to the card it names. On `unknown_key`, post the bank's key list to
/// `/center/v1/bank-keys` and retry.
#[utoipa::path(post, path = "/v1/redemptions", tag = "center", request_body = RedeemRequest,
    responses(
        (status = 200, body = Redemption),
        (status = 400, body = ErrorBody, description = "malformed_request, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_key, unknown_card"),
        (status = 409, body = ErrorBody, description = "conflict: the nonce was redeemed with another message"),
        (status = 422, body = ErrorBody, description = "amount_mismatch, key_expired, bad_signature"),
    ))]
async fn redeem(
    State(center): State<Arc<Center>>,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> ApiResult<Json<Redemption>> {
    blocking(move || center.redeem(&req)).await.map(Json)
}

/// A card's unit accounts, against a fresh balance challenge signed by the card.
#[utoipa::path(post, path = "/v1/balance", tag = "center", request_body = CardBalanceRequest,
    responses(
        (status = 200, body = CardBalance),
        (status = 400, body = ErrorBody, description = "malformed_request"),
        (status = 403, body = ErrorBody, description = "card_blocked"),
        (status = 404, body = ErrorBody, description = "unknown_card"),
        (status = 422, body = ErrorBody, description = "bad_challenge, bad_signature"),
    ))]
async fn card_balance(
    State(center): State<Arc<Center>>,
    ApiJson(req): ApiJson<CardBalanceRequest>,
) -> ApiResult<Json<CardBalance>> {
    blocking(move || center.balance(&req)).await.map(Json)
}

/// Authorises a card's signed load request (LOAD REQUEST's answer): debits the card's unit
/// account, or hands it its ticket, once per (card id, counter), and answers the issuer's
/// authorisation over the request and the version of the issuer's current block list, with
/// that list: the body of LOAD APPLY. The same request again returns the same answer (the
/// same authorisation and list, `replayed`) and debits nothing more, even after the
/// certificate has expired. The request must be the canonical E7 encoding the card makes.
#[utoipa::path(post, path = "/v1/loads", tag = "center", request_body = LoadOrder,
    responses(
        (status = 200, body = LoadAuthorisation),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex); invalid_field: not a canonical E7 load request (zero amount, bad asset code or serial...), a signature that is not 64 bytes, units of an asset other than the center's currency, an amount that would take the card's loaded total or the float past 2^63 - 1"),
        (status = 403, body = ErrorBody, description = "card_blocked: the card, or its maker, is blocked"),
        (status = 404, body = ErrorBody, description = "unknown_card (also a card registered before cards were attested); unknown_ticket: no ticket with this asset and serial was issued to this card"),
        (status = 409, body = ErrorBody, description = "load_cancelled: the card cancelled this request, which is never authorised; conflict: the counter was authorised for another request, or the ticket is delivered already"),
        (status = 422, body = ErrorBody, description = "bad_signature: not the card's signature under valuecard/load-request/v1; certificate_expired; insufficient_funds"),
    ))]
async fn loads(
    State(center): State<Arc<Center>>,
    ApiJson(order): ApiJson<LoadOrder>,
) -> ApiResult<Json<LoadAuthorisation>> {
    blocking(move || center.load(&order)).await.map(Json)
}

/// Takes a card's signed cancellation of a load request (LOAD CANCEL's answer), once per
/// (card id, counter), and answers the issuer's acknowledgement, the body of UNLOAD ACK with
/// P1 02. A request the center had authorised is `refunded`: its units go back to the unit
/// account, or its ticket is free again. A request it never authorised is `voided`: nothing
/// moves (rather than an error, so that the card can clear its cancellation), and a later
/// load of it is refused with load_cancelled. The same cancellation again returns the same
/// answer. A blocked card's cancellations are taken too: they only move units back.
#[utoipa::path(post, path = "/v1/load-cancellations", tag = "center", request_body = LoadCancellation,
    responses(
        (status = 200, body = CancelAcknowledgement),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex); invalid_field: not a canonical E7 load request, a signature that is not 64 bytes"),
        (status = 404, body = ErrorBody, description = "unknown_card"),
        (status = 409, body = ErrorBody, description = "conflict: the counter was cancelled, or authorised, with another request"),
        (status = 422, body = ErrorBody, description = "bad_signature: not the card's signature under valuecard/load-cancel/v1"),
    ))]
async fn load_cancellations(
    State(center): State<Arc<Center>>,
    ApiJson(cancel): ApiJson<LoadCancellation>,
) -> ApiResult<Json<CancelAcknowledgement>> {
    blocking(move || center.cancel_load(&cancel))
        .await
        .map(Json)
}

/// Credits a card's signed unload receipt (UNLOAD's answer) to its unit account, once per
/// (card id, counter), and answers the issuer's acknowledgement, the body of UNLOAD ACK with
/// P1 01. The same receipt again returns the same answer and credits nothing more. An
/// unload larger than the float (what all cards were loaded with, less what came back) is
/// refused with float_exceeded: the cards together would give back more than they were
/// given, so some card key left its chip and signed value. It is recorded as an alarm (`GET
/// /center/v1/float`; one per card and counter, a few per card at most) and logged.
#[utoipa::path(post, path = "/v1/unloads", tag = "center", request_body = UnloadOrder,
    responses(
        (status = 200, body = UnloadAcknowledgement),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex); invalid_field: not a canonical E8 unload receipt (zero amount, a ticket...), a signature that is not 64 bytes, units of an asset other than the center's currency, an amount that would take the card's totals past 2^63 - 1"),
        (status = 403, body = ErrorBody, description = "card_blocked: the card, or its maker, is blocked"),
        (status = 404, body = ErrorBody, description = "unknown_card (also a card registered before cards were attested)"),
        (status = 409, body = ErrorBody, description = "conflict: the counter was unloaded with another receipt"),
        (status = 422, body = ErrorBody, description = "bad_signature: not the card's signature under valuecard/unload/v1; float_exceeded: the cards hold less of the asset than the receipt gives back (an alarm is recorded)"),
    ))]
async fn unloads(
    State(center): State<Arc<Center>>,
    ApiJson(order): ApiJson<UnloadOrder>,
) -> ApiResult<Json<UnloadAcknowledgement>> {
    blocking(move || center.unload(&order)).await.map(Json)
}

/// Issues a ticket to a card: the issuer signs (asset, serial, card id). The card takes it
/// with a load request for this asset and serial. The same asset and serial again for the
/// same card return the first ticket (`replayed`); without a serial, the center picks 16
/// random bytes.
#[utoipa::path(post, path = "/v1/tickets", tag = "center", request_body = TicketIssueRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = IssuedTicket),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex); invalid_field: an asset code that is not 1 to 8 printable ASCII characters or is the center's currency, a serial that is not 1 to 32 bytes"),
        (status = 401, body = ErrorBody, description = "admin_unauthorized"),
        (status = 403, body = ErrorBody, description = "card_blocked"),
        (status = 404, body = ErrorBody, description = "unknown_card"),
        (status = 409, body = ErrorBody, description = "conflict: the asset and serial were issued to another card"),
    ))]
async fn tickets(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TicketIssueRequest>,
) -> ApiResult<Json<IssuedTicket>> {
    let admin = bearer(&headers);
    blocking(move || center.issue_ticket(admin.as_deref(), &req))
        .await
        .map(Json)
}

/// A card's unit accounts, ledger and tickets. Either the admin token (`Authorization:
/// Bearer`; the proof is then not looked at), or `proof`: a fresh balance challenge signed
/// by the card, which this uses up. The entries are the value movements (redemptions, loads,
/// refunds, unloads, tickets issued), by day; a voided cancellation moved nothing and is not
/// one. The totals are in the center's currency: the balance is redeemed − loaded +
/// refunded + unloaded. A blocked card's ledger is for the staff only.
#[utoipa::path(post, path = "/v1/ledger", tag = "center", request_body = LedgerRequest,
    security((), ("admin" = [])),
    responses(
        (status = 200, body = CardLedger),
        (status = 400, body = ErrorBody, description = "malformed_request"),
        (status = 401, body = ErrorBody, description = "admin_unauthorized: a wrong admin token, or neither the token nor a proof"),
        (status = 403, body = ErrorBody, description = "card_blocked: by card proof, for a blocked card"),
        (status = 404, body = ErrorBody, description = "unknown_card"),
        (status = 422, body = ErrorBody, description = "bad_challenge, bad_signature"),
    ))]
async fn ledger(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LedgerRequest>,
) -> ApiResult<Json<CardLedger>> {
    let admin = bearer(&headers);
    blocking(move || center.ledger(admin.as_deref(), &req))
        .await
        .map(Json)
}

/// Blocks a card (lost, stolen, its key known to be extracted) or a card maker (every card
/// it vouched for), for good, and answers the issuer's block list after it: relay it to the
/// arbiter (`POST /arbiter/v1/block-list`); cards get it at their next load. The same entry
/// again changes nothing (`replayed`, with the current list). Block n makes version n; the
/// list holds the newest 64 entries, the center refuses every block however old.
#[utoipa::path(post, path = "/v1/blocks", tag = "center", request_body = BlockRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = BlockAnswer),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex, an id that is not 32 bytes, a kind other than card or maker); invalid_field: a reason that is not 1 to 200 characters on one line"),
        (status = 401, body = ErrorBody, description = "admin_unauthorized"),
    ))]
async fn blocks(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BlockRequest>,
) -> ApiResult<Json<BlockAnswer>> {
    let admin = bearer(&headers);
    blocking(move || center.block(admin.as_deref(), &req))
        .await
        .map(Json)
}

/// The issuer's block list, signed (apdu-spec `blocklist`): its version is the number of
/// blocks, its entries the newest 64. Anyone may read it. With `version`, that version, as
/// it was signed then: a relay that missed more than 64 blocks hands the arbiter every
/// 64th version, so that no block falls between two lists.
#[utoipa::path(get, path = "/v1/block-list", tag = "center",
    params(("version" = Option<u32>, Query, description = "An earlier version, from 0 to the current one")),
    responses(
        (status = 200, body = BlockListSchema),
        (status = 400, body = ErrorBody, description = "invalid_field: not a version, or newer than the current one"),
    ))]
async fn block_list(
    State(center): State<Arc<Center>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<BlockList>> {
    let version = parse_version(query.as_deref())?;
    blocking(move || match version {
        None => center.block_list(),
        Some(v) => center.block_list_version(v),
    })
    .await
    .map(Json)
}

/// The `version` of a query string, if it names one.
fn parse_version(query: Option<&str>) -> ApiResult<Option<u32>> {
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(name, value)| (name == "version").then_some(value))
    else {
        return Ok(None);
    };
    value.parse::<u32>().map(Some).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidField,
            format!("version: {value:?} is not a block list version"),
        )
    })
}

/// What the cards hold in all, per asset (loads − refunds − unloads), and the alarms: the
/// unloads refused because they would have taken it below zero. An alarm means that value
/// no card was loaded with has come back already: some card key left its chip. The card an
/// alarm names found the float empty; it may be the one that minted, or an honest card whose
/// value an earlier unload took. Look at the cards' ledgers before blocking.
#[utoipa::path(get, path = "/v1/float", tag = "center",
    security(("admin" = [])),
    responses(
        (status = 200, body = FloatReport),
        (status = 401, body = ErrorBody, description = "admin_unauthorized"),
    ))]
async fn float(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
) -> ApiResult<Json<FloatReport>> {
    let admin = bearer(&headers);
    blocking(move || center.float(admin.as_deref()))
        .await
        .map(Json)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "center",
    responses((status = 200, description = "The center's OpenAPI document", content_type = "application/json")))]
async fn center_openapi_json() -> Json<serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    served_document(&DOC, center_openapi)
}

fn center_routes() -> OpenApiRouter<Arc<Center>> {
    OpenApiRouter::with_openapi(CenterDoc::openapi()).nest(
        CENTER_PREFIX,
        OpenApiRouter::new()
            .routes(routes!(info))
            .routes(routes!(challenges))
            .routes(routes!(register))
            .routes(routes!(bank_keys))
            .routes(routes!(redeem))
            .routes(routes!(card_balance))
            .routes(routes!(loads))
            .routes(routes!(load_cancellations))
            .routes(routes!(unloads))
            .routes(routes!(tickets))
            .routes(routes!(ledger))
            .routes(routes!(blocks))
            .routes(routes!(block_list))
            .routes(routes!(float))
            .routes(routes!(center_openapi_json)),
    )
}

/// The center's OpenAPI document, as served at `/center/openapi.json`.
pub fn center_openapi() -> utoipa::openapi::OpenApi {
    with_health(center_routes())
}

// ---- arbiter -------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "valuecard arbiter",
        description = "Verdicts on card-to-card exchanges (PROTOCOLS.md, \"Fair exchange: card to \
                       card\"): one per session (a, s2), final. Only the session's own parties \
                       settle it: a request carries the value commitment c and both \
                       certificates, and the arbiter recomputes a = SHA-256(c || id_A || id_B) \
                       (not_a_party unless it is the request's a), so the responder B of the \
                       agreement must sign a cancel request and its initiator A a resolve \
                       request. The arbiter learns no values. The responder's cancel request \
                       records CANCEL and the initiator's resolve request records COMPLETE, \
                       unless the session has a verdict already: then that verdict is the \
                       answer (`replayed`). A card on the issuer's newest block list the arbiter \
                       holds gets no verdict for its own request; its honest counterparty still \
                       settles. The verdict is recorded durably before the answer leaves. The \
                       cards' signatures and certificates travel as hex, exactly as CANCEL and \
                       RESOLVE answered them (apdu-spec `exchange`, `cert`). Certificates must \
                       be signed by the issuer, but their validity dates are not checked: a \
                       card whose certificate has expired can still settle. Every error is an \
                       ErrorBody with a stable code, and a refused request records nothing.",
        version = "1"
    ),
    components(schemas(ErrorBody)),
    tags((name = "arbiter"))
)]
struct ArbiterDoc;

/// The key that signs verdicts (cards are personalised with it), the issuer whose card
/// certificates the arbiter takes, and the version of the block list it holds.
#[utoipa::path(get, path = "/v1/info", tag = "arbiter", responses((status = 200, body = ArbiterInfo)))]
async fn arbiter_info(State(arbiter): State<Arc<Arbiter>>) -> ApiResult<Json<ArbiterInfo>> {
    blocking(move || arbiter.info()).await.map(Json)
}

/// The responder's cancel request (CANCEL's answer): records CANCEL for the session (a, s2)
/// and answers it signed, or answers the session's verdict if it has one (`replayed`), even
/// a COMPLETE.
#[utoipa::path(post, path = "/v1/cancellations", tag = "arbiter", request_body = ArbiterCancelRequest,
    responses(
        (status = 200, body = Verdict),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, unknown or missing fields, bad hex, s2, a or commitment not 32 bytes); invalid_field: a signature that is not 64 bytes, a certificate that is not a canonical 7F21 card certificate, the two certificates naming the same card"),
        (status = 403, body = ErrorBody, description = "card_blocked: the responder, or its maker, is on the issuer's block list"),
        (status = 409, body = ErrorBody, description = "conflict: the responder has a verdict under this s2 for another agreement"),
        (status = 422, body = ErrorBody, description = "not_a_party: a is not SHA-256(commitment || id_A || id_B) of the two certificates; bad_signature: a certificate not signed by the arbiter's issuer, or cancel_signature not the responder's over a || s2 under valuecard/cancel/v1"),
    ))]
async fn cancellations(
    State(arbiter): State<Arc<Arbiter>>,
    ApiJson(req): ApiJson<ArbiterCancelRequest>,
) -> ApiResult<Json<Verdict>> {
    blocking(move || arbiter.cancel(&req)).await.map(Json)
}

/// The initiator's resolve request (RESOLVE's answer): records COMPLETE for the session
/// (a, s2) (the responder's agreement proves that it escrowed its value) and answers it
/// signed, or answers the session's verdict if it has one (`replayed`), even a CANCEL.
#[utoipa::path(post, path = "/v1/resolutions", tag = "arbiter", request_body = ArbiterResolveRequest,
    responses(
        (status = 200, body = Verdict),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, unknown or missing fields, bad hex, s2, a or commitment not 32 bytes); invalid_field: a signature that is not 64 bytes, a certificate that is not a canonical 7F21 card certificate, the two certificates naming the same card"),
        (status = 403, body = ErrorBody, description = "card_blocked: the initiator, or its maker, is on the issuer's block list"),
        (status = 409, body = ErrorBody, description = "conflict: the responder has a verdict under this s2 for another agreement"),
        (status = 422, body = ErrorBody, description = "not_a_party: a is not SHA-256(commitment || id_A || id_B) of the two certificates; bad_signature: a certificate not signed by the arbiter's issuer, agreement_signature not the responder's under valuecard/agree/v1, or resolve_signature not the initiator's under valuecard/resolve/v1, over a || s2"),
    ))]
async fn resolutions(
    State(arbiter): State<Arc<Arbiter>>,
    ApiJson(req): ApiJson<ArbiterResolveRequest>,
) -> ApiResult<Json<Verdict>> {
    blocking(move || arbiter.resolve(&req)).await.map(Json)
}

/// The verdict of the session (a, s2), signed, or `{"verdict": null}` when it has none yet.
#[utoipa::path(get, path = "/v1/verdicts/{a}/{s2}", tag = "arbiter",
    params(
        ("a" = String, Path, description = "The session's agreement hash a, 32 bytes, hex"),
        ("s2" = String, Path, description = "The session's s2, 32 bytes, hex"),
    ),
    responses(
        (status = 200, body = VerdictAnswer),
        (status = 400, body = ErrorBody, description = "invalid_field: a or s2 is not 32 bytes of hex"),
    ))]
async fn verdicts(
    State(arbiter): State<Arc<Arbiter>>,
    Path((a, s2)): Path<(String, String)>,
) -> ApiResult<Json<VerdictAnswer>> {
    let (mut agreement, mut session) = ([0u8; 32], [0u8; 32]);
    hex::decode_to_slice(&a, &mut agreement)
        .map_err(|_| ApiError::new(ErrorCode::InvalidField, "a: must be 32 bytes, hex"))?;
    hex::decode_to_slice(&s2, &mut session)
        .map_err(|_| ApiError::new(ErrorCode::InvalidField, "s2: must be 32 bytes, hex"))?;
    blocking(move || arbiter.verdict(&agreement, &session))
        .await
        .map(Json)
}

/// Hands the arbiter the issuer's signed block list (as `GET /center/v1/block-list` or `POST
/// /center/v1/blocks` answered it); anyone may relay it. The arbiter checks the issuer's
/// signature and keeps the list if it is newer than its own.
#[utoipa::path(post, path = "/v1/block-list", tag = "arbiter", request_body = BlockListSchema,
    responses(
        (status = 200, body = BlockListStatus),
        (status = 400, body = ErrorBody, description = "malformed_request (not JSON, bad hex); invalid_field: more than 64 entries"),
        (status = 422, body = ErrorBody, description = "bad_signature: not signed by the arbiter's issuer"),
    ))]
async fn arbiter_block_list(
    State(arbiter): State<Arc<Arbiter>>,
    ApiJson(list): ApiJson<BlockList>,
) -> ApiResult<Json<BlockListStatus>> {
    blocking(move || arbiter.take_block_list(&list))
        .await
        .map(Json)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "arbiter",
    responses((status = 200, description = "The arbiter's OpenAPI document", content_type = "application/json")))]
async fn arbiter_openapi_json() -> Json<serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    served_document(&DOC, arbiter_openapi)
}

fn arbiter_routes() -> OpenApiRouter<Arc<Arbiter>> {
    OpenApiRouter::with_openapi(ArbiterDoc::openapi()).nest(
        ARBITER_PREFIX,
        OpenApiRouter::new()
            .routes(routes!(arbiter_info))
            .routes(routes!(cancellations))
            .routes(routes!(resolutions))
            .routes(routes!(verdicts))
            .routes(routes!(arbiter_block_list))
            .routes(routes!(arbiter_openapi_json)),
    )
}

/// The arbiter's OpenAPI document, as served at `/arbiter/openapi.json`.
pub fn arbiter_openapi() -> utoipa::openapi::OpenApi {
    with_health(arbiter_routes())
}

// ---- common --------------------------------------------------------------------------

/// Whether the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "`ok`")))]
async fn healthz() -> &'static str {
    "ok"
}

fn health_routes() -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(healthz))
}

/// A role's document: its routes and `/healthz`.
fn with_health<S: Send + Sync + Clone + 'static>(
    routes: OpenApiRouter<S>,
) -> utoipa::openapi::OpenApi {
    let mut doc = routes.into_openapi();
    doc.merge(health_routes().into_openapi());
    doc
}

/// A role's `openapi.json`, made on the first request.
fn served_document(
    doc: &'static OnceLock<serde_json::Value>,
    make: fn() -> utoipa::openapi::OpenApi,
) -> Json<serde_json::Value> {
    Json(
        doc.get_or_init(|| serde_json::to_value(make()).unwrap_or_default())
            .clone(),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "the route does not take this method",
    )
}

/// The roles one process serves.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    pub bank: Option<Arc<Bank>>,
    pub center: Option<Arc<Center>>,
    pub arbiter: Option<Arc<Arbiter>>,
}

/// The whole HTTP service for `roles`.
pub fn router(roles: Roles) -> axum::Router {
    let mut app: axum::Router = health_routes().split_for_parts().0;
    if let Some(bank) = roles.bank {
        app = app.merge(bank_routes().split_for_parts().0.with_state(bank));
    }
    if let Some(center) = roles.center {
        app = app.merge(center_routes().split_for_parts().0.with_state(center));
    }
    if let Some(arbiter) = roles.arbiter {
        app = app.merge(arbiter_routes().split_for_parts().0.with_state(arbiter));
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(observe))
}

/// Logs one line per request, and turns any error answer that axum made by itself into an
/// `ErrorBody`, so that clients only ever see one error format.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut response = next.run(req).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<ErrorCode>().is_none()
    {
        let code = match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
            s if s.is_client_error() => ErrorCode::MalformedRequest,
            _ => ErrorCode::Internal,
        };
        let allow: Option<HeaderValue> = response.headers().get(header::ALLOW).cloned();
        response =
            ApiError::new(code, status.canonical_reason().unwrap_or("error")).into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let status = response.status().as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    match response.extensions().get::<ErrorCode>() {
        Some(code) => tracing::info!(%method, %path, status, code = %code, latency_us, "request"),
        None => tracing::info!(%method, %path, status, latency_us, "request"),
    }
    response
}

// ---- running a server ------------------------------------------------------------------

/// A server on its own thread and runtime, for tests, benchmarks and embedding. It stops
/// when dropped.
pub struct ServerHandle {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and serves `app` until dropped.
    pub fn start(listen: &str, app: axum::Router) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("http-{addr}"))
            .spawn(move || {
                let served = runtime.block_on(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "server failed");
                }
            })?;
        Ok(ServerHandle {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_query() {
        assert_eq!(parse_amounts(None), Ok(vec![]));
        assert_eq!(parse_amounts(Some("amounts=256,32")), Ok(vec![256, 32]));
        assert_eq!(parse_amounts(Some("x=1&amounts=4%2C8")), Ok(vec![4, 8]));
        assert_eq!(
            parse_amounts(Some("amounts=x")).map_err(|e| e.code),
            Err(ErrorCode::InvalidField)
        );
    }

    #[test]
    fn bearer_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert_eq!(bearer(&h), None);
    }
}
