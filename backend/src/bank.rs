//! The bank (PROTOCOLS.md, "Funding: bank to center", steps 3 and 4): accounts, the
//! denomination keys, and withdrawals that debit an account and blind-sign one token.
//!
//! The bank sees the account and the amount, never the card id nor the token message: it
//! signs a blinded message. The core here is synchronous; `http` runs it on blocking
//! threads, and tests and benchmarks call it in-process.

mod credentials;

use std::sync::{Arc, Mutex};

use p256::ecdsa::{SigningKey, VerifyingKey};
use rand::RngExt;

use apdu_spec::cert::encode_public_key;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    AccountBalance, AccountBalanceRequest, AccountOpened, DepositAnswer, DepositRequest,
    OpenAccountRequest, WithdrawAnswer, WithdrawRequest,
};
use valuecard_protocol::keylist::{DenominationKeyInfo, KeyList, SignedKeyList};
use valuecard_protocol::token::{DenominationSecretKey, blinded_message_hash};

use crate::admin::AdminToken;
use crate::clock::{Clock, DAY};
use crate::db::{Constraint, Database, DbError, Migration, Row, Tx, Value};
use crate::error::{ApiError, ApiResult, invalid};
use crate::keys::{self, KeyCache, StartError};

pub use credentials::{CAPACITY as CREDENTIAL_CACHE_CAPACITY, TTL as CREDENTIAL_CACHE_TTL};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../migrations/sqlite/bank/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_key_file",
        sql: include_str!("../migrations/sqlite/bank/0002_key_file.sql"),
    },
];

/// The longest deposit reference.
pub const MAX_REFERENCE_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankConfig {
    pub currency: String,
    /// The amounts the bank issues tokens for.
    pub denominations: Vec<u64>,
    /// Seconds per epoch: a denomination key signs withdrawals during one epoch.
    pub epoch_length: u64,
    /// Seconds after its epoch during which a key's tokens can still be redeemed.
    pub redeem_period: u64,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            currency: "JPY".into(),
            denominations: (0..=20).map(|i| 1u64 << i).collect(),
            epoch_length: 30 * DAY,
            redeem_period: 365 * DAY,
        }
    }
}

impl BankConfig {
    fn check(&self) -> Result<(), String> {
        if self.currency.is_empty() || self.currency.len() > 16 {
            return Err("the currency must have 1 to 16 characters".into());
        }
        if self.denominations.is_empty()
            || self
                .denominations
                .iter()
                .any(|d| *d == 0 || i64::try_from(*d).is_err())
        {
            return Err(
                "denominations must be a non-empty list of amounts from 1 to 2^63-1".into(),
            );
        }
        if self.epoch_length == 0
            || self.epoch_length > 100 * 365 * DAY
            || self.redeem_period > 100 * 365 * DAY
        {
            return Err(
                "the epoch length must be positive, and both periods at most 100 years".into(),
            );
        }
        Ok(())
    }
}

/// A denomination key with its private half, parsed once.
struct SigningDenomination {
    info: DenominationKeyInfo,
    secret: DenominationSecretKey,
}

pub struct Bank {
    db: Database,
    clock: Arc<dyn Clock>,
    config: BankConfig,
    admin: AdminToken,
    bank_key: SigningKey,
    credentials: credentials::Credentials,
    /// Parsed denomination keys by id: keys never change once made.
    keys: KeyCache<SigningDenomination>,
    /// Held while generating a denomination key, so that concurrent requests in this process
    /// wait for one RSA key generation instead of each making one. Never held with the DB.
    keygen: Mutex<()>,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank")
            .field("public_key", &hex::encode(self.public_key()))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn key_info(row: &Row) -> Result<DenominationKeyInfo, DbError> {
    Ok(DenominationKeyInfo {
        key_id: row.array(0)?,
        amount: row.u64(1)?,
        currency: row.text(2)?,
        epoch: row.u64(3)?,
        valid_from: row.u64(4)?,
        withdraw_until: row.u64(5)?,
        redeem_until: row.u64(6)?,
        public_key: row.blob(7)?,
    })
}

const KEY_COLUMNS: &str =
    "key_id, amount, currency, epoch, valid_from, withdraw_until, redeem_until, public_key";

impl Bank {
    /// Opens the bank's SQLite database (`:memory:` works) for the bank key `bank_key`
    /// (from its key file).
    pub fn open(
        path: &str,
        clock: Arc<dyn Clock>,
        config: BankConfig,
        bank_key: SigningKey,
        admin_token: &str,
    ) -> Result<Self, StartError> {
        let db = Database::open_sqlite(path, "bank", MIGRATIONS)?;
        Self::new(db, clock, config, bank_key, admin_token)
    }

    /// A bank over a database already brought to the bank's schema. The key must be the
    /// database's, if it was started before.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        config: BankConfig,
        bank_key: SigningKey,
        admin_token: &str,
    ) -> Result<Self, StartError> {
        config.check().map_err(StartError::Config)?;
        let admin = AdminToken::new(admin_token).map_err(StartError::Config)?;
        keys::bind(&db, "bank", bank_key.verifying_key())?;
        Ok(Bank {
            db,
            clock,
            config,
            admin,
            bank_key,
            credentials: credentials::Credentials::default(),
            keys: KeyCache::default(),
            keygen: Mutex::new(()),
        })
    }

    /// The long-term key the key list is signed with, compressed SEC1.
    pub fn public_key(&self) -> [u8; 33] {
        encode_public_key(self.bank_key.verifying_key())
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        self.bank_key.verifying_key()
    }

    pub fn config(&self) -> &BankConfig {
        &self.config
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Checks the admin token (`Authorization: Bearer ...`) in constant time.
    pub fn check_admin(&self, presented: Option<&str>) -> ApiResult<()> {
        self.admin.check(presented)
    }

    /// Opens an account with a zero balance (admin).
    pub fn open_account(
        &self,
        admin: Option<&str>,
        req: &OpenAccountRequest,
    ) -> ApiResult<AccountOpened> {
        self.check_admin(admin)?;
        if !credentials::length_ok(&req.credential) {
            return Err(invalid(format!(
                "the credential must have {} to {} characters",
                credentials::MIN_LEN,
                credentials::MAX_LEN
            )));
        }
        // Argon2 runs before the transaction: it is slow, and the lock is not needed for it.
        let hash = self
            .credentials
            .hash(&req.credential)
            .map_err(ApiError::internal)?;
        let now = self.clock.now();
        for _ in 0..8 {
            let number = rand::rng()
                .random_range(100_000_000_000u64..1_000_000_000_000)
                .to_string();
            let inserted = self.db.transaction(|tx| {
                tx.execute(
                    "INSERT INTO accounts (number, credential_hash, currency, balance, opened_at)
                     VALUES (?1, ?2, ?3, 0, ?4)",
                    &[
                        number.as_str().into(),
                        hash.as_str().into(),
                        self.config.currency.as_str().into(),
                        Value::uint(now)?,
                    ],
                )
            });
            match inserted {
                Ok(_) => {
                    return Ok(AccountOpened {
                        account: number,
                        currency: self.config.currency.clone(),
                        balance: 0,
                    });
                }
                // A random number that is taken already: draw another.
                Err(e) if e.constraint() == Some(Constraint::Unique) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal("no free account number after 8 draws"))
    }

    /// Credits cash paid in (admin). Idempotent on the reference.
    pub fn deposit(&self, admin: Option<&str>, req: &DepositRequest) -> ApiResult<DepositAnswer> {
        self.check_admin(admin)?;
        if req.reference.is_empty() || req.reference.chars().count() > MAX_REFERENCE_LEN {
            return Err(invalid(format!(
                "the reference must have 1 to {MAX_REFERENCE_LEN} characters"
            )));
        }
        if req.amount == 0 || i64::try_from(req.amount).is_err() {
            return Err(invalid("the amount must be from 1 to 2^63-1"));
        }
        let now = self.clock.now();
        self.db.transaction(|tx| {
            if let Some(row) = tx.query_opt(
                "SELECT account, amount, balance_after FROM deposits WHERE reference = ?1",
                &[req.reference.as_str().into()],
            )? {
                let (account, amount) = (row.text(0)?, row.u64(1)?);
                if account != req.account || amount != req.amount {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("reference {:?} was used for a deposit of {amount} to account {account}", req.reference),
                    ));
                }
                return Ok(DepositAnswer {
                    account,
                    amount,
                    reference: req.reference.clone(),
                    balance_after: row.u64(2)?,
                });
            }
            let balance = account_balance(tx, &req.account)?;
            let balance_after = balance
                .checked_add(req.amount)
                .filter(|b| i64::try_from(*b).is_ok())
                .ok_or_else(|| invalid("the deposit would overflow the balance"))?;
            // The trigger `deposits_credit` credits the account; it also checks balance_after.
            tx.execute(
                "INSERT INTO deposits (reference, account, amount, balance_after, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    req.reference.as_str().into(),
                    req.account.as_str().into(),
                    Value::uint(req.amount)?,
                    Value::uint(balance_after)?,
                    Value::uint(now)?,
                ],
            )?;
            Ok(DepositAnswer {
                account: req.account.clone(),
                amount: req.amount,
                reference: req.reference.clone(),
                balance_after,
            })
        })
    }

    /// The account holder reads the balance.
    pub fn balance(&self, req: &AccountBalanceRequest) -> ApiResult<AccountBalance> {
        self.authenticate(&req.account, &req.credential)?;
        let balance = self
            .db
            .transaction(|tx| account_balance(tx, &req.account))?;
        Ok(AccountBalance {
            account: req.account.clone(),
            balance,
            currency: self.config.currency.clone(),
        })
    }

    /// Makes sure the current epoch has a key for each of `amounts`, and returns the signed
    /// list of every key whose tokens can still be redeemed. An amount that is not one of
    /// the bank's denominations is refused (UnknownKey).
    pub fn key_list(&self, amounts: &[u64]) -> ApiResult<SignedKeyList> {
        let mut wanted = amounts.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if let Some(a) = wanted
            .iter()
            .find(|a| !self.config.denominations.contains(a))
        {
            return Err(ApiError::new(
                ErrorCode::UnknownKey,
                format!("{a} is not one of the bank's denominations"),
            ));
        }
        for amount in wanted {
            self.ensure_key(amount)?;
        }
        let now = self.clock.now();
        let keys = self
            .db
            .transaction(|tx| -> ApiResult<Vec<DenominationKeyInfo>> {
                let rows = tx.query(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM denomination_keys
                     WHERE currency = ?1 AND redeem_until >= ?2 ORDER BY amount, epoch"
                    ),
                    &[self.config.currency.as_str().into(), Value::uint(now)?],
                )?;
                Ok(rows.iter().map(key_info).collect::<Result<_, _>>()?)
            })?;
        let list = KeyList {
            bank_public_key: self.public_key(),
            issued_at: now,
            currency: self.config.currency.clone(),
            denominations: self.config.denominations.clone(),
            keys,
        };
        SignedKeyList::sign(&list, &self.bank_key).map_err(ApiError::internal)
    }

    /// Debits the account and blind-signs one token. Idempotent on the blinded message.
    pub fn withdraw(&self, req: &WithdrawRequest) -> ApiResult<WithdrawAnswer> {
        self.authenticate(&req.account, &req.credential)?;
        let hash = blinded_message_hash(&req.blinded_message);
        // A retry gets its first answer first, even once the key's window has closed.
        if let Some(answer) = self.db.transaction(|tx| find_withdrawal(tx, &hash, req))? {
            return Ok(answer);
        }
        let key = self.signing_key(&req.key_id)?;
        let now = self.clock.now();
        if now < key.info.valid_from || now > key.info.withdraw_until {
            return Err(ApiError::new(
                ErrorCode::KeyExpired,
                format!(
                    "key {} signs withdrawals from {} to {} only",
                    hex::encode(req.key_id),
                    key.info.valid_from,
                    key.info.withdraw_until
                ),
            ));
        }
        let modulus_bytes = key.secret.public().modulus_bytes();
        if req.blinded_message.len() != modulus_bytes {
            return Err(invalid(format!(
                "the blinded message must be {modulus_bytes} bytes"
            )));
        }
        // RSA signing is the costly step: it runs outside the transaction. It is
        // deterministic, so a request that loses a race below signed the same bytes.
        let blind_signature = key
            .secret
            .blind_sign(&req.blinded_message)
            .map_err(|_| invalid("the blinded message is not a number this key can sign"))?;
        let amount = key.info.amount;
        self.db.transaction(|tx| {
            if let Some(answer) = find_withdrawal(tx, &hash, req)? {
                return Ok(answer);
            }
            let balance = account_balance(tx, &req.account)?;
            if balance < amount {
                return Err(insufficient(balance, amount));
            }
            // The trigger `withdrawals_debit` debits the account; CHECK (balance >= 0)
            // refuses an overdraft even if the test above were wrong.
            let inserted = tx.execute(
                "INSERT INTO withdrawals
                     (blinded_message_hash, account, key_id, amount, blinded_message, blind_signature, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    hash.into(),
                    req.account.as_str().into(),
                    req.key_id.into(),
                    Value::uint(amount)?,
                    req.blinded_message.as_slice().into(),
                    blind_signature.as_slice().into(),
                    Value::uint(now)?,
                ],
            );
            match inserted {
                Ok(_) => Ok(WithdrawAnswer { key_id: req.key_id, amount, blind_signature, replayed: false }),
                Err(e) if e.constraint() == Some(Constraint::Check) => Err(insufficient(balance, amount)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Checks an account's credential: UnknownAccount, then BadCredential.
    fn authenticate(&self, account: &str, credential: &str) -> ApiResult<()> {
        let stored = self.db.transaction(|tx| -> ApiResult<String> {
            tx.query_opt(
                "SELECT credential_hash FROM accounts WHERE number = ?1",
                &[account.into()],
            )?
            .ok_or_else(|| unknown_account(account))?
            .text(0)
            .map_err(ApiError::from)
        })?;
        // Argon2 (or the cache) runs outside the transaction.
        if self
            .credentials
            .verify(self.clock.now(), account, &stored, credential)
        {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::BadCredential,
                "the account credential is wrong",
            ))
        }
    }

    fn signing_key(&self, key_id: &[u8; 32]) -> ApiResult<Arc<SigningDenomination>> {
        self.keys.get_or_load(key_id, || {
            let row = self.db.transaction(|tx| {
                tx.query_opt(
                    &format!(
                        "SELECT {KEY_COLUMNS}, private_key FROM denomination_keys WHERE key_id = ?1"
                    ),
                    &[key_id.into()],
                )
            })?;
            let row = row.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownKey,
                    format!("the bank has no key {}", hex::encode(key_id)),
                )
            })?;
            let info = key_info(&row)?;
            let secret = DenominationSecretKey::from_der(&row.blob(8)?).map_err(|_| {
                ApiError::internal(format!(
                    "denomination key {} does not parse",
                    hex::encode(key_id)
                ))
            })?;
            Ok(SigningDenomination { info, secret })
        })
    }

    /// Makes the current epoch's key for `amount` unless it exists.
    fn ensure_key(&self, amount: u64) -> ApiResult<()> {
        let now = self.clock.now();
        let epoch = now / self.config.epoch_length;
        let exists = |bank: &Self| -> ApiResult<bool> {
            Ok(bank.db.transaction(|tx| {
                tx.query_opt(
                    "SELECT 1 FROM denomination_keys WHERE currency = ?1 AND amount = ?2 AND epoch = ?3",
                    &[bank.config.currency.as_str().into(), Value::uint(amount)?, Value::uint(epoch)?],
                )
            })?
            .is_some())
        };
        if exists(self)? {
            return Ok(());
        }
        let _generating = self.keygen.lock().unwrap_or_else(|p| p.into_inner());
        if exists(self)? {
            return Ok(());
        }
        // RSA key generation takes up to a second: no database lock is held meanwhile.
        let secret =
            DenominationSecretKey::generate(&mut rand::rng()).map_err(ApiError::internal)?;
        let private_key = secret.to_der().map_err(ApiError::internal)?;
        let valid_from = epoch * self.config.epoch_length;
        let withdraw_until = valid_from + self.config.epoch_length - 1;
        let redeem_until = withdraw_until + self.config.redeem_period;
        let public = secret.public();
        let inserted = self.db.transaction(|tx| -> ApiResult<usize> {
            // UNIQUE (currency, amount, epoch): if another process made this key meanwhile,
            // its key stays and this one is dropped.
            Ok(tx.execute(
                &format!(
                    "INSERT INTO denomination_keys ({KEY_COLUMNS}, private_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (currency, amount, epoch) DO NOTHING"
                ),
                &[
                    public.id().into(),
                    Value::uint(amount)?,
                    self.config.currency.as_str().into(),
                    Value::uint(epoch)?,
                    Value::uint(valid_from)?,
                    Value::uint(withdraw_until)?,
                    Value::uint(redeem_until)?,
                    public.spki().into(),
                    private_key.into(),
                ],
            )?)
        })?;
        if inserted == 1 {
            tracing::info!(amount, epoch, key_id = %hex::encode(public.id()), "made a denomination key");
        }
        Ok(())
    }
}

fn unknown_account(account: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownAccount,
        format!("there is no account {account:?}"),
    )
}

fn insufficient(balance: u64, amount: u64) -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientFunds,
        format!("the balance {balance} is less than {amount}"),
    )
}

fn account_balance(tx: &mut dyn Tx, account: &str) -> ApiResult<u64> {
    let row = tx
        .query_opt(
            "SELECT balance FROM accounts WHERE number = ?1",
            &[account.into()],
        )?
        .ok_or_else(|| unknown_account(account))?;
    Ok(row.u64(0)?)
}

/// The first answer to this blinded message, if there was one. The same blinded message
/// from another account or for another key is a conflict (it cannot happen by chance).
fn find_withdrawal(
    tx: &mut dyn Tx,
    hash: &[u8; 32],
    req: &WithdrawRequest,
) -> ApiResult<Option<WithdrawAnswer>> {
    let Some(row) = tx.query_opt(
        "SELECT account, key_id, amount, blind_signature, blinded_message FROM withdrawals
         WHERE blinded_message_hash = ?1",
        &[hash.into()],
    )?
    else {
        return Ok(None);
    };
    let (account, key_id) = (row.text(0)?, row.array::<32>(1)?);
    if account != req.account || key_id != req.key_id || row.blob(4)? != req.blinded_message {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "this blinded message was signed before, for another account or key (key {})",
                hex::encode(key_id)
            ),
        ));
    }
    Ok(Some(WithdrawAnswer {
        key_id,
        amount: row.u64(2)?,
        blind_signature: row.blob(3)?,
        replayed: true,
    }))
}
