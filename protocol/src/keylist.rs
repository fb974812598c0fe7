//! The bank's published list of denomination keys, signed with its long-term key.
//!
//! The signed bytes are the list's JSON exactly as the bank wrote it (`payload`), so no
//! canonical re-encoding is needed: a verifier checks the bytes, then parses them.

use apdu_spec::cert::{decode_public_key, encode_public_key};
use apdu_spec::domain;
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::UnixTime;
use crate::token::{DenominationPublicKey, key_id};

/// One denomination key as the bank publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DenominationKeyInfo {
    /// SHA-256 of `public_key`, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String, example = "5c1f…(64 hex digits)")]
    pub key_id: [u8; 32],
    /// The amount a token signed by this key is worth.
    pub amount: u64,
    pub currency: String,
    /// Epoch number: `valid_from / epoch length`.
    pub epoch: u64,
    pub valid_from: UnixTime,
    /// Last second the bank signs withdrawals with this key.
    pub withdraw_until: UnixTime,
    /// Last second the center accepts tokens signed by this key.
    pub redeem_until: UnixTime,
    /// RSA-PSS SubjectPublicKeyInfo, DER, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub public_key: Vec<u8>,
}

impl DenominationKeyInfo {
    /// The key itself, checked against its id.
    pub fn key(&self) -> Result<DenominationPublicKey, KeyListError> {
        let key = DenominationPublicKey::from_spki(&self.public_key)
            .map_err(|_| KeyListError::BadKey(hex::encode(self.key_id)))?;
        if key_id(&self.public_key) != self.key_id {
            return Err(KeyListError::BadKey(hex::encode(self.key_id)));
        }
        Ok(key)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The bank's long-term ECDSA P-256 key, compressed SEC1, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub bank_public_key: [u8; 33],
    pub issued_at: UnixTime,
    pub currency: String,
    /// The amounts the bank issues tokens for.
    pub denominations: Vec<u64>,
    pub keys: Vec<DenominationKeyInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedKeyList {
    /// The `KeyList` as JSON text: these exact bytes are signed.
    pub payload: String,
    /// ECDSA P-256 / SHA-256 over `tagged("valuecard/bank-keys/v1", payload)`, r || s, hex.
    #[serde(with = "hex")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("the key list's signature does not verify with the bank key")]
    BadSignature,
    #[error("the key list is not well formed: {0}")]
    Malformed(String),
    #[error("the key list was signed by another bank key")]
    OtherBank,
    #[error("key {0} in the list is not a valid denomination key")]
    BadKey(String),
}

impl SignedKeyList {
    /// Signs the list. A list that does not serialise is an error, never a signature over
    /// an empty payload.
    pub fn sign(list: &KeyList, bank_key: &SigningKey) -> Result<Self, KeyListError> {
        let payload =
            serde_json::to_string(list).map_err(|e| KeyListError::Malformed(e.to_string()))?;
        let signature = domain::sign(bank_key, domain::BANK_KEYS, payload.as_bytes()).to_vec();
        Ok(SignedKeyList { payload, signature })
    }

    /// Checks the signature with the bank key the verifier trusts, then every key in it.
    pub fn verify(&self, bank_key: &VerifyingKey) -> Result<KeyList, KeyListError> {
        if !domain::verify(
            bank_key,
            domain::BANK_KEYS,
            self.payload.as_bytes(),
            &self.signature,
        ) {
            return Err(KeyListError::BadSignature);
        }
        let list: KeyList = serde_json::from_str(&self.payload)
            .map_err(|e| KeyListError::Malformed(e.to_string()))?;
        if list.bank_public_key != encode_public_key(bank_key) {
            return Err(KeyListError::OtherBank);
        }
        for key in &list.keys {
            key.key()?;
        }
        Ok(list)
    }
}

/// Parses a bank public key given as hex (compressed SEC1).
pub fn parse_bank_key(hex_key: &str) -> Option<VerifyingKey> {
    decode_public_key(&hex::decode(hex_key.trim()).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::DenominationSecretKey;
    use p256::elliptic_curve::Generate;

    fn list(bank: &SigningKey, key: &DenominationSecretKey) -> KeyList {
        let public = key.public();
        KeyList {
            bank_public_key: encode_public_key(bank.verifying_key()),
            issued_at: 1,
            currency: "JPY".into(),
            denominations: vec![1, 2, 4],
            keys: vec![DenominationKeyInfo {
                key_id: public.id(),
                amount: 4,
                currency: "JPY".into(),
                epoch: 0,
                valid_from: 0,
                withdraw_until: 10,
                redeem_until: 20,
                public_key: public.spki().to_vec(),
            }],
        }
    }

    #[test]
    fn signed_list_verifies_only_with_its_bank_and_unchanged() {
        let mut rng = rand::rng();
        let bank = SigningKey::generate_from_rng(&mut rng);
        let other = SigningKey::generate_from_rng(&mut rng);
        let key = DenominationSecretKey::generate(&mut rng).expect("keygen");
        let plain = list(&bank, &key);
        let signed = SignedKeyList::sign(&plain, &bank).expect("signs");

        assert_eq!(signed.verify(bank.verifying_key()), Ok(plain.clone()));
        assert_eq!(
            signed.verify(other.verifying_key()),
            Err(KeyListError::BadSignature)
        );

        let mut tampered = signed.clone();
        tampered.payload = tampered.payload.replace("\"amount\":4", "\"amount\":8");
        assert_ne!(tampered.payload, signed.payload);
        assert_eq!(
            tampered.verify(bank.verifying_key()),
            Err(KeyListError::BadSignature)
        );

        // Signed by the right key but naming another bank key inside.
        let mut foreign = plain.clone();
        foreign.bank_public_key = encode_public_key(other.verifying_key());
        let foreign = SignedKeyList::sign(&foreign, &bank).expect("signs");
        assert_eq!(
            foreign.verify(bank.verifying_key()),
            Err(KeyListError::OtherBank)
        );

        // A key whose id is not the hash of its SPKI.
        let mut wrong_id = plain;
        wrong_id.keys[0].key_id[0] ^= 1;
        let wrong_id = SignedKeyList::sign(&wrong_id, &bank).expect("signs");
        assert!(matches!(
            wrong_id.verify(bank.verifying_key()),
            Err(KeyListError::BadKey(_))
        ));
    }
}
