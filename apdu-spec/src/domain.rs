//! Domain tags. Every signature in valuecard covers one, so that a signature made for one
//! message type can never pass as another (PROTOCOLS.md, "Keys").

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::units::SIGNATURE_LEN;

/// The card certificate, signed by the issuer.
pub const CERTIFICATE: &str = "valuecard/cert/v1";

/// The bytes a signature covers: the tag, a zero byte (no tag contains one, so the split is
/// unambiguous), then the message parts in order.
pub fn tagged(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let len = domain.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Signs `message` under `domain`: ECDSA P-256 / SHA-256 over [`tagged`], deterministic per
/// RFC 6979, `r || s`.
pub fn sign(key: &SigningKey, domain: &str, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let signature: Signature = key.sign(&tagged(domain, &[message]));
    let mut out = [0u8; SIGNATURE_LEN];
    out.copy_from_slice(&signature.to_bytes());
    out
}

/// Whether `signature` is `key`'s signature over `message` under `domain`.
pub fn verify(key: &VerifyingKey, domain: &str, message: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature)
        .is_ok_and(|s| key.verify(&tagged(domain, &[message]), &s).is_ok())
}

/// INTERNAL AUTHENTICATE: the card's signature over a challenge from a server.
pub const AUTH: &str = "valuecard/auth/v1";

/// The token message that the bank blind-signs and the center redeems. The tag doubles as
/// the token format's version.
pub const TOKEN: &str = "valuecard/token/v1";

/// The bank's list of denomination keys, signed with its long-term key.
pub const BANK_KEYS: &str = "valuecard/bank-keys/v1";

/// The scheme root's signature over an issuer or arbiter key (`anchor`).
pub const ANCHOR: &str = "valuecard/anchor/v1";

/// A card maker's certificate over a card's attestation key (`maker`).
pub const MAKER: &str = "valuecard/maker/v1";

/// A card's attestation, with its attestation key, that its card key was made inside it
/// (`maker`).
pub const ATTEST: &str = "valuecard/attest/v1";

/// The issuer's signed, versioned block list (`blocklist`).
pub const BLOCK_LIST: &str = "valuecard/block-list/v1";
