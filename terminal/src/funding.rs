//! The terminal's steps of funding (PROTOCOLS.md, "Funding: bank to center"): the bank's key
//! list, checked with the bank key the center trusts; one blinded token per piece; the bank's
//! blind signature, unblinded and checked; the center's credit. Every network step is
//! journaled before it is taken and after it is answered, so that `valuecard recover` can
//! finish any of them (see `journal`). The crash tests stop the process between the steps
//! (see `fault`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{SystemTime, UNIX_EPOCH};

use p256::ecdsa::VerifyingKey;
use rand::CryptoRng;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{RedeemRequest, Redemption, WithdrawRequest};
use valuecard_protocol::keylist::{DenominationKeyInfo, KeyList, KeyListError, SignedKeyList};
use valuecard_protocol::token::{DenominationPublicKey, TokenError, TokenMessage};

use crate::backend_client::{BackendError, BankClient, CenterClient};
use crate::fault::{self, Point};
use crate::journal::{Journal, JournalError, Piece, PieceState};

#[derive(Debug, thiserror::Error)]
pub enum FundingError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the bank's key list does not check out with the bank key the center trusts: {0}")]
    KeyList(#[from] KeyListError),
    #[error("the bank has no current key for {amount} {currency}")]
    NoKey { amount: u64, currency: String },
    #[error("{context}: {source}")]
    Token { context: String, source: TokenError },
    /// An answer about something else than what was asked.
    #[error("{0}")]
    Mismatch(String),
}

pub type Result<T, E = FundingError> = std::result::Result<T, E>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The bank's key list and what it says, checked.
#[derive(Clone, Debug)]
pub struct BankKeys {
    pub signed: SignedKeyList,
    pub list: KeyList,
}

/// Fetches the bank's key list with current keys for `amounts`, and checks it with the bank
/// key the center trusts: a bank endpoint that is not the center's bank cannot slip in a key
/// whose tokens the center would refuse.
pub fn fetch_keys(bank: &BankClient, trusted: &VerifyingKey, amounts: &[u64]) -> Result<BankKeys> {
    let signed = bank.keys(amounts)?;
    let list = signed.verify(trusted)?;
    Ok(BankKeys { signed, list })
}

/// The key to withdraw `amount` with now: of the bank's keys for that amount and currency
/// whose withdrawal window is open, the newest.
pub fn current_key<'a>(
    list: &'a KeyList,
    amount: u64,
    currency: &str,
    now: u64,
) -> Option<&'a DenominationKeyInfo> {
    list.keys
        .iter()
        .filter(|k| k.amount == amount && k.currency == currency)
        .filter(|k| k.valid_from <= now && now <= k.withdraw_until)
        .max_by_key(|k| k.valid_from)
}

/// One token message per key, for `card_id`, blinded for its key: the pieces of a new
/// withdrawal, ready to be journaled.
pub fn blind_pieces<R: CryptoRng + ?Sized>(
    rng: &mut R,
    card_id: [u8; 32],
    keys: &[&DenominationKeyInfo],
) -> Result<Vec<Piece>> {
    keys.iter()
        .map(|info| {
            let context = || format!("the bank key {}", hex::encode(info.key_id));
            let key = info.key().map_err(FundingError::KeyList)?;
            let message = TokenMessage::new(rng, card_id, info.key_id, info.amount).encode();
            let blinded = key
                .blind(rng, &message)
                .map_err(|source| FundingError::Token {
                    context: context(),
                    source,
                })?;
            Ok(Piece {
                amount: info.amount,
                key_id: info.key_id,
                key_spki: info.public_key.clone(),
                message,
                state: PieceState::Blinded { blinded },
            })
        })
        .collect()
}

fn piece_key(piece: &Piece) -> Result<DenominationPublicKey> {
    let key = DenominationPublicKey::from_spki(&piece.key_spki).map_err(|source| {
        FundingError::Token {
            context: "the journal's denomination key".into(),
            source,
        }
    })?;
    if key.id() != piece.key_id {
        return Err(FundingError::Mismatch(
            "the journal's denomination key does not match its key id".into(),
        ));
    }
    Ok(key)
}

/// What the bank said to a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The bank had signed this blinded message before (and debited then, not now).
    pub replayed: bool,
}

/// blinded → signed: sends the journaled blinded message to the bank (again, if it was sent
/// before: the bank answers the same signature and debits nothing more), unblinds and checks
/// the answer, and journals the token.
pub fn sign_piece(
    journal: &mut Journal,
    id: &str,
    message: &[u8],
    bank: &BankClient,
    credential: &str,
) -> Result<Signed> {
    let missing = || {
        FundingError::Journal(JournalError::Transition(format!(
            "withdrawal {id} has no such piece"
        )))
    };
    let withdrawal = journal.withdrawal(id).ok_or_else(missing)?;
    let piece = journal.piece(id, message).ok_or_else(missing)?;
    let PieceState::Blinded { blinded } = &piece.state else {
        return Err(FundingError::Journal(JournalError::Transition(format!(
            "the piece is {}, not blinded",
            piece.state.name()
        ))));
    };
    let key = piece_key(piece)?;
    let request = WithdrawRequest {
        account: withdrawal.account.clone(),
        credential: credential.to_string(),
        key_id: piece.key_id,
        blinded_message: blinded.blinded_message.clone(),
    };
    let answer = bank.withdraw(&request)?;
    fault::reached(Point::BankAnswered);
    if answer.key_id != piece.key_id || answer.amount != piece.amount {
        return Err(FundingError::Mismatch(format!(
            "the bank signed {} with key {} for a piece of {} with key {}",
            answer.amount,
            hex::encode(answer.key_id),
            piece.amount,
            hex::encode(piece.key_id)
        )));
    }
    // Finalize checks the unblinded signature: a bad answer is never journaled as a token.
    let signature = key
        .finalize(&answer.blind_signature, blinded, &piece.message)
        .map_err(|source| FundingError::Token {
            context: format!("the bank's answer for the piece of {}", piece.amount),
            source,
        })?;
    journal.mark_signed(id, message, signature)?;
    fault::reached(Point::JournalSigned);
    Ok(Signed {
        replayed: answer.replayed,
    })
}

/// The bank key lists at hand, by bank, for the center that does not know a key yet.
#[derive(Default)]
pub struct KeyLists {
    by_bank: HashMap<String, SignedKeyList>,
}

impl KeyLists {
    pub fn insert(&mut self, bank: &BankClient, list: SignedKeyList) {
        self.by_bank.insert(bank.base().to_string(), list);
    }

    /// The list from `bank`, fetched if not at hand. The center checks its signature.
    fn get(&mut self, bank: &BankClient, amount: u64) -> Result<&SignedKeyList> {
        Ok(match self.by_bank.entry(bank.base().to_string()) {
            Entry::Occupied(at_hand) => at_hand.into_mut(),
            Entry::Vacant(slot) => slot.insert(bank.keys(&[amount])?),
        })
    }

    fn forget(&mut self, bank: &BankClient) {
        self.by_bank.remove(bank.base());
    }
}

/// signed → redeemed: sends the journaled token to the center (again, if it was sent before:
/// the center credits a nonce once and answers the first result again), and journals it as
/// redeemed. A center that does not know the token's bank key yet gets the bank's key list
/// relayed, and the token once more.
pub fn redeem_piece(
    journal: &mut Journal,
    id: &str,
    message: &[u8],
    center: &CenterClient,
    bank: &BankClient,
    key_lists: &mut KeyLists,
) -> Result<Redemption> {
    let missing = || {
        FundingError::Journal(JournalError::Transition(format!(
            "withdrawal {id} has no such piece"
        )))
    };
    let withdrawal = journal.withdrawal(id).ok_or_else(missing)?;
    let card_id = withdrawal.card_id;
    let piece = journal.piece(id, message).ok_or_else(missing)?;
    let PieceState::Signed {
        randomizer,
        signature,
    } = &piece.state
    else {
        return Err(FundingError::Journal(JournalError::Transition(format!(
            "the piece is {}, not signed",
            piece.state.name()
        ))));
    };
    let token = TokenMessage::decode(&piece.message).map_err(|source| FundingError::Token {
        context: "the journal's token".into(),
        source,
    })?;
    let request = RedeemRequest {
        message: piece.message.clone(),
        randomizer: *randomizer,
        signature: signature.clone(),
    };
    let (amount, key_id) = (piece.amount, piece.key_id);
    let answer = match center.redeem(&request) {
        Err(e) if e.code() == Some(ErrorCode::UnknownKey) => {
            // A list fetched earlier may predate the key: fetch it fresh if the first relay
            // does not help... once. The center answers unknown_key again if even the
            // fresh list lacks the key.
            let imported = center.import_bank_keys(key_lists.get(bank, amount)?)?;
            if imported.imported == 0 {
                key_lists.forget(bank);
                center.import_bank_keys(key_lists.get(bank, amount)?)?;
            }
            center.redeem(&request)?
        }
        other => other?,
    };
    fault::reached(Point::CenterAnswered);
    if answer.nonce != token.nonce
        || answer.card_id != card_id
        || answer.amount != amount
        || answer.key_id != key_id
    {
        return Err(FundingError::Mismatch(format!(
            "the center answered a redemption of {} for card {} to a token of {} for card {}",
            answer.amount,
            hex::encode_upper(answer.card_id),
            amount,
            hex::encode_upper(card_id)
        )));
    }
    journal.mark_redeemed(id, message)?;
    fault::reached(Point::JournalRedeemed);
    Ok(answer)
}

/// A bank refusal after which a blinded piece can be dropped: the bank answered an error,
/// which leaves it as it was, so it did not sign (and did not debit) this blinded message,
/// and asking again will not change that. A bad credential or a fault on the bank's side is
/// not one: the piece stays for `valuecard recover`.
pub fn bank_refused_for_good(error: &FundingError) -> bool {
    let FundingError::Backend(e) = error else {
        return false;
    };
    matches!(
        e.code(),
        Some(
            ErrorCode::InsufficientFunds
                | ErrorCode::KeyExpired
                | ErrorCode::UnknownKey
                | ErrorCode::AmountMismatch
                | ErrorCode::UnknownAccount
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(amount: u64, valid_from: u64, withdraw_until: u64) -> DenominationKeyInfo {
        DenominationKeyInfo {
            key_id: [amount as u8 ^ valid_from as u8; 32],
            amount,
            currency: "JPY".into(),
            epoch: valid_from / 100,
            valid_from,
            withdraw_until,
            redeem_until: withdraw_until + 100,
            public_key: vec![],
        }
    }

    #[test]
    fn the_current_key_is_the_newest_open_one() {
        let list = KeyList {
            bank_public_key: [2; 33],
            issued_at: 0,
            currency: "JPY".into(),
            denominations: vec![4, 8],
            keys: vec![
                info(8, 0, 150),
                info(8, 100, 250),
                info(8, 200, 350),
                info(4, 100, 250),
            ],
        };
        assert_eq!(
            current_key(&list, 8, "JPY", 210).map(|k| k.valid_from),
            Some(200)
        );
        assert_eq!(
            current_key(&list, 8, "JPY", 120).map(|k| k.valid_from),
            Some(100)
        );
        assert_eq!(current_key(&list, 8, "JPY", 400), None);
        assert_eq!(current_key(&list, 8, "EUR", 210), None);
        assert_eq!(current_key(&list, 16, "JPY", 210), None);
        assert_eq!(
            current_key(&list, 4, "JPY", 250).map(|k| k.valid_from),
            Some(100)
        );
    }

    #[test]
    fn blinded_pieces_finalize_to_tokens_for_the_card() {
        use valuecard_protocol::token::DenominationSecretKey;
        let mut rng = rand::rng();
        let secret = DenominationSecretKey::generate(&mut rng).expect("key");
        let public = secret.public();
        let mut key = info(32, 0, 100);
        key.key_id = public.id();
        key.public_key = public.spki().to_vec();
        let pieces = blind_pieces(&mut rng, [7; 32], &[&key, &key]).expect("blinded");
        assert_eq!(pieces.len(), 2);
        assert_ne!(
            pieces[0].message, pieces[1].message,
            "every token has its nonce"
        );
        for piece in &pieces {
            let token = TokenMessage::decode(&piece.message).expect("a token message");
            assert_eq!(
                (token.card_id, token.key_id, token.amount),
                ([7; 32], public.id(), 32)
            );
            let PieceState::Blinded { blinded } = &piece.state else {
                panic!("a new piece is blinded");
            };
            let blind_signature = secret.blind_sign(&blinded.blinded_message).expect("signed");
            let key = piece_key(piece).expect("the journaled key");
            let signature = key
                .finalize(&blind_signature, blinded, &piece.message)
                .expect("finalized");
            key.verify(&signature, &blinded.randomizer, &piece.message)
                .expect("verifies");
        }
    }

    #[test]
    fn only_definite_bank_refusals_drop_a_piece() {
        let api = |code| {
            FundingError::Backend(BackendError::Api {
                role: crate::backend_client::Role::Bank,
                url: String::new(),
                status: code_status(code),
                code,
                message: String::new(),
            })
        };
        fn code_status(code: ErrorCode) -> u16 {
            code.http_status()
        }
        assert!(bank_refused_for_good(&api(ErrorCode::InsufficientFunds)));
        assert!(bank_refused_for_good(&api(ErrorCode::KeyExpired)));
        assert!(!bank_refused_for_good(&api(ErrorCode::BadCredential)));
        assert!(!bank_refused_for_good(&api(ErrorCode::Internal)));
        assert!(!bank_refused_for_good(&api(ErrorCode::Conflict)));
        let network = FundingError::Backend(BackendError::Network {
            role: crate::backend_client::Role::Bank,
            url: String::new(),
            detail: String::new(),
        });
        assert!(!bank_refused_for_good(&network));
    }
}
