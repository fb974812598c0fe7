//! ATTEST: the card vouches, with the attestation key its maker certified, that its card
//! key was made on it (PROTOCOLS.md, "Keys" and "Card life cycle"; the bytes are in
//! `apdu_spec::maker`).
//!
//! Anyone may send ATTEST: the answer names no secret and proves one thing only, that the
//! key GENERATE KEY made on this card is this card's. The attestation key signs nothing but
//! `own public key ‖ challenge`, under its own domain: no body can make it vouch for
//! another key, and the server's fresh challenge keeps an old answer from passing as new.
//! The center registers a key only with this answer and INTERNAL AUTHENTICATE's, so a relay
//! that replays a genuine card's attestation still needs that card to sign the challenge.

use apdu_spec::maker::{Attestation, MakerCertificate};
use apdu_spec::{Status, auth};

use super::Applet;

impl Applet {
    /// Reads and writes nothing persistent: p256 signs deterministically (RFC 6979).
    pub(super) fn attest(&self, challenge: &[u8]) -> Result<Vec<u8>, Status> {
        // The same bounds as INTERNAL AUTHENTICATE's: the center sends one challenge to
        // both.
        if !auth::challenge_len_ok(challenge.len()) {
            return Err(Status::WrongLength);
        }
        // A card nobody manufactured has nothing to attest with.
        let manufacture = self
            .persistent
            .manufacture
            .as_ref()
            .ok_or(Status::KeyReferenceNotFound)?;
        // `decode` refuses a state file whose record does not fit together, and the
        // dispatcher lets ATTEST through only in keyed and active, which hold a key: the
        // refusals below are out of reach.
        let certificate = MakerCertificate::decode(&manufacture.maker_certificate)
            .map_err(|_| Status::KeyReferenceNotFound)?;
        let attestation_key = self.attestation_key().ok_or(Status::KeyReferenceNotFound)?;
        let own = self
            .persistent
            .key
            .as_ref()
            .ok_or(Status::ConditionsOfUseNotSatisfied)?;
        Ok(Attestation::sign(&attestation_key, certificate, &own.public, challenge).encode())
    }
}
