//! The arbiter (PROTOCOLS.md, "Fair exchange: card to card"): it decides the exchanges that
//! two cards could not finish between themselves, one verdict per session (named by s2),
//! once and for all, and signs it with the arbiter key that cards are personalised with.
//!
//! - A **cancel request** comes from the responder B (CANCEL): its certificate and Sab. A
//!   **resolve request** comes from the initiator A (RESOLVE): both certificates, B's
//!   agreement Sa and A's Sr. Every check runs before the database is touched, and a
//!   refused request records nothing.
//! - If the session has a verdict, that verdict is the answer (`replayed`), whatever the
//!   request and even if its `a` differs: a card refuses a verdict for another `a`, which is
//!   right, since the session was decided on other terms. Otherwise CANCEL or COMPLETE is
//!   recorded, in the same transaction as the check, **before** the answer leaves; the
//!   primary key on s2 and the triggers of `migrations/sqlite/arbiter/0002_verdicts.sql`
//!   make a second verdict impossible even for code that skips the check.
//! - COMPLETE is safe to record without hearing from B: Sa proves that B escrowed V2, and
//!   once a verdict exists B can no longer cancel.
//! - Certificates must be signed by the issuer, but their validity dates are **not**
//!   checked: a card whose certificate has expired must still be able to settle an exchange
//!   it started while valid, or its value would stay in escrow for ever.
//! - The arbiter keeps, with each verdict, the proof of the request that decided it (the
//!   certificates, their card ids, the cards' signatures) and the day, never a finer time
//!   (see the migration).

use std::sync::Arc;

use p256::ecdsa::{SigningKey, VerifyingKey};

use apdu_spec::cert::{CertError, Certificate, encode_public_key};
use apdu_spec::exchange::{self, Outcome, domains};
use apdu_spec::units::SIGNATURE_LEN;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    ArbiterCancelRequest, ArbiterInfo, ArbiterResolveRequest, Verdict, VerdictAnswer,
};

use crate::clock::{Clock, DAY};
use crate::db::{Database, DbError, Migration, Tx, Value};
use crate::error::{ApiError, ApiResult, invalid, signature_bytes};
use crate::keys::{self, KeyTable};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../migrations/sqlite/arbiter/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_verdicts",
        sql: include_str!("../migrations/sqlite/arbiter/0002_verdicts.sql"),
    },
];

#[derive(Clone, Debug)]
pub struct ArbiterConfig {
    /// The issuer key (the center's): the arbiter takes only card certificates signed by it.
    pub issuer_public_key: VerifyingKey,
}

pub struct Arbiter {
    db: Database,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    config: ArbiterConfig,
}

impl std::fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter")
            .field(
                "public_key",
                &hex::encode(encode_public_key(self.public_key())),
            )
            .finish_non_exhaustive()
    }
}

/// Opens (creating if needed) the arbiter's SQLite database, `:memory:` works.
pub fn open_database(path: &str) -> Result<Database, DbError> {
    Database::open_sqlite(path, "arbiter", MIGRATIONS)
}

/// The arbiter's public key in `db`, made now if there is none yet. `all` mode needs it
/// before the center (which hands it to cards), and the arbiter needs the center's issuer
/// key: so the key comes first, the arbiter after the center.
pub fn public_key(db: &Database) -> Result<VerifyingKey, DbError> {
    Ok(*keys::load_or_generate(db, KeyTable::Arbiter)?.verifying_key())
}

fn bad_signature(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadSignature, message)
}

/// A card certificate from a request, checked against the issuer.
struct Card {
    id: [u8; 32],
    key: VerifyingKey,
}

impl Card {
    fn check(bytes: &[u8], field: &str, issuer: &VerifyingKey) -> ApiResult<Card> {
        let cert = Certificate::decode(bytes)
            .map_err(|e| invalid(format!("{field}: not a card certificate (7F21): {e}")))?;
        // The schema reads the card id out of the stored bytes at a fixed place, and one
        // certificate has one byte string.
        if cert.encode() != bytes {
            return Err(invalid(format!(
                "{field}: the 7F21 template is not in canonical encoding"
            )));
        }
        // not_before and not_after are not looked at, on purpose: see the module's doc.
        let key = cert.verify(issuer).map_err(|e| match e {
            CertError::Malformed | CertError::BadKey => invalid(format!("{field}: {e}")),
            // A card id that is not its key's hash was not made by the issuer either.
            CertError::IdMismatch | CertError::BadSignature => bad_signature(format!(
                "{field}: not a certificate of the arbiter's issuer: {e}"
            )),
        })?;
        Ok(Card {
            id: cert.card_id,
            key,
        })
    }

    /// Checks the card's signature over `a ‖ s2` under `domain`.
    fn verify(
        &self,
        domain: &str,
        a: &[u8; 32],
        s2: &[u8; 32],
        signature: &[u8; SIGNATURE_LEN],
        what: &str,
    ) -> ApiResult<()> {
        if exchange::verify(&self.key, domain, a, s2, signature) {
            Ok(())
        } else {
            Err(bad_signature(format!(
                "{what}: not the card's signature over a || s2 under {domain}"
            )))
        }
    }
}

/// The outcome stored as `name` (it was written with `Outcome::name`).
fn outcome_from(name: &str) -> ApiResult<Outcome> {
    [Outcome::Complete, Outcome::Cancel]
        .into_iter()
        .find(|o| o.name() == name)
        .ok_or_else(|| ApiError::internal(format!("a stored outcome is {name:?}")))
}

/// The verdict recorded for `s2`, if any.
fn recorded(tx: &mut dyn Tx, s2: &[u8; 32]) -> ApiResult<Option<Verdict>> {
    let Some(row) = tx.query_opt(
        "SELECT a, outcome, signature FROM verdicts WHERE s2 = ?1",
        &[s2.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Verdict {
        s2: *s2,
        a: row.array(0)?,
        outcome: outcome_from(&row.text(1)?)?,
        signature: row.array(2)?,
        replayed: true,
    }))
}

/// What a verdict row keeps of the request that decided it, in the columns' order
/// (responder_id, responder_certificate, initiator_id, initiator_certificate,
/// agreement_signature, resolve_signature, cancel_signature).
type Proof = [Value; 7];

impl Arbiter {
    /// Opens the arbiter's database (`:memory:` works) and loads or makes its key.
    pub fn open(path: &str, clock: Arc<dyn Clock>, config: ArbiterConfig) -> Result<Self, DbError> {
        Self::new(open_database(path)?, clock, config)
    }

    /// An arbiter over a database already brought to the arbiter's schema.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        config: ArbiterConfig,
    ) -> Result<Self, DbError> {
        let key = keys::load_or_generate(&db, KeyTable::Arbiter)?;
        Ok(Arbiter {
            db,
            key,
            clock,
            config,
        })
    }

    pub fn public_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn info(&self) -> ArbiterInfo {
        ArbiterInfo {
            arbiter_public_key: encode_public_key(self.public_key()),
            issuer_public_key: encode_public_key(&self.config.issuer_public_key),
        }
    }

    /// B's cancel request: CANCEL, unless the session has a verdict already.
    pub fn cancel(&self, req: &ArbiterCancelRequest) -> ApiResult<Verdict> {
        let sab = signature_bytes(&req.cancel_signature, "cancel_signature")?;
        let issuer = &self.config.issuer_public_key;
        let responder = Card::check(&req.responder_certificate, "responder_certificate", issuer)?;
        responder.verify(domains::CANCEL, &req.a, &req.s2, &sab, "cancel_signature")?;
        self.decide(
            &req.s2,
            &req.a,
            Outcome::Cancel,
            [
                responder.id.into(),
                req.responder_certificate.as_slice().into(),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                sab.into(),
            ],
        )
    }

    /// A's resolve request: COMPLETE, unless the session has a verdict already.
    pub fn resolve(&self, req: &ArbiterResolveRequest) -> ApiResult<Verdict> {
        let sa = signature_bytes(&req.agreement_signature, "agreement_signature")?;
        let sr = signature_bytes(&req.resolve_signature, "resolve_signature")?;
        let issuer = &self.config.issuer_public_key;
        let initiator = Card::check(&req.initiator_certificate, "initiator_certificate", issuer)?;
        let responder = Card::check(&req.responder_certificate, "responder_certificate", issuer)?;
        if initiator.id == responder.id {
            return Err(invalid(
                "initiator_certificate and responder_certificate name the same card: a card does not exchange with itself",
            ));
        }
        responder.verify(domains::AGREE, &req.a, &req.s2, &sa, "agreement_signature")?;
        initiator.verify(domains::RESOLVE, &req.a, &req.s2, &sr, "resolve_signature")?;
        self.decide(
            &req.s2,
            &req.a,
            Outcome::Complete,
            [
                responder.id.into(),
                req.responder_certificate.as_slice().into(),
                initiator.id.into(),
                req.initiator_certificate.as_slice().into(),
                sa.into(),
                sr.into(),
                Value::Null,
            ],
        )
    }

    /// The verdict recorded for `s2`, or none.
    pub fn verdict(&self, s2: &[u8; 32]) -> ApiResult<VerdictAnswer> {
        let verdict = self.db.transaction(|tx| recorded(tx, s2))?;
        Ok(VerdictAnswer { verdict })
    }

    /// Records `outcome` for `s2` with its proof, unless a verdict exists: first writer wins.
    fn decide(
        &self,
        s2: &[u8; 32],
        a: &[u8; 32],
        outcome: Outcome,
        proof: Proof,
    ) -> ApiResult<Verdict> {
        let day = self.clock.now() / DAY;
        self.db.transaction(|tx| {
            // Transactions are serialisable (`db::Engine::run`: SQLite's write lock is taken
            // at BEGIN): no other request can record a verdict between this read and the
            // insert below, so a concurrent second writer reads the first one's verdict.
            if let Some(verdict) = recorded(tx, s2)? {
                return Ok(verdict);
            }
            let signature = exchange::sign_verdict(&self.key, s2, a, outcome);
            let [
                responder_id,
                responder_certificate,
                initiator_id,
                initiator_certificate,
                agreement_signature,
                resolve_signature,
                cancel_signature,
            ] = proof;
            tx.execute(
                "INSERT INTO verdicts
                     (s2, a, outcome, signature, responder_id, responder_certificate,
                      initiator_id, initiator_certificate, agreement_signature,
                      resolve_signature, cancel_signature, day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    s2.into(),
                    a.into(),
                    outcome.name().into(),
                    signature.into(),
                    responder_id,
                    responder_certificate,
                    initiator_id,
                    initiator_certificate,
                    agreement_signature,
                    resolve_signature,
                    cancel_signature,
                    Value::uint(day)?,
                ],
            )?;
            Ok(Verdict {
                s2: *s2,
                a: *a,
                outcome,
                signature,
                replayed: false,
            })
        })
    }
}
