//! INTERNAL AUTHENTICATE: the card signs a server's challenge with its own key.

use apdu_spec::{Status, auth};

use super::Applet;

impl Applet {
    /// Reads the key and writes nothing: p256 signs deterministically (RFC 6979), so there
    /// is no state to keep and nothing to commit.
    pub(super) fn internal_authenticate(&self, challenge: &[u8]) -> Result<Vec<u8>, Status> {
        if !auth::challenge_len_ok(challenge.len()) {
            return Err(Status::WrongLength);
        }
        // The dispatcher lets this command through only in keyed and active, which hold a
        // key, and `decode` refuses a state file whose key is not a valid one: both `None`
        // and a bad scalar are out of reach, and would mean "no usable key".
        let key = self.card_key().ok_or(Status::ConditionsOfUseNotSatisfied)?;
        Ok(auth::sign(&key, challenge).to_vec())
    }
}
