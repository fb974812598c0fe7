//! The arbiter (PROTOCOLS.md, "Fair exchange: card to card", invariants 5 and 6): it decides
//! the exchanges that two cards could not finish between themselves, one verdict per session
//! (a, s2), once and for all, and signs it with the arbiter key that cards are personalised
//! with.
//!
//! - **Only the session's own parties settle it.** Every request carries the value
//!   commitment c and both certificates; the arbiter recomputes `a' = SHA-256(c ‖ id_A ‖
//!   id_B)` from them and refuses the request (`not_a_party`) unless `a' = a`. So the card
//!   whose certificate signs is the very card the agreement names: a **cancel request**
//!   must be signed (Sab) by the responder B of the agreement; a **resolve request** must
//!   carry B's agreement Sa and the initiator A's Sr. A third card, even one the same issuer
//!   certified, cannot settle someone else's session: any agreement it makes up names
//!   itself, and so is another session (a', s2), whose verdict no card of (a, s2) applies.
//!   The arbiter learns no values: s1 is random, so c hides V1 and V2.
//! - **Blocked signers are refused** (`card_blocked`), by card id or maker id on the
//!   issuer's newest block list the arbiter was given (`POST /arbiter/v1/block-list`): B
//!   for a cancel, A for a resolve. The honest counterparty of a blocked card can still
//!   settle its own session.
//! - Every check runs before the database is touched, and a refused request records
//!   nothing. If the session has a verdict, that verdict is the answer (`replayed`).
//!   Otherwise CANCEL or COMPLETE is recorded, in the same transaction as the check,
//!   **before** the answer leaves; the primary key on (a, s2), the UNIQUE (s2, responder)
//!   index and the triggers of `migrations/sqlite/arbiter/0003_parties.sql` make a second
//!   verdict impossible even for code that skips the check. A responder that would name a
//!   second agreement under one s2 is refused (`conflict`): a genuine card never does.
//! - COMPLETE is safe to record without hearing from B: Sa proves that B escrowed V2, and
//!   once a verdict exists B can no longer cancel.
//! - Certificates must be signed by the issuer, but their validity dates are **not**
//!   checked: a card whose certificate has expired must still be able to settle an exchange
//!   it started while valid, or its value would stay in escrow for ever.
//! - The arbiter keeps, with each verdict, the proof of the request that decided it (c, the
//!   certificates, their card ids, the cards' signatures) and the day, never a finer time.

use std::sync::Arc;

use p256::ecdsa::{SigningKey, VerifyingKey};

use apdu_spec::blocklist::{BlockEntry, BlockList, BlockListError};
use apdu_spec::cert::{CertError, Certificate, encode_public_key};
use apdu_spec::exchange::{self, Outcome, domains};
use apdu_spec::units::SIGNATURE_LEN;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{
    ArbiterCancelRequest, ArbiterInfo, ArbiterResolveRequest, BlockListStatus, Verdict,
    VerdictAnswer,
};

use crate::clock::{Clock, DAY};
use crate::db::{Database, DbError, Migration, Tx, Value};
use crate::error::{ApiError, ApiResult, invalid, signature_bytes};
use crate::keys::{self, StartError};

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
    Migration {
        version: 3,
        name: "0003_parties",
        sql: include_str!("../migrations/sqlite/arbiter/0003_parties.sql"),
    },
];

#[derive(Clone, Debug)]
pub struct ArbiterConfig {
    /// The issuer key (the scheme's): the arbiter takes only card certificates and block
    /// lists signed by it.
    pub issuer_public_key: VerifyingKey,
}

pub struct Arbiter {
    db: Database,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    config: ArbiterConfig,
    /// The planted flaw of the `planted-flaws` feature (off unless switched on).
    #[cfg(feature = "planted-flaws")]
    skip_party_check: std::sync::atomic::AtomicBool,
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

fn bad_signature(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadSignature, message)
}

fn not_a_party(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::NotAParty, message)
}

/// A card certificate from a request, checked against the issuer.
struct Card {
    id: [u8; 32],
    key: VerifyingKey,
    certificate: Certificate,
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
            certificate: cert,
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

/// The two parties a request names, checked: both certified by the issuer, two different
/// cards.
struct Parties {
    initiator: Card,
    responder: Card,
}

impl Parties {
    fn check(initiator: &[u8], responder: &[u8], issuer: &VerifyingKey) -> ApiResult<Parties> {
        let initiator = Card::check(initiator, "initiator_certificate", issuer)?;
        let responder = Card::check(responder, "responder_certificate", issuer)?;
        if initiator.id == responder.id {
            return Err(invalid(
                "initiator_certificate and responder_certificate name the same card: a card does not exchange with itself",
            ));
        }
        Ok(Parties {
            initiator,
            responder,
        })
    }
}

/// The outcome stored as `name` (it was written with `Outcome::name`).
fn outcome_from(name: &str) -> ApiResult<Outcome> {
    [Outcome::Complete, Outcome::Cancel]
        .into_iter()
        .find(|o| o.name() == name)
        .ok_or_else(|| ApiError::internal(format!("a stored outcome is {name:?}")))
}

/// The verdict recorded for the session (a, s2), if any.
fn recorded(tx: &mut dyn Tx, a: &[u8; 32], s2: &[u8; 32]) -> ApiResult<Option<Verdict>> {
    let Some(row) = tx.query_opt(
        "SELECT outcome, signature FROM verdicts WHERE a = ?1 AND s2 = ?2",
        &[a.into(), s2.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Verdict {
        s2: *s2,
        a: *a,
        outcome: outcome_from(&row.text(0)?)?,
        signature: row.array(1)?,
        replayed: true,
    }))
}

/// The block list the arbiter holds: an empty version 0 until it is given one.
fn held_list(tx: &mut dyn Tx) -> ApiResult<Option<BlockList>> {
    let Some(row) = tx.query_opt("SELECT list FROM block_list WHERE id = 1", &[])? else {
        return Ok(None);
    };
    BlockList::decode(&row.blob(0)?)
        .map(Some)
        .map_err(|_| ApiError::internal("the stored block list does not parse"))
}

/// What a verdict row keeps of the request that decided it.
struct Proof<'a> {
    commitment: [u8; 32],
    parties: &'a Parties,
    initiator_certificate: &'a [u8],
    responder_certificate: &'a [u8],
    agreement_signature: Option<[u8; SIGNATURE_LEN]>,
    resolve_signature: Option<[u8; SIGNATURE_LEN]>,
    cancel_signature: Option<[u8; SIGNATURE_LEN]>,
}

fn optional(signature: Option<[u8; SIGNATURE_LEN]>) -> Value {
    signature.map_or(Value::Null, Value::from)
}

impl Arbiter {
    /// Opens the arbiter's database (`:memory:` works) for the arbiter key `key` (from its
    /// key file).
    pub fn open(
        path: &str,
        clock: Arc<dyn Clock>,
        config: ArbiterConfig,
        key: SigningKey,
    ) -> Result<Self, StartError> {
        Self::new(open_database(path)?, clock, config, key)
    }

    /// An arbiter over a database already brought to the arbiter's schema. The key must be
    /// the database's, if it was started before.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        config: ArbiterConfig,
        key: SigningKey,
    ) -> Result<Self, StartError> {
        keys::bind(&db, "arbiter", key.verifying_key())?;
        Ok(Arbiter {
            db,
            key,
            clock,
            config,
            #[cfg(feature = "planted-flaws")]
            skip_party_check: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The planted flaw, for the model test that must catch it: from now on, this arbiter
    /// skips the party check (a' = a, and so that the signer is the party the agreement
    /// names), as the arbiter before issue 12 did. Only in a build with the
    /// `planted-flaws` feature, which the released binary never has.
    #[cfg(feature = "planted-flaws")]
    pub fn plant_flaw_skip_party_check(&self) {
        self.skip_party_check
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn party_check_skipped(&self) -> bool {
        #[cfg(feature = "planted-flaws")]
        {
            self.skip_party_check
                .load(std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(feature = "planted-flaws"))]
        {
            false
        }
    }

    pub fn public_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn info(&self) -> ApiResult<ArbiterInfo> {
        let version = self
            .db
            .transaction(|tx| held_list(tx))?
            .map_or(0, |l| l.version);
        Ok(ArbiterInfo {
            arbiter_public_key: encode_public_key(self.public_key()),
            issuer_public_key: encode_public_key(&self.config.issuer_public_key),
            block_list_version: version,
        })
    }

    /// Takes the issuer's signed block list, and keeps it if it is newer than the one held.
    /// Anyone may relay it: the issuer's signature is checked.
    pub fn take_block_list(&self, list: &BlockList) -> ApiResult<BlockListStatus> {
        list.verify(&self.config.issuer_public_key)
            .map_err(|e| match e {
                BlockListError::BadSignature => bad_signature(format!(
                    "the block list is not signed by the arbiter's issuer: {e}"
                )),
                e => invalid(format!("block list: {e}")),
            })?;
        let bytes = list.encode();
        self.db.transaction(|tx| {
            // Every entry of any list the issuer signed is a block for good, even one that a
            // newer list no longer carries: keep them all (an older list relayed late fills
            // a gap).
            for entry in &list.entries {
                let (kind, id) = match entry {
                    BlockEntry::Card(id) => ("card", id),
                    BlockEntry::Maker(id) => ("maker", id),
                };
                tx.execute(
                    "INSERT INTO blocked (kind, id) VALUES (?1, ?2) ON CONFLICT (kind, id) DO NOTHING",
                    &[kind.into(), id.into()],
                )?;
            }
            let held = held_list(tx)?;
            match held {
                Some(held) if held.version >= list.version => Ok(BlockListStatus {
                    version: held.version,
                    updated: false,
                }),
                Some(_) => {
                    tx.execute(
                        "UPDATE block_list SET version = ?1, list = ?2 WHERE id = 1",
                        &[Value::Int(i64::from(list.version)), bytes.as_slice().into()],
                    )?;
                    Ok(BlockListStatus {
                        version: list.version,
                        updated: true,
                    })
                }
                None => {
                    tx.execute(
                        "INSERT INTO block_list (id, version, list) VALUES (1, ?1, ?2)",
                        &[Value::Int(i64::from(list.version)), bytes.as_slice().into()],
                    )?;
                    Ok(BlockListStatus {
                        version: list.version,
                        updated: true,
                    })
                }
            }
        })
    }

    /// The request's two parties: both certificates are the issuer's, and the agreement is
    /// theirs, `a = SHA-256(c ‖ id_A ‖ id_B)`.
    fn session_parties(
        &self,
        a: &[u8; 32],
        c: &[u8; 32],
        initiator_certificate: &[u8],
        responder_certificate: &[u8],
    ) -> ApiResult<Parties> {
        let parties = Parties::check(
            initiator_certificate,
            responder_certificate,
            &self.config.issuer_public_key,
        )?;
        if self.party_check_skipped() {
            return Ok(parties);
        }
        let recomputed = exchange::agreement_of(c, &parties.initiator.id, &parties.responder.id);
        if recomputed != *a {
            return Err(not_a_party(
                "the agreement a is not SHA-256(commitment || id_A || id_B) of the two certificates: only the session's own initiator and responder can settle it",
            ));
        }
        Ok(parties)
    }

    /// B's cancel request: CANCEL, unless the session has a verdict already.
    pub fn cancel(&self, req: &ArbiterCancelRequest) -> ApiResult<Verdict> {
        let sab = signature_bytes(&req.cancel_signature, "cancel_signature")?;
        let parties = self.session_parties(
            &req.a,
            &req.commitment,
            &req.initiator_certificate,
            &req.responder_certificate,
        )?;
        parties
            .responder
            .verify(domains::CANCEL, &req.a, &req.s2, &sab, "cancel_signature")?;
        self.decide(
            &req.s2,
            &req.a,
            Outcome::Cancel,
            &parties.responder,
            Proof {
                commitment: req.commitment,
                parties: &parties,
                initiator_certificate: &req.initiator_certificate,
                responder_certificate: &req.responder_certificate,
                agreement_signature: None,
                resolve_signature: None,
                cancel_signature: Some(sab),
            },
        )
    }

    /// A's resolve request: COMPLETE, unless the session has a verdict already.
    pub fn resolve(&self, req: &ArbiterResolveRequest) -> ApiResult<Verdict> {
        let sa = signature_bytes(&req.agreement_signature, "agreement_signature")?;
        let sr = signature_bytes(&req.resolve_signature, "resolve_signature")?;
        let parties = self.session_parties(
            &req.a,
            &req.commitment,
            &req.initiator_certificate,
            &req.responder_certificate,
        )?;
        parties
            .responder
            .verify(domains::AGREE, &req.a, &req.s2, &sa, "agreement_signature")?;
        parties
            .initiator
            .verify(domains::RESOLVE, &req.a, &req.s2, &sr, "resolve_signature")?;
        self.decide(
            &req.s2,
            &req.a,
            Outcome::Complete,
            &parties.initiator,
            Proof {
                commitment: req.commitment,
                parties: &parties,
                initiator_certificate: &req.initiator_certificate,
                responder_certificate: &req.responder_certificate,
                agreement_signature: Some(sa),
                resolve_signature: Some(sr),
                cancel_signature: None,
            },
        )
    }

    /// The verdict recorded for the session (a, s2), or none.
    pub fn verdict(&self, a: &[u8; 32], s2: &[u8; 32]) -> ApiResult<VerdictAnswer> {
        let verdict = self.db.transaction(|tx| recorded(tx, a, s2))?;
        Ok(VerdictAnswer { verdict })
    }

    /// Records `outcome` for (a, s2) with its proof, unless a verdict exists: first writer
    /// wins. `signer` is the card whose request this is (B for a cancel, A for a resolve).
    fn decide(
        &self,
        s2: &[u8; 32],
        a: &[u8; 32],
        outcome: Outcome,
        signer: &Card,
        proof: Proof<'_>,
    ) -> ApiResult<Verdict> {
        let day = self.clock.now() / DAY;
        self.db.transaction(|tx| {
            // A blocked card gets no verdict, not even one recorded before: its key may be
            // out of its chip. Its honest counterparty is not the signer here, and settles.
            if tx
                .query_opt(
                    "SELECT 1 FROM blocked WHERE (kind = 'card' AND id = ?1)
                                              OR (kind = 'maker' AND id = ?2)",
                    &[signer.id.into(), signer.certificate.maker.into()],
                )?
                .is_some()
            {
                return Err(ApiError::new(
                    ErrorCode::CardBlocked,
                    format!(
                        "card {} (or its maker) is on the issuer's block list",
                        hex::encode(signer.id)
                    ),
                ));
            }
            // Transactions are serialisable (`db::Engine::run`: SQLite's write lock is taken
            // at BEGIN): no other request can record a verdict between this read and the
            // insert below, so a concurrent second writer reads the first one's verdict.
            if let Some(verdict) = recorded(tx, a, s2)? {
                return Ok(verdict);
            }
            // No narrower key than (a, s2): an agreement made up under this s2 is another
            // session and decides nothing of this one (see the migration 0003_parties).
            let responder = &proof.parties.responder.id;
            let signature = exchange::sign_verdict(&self.key, s2, a, outcome);
            tx.execute(
                "INSERT INTO verdicts
                     (a, s2, outcome, signature, commitment, responder_id, responder_certificate,
                      initiator_id, initiator_certificate, agreement_signature,
                      resolve_signature, cancel_signature, day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &[
                    a.into(),
                    s2.into(),
                    outcome.name().into(),
                    signature.into(),
                    proof.commitment.into(),
                    responder.into(),
                    proof.responder_certificate.into(),
                    proof.parties.initiator.id.into(),
                    proof.initiator_certificate.into(),
                    optional(proof.agreement_signature),
                    optional(proof.resolve_signature),
                    optional(proof.cancel_signature),
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
