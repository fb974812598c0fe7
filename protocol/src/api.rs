//! The JSON bodies of the bank's and the center's HTTP API. Bytes travel as lowercase hex.
//! Routes live in the backend (`valuecard_backend::http`), which serves the OpenAPI
//! document built from these types at `/bank/openapi.json` and `/center/openapi.json`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorCode, UnixTime};

/// Path prefixes: every route of a role lives under its prefix, whether the role runs
/// alone or with the others in one process.
pub const BANK_PREFIX: &str = "/bank";
pub const CENTER_PREFIX: &str = "/center";

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

/// `GET /center/v1/info`: the keys a card is personalised with, and the bank the center
/// trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CenterInfo {
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_public_key: [u8; 33],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_public_key: [u8; 33],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub bank_public_key: [u8; 33],
    pub currency: String,
}

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
/// personalised with. A card already registered gets its certificate again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Compressed SEC1 P-256 key, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub public_key: [u8; 33],
    pub proof: CardProof,
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
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub issuer_public_key: [u8; 33],
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub arbiter_public_key: [u8; 33],
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
