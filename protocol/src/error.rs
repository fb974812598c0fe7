//! Error codes of the HTTP API. A code is stable: clients match on it, people read the
//! message next to it. Every error leaves the server's state as it was.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, or not the JSON this route takes.
    MalformedRequest,
    /// The body is larger than the route accepts.
    BodyTooLarge,
    /// A field has a value outside its range (zero amount, wrong length, bad hex...).
    InvalidField,
    /// The admin credential is missing or wrong.
    AdminUnauthorized,
    UnknownAccount,
    /// The account credential is wrong.
    BadCredential,
    InsufficientFunds,
    /// No denomination key has this id, or none exists for this amount.
    UnknownKey,
    /// The key is outside its withdrawal or redemption window.
    KeyExpired,
    /// The amount does not match the one the key stands for.
    AmountMismatch,
    /// The same natural key (reference, blinded message, nonce) came with different content.
    Conflict,
    /// The challenge is unknown, used, expired, or for another purpose.
    BadChallenge,
    /// A signature (card, bank key list, token) does not verify.
    BadSignature,
    UnknownCard,
    /// The card is already registered with another certificate request it cannot repeat.
    AlreadyRegistered,
    /// The load request was cancelled by the card: it can never be authorised.
    LoadCancelled,
    /// No ticket with this asset and serial was issued to this card.
    UnknownTicket,
    /// The card's certificate is outside its validity.
    CertificateExpired,
    /// Registration without an attestation that verifies: not the card's key, not over this
    /// challenge, or not signed by the maker it names.
    BadAttestation,
    /// The attestation's card maker is not one the center is configured to trust.
    UntrustedMaker,
    /// The attestation key made another card key, which is registered already: a chip makes
    /// one card key in its life.
    AttestationReused,
    /// The card, or the maker that made it, is blocked (lost, stolen, key extracted).
    CardBlocked,
    /// The request is not signed by the session's own party: the agreement does not name
    /// the cards whose certificates came with it, or another card signed.
    NotAParty,
    /// The unload would make the float negative: cards would hold less than nothing.
    FloatExceeded,
    NotFound,
    MethodNotAllowed,
    /// A fault on the server; nothing was changed.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            MalformedRequest | InvalidField => 400,
            AdminUnauthorized | BadCredential => 401,
            UnknownAccount | UnknownKey | UnknownCard | UnknownTicket | NotFound => 404,
            MethodNotAllowed => 405,
            Conflict | AlreadyRegistered | LoadCancelled | AttestationReused => 409,
            CardBlocked | UntrustedMaker => 403,
            BodyTooLarge => 413,
            InsufficientFunds | KeyExpired | AmountMismatch | BadChallenge | BadSignature
            | CertificateExpired | BadAttestation | NotAParty | FloatExceeded => 422,
            Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedRequest => "malformed_request",
            BodyTooLarge => "body_too_large",
            InvalidField => "invalid_field",
            AdminUnauthorized => "admin_unauthorized",
            UnknownAccount => "unknown_account",
            BadCredential => "bad_credential",
            InsufficientFunds => "insufficient_funds",
            UnknownKey => "unknown_key",
            KeyExpired => "key_expired",
            AmountMismatch => "amount_mismatch",
            Conflict => "conflict",
            BadChallenge => "bad_challenge",
            BadSignature => "bad_signature",
            UnknownCard => "unknown_card",
            AlreadyRegistered => "already_registered",
            LoadCancelled => "load_cancelled",
            UnknownTicket => "unknown_ticket",
            CertificateExpired => "certificate_expired",
            BadAttestation => "bad_attestation",
            UntrustedMaker => "untrusted_maker",
            AttestationReused => "attestation_reused",
            CardBlocked => "card_blocked",
            NotAParty => "not_a_party",
            FloatExceeded => "float_exceeded",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
