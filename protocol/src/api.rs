//! The JSON bodies of the bank's, the center's and the arbiter's HTTP API. Bytes travel as
//! lowercase hex. Routes live in the backend (`valuecard_backend::http`), which serves the
//! OpenAPI documents built from these types at `/bank/openapi.json`, `/center/openapi.json`
//! and `/arbiter/openapi.json`.

use apdu_spec::exchange::messages::{CancelAnswer, ResolveAnswer, VerdictBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorCode, UnixTime};

/// Path prefixes: every route of a role lives under its prefix, whether the role runs
/// alone or with the others in one process.
pub const BANK_PREFIX: &str = "/bank";
pub const CENTER_PREFIX: &str = "/center";
pub const ARBITER_PREFIX: &str = "/arbiter";

/// Every error answer: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

// ---- bank ----------------------------------------------------------------------------

/// `POST /bank/v1/accounts` (admin): open an account with a zero balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// The secret the account holder will withdraw with (8 to 128 characters). The bank
    /// keeps only a salted slow hash of it.
    pub credential: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountOpened {
    pub account: String,
    pub currency: String,
    pub balance: u64,
}

/// `POST /bank/v1/deposits` (admin): cash paid in at the counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub account: String,
    pub amount: u64,
    /// The caller's unique id for this deposit (1 to 64 characters): a retry with the same
    /// reference credits nothing more and returns the first answer.
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DepositAnswer {
    pub account: String,
    pub amount: u64,
    pub reference: String,
    /// The balance right after this deposit.
    pub balance_after: u64,
}

/// `POST /bank/v1/balance`: the account holder reads the balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBalanceRequest {
    pub account: String,
    pub credential: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountBalance {
    pub account: String,
    pub balance: u64,
    pub currency: String,
}

/// `POST /bank/v1/withdrawals`: debit the account and blind-sign one token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    pub account: String,
    pub credential: String,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub key_id: [u8; 32],
    /// RFC 9474 blinded message, 256 bytes, hex. Its SHA-256 is the withdrawal's natural
    /// key: a retry returns the same blind signature and debits nothing more.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub blinded_message: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WithdrawAnswer {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub key_id: [u8; 32],
    pub amount: u64,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub blind_signature: Vec<u8>,
    /// True when this is a retry of a withdrawal the bank had already made.
    pub replayed: bool,
}

// ---- center --------------------------------------------------------------------------

/// `GET /center/v1/info`: the keys a card is personalised with (each under the scheme
/// root's signature), the bank the center trusts, and the card makers it registers cards of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CenterInfo {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_public_key: [u8; 33],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_public_key: [u8; 33],
    /// The scheme root's key, which cards receive at manufacture.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub root_public_key: [u8; 33],
    /// The root's anchor over the issuer key (`7F22`, apdu-spec `anchor`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_anchor: Vec<u8>,
    /// The root's anchor over the arbiter key (`7F22`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_anchor: Vec<u8>,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub bank_public_key: [u8; 33],
    /// The card makers whose attestations the center takes, by maker id (SHA-256 of the
    /// maker's compressed public key), hex.
    #[schema(value_type = Vec<String>)]
    pub trusted_makers: Vec<HexId>,
    pub currency: String,
}

/// A 32-byte id (card id, maker id) as hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexId(#[serde(with = "hex")] pub [u8; 32]);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    Register,
    Balance,
}

/// `POST /center/v1/challenges`: a fresh challenge for the card to sign with INTERNAL
/// AUTHENTICATE. It is good for one use, for its purpose, until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub purpose: ChallengePurpose,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Challenge {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub challenge: [u8; 32],
    pub purpose: ChallengePurpose,
    pub expires_at: UnixTime,
}

/// A card's proof of possession: its INTERNAL AUTHENTICATE signature over a challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardProof {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub challenge: [u8; 32],
    /// ECDSA P-256 r || s over `tagged("valuecard/auth/v1", challenge)`, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

/// `POST /center/v1/cards`: register a card (open its unit account) and get what it is
/// personalised with. The card proves that it holds the key (`proof`: INTERNAL AUTHENTICATE
/// over a register challenge) and that a card maker the center trusts made the key inside it
/// (`attestation`: ATTEST over the same challenge). A card already registered gets its
/// certificate again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Compressed SEC1 P-256 key, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub public_key: [u8; 33],
    pub proof: CardProof,
    /// ATTEST's answer over `proof.challenge`, exactly as the card gave it: `E9 { 7F23 maker
    /// certificate, 9E attestation }` (apdu-spec `maker`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub attestation: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    /// The card certificate (`7F21`, apdu-spec `cert`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub certificate: Vec<u8>,
    /// The root's anchors over the issuer and the arbiter keys (`7F22`), hex: PERSONALIZE
    /// carries them, and the card checks them against the root key it got at manufacture.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_anchor: Vec<u8>,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_anchor: Vec<u8>,
    /// True when the card was registered before this request.
    pub replayed: bool,
}

/// `POST /center/v1/bank-keys`: hand the center the bank's signed key list. Anyone may
/// relay it: the center checks the bank's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeysImported {
    /// Keys the center did not know before.
    pub imported: u64,
    /// Keys the center knows now, in all.
    pub known: u64,
}

/// `POST /center/v1/redemptions`: credit a token to the card it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The token message (`valuecard/token/v1` layout), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub message: Vec<u8>,
    /// RFC 9474 message randomizer, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub randomizer: [u8; 32],
    /// The unblinded RSA-PSS signature, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Redemption {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub nonce: [u8; 32],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub key_id: [u8; 32],
    pub amount: u64,
    pub asset: String,
    /// True when this token had been redeemed before: nothing more was credited.
    pub replayed: bool,
}

/// `POST /center/v1/balance`: a card's unit accounts, readable with a fresh card proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBalanceRequest {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub proof: CardProof,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardBalance {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub accounts: Vec<UnitAccount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitAccount {
    pub asset: String,
    pub balance: u64,
}

// ---- units between center and card -----------------------------------------------------
//
// The card signs its load requests, cancellations and unload receipts (apdu-spec `units`):
// the center takes them exactly as the card answered them, bytes in hex, and answers with
// the issuer's signatures that the card checks in LOAD APPLY and UNLOAD ACK.

/// What a load or an unload moves: `{"kind": "asset", "code": "JPY", "amount": 200}` or
/// `{"kind": "ticket", "code": "CONCERT", "serial": "0a1b..."}`.
pub use apdu_spec::units::UnitValue;

/// `POST /center/v1/loads`: a card's signed load request. The center debits the card's unit
/// account (or reserves the ticket) once per (card id, counter); the same request again
/// returns the same authorisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadOrder {
    /// The card's `E7` load request, hex, exactly as LOAD REQUEST answered it (the canonical
    /// encoding of `apdu_spec::units::UnitMessage::encode_load`; any other is refused).
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub request: Vec<u8>,
    /// The card's signature over it (`valuecard/load-request/v1`), r || s (64 bytes), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoadAuthorisation {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub counter: u32,
    #[schema(value_type = Object)]
    pub value: UnitValue,
    /// The issuer's signature (`valuecard/load-auth/v2`) over the request and the version
    /// of `block_list` (`apdu_spec::units::authorised`): with the list, the body of LOAD
    /// APPLY.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub authorisation: [u8; 64],
    /// For a ticket: the issuer's signature on the ticket for this card.
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ticket_signature: Option<[u8; 64]>,
    /// The issuer's block list whose version the authorisation covers: LOAD APPLY carries
    /// it, and the card keeps it if it is newer than its own.
    #[schema(value_type = Object)]
    pub block_list: BlockList,
    /// True when this request had been authorised before: nothing more was debited.
    pub replayed: bool,
}

/// `POST /center/v1/load-cancellations`: a card's signed cancellation of a load request. The
/// request can never be authorised afterwards; what it debited is refunded, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadCancellation {
    /// The cancelled `E7` load request, hex, in the same canonical encoding as a load.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub request: Vec<u8>,
    /// The card's signature over it (`valuecard/load-cancel/v1`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The request had been authorised (debited): its value went back to the unit account.
    Refunded,
    /// The center had never authorised the request: nothing to refund, and now it never will.
    Voided,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelAcknowledgement {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub counter: u32,
    #[schema(value_type = Object)]
    pub value: UnitValue,
    pub outcome: CancelOutcome,
    /// The issuer's signature over the request (`valuecard/load-cancel-ack/v1`): the body of
    /// UNLOAD ACK with P1 02.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub acknowledgement: [u8; 64],
    pub replayed: bool,
}

/// `POST /center/v1/unloads`: a card's signed unload receipt. The center credits the unit
/// account once per (card id, counter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnloadOrder {
    /// The card's `E8` unload receipt, hex, exactly as UNLOAD answered it (the canonical
    /// encoding of `UnitMessage::encode_unload`; units only, never a ticket).
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub receipt: Vec<u8>,
    /// The card's signature over it (`valuecard/unload/v1`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnloadAcknowledgement {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub counter: u32,
    #[schema(value_type = Object)]
    pub value: UnitValue,
    /// The issuer's signature over the receipt (`valuecard/unload-ack/v1`): the body of
    /// UNLOAD ACK with P1 01.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub acknowledgement: [u8; 64],
    pub replayed: bool,
}

/// `POST /center/v1/tickets` (admin): issue a ticket to a card. The card takes it with a
/// load request for this asset code and serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketIssueRequest {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    /// The ticket's asset code (1 to 8 printable ASCII characters), e.g. `CONCERT`.
    pub asset: String,
    /// 1 to 32 bytes, hex; the center picks 16 random bytes when left out. The same asset and
    /// serial again for the same card returns the first ticket.
    #[serde(default, with = "hex_vec_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub serial: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedTicket {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub asset: String,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub serial: Vec<u8>,
    /// The issuer's signature on (asset, serial, card id) (`valuecard/ticket/v1`).
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: [u8; 64],
    /// Whether a load request has taken it (and was not cancelled).
    pub delivered: bool,
    pub replayed: bool,
}

/// `POST /center/v1/ledger`: a card's unit accounts, its ledger and its tickets. Either a
/// fresh balance challenge signed by the card, or the admin credential (`Authorization:
/// Bearer`; the proof is then not looked at). Without either: `admin_unauthorized`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerRequest {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<CardProof>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// A token redeemed: units in.
    Redeem,
    /// A load authorised: units out to the card (or a ticket handed to it).
    Load,
    /// A cancelled load refunded: units back in (or the ticket free again).
    Refund,
    /// An unload receipt: units back in from the card.
    Unload,
    /// A ticket issued to the card by the center.
    TicketIssued,
}

/// One line of a card's ledger at the center. Times are days (Unix time / 86400): the
/// center keeps nothing finer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    pub day: u64,
    pub kind: LedgerKind,
    /// The card's load or unload counter, for loads, refunds and unloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u32>,
    #[schema(value_type = Object)]
    pub value: UnitValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerTotals {
    pub redeemed: u64,
    pub loaded: u64,
    pub refunded: u64,
    pub unloaded: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardLedger {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub accounts: Vec<UnitAccount>,
    /// Sums over the entries in units of the center's currency: the balance is
    /// redeemed − loaded + refunded + unloaded.
    pub totals: LedgerTotals,
    /// The value movements, by day (within a day: redemptions, tickets issued, loads,
    /// refunds, unloads, each by counter). A voided cancellation moved nothing and is not
    /// an entry.
    pub entries: Vec<LedgerEntry>,
    /// Tickets issued to the card, delivered or not.
    pub tickets: Vec<IssuedTicket>,
}

// ---- revocation and the float ---------------------------------------------------------

/// A blocked card (`{"kind": "card", "id": "..."}`) or card maker (`{"kind": "maker", "id":
/// "..."}`), by its 32-byte id in hex.
pub use apdu_spec::blocklist::{BlockEntry, BlockList};

/// `POST /center/v1/blocks` (admin): block a card (lost, stolen, its key known to be
/// extracted) or a card maker. Blocking is for good; the same block again changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    #[schema(value_type = Object)]
    pub entry: BlockEntry,
    /// Why, for the staff's records (1 to 200 characters); never shown to cards.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockAnswer {
    #[schema(value_type = Object)]
    pub entry: BlockEntry,
    /// The block list after this block: relay it to the arbiter (`POST
    /// /arbiter/v1/block-list`); cards get it at their next load.
    #[schema(value_type = Object)]
    pub block_list: BlockList,
    /// True when the entry was blocked already.
    pub replayed: bool,
}

/// `GET /center/v1/float` (admin): what cards hold in total, per asset (loads − refunds −
/// unloads, never below zero), and the alarms raised by unloads that would have broken it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FloatReport {
    pub floats: Vec<AssetFloat>,
    pub alarms: Vec<FloatAlarm>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetFloat {
    pub asset: String,
    pub amount: u64,
}

/// An unload the center refused because it would have made the float negative: cards
/// together would give back more than they were given, so some card key left its chip and
/// signed value. The card named found the float empty: it may be the one that minted, or an
/// honest card whose share an earlier unload took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FloatAlarm {
    pub day: u64,
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub card_id: [u8; 32],
    pub counter: u32,
    pub asset: String,
    /// What the receipt asked to unload.
    pub amount: u64,
    /// The float for the asset when it was refused.
    pub float: u64,
}

/// `POST /arbiter/v1/block-list`: hand the arbiter the issuer's signed block list (anyone
/// may relay it: the arbiter checks the issuer's signature and keeps the newest version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockListStatus {
    /// The version the arbiter holds now.
    pub version: u32,
    /// Whether this request brought a newer list.
    pub updated: bool,
}

// ---- arbiter ---------------------------------------------------------------------------
//
// The arbiter decides exchanges that the cards could not finish between themselves
// (PROTOCOLS.md, "Fair exchange: card to card"): one verdict per session, named by (a, s2),
// once and for all. The signatures and certificates travel exactly as the cards answered them
// (apdu-spec `exchange` and `cert`).

/// A verdict's outcome: `"complete"` (A stores V2, B stores V1) or `"cancel"` (each card gets
/// its own value back).
pub use apdu_spec::exchange::Outcome;

fn outcome_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["complete", "cancel"]))
        .description(Some(
            "complete: A stores V2 and B stores V1; cancel: A gets V1 back and B gets V2 back",
        ))
        .build()
}

/// `GET /arbiter/v1/info`: the key that signs verdicts (cards are personalised with it), the
/// issuer whose card certificates the arbiter takes, and the block list version it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArbiterInfo {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_public_key: [u8; 33],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_public_key: [u8; 33],
    pub block_list_version: u32,
}

/// `POST /arbiter/v1/cancellations`: the responder B's cancel request, as CANCEL answered
/// it. The arbiter recomputes `a = SHA-256(commitment ‖ id_A ‖ id_B)` from the two
/// certificates and refuses the request unless it is `a` and B signed it: only the
/// session's own responder cancels. Recorded as CANCEL for (a, s2) unless that session has
/// a verdict already, which is returned instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArbiterCancelRequest {
    /// The session: s2 = SHA-256(r2), 32 bytes, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub s2: [u8; 32],
    /// The agreement hash a, 32 bytes, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub a: [u8; 32],
    /// The value commitment c = SHA-256(s1 ‖ V1 ‖ V2), 32 bytes, hex: the arbiter learns no
    /// values.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub commitment: [u8; 32],
    /// Sab: B's signature over `a ‖ s2` under `valuecard/cancel/v1`, r || s (64 bytes), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub cancel_signature: Vec<u8>,
    /// A's card certificate (`7F21`, apdu-spec `cert`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub initiator_certificate: Vec<u8>,
    /// B's card certificate (`7F21`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub responder_certificate: Vec<u8>,
}

/// `POST /arbiter/v1/resolutions`: the initiator A's resolve request, as RESOLVE answered
/// it. The arbiter recomputes `a` from the commitment and the two certificates and refuses
/// the request unless A signed Sr and B signed Sa over it. Recorded as COMPLETE for (a, s2)
/// unless that session has a verdict already, which is returned instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArbiterResolveRequest {
    /// The session: s2 = SHA-256(r2), 32 bytes, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub s2: [u8; 32],
    /// The agreement hash a, 32 bytes, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub a: [u8; 32],
    /// The value commitment c, 32 bytes, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub commitment: [u8; 32],
    /// Sa: B's signature over `a ‖ s2` under `valuecard/agree/v1` (proof that B escrowed
    /// V2), r || s (64 bytes), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub agreement_signature: Vec<u8>,
    /// Sr: A's signature over `a ‖ s2` under `valuecard/resolve/v1`, r || s (64 bytes), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub resolve_signature: Vec<u8>,
    /// A's card certificate (`7F21`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub initiator_certificate: Vec<u8>,
    /// B's card certificate (`7F21`), hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub responder_certificate: Vec<u8>,
}

/// The arbiter's verdict on one session, signed: the body of APPLY VERDICT is built from
/// it. A card applies it only if `a` and `s2` are its session's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub s2: [u8; 32],
    /// The agreement hash a: with s2, the session the verdict is for (a request for another
    /// a is another session).
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub a: [u8; 32],
    #[schema(schema_with = outcome_schema)]
    pub outcome: Outcome,
    /// The arbiter's signature over `s2 ‖ a ‖ outcome` (one byte: 01 complete, 02 cancel)
    /// under `valuecard/verdict/v1`, r || s, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: [u8; 64],
    /// True when the verdict existed before this request (it was not decided by it).
    pub replayed: bool,
}

/// The responder card's CANCEL answer, as the arbiter takes it.
impl From<&CancelAnswer> for ArbiterCancelRequest {
    fn from(c: &CancelAnswer) -> Self {
        ArbiterCancelRequest {
            s2: c.s2,
            a: c.a,
            commitment: c.c,
            cancel_signature: c.sab.to_vec(),
            initiator_certificate: c.initiator_certificate.encode(),
            responder_certificate: c.responder_certificate.encode(),
        }
    }
}

/// The initiator card's RESOLVE answer, as the arbiter takes it.
impl From<&ResolveAnswer> for ArbiterResolveRequest {
    fn from(r: &ResolveAnswer) -> Self {
        ArbiterResolveRequest {
            s2: r.s2,
            a: r.a,
            commitment: r.c,
            agreement_signature: r.sa.to_vec(),
            resolve_signature: r.sr.to_vec(),
            initiator_certificate: r.initiator_certificate.encode(),
            responder_certificate: r.responder_certificate.encode(),
        }
    }
}

/// The arbiter's verdict, as a card takes it (APPLY VERDICT).
impl From<&Verdict> for VerdictBody {
    fn from(v: &Verdict) -> Self {
        VerdictBody {
            s2: v.s2,
            a: v.a,
            outcome: v.outcome,
            signature: v.signature,
        }
    }
}

impl Verdict {
    /// Whether `arbiter` signed this verdict.
    pub fn verifies(&self, arbiter: &p256::ecdsa::VerifyingKey) -> bool {
        apdu_spec::exchange::verify_verdict(
            arbiter,
            &self.s2,
            &self.a,
            self.outcome,
            &self.signature,
        )
    }
}

/// `GET /arbiter/v1/verdicts/{a}/{s2}`: the recorded verdict of the session (a, s2), or
/// `null` when it has none (an answer, not an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictAnswer {
    pub verdict: Option<Verdict>,
}

/// Optional fixed-size byte arrays as hex.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 64]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 64]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 64];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// Optional byte strings as hex.
mod hex_vec_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| hex::decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::elliptic_curve::Generate;
    use serde_json::json;

    #[test]
    fn verdicts_travel_as_documented() {
        let arbiter = SigningKey::generate_from_rng(&mut rand::rng());
        let (s2, a) = ([1; 32], [2; 32]);
        let verdict = Verdict {
            s2,
            a,
            outcome: Outcome::Cancel,
            signature: apdu_spec::exchange::sign_verdict(&arbiter, &s2, &a, Outcome::Cancel),
            replayed: false,
        };
        let value = serde_json::to_value(&verdict).expect("serialises");
        assert_eq!(value["outcome"], json!("cancel"));
        assert_eq!(value["s2"], json!("01".repeat(32)));
        assert_eq!(
            serde_json::from_value::<Verdict>(value).expect("parses"),
            verdict
        );
        assert!(verdict.verifies(arbiter.verifying_key()));
        let flipped = Verdict {
            outcome: Outcome::Complete,
            ..verdict.clone()
        };
        assert!(!flipped.verifies(arbiter.verifying_key()));

        // "none" is an answer with a null verdict, not a missing field.
        let none = serde_json::to_value(VerdictAnswer { verdict: None }).expect("serialises");
        assert_eq!(none, json!({ "verdict": null }));
        let some = serde_json::to_value(VerdictAnswer {
            verdict: Some(verdict),
        })
        .expect("serialises");
        assert_eq!(some["verdict"]["outcome"], json!("cancel"));
    }

    #[test]
    fn arbiter_requests_refuse_unknown_fields_and_bad_lengths() {
        let ok = json!({
            "s2": "00".repeat(32),
            "a": "11".repeat(32),
            "commitment": "33".repeat(32),
            "cancel_signature": "22".repeat(64),
            "initiator_certificate": "7f21",
            "responder_certificate": "7f21",
        });
        assert!(serde_json::from_value::<ArbiterCancelRequest>(ok.clone()).is_ok());
        let mut extra = ok.clone();
        extra["resolve_signature"] = json!("22".repeat(64));
        assert!(serde_json::from_value::<ArbiterCancelRequest>(extra).is_err());
        let mut short = ok;
        short["s2"] = json!("00".repeat(31));
        assert!(serde_json::from_value::<ArbiterCancelRequest>(short).is_err());
    }
}
