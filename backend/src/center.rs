//! The center (PROTOCOLS.md, "Funding: bank to center", step 6, and "Card life cycle"):
//! card registration with a unit account per card, the bank's keys, and token redemption;
//! and (module `units`) loads, unloads and tickets between the center and a card.
//!
//! Privacy: the center sees the card id and the amount, never the account. It keeps no time
//! finer than a day (a day number; certificates start at the day's first second): a time to
//! the second could be matched with the time of the bank's withdrawal record and link the
//! two. Challenges are deleted once used.

mod units;

pub use units::RANDOM_SERIAL_LEN;

use std::sync::Arc;

use p256::ecdsa::{SigningKey, VerifyingKey};
use rand::RngExt;

use apdu_spec::cert::{Certificate, decode_public_key, encode_public_key};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    CardBalance, CardBalanceRequest, CardProof, CenterInfo, Challenge, ChallengePurpose,
    ChallengeRequest, KeysImported, RedeemRequest, Redemption, RegisterRequest, Registration,
    UnitAccount,
};
use valuecard_protocol::keylist::{KeyListError, SignedKeyList};
use valuecard_protocol::token::{DenominationPublicKey, TokenMessage};

use crate::admin::AdminToken;
use crate::clock::{Clock, DAY};
use crate::db::{Database, Migration, Tx, Value};
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, KeyCache, KeyTable};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../migrations/sqlite/center/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_units",
        sql: include_str!("../migrations/sqlite/center/0002_units.sql"),
    },
];

/// How long a challenge can be used, in seconds.
pub const CHALLENGE_TTL: u64 = 120;
/// How long a card certificate is valid: five years (with one leap day).
pub const CERTIFICATE_VALIDITY: u64 = (5 * 365 + 1) * DAY;

#[derive(Clone, Debug)]
pub struct CenterConfig {
    pub currency: String,
    /// The bank's long-term key: the center imports only key lists signed by it.
    pub bank_public_key: VerifyingKey,
    /// The arbiter's key, handed to cards at registration.
    pub arbiter_public_key: VerifyingKey,
}

/// A bank key as the center knows it, parsed once: keys never change once imported.
struct RedeemKey {
    amount: u64,
    currency: String,
    valid_from: u64,
    redeem_until: u64,
    public: DenominationPublicKey,
}

pub struct Center {
    db: Database,
    clock: Arc<dyn Clock>,
    config: CenterConfig,
    issuer: SigningKey,
    /// For the admin routes (issuing tickets, any card's ledger).
    admin: AdminToken,
    keys: KeyCache<RedeemKey>,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center")
            .field("issuer_public_key", &hex::encode(self.issuer_public_key()))
            .field("currency", &self.config.currency)
            .finish_non_exhaustive()
    }
}

fn purpose_name(p: ChallengePurpose) -> &'static str {
    match p {
        ChallengePurpose::Register => "register",
        ChallengePurpose::Balance => "balance",
    }
}

fn today(now: u64) -> u64 {
    now / DAY
}

fn bad_challenge() -> ApiError {
    ApiError::new(
        ErrorCode::BadChallenge,
        "the challenge is unknown, used, expired, or for another purpose: ask for a new one",
    )
}

fn unknown_card(card_id: &[u8; 32]) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownCard,
        format!("card {} is not registered", hex::encode(card_id)),
    )
}

impl Center {
    /// Opens the center's SQLite database (`:memory:` works) and loads or makes the issuer key.
    pub fn open(
        path: &str,
        clock: Arc<dyn Clock>,
        config: CenterConfig,
        admin_token: &str,
    ) -> Result<Self, String> {
        let db = Database::open_sqlite(path, "center", MIGRATIONS).map_err(|e| e.to_string())?;
        Self::new(db, clock, config, admin_token)
    }

    /// A center over a database already brought to the center's schema.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        config: CenterConfig,
        admin_token: &str,
    ) -> Result<Self, String> {
        // The currency is also a card's asset code (loads and unloads carry it).
        if !apdu_spec::units::asset_code_ok(&config.currency) {
            return Err("the currency must be 1 to 8 printable ASCII characters".into());
        }
        let admin = AdminToken::new(admin_token)?;
        let issuer = keys::load_or_generate(&db, KeyTable::Issuer).map_err(|e| e.to_string())?;
        Ok(Center {
            db,
            clock,
            config,
            issuer,
            admin,
            keys: KeyCache::default(),
        })
    }

    /// Checks the admin token (`Authorization: Bearer ...`) in constant time.
    pub fn check_admin(&self, presented: Option<&str>) -> ApiResult<()> {
        self.admin.check(presented)
    }

    pub fn issuer_public_key(&self) -> [u8; 33] {
        encode_public_key(self.issuer.verifying_key())
    }

    /// The issuer key, for the arbiter that runs next to this center.
    pub fn issuer_verifying_key(&self) -> &VerifyingKey {
        self.issuer.verifying_key()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn info(&self) -> CenterInfo {
        CenterInfo {
            issuer_public_key: self.issuer_public_key(),
            arbiter_public_key: encode_public_key(&self.config.arbiter_public_key),
            bank_public_key: encode_public_key(&self.config.bank_public_key),
            currency: self.config.currency.clone(),
        }
    }

    /// A fresh random challenge for one registration or one balance query.
    pub fn challenge(&self, req: &ChallengeRequest) -> ApiResult<Challenge> {
        let now = self.clock.now();
        let challenge: [u8; 32] = rand::rng().random();
        let expires_at = now + CHALLENGE_TTL;
        self.db.transaction(|tx| -> ApiResult<()> {
            // Challenges nobody used are of no use once expired.
            tx.execute(
                "DELETE FROM challenges WHERE expires_at < ?1",
                &[Value::uint(now)?],
            )?;
            tx.execute(
                "INSERT INTO challenges (challenge, purpose, expires_at) VALUES (?1, ?2, ?3)",
                &[
                    challenge.into(),
                    purpose_name(req.purpose).into(),
                    Value::uint(expires_at)?,
                ],
            )?;
            Ok(())
        })?;
        Ok(Challenge {
            challenge,
            purpose: req.purpose,
            expires_at,
        })
    }

    /// Registers a card: its certificate and its unit account. A card registered before
    /// gets its first certificate again (`replayed`).
    pub fn register(&self, req: &RegisterRequest) -> ApiResult<Registration> {
        let card_key = decode_public_key(&req.public_key).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                "the public key is not a compressed P-256 point",
            )
        })?;
        let card_id = apdu_spec::card_id(&req.public_key);
        let now = self.clock.now();
        let answer = |certificate: Vec<u8>, replayed: bool| Registration {
            card_id,
            certificate,
            issuer_public_key: self.issuer_public_key(),
            arbiter_public_key: encode_public_key(&self.config.arbiter_public_key),
            replayed,
        };
        self.db.transaction(|tx| {
            consume_challenge(tx, &req.proof, ChallengePurpose::Register, &card_key, now)?;
            if let Some(row) = tx.query_opt(
                "SELECT certificate FROM cards WHERE card_id = ?1",
                &[card_id.into()],
            )? {
                return Ok(answer(row.blob(0)?, true));
            }
            let not_before = today(now) * DAY;
            let certificate =
                Certificate::issue(&self.issuer, &card_key, not_before, not_before + CERTIFICATE_VALIDITY).encode();
            tx.execute(
                "INSERT INTO cards (card_id, public_key, certificate, registered_day) VALUES (?1, ?2, ?3, ?4)",
                &[card_id.into(), req.public_key.into(), certificate.as_slice().into(), Value::uint(today(now))?],
            )?;
            tx.execute(
                "INSERT INTO unit_accounts (card_id, asset, balance) VALUES (?1, ?2, 0)",
                &[card_id.into(), self.config.currency.as_str().into()],
            )?;
            Ok(answer(certificate, false))
        })
    }

    /// Imports the bank's signed key list. Idempotent: known keys are left as they are.
    pub fn import_keys(&self, list: &SignedKeyList) -> ApiResult<KeysImported> {
        let list = list
            .verify(&self.config.bank_public_key)
            .map_err(|e| match e {
                KeyListError::BadSignature | KeyListError::OtherBank => {
                    ApiError::new(ErrorCode::BadSignature, e.to_string())
                }
                KeyListError::Malformed(_) | KeyListError::BadKey(_) => {
                    ApiError::new(ErrorCode::InvalidField, e.to_string())
                }
            })?;
        if let Some(key) = list
            .keys
            .iter()
            .find(|k| k.currency != self.config.currency)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "key {} is for {}, the center takes {}",
                    hex::encode(key.key_id),
                    key.currency,
                    self.config.currency
                ),
            ));
        }
        self.db.transaction(|tx| {
            let mut imported = 0u64;
            for key in &list.keys {
                imported += tx.execute(
                    "INSERT INTO denomination_keys
                         (key_id, amount, currency, epoch, valid_from, withdraw_until, redeem_until, public_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (key_id) DO NOTHING",
                    &[
                        key.key_id.into(),
                        Value::uint(key.amount)?,
                        key.currency.as_str().into(),
                        Value::uint(key.epoch)?,
                        Value::uint(key.valid_from)?,
                        Value::uint(key.withdraw_until)?,
                        Value::uint(key.redeem_until)?,
                        key.public_key.as_slice().into(),
                    ],
                )? as u64;
            }
            let known = tx.query_opt("SELECT COUNT(*) FROM denomination_keys", &[])?;
            let known = known.map(|r| r.u64(0)).transpose()?.unwrap_or(0);
            Ok(KeysImported { imported, known })
        })
    }

    /// Credits a token to the card it names, once.
    pub fn redeem(&self, req: &RedeemRequest) -> ApiResult<Redemption> {
        let message = TokenMessage::decode(&req.message)
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.to_string()))?;
        let key = self.redeem_key(&message.key_id)?;
        if message.amount != key.amount {
            return Err(ApiError::new(
                ErrorCode::AmountMismatch,
                format!(
                    "the token says {}, its key stands for {}",
                    message.amount, key.amount
                ),
            ));
        }
        // RSA verification runs outside the transaction.
        key.public
            .verify(&req.signature, &req.randomizer, &req.message)
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::BadSignature,
                    "the token signature does not verify with its bank key",
                )
            })?;
        let now = self.clock.now();
        let answer = |replayed: bool| Redemption {
            nonce: message.nonce,
            card_id: message.card_id,
            key_id: message.key_id,
            amount: message.amount,
            asset: key.currency.clone(),
            replayed,
        };
        self.db.transaction(|tx| {
            if let Some(row) = tx.query_opt("SELECT message FROM redemptions WHERE nonce = ?1", &[message.nonce.into()])? {
                if row.blob(0)? == req.message {
                    return Ok(answer(true));
                }
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("nonce {} was redeemed with another token message", hex::encode(message.nonce)),
                ));
            }
            if now < key.valid_from || now > key.redeem_until {
                return Err(ApiError::new(
                    ErrorCode::KeyExpired,
                    format!(
                        "key {} redeems tokens from {} to {} only",
                        hex::encode(message.key_id),
                        key.valid_from,
                        key.redeem_until
                    ),
                ));
            }
            if tx.query_opt("SELECT 1 FROM cards WHERE card_id = ?1", &[message.card_id.into()])?.is_none() {
                return Err(unknown_card(&message.card_id));
            }
            // The trigger `redemptions_credit` credits the card's unit account; the primary
            // key on the nonce makes a second credit impossible.
            tx.execute(
                "INSERT INTO redemptions
                     (nonce, message, randomizer, signature, card_id, key_id, amount, asset, redeemed_day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                &[
                    message.nonce.into(),
                    req.message.as_slice().into(),
                    req.randomizer.into(),
                    req.signature.as_slice().into(),
                    message.card_id.into(),
                    message.key_id.into(),
                    Value::uint(message.amount)?,
                    key.currency.as_str().into(),
                    Value::uint(today(now))?,
                ],
            )?;
            Ok(answer(false))
        })
    }

    /// A card's unit accounts, shown against a fresh balance challenge signed by the card.
    pub fn balance(&self, req: &CardBalanceRequest) -> ApiResult<CardBalance> {
        let now = self.clock.now();
        self.db.transaction(|tx| {
            let card = RegisteredCard::find(tx, &req.card_id)?;
            consume_challenge(tx, &req.proof, ChallengePurpose::Balance, &card.key, now)?;
            Ok(CardBalance {
                card_id: req.card_id,
                accounts: unit_accounts(tx, &req.card_id)?,
            })
        })
    }

    fn redeem_key(&self, key_id: &[u8; 32]) -> ApiResult<Arc<RedeemKey>> {
        self.keys.get_or_load(key_id, || {
            let row = self.db.transaction(|tx| {
                tx.query_opt(
                    "SELECT amount, currency, valid_from, redeem_until, public_key FROM denomination_keys WHERE key_id = ?1",
                    &[key_id.into()],
                )
            })?;
            let row = row.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownKey,
                    format!(
                        "the center does not know bank key {}: post the bank's key list to /center/v1/bank-keys, then retry",
                        hex::encode(key_id)
                    ),
                )
            })?;
            let public = DenominationPublicKey::from_spki(&row.blob(4)?)
                .map_err(|_| ApiError::internal("a stored bank key does not parse"))?;
            Ok(RedeemKey {
                amount: row.u64(0)?,
                currency: row.text(1)?,
                valid_from: row.u64(2)?,
                redeem_until: row.u64(3)?,
                public,
            })
        })
    }
}

/// A registered card as the center keeps it.
struct RegisteredCard {
    key: VerifyingKey,
    certificate: Vec<u8>,
}

impl RegisteredCard {
    /// The card `card_id`, or UnknownCard.
    fn find(tx: &mut dyn Tx, card_id: &[u8; 32]) -> ApiResult<Self> {
        let row = tx
            .query_opt(
                "SELECT public_key, certificate FROM cards WHERE card_id = ?1",
                &[card_id.into()],
            )?
            .ok_or_else(|| unknown_card(card_id))?;
        Ok(RegisteredCard {
            key: decode_public_key(&row.blob(0)?)
                .ok_or_else(|| ApiError::internal("a stored card key does not parse"))?,
            certificate: row.blob(1)?,
        })
    }
}

/// A card's unit accounts, by asset.
fn unit_accounts(tx: &mut dyn Tx, card_id: &[u8; 32]) -> ApiResult<Vec<UnitAccount>> {
    tx.query(
        "SELECT asset, balance FROM unit_accounts WHERE card_id = ?1 ORDER BY asset",
        &[card_id.into()],
    )?
    .iter()
    .map(|r| {
        Ok(UnitAccount {
            asset: r.text(0)?,
            balance: r.u64(1)?,
        })
    })
    .collect()
}

/// Checks a card's proof against a live challenge for `purpose`, and uses the challenge up.
/// Runs inside the caller's transaction: if the caller fails later, the challenge is kept.
fn consume_challenge(
    tx: &mut dyn Tx,
    proof: &CardProof,
    purpose: ChallengePurpose,
    card_key: &VerifyingKey,
    now: u64,
) -> ApiResult<()> {
    let live = tx.query_opt(
        "SELECT 1 FROM challenges WHERE challenge = ?1 AND purpose = ?2 AND expires_at >= ?3",
        &[
            proof.challenge.into(),
            purpose_name(purpose).into(),
            Value::uint(now)?,
        ],
    )?;
    if live.is_none() {
        return Err(bad_challenge());
    }
    if !apdu_spec::auth::verify(card_key, &proof.challenge, &proof.signature) {
        return Err(ApiError::new(
            ErrorCode::BadSignature,
            "the card's signature over the challenge does not verify",
        ));
    }
    tx.execute(
        "DELETE FROM challenges WHERE challenge = ?1",
        &[proof.challenge.into()],
    )?;
    Ok(())
}
