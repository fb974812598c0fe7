//! The scheme's public keys, made in one offline step (`valuecard-backend keys init`) and
//! handed to every role: `scheme.json`.
//!
//! The scheme operator's root key certifies the issuer key and the arbiter key (apdu-spec
//! `anchor`); cards receive the root's public key at manufacture and take the issuer and
//! arbiter keys only under its signature. The bank's long-term key is here too, so that the
//! center knows whose key lists to take. Nothing in this file is secret.

use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};

use apdu_spec::anchor::{Anchor, AnchorError, AnchorRole};
use apdu_spec::cert::{decode_public_key, encode_public_key};

/// The file's format version.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    pub format: u32,
    #[serde(with = "hex")]
    pub root_public_key: [u8; 33],
    /// The root's anchor over the issuer key (`7F22`), hex.
    #[serde(with = "hex")]
    pub issuer_anchor: Vec<u8>,
    /// The root's anchor over the arbiter key (`7F22`), hex.
    #[serde(with = "hex")]
    pub arbiter_anchor: Vec<u8>,
    #[serde(with = "hex")]
    pub bank_public_key: [u8; 33],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("the scheme file is format {0}, this program reads format {FORMAT}")]
    Format(u32),
    #[error("the {0} key in the scheme file is not a compressed P-256 point")]
    BadKey(&'static str),
    #[error("the {0} anchor in the scheme file: {1}")]
    Anchor(&'static str, AnchorError),
}

/// The scheme's keys, checked: the anchors verify under the root.
#[derive(Clone, Debug)]
pub struct SchemeKeys {
    pub root: VerifyingKey,
    pub issuer: VerifyingKey,
    pub arbiter: VerifyingKey,
    pub bank: VerifyingKey,
    pub issuer_anchor: Anchor,
    pub arbiter_anchor: Anchor,
}

impl Scheme {
    /// The scheme of `root`'s anchors and the bank key.
    pub fn new(
        root: &VerifyingKey,
        issuer: &Anchor,
        arbiter: &Anchor,
        bank: &VerifyingKey,
    ) -> Self {
        Scheme {
            format: FORMAT,
            root_public_key: encode_public_key(root),
            issuer_anchor: issuer.encode(),
            arbiter_anchor: arbiter.encode(),
            bank_public_key: encode_public_key(bank),
        }
    }

    /// Every key, after checking the anchors against the root.
    pub fn keys(&self) -> Result<SchemeKeys, SchemeError> {
        if self.format != FORMAT {
            return Err(SchemeError::Format(self.format));
        }
        let root = decode_public_key(&self.root_public_key).ok_or(SchemeError::BadKey("root"))?;
        let bank = decode_public_key(&self.bank_public_key).ok_or(SchemeError::BadKey("bank"))?;
        let anchor = |bytes: &[u8],
                      role: AnchorRole|
         -> Result<(Anchor, VerifyingKey), SchemeError> {
            let anchor = Anchor::decode(bytes).map_err(|e| SchemeError::Anchor(role.name(), e))?;
            let key = anchor
                .verify(&root, role)
                .map_err(|e| SchemeError::Anchor(role.name(), e))?;
            Ok((anchor, key))
        };
        let (issuer_anchor, issuer) = anchor(&self.issuer_anchor, AnchorRole::Issuer)?;
        let (arbiter_anchor, arbiter) = anchor(&self.arbiter_anchor, AnchorRole::Arbiter)?;
        Ok(SchemeKeys {
            root,
            issuer,
            arbiter,
            bank,
            issuer_anchor,
            arbiter_anchor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    fn key(secret: u8) -> SigningKey {
        SigningKey::from_slice(&[secret; 32]).expect("a scalar")
    }

    #[test]
    fn the_anchors_must_be_the_roots() {
        let (root, issuer, arbiter, bank) = (key(1), key(2), key(3), key(4));
        let scheme = Scheme::new(
            root.verifying_key(),
            &Anchor::issue(&root, AnchorRole::Issuer, issuer.verifying_key()),
            &Anchor::issue(&root, AnchorRole::Arbiter, arbiter.verifying_key()),
            bank.verifying_key(),
        );
        let text = serde_json::to_string(&scheme).expect("serialises");
        let read: Scheme = serde_json::from_str(&text).expect("parses");
        let keys = read.keys().expect("checks");
        assert_eq!(keys.issuer, *issuer.verifying_key());
        assert_eq!(keys.arbiter, *arbiter.verifying_key());

        let swapped = Scheme {
            issuer_anchor: scheme.arbiter_anchor.clone(),
            ..scheme.clone()
        };
        assert!(matches!(
            swapped.keys(),
            Err(SchemeError::Anchor("issuer", _))
        ));
        let other_root = Scheme {
            root_public_key: encode_public_key(key(5).verifying_key()),
            ..scheme
        };
        assert!(matches!(
            other_root.keys(),
            Err(SchemeError::Anchor(_, AnchorError::BadSignature))
        ));
    }
}
