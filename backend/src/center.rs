//! The center (PROTOCOLS.md, "Funding: bank to center", step 6, "Card life cycle" and
//! invariant 5): card registration with a unit account per card, the bank's keys, and token
//! redemption; (module `units`) loads, unloads and tickets between the center and a card;
//! (module `blocks`) the block list and the float.
//!
//! - **Only genuine cards.** A card is registered only with its maker's attestation over its
//!   key and the center's fresh challenge (`maker::Attestation`), from a maker the center is
//!   configured to trust and that is not blocked. An attestation key vouches for one card key
//!   in its life: a chip whose attestation key was extracted can make one registered card, not
//!   a thousand. Every refusal writes nothing, and leaves the challenge unused.
//! - **Blocked cards** (by card id, or by their maker) get no registration, load, unload,
//!   ticket, balance or ledger by card proof. Their load cancellations still go through, so
//!   that units a load took come back to the unit account; the staff may still read their
//!   ledger with the admin token.
//! - **The float.** Per asset, what the cards hold in all (loads − refunds − unloads) never
//!   goes below zero: an unload that would take it there is refused (`float_exceeded`),
//!   recorded as an alarm and logged. No card total, balance or float can pass 2^63 − 1: the
//!   code checks before it writes, and the schema refuses by itself.
//!
//! Privacy: the center sees the card id and the amount, never the account. It keeps no time
//! finer than a day (a day number; certificates start at the day's first second): a time to
//! the second could be matched with the time of the bank's withdrawal record and link the
//! two. Challenges are deleted once used. Log lines name no card.

mod blocks;
mod units;

pub use blocks::{MAX_ALARMS_PER_CARD, MAX_REASON_LEN};
pub use units::RANDOM_SERIAL_LEN;

use std::collections::BTreeMap;

use std::sync::Arc;

use p256::ecdsa::{SigningKey, VerifyingKey};
use rand::RngExt;

use apdu_spec::cert::{Certificate, decode_public_key, encode_public_key};
use apdu_spec::maker::{Attestation, MakerError, maker_id};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    CardBalance, CardBalanceRequest, CardProof, CenterInfo, Challenge, ChallengePurpose,
    ChallengeRequest, HexId, KeysImported, RedeemRequest, Redemption, RegisterRequest,
    Registration, UnitAccount,
};
use valuecard_protocol::keylist::{KeyListError, SignedKeyList};
use valuecard_protocol::scheme::SchemeKeys;
use valuecard_protocol::token::{DenominationPublicKey, TokenMessage};

use crate::admin::AdminToken;
use crate::clock::{Clock, DAY};
use crate::db::{Database, Migration, Tx, Value};
use crate::error::{ApiError, ApiResult, invalid};
use crate::keys::{self, KeyCache, StartError};

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
    Migration {
        version: 3,
        name: "0003_provenance",
        sql: include_str!("../migrations/sqlite/center/0003_provenance.sql"),
    },
];

/// How long a challenge can be used, in seconds.
pub const CHALLENGE_TTL: u64 = 120;
/// How long a card certificate is valid: five years (with one leap day).
pub const CERTIFICATE_VALIDITY: u64 = (5 * 365 + 1) * DAY;

#[derive(Clone, Debug)]
pub struct CenterConfig {
    pub currency: String,
    /// The scheme's keys (`scheme.json`, checked): the issuer key must be the one its
    /// anchor names; the anchors go to cards at registration; the center imports only key
    /// lists signed with the bank's key.
    pub scheme: SchemeKeys,
    /// The card makers whose attestations the center takes (`--trust-card-maker`).
    pub trusted_makers: Vec<VerifyingKey>,
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
    /// For the admin routes (issuing tickets, any card's ledger, blocks, the float).
    admin: AdminToken,
    keys: KeyCache<RedeemKey>,
    /// The trusted makers by maker id.
    makers: BTreeMap<[u8; 32], VerifyingKey>,
    /// The last block list signed, reused while the version stays (signing is
    /// deterministic: the same version signs to the same bytes).
    block_list: blocks::ListCache,
    /// Who else learns each new block list at once: the arbiter, when it runs in the same
    /// process (`all`).
    block_listener: std::sync::OnceLock<blocks::Listener>,
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

fn bad_attestation(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::BadAttestation,
        format!(
            "the attestation does not vouch for this card key: {message}; send ATTEST's answer over this very challenge, exactly as the card gave it"
        ),
    )
}

/// Checks that `total + add` stays within an SQL integer (2^63 − 1): computed in i128, so
/// that the check itself cannot overflow.
fn check_fits(what: &str, total: i64, add: u64) -> ApiResult<()> {
    if i128::from(total) + i128::from(add) <= i128::from(i64::MAX) {
        Ok(())
    } else {
        Err(invalid(format!(
            "the amount would take {what} past 2^63 - 1"
        )))
    }
}

impl Center {
    /// Opens the center's SQLite database (`:memory:` works) for the issuer key `issuer`
    /// (from its key file).
    pub fn open(
        path: &str,
        clock: Arc<dyn Clock>,
        config: CenterConfig,
        issuer: SigningKey,
        admin_token: &str,
    ) -> Result<Self, StartError> {
        let db = Database::open_sqlite(path, "center", MIGRATIONS)?;
        Self::new(db, clock, config, issuer, admin_token)
    }

    /// A center over a database already brought to the center's schema. The issuer key
    /// must be the scheme's, and the database's if it was started before.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        config: CenterConfig,
        issuer: SigningKey,
        admin_token: &str,
    ) -> Result<Self, StartError> {
        // The currency is also a card's asset code (loads and unloads carry it).
        if !apdu_spec::units::asset_code_ok(&config.currency) {
            return Err(StartError::Config(
                "the currency must be 1 to 8 printable ASCII characters".into(),
            ));
        }
        let admin = AdminToken::new(admin_token).map_err(StartError::Config)?;
        keys::check_in_scheme("issuer", issuer.verifying_key(), &config.scheme.issuer)?;
        keys::bind(&db, "issuer", issuer.verifying_key())?;
        let makers = config
            .trusted_makers
            .iter()
            .map(|k| (maker_id(k), *k))
            .collect();
        Ok(Center {
            db,
            clock,
            config,
            issuer,
            admin,
            keys: KeyCache::default(),
            makers,
            block_list: blocks::ListCache::default(),
            block_listener: std::sync::OnceLock::new(),
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

    /// The scheme the center was started with.
    pub fn scheme(&self) -> &SchemeKeys {
        &self.config.scheme
    }

    pub fn info(&self) -> CenterInfo {
        let scheme = &self.config.scheme;
        CenterInfo {
            issuer_public_key: self.issuer_public_key(),
            arbiter_public_key: encode_public_key(&scheme.arbiter),
            root_public_key: encode_public_key(&scheme.root),
            issuer_anchor: scheme.issuer_anchor.encode(),
            arbiter_anchor: scheme.arbiter_anchor.encode(),
            bank_public_key: encode_public_key(&scheme.bank),
            trusted_makers: self.makers.keys().map(|id| HexId(*id)).collect(),
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

    /// Registers a card: its certificate and its unit account. The card proves that it
    /// holds the key (`proof`) and that a trusted maker made the key inside it
    /// (`attestation`), both over the same fresh challenge. A card registered before gets
    /// its first certificate again (`replayed`). Every refusal writes nothing.
    pub fn register(&self, req: &RegisterRequest) -> ApiResult<Registration> {
        let card_key = decode_public_key(&req.public_key)
            .ok_or_else(|| invalid("the public key is not a compressed P-256 point"))?;
        let card_id = apdu_spec::card_id(&req.public_key);
        let now = self.clock.now();
        let scheme = &self.config.scheme;
        let answer = |certificate: Vec<u8>, replayed: bool| Registration {
            card_id,
            certificate,
            issuer_anchor: scheme.issuer_anchor.encode(),
            arbiter_anchor: scheme.arbiter_anchor.encode(),
            replayed,
        };
        self.db.transaction(|tx| {
            // The challenge first: a request without a live one costs one lookup, and its
            // error says to ask for a new one.
            consume_challenge(tx, &req.proof, ChallengePurpose::Register, &card_key, now)?;
            let (maker, attestation_key) = self.check_attestation(req)?;
            blocks::refuse_blocked(tx, &card_id, &maker)?;
            if let Some(row) = tx.query_opt(
                "SELECT certificate, attestation_key FROM cards WHERE card_id = ?1",
                &[card_id.into()],
            )? {
                return match row.0.get(1) {
                    Some(Value::Blob(stored)) if stored.as_slice() == attestation_key => {
                        Ok(answer(row.blob(0)?, true))
                    }
                    Some(Value::Blob(_)) => Err(ApiError::new(
                        ErrorCode::AlreadyRegistered,
                        format!(
                            "card {} is registered with another chip's attestation: one card key lives in one chip",
                            hex::encode(card_id)
                        ),
                    )),
                    _ => Err(ApiError::new(
                        ErrorCode::AlreadyRegistered,
                        format!(
                            "card {} was registered before cards were attested, and cannot be registered again: ask the staff",
                            hex::encode(card_id)
                        ),
                    )),
                };
            }
            // One card key per attestation key (the UNIQUE index would refuse it too).
            if let Some(row) = tx.query_opt(
                "SELECT card_id FROM cards WHERE attestation_key = ?1",
                &[attestation_key.into()],
            )? {
                return Err(ApiError::new(
                    ErrorCode::AttestationReused,
                    format!(
                        "this chip's attestation key registered card {} already: a chip makes one card key in its life",
                        hex::encode(row.blob(0)?)
                    ),
                ));
            }
            let not_before = today(now) * DAY;
            let certificate = Certificate::issue(
                &self.issuer,
                &card_key,
                maker,
                not_before,
                not_before + CERTIFICATE_VALIDITY,
            )
            .encode();
            tx.execute(
                "INSERT INTO cards (card_id, public_key, certificate, registered_day, maker, attestation_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &[
                    card_id.into(),
                    req.public_key.into(),
                    certificate.as_slice().into(),
                    Value::uint(today(now))?,
                    maker.into(),
                    attestation_key.into(),
                ],
            )?;
            tx.execute(
                "INSERT INTO unit_accounts (card_id, asset, balance) VALUES (?1, ?2, 0)",
                &[card_id.into(), self.config.currency.as_str().into()],
            )?;
            Ok(answer(certificate, false))
        })
    }

    /// The maker and the attestation key of a registration's attestation, after checking
    /// that a trusted maker certified the attestation key and that it signed the card's
    /// key and the request's challenge.
    fn check_attestation(&self, req: &RegisterRequest) -> ApiResult<([u8; 32], [u8; 33])> {
        if req.attestation.is_empty() {
            return Err(bad_attestation(
                "there is none (a key made outside a card has none)",
            ));
        }
        let attestation = Attestation::decode(&req.attestation).map_err(bad_attestation)?;
        let maker = attestation.certificate.maker;
        let maker_key = self.makers.get(&maker).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UntrustedMaker,
                format!(
                    "the card was made by maker {}, which this center does not trust (GET /center/v1/info lists the makers it does)",
                    hex::encode(maker)
                ),
            )
        })?;
        attestation
            .verify(maker_key, &req.public_key, &req.proof.challenge)
            .map_err(|e| match e {
                MakerError::BadCertificate => bad_attestation(
                    "the maker's certificate over the attestation key does not verify",
                ),
                e => bad_attestation(e),
            })?;
        Ok((maker, attestation.certificate.attestation_key))
    }

    /// Imports the bank's signed key list. Idempotent: known keys are left as they are.
    pub fn import_keys(&self, list: &SignedKeyList) -> ApiResult<KeysImported> {
        let list = list.verify(&self.config.scheme.bank).map_err(|e| match e {
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
            // No total past 2^63 - 1: checked here, refused by the schema too.
            let totals = AccountTotals::read(tx, &message.card_id, &key.currency)?;
            check_fits("the card's redeemed total", totals.redeemed, message.amount)?;
            check_fits("the card's unit balance", totals.balance, message.amount)?;
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

    /// A card's unit accounts, shown against a fresh balance challenge signed by the card;
    /// not to a blocked card.
    pub fn balance(&self, req: &CardBalanceRequest) -> ApiResult<CardBalance> {
        let now = self.clock.now();
        self.db.transaction(|tx| {
            let card = RegisteredCard::find(tx, &req.card_id)?;
            consume_challenge(tx, &req.proof, ChallengePurpose::Balance, &card.key, now)?;
            card.refuse_if_blocked(tx)?;
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
    id: [u8; 32],
    key: VerifyingKey,
    certificate: Vec<u8>,
    maker: [u8; 32],
}

impl RegisteredCard {
    /// The card `card_id`, or UnknownCard. A card registered before cards were attested
    /// (no maker) is not one: nothing shows that its key lives in a genuine card.
    fn find(tx: &mut dyn Tx, card_id: &[u8; 32]) -> ApiResult<Self> {
        let row = tx
            .query_opt(
                "SELECT public_key, certificate, maker FROM cards WHERE card_id = ?1",
                &[card_id.into()],
            )?
            .ok_or_else(|| unknown_card(card_id))?;
        let Some(Value::Blob(maker)) = row.0.get(2) else {
            return Err(ApiError::new(
                ErrorCode::UnknownCard,
                format!(
                    "card {} was registered before cards were attested: the center takes nothing from it",
                    hex::encode(card_id)
                ),
            ));
        };
        Ok(RegisteredCard {
            id: *card_id,
            key: decode_public_key(&row.blob(0)?)
                .ok_or_else(|| ApiError::internal("a stored card key does not parse"))?,
            certificate: row.blob(1)?,
            maker: maker
                .as_slice()
                .try_into()
                .map_err(|_| ApiError::internal("a stored maker id is not 32 bytes"))?,
        })
    }

    /// CardBlocked if the card or its maker is blocked.
    fn refuse_if_blocked(&self, tx: &mut dyn Tx) -> ApiResult<()> {
        blocks::refuse_blocked(tx, &self.id, &self.maker)
    }
}

/// A unit account's balance and running totals (the schema holds the balance to
/// redeemed − loaded + refunded + unloaded).
#[derive(Clone, Copy, Debug, Default)]
struct AccountTotals {
    balance: i64,
    redeemed: i64,
    loaded: i64,
    refunded: i64,
    unloaded: i64,
}

impl AccountTotals {
    /// The card's account for `asset`; all zero if it has none.
    fn read(tx: &mut dyn Tx, card_id: &[u8; 32], asset: &str) -> ApiResult<Self> {
        let Some(row) = tx.query_opt(
            "SELECT balance, redeemed, loaded, refunded, unloaded FROM unit_accounts
             WHERE card_id = ?1 AND asset = ?2",
            &[card_id.into(), asset.into()],
        )?
        else {
            return Ok(AccountTotals::default());
        };
        Ok(AccountTotals {
            balance: row.i64(0)?,
            redeemed: row.i64(1)?,
            loaded: row.i64(2)?,
            refunded: row.i64(3)?,
            unloaded: row.i64(4)?,
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
