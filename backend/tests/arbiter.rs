//! The arbiter over HTTP, with cards in software (certificates from a test issuer): one
//! verdict per session, first writer wins, under concurrency and across a restart; every
//! forged or mismatched request is refused with its code and records nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use apdu_spec::blocklist::{BlockEntry, BlockList};
use apdu_spec::cert::{Certificate, decode_public_key, encode_public_key};
use apdu_spec::exchange::{self, Outcome, domains};
use common::*;
use valuecard_backend::arbiter::{Arbiter, ArbiterConfig};
use valuecard_backend::clock::{DAY, ManualClock};
use valuecard_backend::db::{Dump, Value};
use valuecard_backend::http::{self, Roles, ServerHandle};
use valuecard_backend::keys::StartError;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::*;

/// An arbiter trusting `issuer`, served over HTTP. Fields drop in order: the server first,
/// then the arbiter and its database.
struct Court {
    server: ServerHandle,
    arbiter: Arc<Arbiter>,
    issuer: SigningKey,
    agent: ureq::Agent,
}

fn new_key() -> SigningKey {
    SigningKey::generate_from_rng(&mut rand::rng())
}

impl Court {
    fn new() -> Court {
        Self::open(":memory:", new_key(), new_key())
    }

    fn open(path: &str, issuer: SigningKey, key: SigningKey) -> Court {
        let clock = Arc::new(ManualClock::new(START));
        let arbiter = Arc::new(
            Arbiter::open(
                path,
                clock,
                ArbiterConfig {
                    issuer_public_key: *issuer.verifying_key(),
                },
                key,
            )
            .unwrap(),
        );
        let server = ServerHandle::start(
            "127.0.0.1:0",
            http::router(Roles {
                arbiter: Some(arbiter.clone()),
                ..Roles::default()
            }),
        )
        .unwrap();
        Court {
            server,
            arbiter,
            issuer,
            agent: agent(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Answer<R> {
        answer(self.agent.post(self.url(path)).send_json(body))
    }

    fn cancel(&self, req: &ArbiterCancelRequest) -> Answer<Verdict> {
        self.post("/arbiter/v1/cancellations", req)
    }

    fn resolve(&self, req: &ArbiterResolveRequest) -> Answer<Verdict> {
        self.post("/arbiter/v1/resolutions", req)
    }

    fn verdict(&self, session: &Session) -> Option<Verdict> {
        let answer: VerdictAnswer = answer(
            self.agent
                .get(self.url(&format!(
                    "/arbiter/v1/verdicts/{}/{}",
                    hex::encode(session.a),
                    hex::encode(session.s2)
                )))
                .call(),
        )
        .unwrap();
        answer.verdict
    }

    fn info(&self) -> ArbiterInfo {
        answer(self.agent.get(self.url("/arbiter/v1/info")).call()).unwrap()
    }

    /// The key from `/arbiter/v1/info`, as a terminal learns it.
    fn published_key(&self) -> VerifyingKey {
        decode_public_key(&self.info().arbiter_public_key).unwrap()
    }

    fn card(&self) -> SoftCard {
        SoftCard::new(&self.issuer)
    }

    fn dump(&self) -> Dump {
        self.arbiter.database().dump().unwrap()
    }

    fn verdict_rows(&self) -> usize {
        self.dump()["verdicts"].len()
    }

    /// Runs `request`, checks its code and HTTP status, and that the database is unchanged.
    #[track_caller]
    fn refused<T: std::fmt::Debug>(
        &self,
        what: &str,
        code: ErrorCode,
        request: impl FnOnce() -> Answer<T>,
    ) {
        let before = self.dump();
        match request() {
            Ok(v) => panic!("{what}: expected {code}, got {v:?}"),
            Err(f) => {
                assert_eq!(f.code, code, "{what}: wrong code: {f:?}");
                assert_eq!(f.status, code.http_status(), "{what}: wrong status: {f:?}");
            }
        }
        assert_eq!(
            self.dump(),
            before,
            "{what}: a refused request changed the database"
        );
    }

    /// A raw POST: the error, or the status.
    fn raw_post(&self, path: &str, body: &[u8]) -> Answer<u16> {
        raw(
            &self.agent,
            "POST",
            &self.url(path),
            Some("application/json"),
            body,
        )
    }
}

/// Checks that `v` is the arbiter's signed verdict on `session` with `outcome`.
#[track_caller]
fn assert_verdict(v: &Verdict, key: &VerifyingKey, session: &Session, outcome: Outcome) {
    assert_eq!((v.s2, v.a, v.outcome), (session.s2, session.a, outcome));
    assert!(
        exchange::verify_verdict(key, &v.s2, &v.a, v.outcome, &v.signature),
        "the verdict's signature does not verify with the published key"
    );
}

#[test]
fn cancel_first_then_resolve_gets_the_same_cancel() {
    let court = Court::new();
    let key = court.published_key();
    let (a, b) = (court.card(), court.card());
    let session = Session::new(&a, &b);
    assert_eq!(court.verdict(&session), None, "no verdict before");

    let first = court.cancel(&cancel_request(&a, &b, &session)).unwrap();
    assert_verdict(&first, &key, &session, Outcome::Cancel);
    assert!(!first.replayed);
    assert_eq!(court.verdict_rows(), 1);

    // A's resolve request comes too late: it gets the CANCEL, and nothing more is recorded.
    let before = court.dump();
    let late = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert!(late.replayed);
    assert_eq!(
        Verdict {
            replayed: false,
            ..late
        },
        first
    );
    // B's cancel request again: the same.
    let again = court.cancel(&cancel_request(&a, &b, &session)).unwrap();
    assert_eq!((again.signature, again.replayed), (first.signature, true));
    assert_eq!(court.dump(), before);

    let queried = court.verdict(&session).unwrap();
    assert_verdict(&queried, &key, &session, Outcome::Cancel);
    assert_eq!(
        (queried.signature, queried.replayed),
        (first.signature, true)
    );
}

#[test]
fn resolve_first_then_cancel_gets_the_same_complete() {
    let court = Court::new();
    let key = court.published_key();
    let (a, b) = (court.card(), court.card());
    let session = Session::new(&a, &b);
    assert_eq!(court.verdict(&session), None);

    let first = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert_verdict(&first, &key, &session, Outcome::Complete);
    assert!(!first.replayed);

    let before = court.dump();
    let late = court.cancel(&cancel_request(&a, &b, &session)).unwrap();
    assert_verdict(&late, &key, &session, Outcome::Complete);
    assert_eq!((late.signature, late.replayed), (first.signature, true));
    let again = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert_eq!((again.signature, again.replayed), (first.signature, true));
    assert_eq!(court.dump(), before);

    let queried = court.verdict(&session).unwrap();
    assert_verdict(&queried, &key, &session, Outcome::Complete);
    assert_eq!(queried.signature, first.signature);

    // The record keeps the proof: both card ids, both certificates, Sa and Sr, and the day.
    let rows = &court.dump()["verdicts"];
    assert_eq!(rows.len(), 1);
    let req = resolve_request(&a, &b, &session);
    for part in [
        Value::Blob(a.id.to_vec()),
        Value::Blob(b.id.to_vec()),
        Value::Blob(a.certificate.clone()),
        Value::Blob(b.certificate.clone()),
        Value::Blob(req.agreement_signature.clone()),
        Value::Blob(req.resolve_signature.clone()),
        Value::Blob(first.signature.to_vec()),
        Value::Int((START / DAY) as i64),
    ] {
        assert!(rows[0].contains(&part), "the record lacks {part:?}");
    }
}

#[test]
fn a_made_up_agreement_is_another_session_and_leaves_the_real_one_alone() {
    // The terminal holds a third genuine card C. It makes up an agreement under the real
    // session's s2 that names C (as responder, then as initiator), and has C sign it: the
    // arbiter records a verdict for that session (a', s2), which is not (a, s2). The real
    // session is untouched, and its parties settle it as they would have.
    let court = Court::new();
    let key = court.published_key();
    let (a, b, c) = (court.card(), court.card(), court.card());
    let session = Session::new(&a, &b);
    let with_c = session.naming(&a, &c);
    assert_ne!(with_c.a, session.a);
    let made_up = court.cancel(&cancel_request(&a, &c, &with_c)).unwrap();
    assert_verdict(&made_up, &key, &with_c, Outcome::Cancel);
    // With C as the initiator, C would need B's agreement over an a that names C: it signs
    // one itself, which is refused, and nothing is recorded.
    let c_first = session.naming(&c, &b);
    court.refused(
        "C's resolve with its own Sa",
        ErrorCode::BadSignature,
        || {
            court.resolve(&ArbiterResolveRequest {
                agreement_signature: c.sign(domains::AGREE, &c_first.a, &c_first.s2),
                ..resolve_request(&c, &b, &c_first)
            })
        },
    );
    assert_eq!(
        court.verdict(&session),
        None,
        "the real session has no verdict"
    );
    // Its own parties settle it: COMPLETE, whatever C recorded under the same s2.
    let real = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert_verdict(&real, &key, &session, Outcome::Complete);
    assert!(!real.replayed);
    assert_eq!(court.verdict_rows(), 2);
    assert_eq!(
        court.verdict(&with_c).map(|v| v.outcome),
        Some(Outcome::Cancel),
        "the made-up session keeps its own verdict"
    );
}

#[test]
fn an_expired_certificate_still_settles() {
    let court = Court::new();
    let expired = |court: &Court| SoftCard::valid(&court.issuer, 1, START - DAY);
    let (a, b) = (expired(&court), expired(&court));
    let session = Session::new(&a, &b);
    let v = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert_verdict(&v, &court.published_key(), &session, Outcome::Complete);
    // And one not valid yet.
    let b = SoftCard::valid(&court.issuer, START + DAY, START + 2 * DAY);
    let session = Session::new(&a, &b);
    let v = court.cancel(&cancel_request(&a, &b, &session)).unwrap();
    assert_verdict(&v, &court.published_key(), &session, Outcome::Cancel);
}

#[test]
fn the_info_names_both_keys_and_every_verdict_verifies_with_them() {
    let court = Court::new();
    let info = court.info();
    assert_eq!(
        info.arbiter_public_key,
        encode_public_key(court.arbiter.public_key())
    );
    assert_eq!(
        info.issuer_public_key,
        encode_public_key(court.issuer.verifying_key())
    );
    let key = court.published_key();
    let (a, b) = (court.card(), court.card());
    for outcome in [Outcome::Complete, Outcome::Cancel] {
        let session = Session::new(&a, &b);
        let v = match outcome {
            Outcome::Complete => court.resolve(&resolve_request(&a, &b, &session)),
            Outcome::Cancel => court.cancel(&cancel_request(&a, &b, &session)),
        }
        .unwrap();
        assert_verdict(&v, &key, &session, outcome);
        assert!(v.verifies(&key));
        // The signature binds the outcome, the session, the agreement and the arbiter.
        let flipped = match outcome {
            Outcome::Complete => Outcome::Cancel,
            Outcome::Cancel => Outcome::Complete,
        };
        assert!(!exchange::verify_verdict(
            &key,
            &v.s2,
            &v.a,
            flipped,
            &v.signature
        ));
        assert!(!exchange::verify_verdict(
            &key,
            &v.a,
            &v.s2,
            v.outcome,
            &v.signature
        ));
        assert!(!exchange::verify_verdict(
            court.issuer.verifying_key(),
            &v.s2,
            &v.a,
            v.outcome,
            &v.signature
        ));
    }
}

#[test]
fn concurrent_conflicting_requests_record_one_verdict() {
    const REQUESTS: usize = 32;
    let court = Court::new();
    let key = court.published_key();
    let (a, b) = (court.card(), court.card());
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let session = Session::new(&a, &b);
        let cancel = cancel_request(&a, &b, &session);
        let resolve = resolve_request(&a, &b, &session);
        let barrier = Arc::new(Barrier::new(REQUESTS));
        let threads: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let (barrier, url) = (barrier.clone(), court.url(""));
                let (cancel, resolve) = (cancel.clone(), resolve.clone());
                std::thread::spawn(move || {
                    // One agent per thread: each request on its own connection.
                    let agent = agent();
                    barrier.wait();
                    // Half cancel, half resolve; which kind comes first alternates by round.
                    if (i + round) % 2 == 0 {
                        answer::<Verdict>(
                            agent
                                .post(format!("{url}/arbiter/v1/cancellations"))
                                .send_json(&cancel),
                        )
                    } else {
                        answer::<Verdict>(
                            agent
                                .post(format!("{url}/arbiter/v1/resolutions"))
                                .send_json(&resolve),
                        )
                    }
                })
            })
            .collect();
        let answers: Vec<Verdict> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        let first = answers.iter().find(|v| !v.replayed).unwrap();
        assert_verdict(first, &key, &session, first.outcome);
        for v in &answers {
            assert_eq!(
                (v.s2, v.a, v.outcome, v.signature),
                (first.s2, first.a, first.outcome, first.signature),
                "round {round}: two answers differ"
            );
        }
        assert_eq!(
            answers.iter().filter(|v| !v.replayed).count(),
            1,
            "round {round}: exactly one request decided"
        );
        assert_eq!(court.verdict_rows(), round + 1, "one record per session");
        assert_eq!(court.verdict(&session).unwrap().signature, first.signature);
        outcomes.push(first.outcome);
    }
    eprintln!("winning outcomes: {outcomes:?}");
}

#[test]
fn a_verdict_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arbiter.sqlite");
    let file = file.to_str().unwrap();
    let (issuer, arbiter_key) = (new_key(), new_key());
    let court = Court::open(file, issuer.clone(), arbiter_key.clone());
    let (a, b) = (court.card(), court.card());
    let (cancelled, completed) = (Session::new(&a, &b), Session::new(&a, &b));
    let first_cancel = court.cancel(&cancel_request(&a, &b, &cancelled)).unwrap();
    let first_complete = court.resolve(&resolve_request(&a, &b, &completed)).unwrap();
    let key = *court.arbiter.public_key();
    let dump = court.dump();
    drop(court);

    // The database is bound to the arbiter's key: another key does not start on it.
    let clock = Arc::new(ManualClock::new(START));
    let config = ArbiterConfig {
        issuer_public_key: *issuer.verifying_key(),
    };
    match Arbiter::open(file, clock, config, new_key()) {
        Err(StartError::KeyMismatch { role, stored, .. }) => {
            assert_eq!(
                (role, stored),
                ("arbiter", hex::encode(encode_public_key(&key)))
            );
        }
        other => panic!("another key started the arbiter: {other:?}"),
    }

    let court = Court::open(file, issuer, arbiter_key);
    assert_eq!(*court.arbiter.public_key(), key, "the same arbiter key");
    assert_eq!(court.dump(), dump);
    for (session, first) in [(&cancelled, &first_cancel), (&completed, &first_complete)] {
        let queried = court.verdict(session).unwrap();
        assert_eq!(
            (queried.outcome, queried.signature, queried.replayed),
            (first.outcome, first.signature, true)
        );
        // Both kinds of request again, after the restart: the first verdict.
        for v in [
            court.cancel(&cancel_request(&a, &b, session)).unwrap(),
            court.resolve(&resolve_request(&a, &b, session)).unwrap(),
        ] {
            assert_verdict(&v, &key, session, first.outcome);
            assert_eq!((v.signature, v.replayed), (first.signature, true));
        }
    }
    assert_eq!(court.dump(), dump, "nothing more recorded");
}

/// A certificate with one field changed and the issuer's signature left as it was.
fn tampered(certificate: &[u8], change: impl FnOnce(&mut Certificate)) -> Vec<u8> {
    let mut cert = Certificate::decode(certificate).unwrap();
    change(&mut cert);
    cert.encode()
}

#[test]
fn forged_or_mismatched_requests_are_refused_and_record_nothing() {
    use ErrorCode::{BadSignature, InvalidField, MalformedRequest, NotAParty};
    let court = Court::new();
    let (a, b) = (court.card(), court.card());
    let stranger = SoftCard::new(&SigningKey::generate_from_rng(&mut rand::rng()));
    // A fresh session for each case: had the request been taken, it would record a verdict.
    let fresh = || Session::new(&a, &b);

    // ---- cancel requests ----
    let cancel = |change: &dyn Fn(&mut ArbiterCancelRequest, &Session)| {
        let session = fresh();
        let mut req = cancel_request(&a, &b, &session);
        change(&mut req, &session);
        req
    };
    let cancels: Vec<(&str, ErrorCode, ArbiterCancelRequest)> = vec![
        (
            "Sab with a bit flipped",
            BadSignature,
            cancel(&|r, _| r.cancel_signature[10] ^= 1),
        ),
        (
            "Sab by A instead of B",
            BadSignature,
            cancel(&|r, s| r.cancel_signature = a.sign(domains::CANCEL, &s.a, &s.s2)),
        ),
        (
            "B's agreement Sa passed off as Sab",
            BadSignature,
            cancel(&|r, s| r.cancel_signature = b.sign(domains::AGREE, &s.a, &s.s2)),
        ),
        (
            "Sab over another a",
            BadSignature,
            cancel(&|r, s| r.cancel_signature = b.sign(domains::CANCEL, &[7; 32], &s.s2)),
        ),
        (
            "Sab over a and s2 swapped",
            BadSignature,
            cancel(&|r, s| r.cancel_signature = b.sign(domains::CANCEL, &s.s2, &s.a)),
        ),
        (
            "a card certified by another issuer",
            BadSignature,
            cancel(&|r, s| *r = cancel_request(&a, &stranger, s)),
        ),
        (
            "a certificate whose not_after was moved",
            BadSignature,
            cancel(&|r, _| {
                r.responder_certificate = tampered(&b.certificate, |c| c.not_after += 1)
            }),
        ),
        (
            "a certificate with another card's key under B's id",
            BadSignature,
            cancel(&|r, _| {
                r.responder_certificate = tampered(&b.certificate, |c| {
                    c.public_key = encode_public_key(a.key.verifying_key())
                })
            }),
        ),
        (
            "the stranger's key and id under B's certificate signature",
            BadSignature,
            cancel(&|r, s| {
                *r = cancel_request(&a, &stranger, s);
                r.responder_certificate = tampered(&b.certificate, |c| {
                    c.public_key = encode_public_key(stranger.key.verifying_key());
                    c.card_id = stranger.id;
                });
            }),
        ),
        (
            "a truncated certificate",
            InvalidField,
            cancel(&|r, _| r.responder_certificate.truncate(100)),
        ),
        (
            "an empty certificate",
            InvalidField,
            cancel(&|r, _| r.responder_certificate.clear()),
        ),
        (
            "a certificate with bytes after it",
            InvalidField,
            cancel(&|r, _| r.responder_certificate.extend_from_slice(&[0x90, 0x00])),
        ),
        (
            "a certificate with a long-form length",
            InvalidField,
            cancel(&|r, _| {
                let body = r.responder_certificate[4..].to_vec();
                r.responder_certificate = [&[0x7F, 0x21, 0x82, 0x00, 0x9C][..], &body].concat();
            }),
        ),
        (
            "a certificate whose key's x is not a field element",
            InvalidField,
            cancel(&|r, _| {
                r.responder_certificate = tampered(&b.certificate, |c| c.public_key[1..].fill(0xFF))
            }),
        ),
        (
            "Sab of 63 bytes",
            InvalidField,
            cancel(&|r, _| {
                r.cancel_signature.pop();
            }),
        ),
        (
            "Sab of 65 bytes",
            InvalidField,
            cancel(&|r, _| r.cancel_signature.push(0)),
        ),
    ];
    for (what, code, req) in &cancels {
        court.refused(what, *code, || court.cancel(req));
    }

    // ---- resolve requests ----
    let resolve = |change: &dyn Fn(&mut ArbiterResolveRequest, &Session)| {
        let session = fresh();
        let mut req = resolve_request(&a, &b, &session);
        change(&mut req, &session);
        req
    };
    let resolves: Vec<(&str, ErrorCode, ArbiterResolveRequest)> = vec![
        (
            "Sa and Sr swapped",
            BadSignature,
            resolve(&|r, _| std::mem::swap(&mut r.agreement_signature, &mut r.resolve_signature)),
        ),
        (
            "the certificates swapped",
            NotAParty,
            resolve(&|r, _| {
                std::mem::swap(&mut r.initiator_certificate, &mut r.responder_certificate)
            }),
        ),
        (
            "Sr over another a",
            BadSignature,
            resolve(&|r, s| r.resolve_signature = a.sign(domains::RESOLVE, &[7; 32], &s.s2)),
        ),
        (
            "Sa over another s2",
            BadSignature,
            resolve(&|r, s| r.agreement_signature = b.sign(domains::AGREE, &s.a, &[7; 32])),
        ),
        (
            "Sa by A",
            BadSignature,
            resolve(&|r, s| r.agreement_signature = a.sign(domains::AGREE, &s.a, &s.s2)),
        ),
        (
            "Sr by B",
            BadSignature,
            resolve(&|r, s| r.resolve_signature = b.sign(domains::RESOLVE, &s.a, &s.s2)),
        ),
        (
            "A's confirmation Se passed off as Sr",
            BadSignature,
            resolve(&|r, s| r.resolve_signature = a.sign(domains::CONFIRM, &s.a, &s.s2)),
        ),
        (
            "an initiator certified by another issuer",
            BadSignature,
            resolve(&|r, s| *r = resolve_request(&stranger, &b, s)),
        ),
        (
            "a responder certified by another issuer",
            BadSignature,
            resolve(&|r, s| *r = resolve_request(&a, &stranger, s)),
        ),
        (
            "an initiator certificate whose not_before was moved",
            BadSignature,
            resolve(&|r, _| {
                r.initiator_certificate = tampered(&a.certificate, |c| c.not_before -= 1)
            }),
        ),
        (
            "A and B the same card",
            InvalidField,
            resolve(&|r, s| *r = resolve_request(&b, &b, s)),
        ),
        (
            "A and B the same card, with B's certificate twice",
            InvalidField,
            resolve(&|r, _| r.initiator_certificate = b.certificate.clone()),
        ),
        (
            "a truncated initiator certificate",
            InvalidField,
            resolve(&|r, _| r.initiator_certificate.truncate(159)),
        ),
        (
            "Sa of 63 bytes",
            InvalidField,
            resolve(&|r, _| {
                r.agreement_signature.pop();
            }),
        ),
        (
            "Sr of 0 bytes",
            InvalidField,
            resolve(&|r, _| r.resolve_signature.clear()),
        ),
    ];
    for (what, code, req) in &resolves {
        court.refused(what, *code, || court.resolve(req));
    }

    // ---- bodies that are not the request ----
    let session = fresh();
    let good_cancel = serde_json::to_value(cancel_request(&a, &b, &session)).unwrap();
    let good_resolve = serde_json::to_value(resolve_request(&a, &b, &session)).unwrap();
    let with = |base: &serde_json::Value, field: &str, value: serde_json::Value| {
        let mut v = base.clone();
        match value {
            serde_json::Value::Null => {
                v.as_object_mut().unwrap().remove(field);
            }
            value => v[field] = value,
        }
        serde_json::to_vec(&v).unwrap()
    };
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not JSON", "cancellations", b"{\"s2\": ".to_vec()),
        ("an array", "resolutions", b"[]".to_vec()),
        (
            "bad hex in s2",
            "cancellations",
            with(&good_cancel, "s2", json!("zz".repeat(32))),
        ),
        (
            "odd hex in a",
            "resolutions",
            with(&good_resolve, "a", json!("0".repeat(63))),
        ),
        (
            "s2 of 31 bytes",
            "cancellations",
            with(&good_cancel, "s2", json!("00".repeat(31))),
        ),
        (
            "a of 33 bytes",
            "resolutions",
            with(&good_resolve, "a", json!("00".repeat(33))),
        ),
        (
            "bad hex in a certificate",
            "resolutions",
            with(&good_resolve, "initiator_certificate", json!("7f21xx")),
        ),
        (
            "a signature as a number",
            "cancellations",
            with(&good_cancel, "cancel_signature", json!(12)),
        ),
        (
            "an unknown field",
            "cancellations",
            with(&good_cancel, "resolve_signature", json!("00".repeat(64))),
        ),
        (
            "an unknown field",
            "resolutions",
            with(&good_resolve, "outcome", json!("complete")),
        ),
        (
            "a missing field",
            "cancellations",
            with(&good_cancel, "a", json!(null)),
        ),
        (
            "a missing field",
            "resolutions",
            with(&good_resolve, "agreement_signature", json!(null)),
        ),
        (
            "a resolve request sent as a cancel",
            "cancellations",
            serde_json::to_vec(&good_resolve).unwrap(),
        ),
    ];
    for (what, route, body) in &bodies {
        court.refused(&format!("{what} ({route})"), MalformedRequest, || {
            court.raw_post(&format!("/arbiter/v1/{route}"), body)
        });
    }
    // The bodies above are refused for what they are: the same requests, whole, are taken.
    assert_eq!(court.verdict_rows(), 0);
    assert!(
        !court
            .resolve(&resolve_request(&a, &b, &session))
            .unwrap()
            .replayed
    );

    // Once a session has a verdict, a forged request for it is still refused, not answered.
    let before = court.dump();
    court.refused("Sab by A for a decided session", BadSignature, || {
        court.cancel(&ArbiterCancelRequest {
            cancel_signature: a.sign(domains::CANCEL, &session.a, &session.s2),
            ..cancel_request(&a, &b, &session)
        })
    });
    court.refused(
        "a stranger's resolve request for a decided session",
        BadSignature,
        || court.resolve(&resolve_request(&stranger, &b, &session)),
    );
    assert_eq!(court.dump(), before);

    // The verdict query takes only 32 bytes of hex, for a and for s2.
    let good = hex::encode(session.a);
    for bad in [
        "zz".repeat(32),
        "00".repeat(31),
        "00".repeat(33),
        "0".repeat(63),
    ] {
        for path in [format!("{good}/{bad}"), format!("{bad}/{good}")] {
            court.refused(&format!("verdict query {path}"), InvalidField, || {
                raw(
                    &court.agent,
                    "GET",
                    &court.url(&format!("/arbiter/v1/verdicts/{path}")),
                    None,
                    b"",
                )
            });
        }
    }
    assert_eq!(court.verdict(&session).unwrap().outcome, Outcome::Complete);
    // Upper-case hex names the same session.
    let upper: VerdictAnswer = answer(
        court
            .agent
            .get(court.url(&format!(
                "/arbiter/v1/verdicts/{}/{}",
                hex::encode_upper(session.a),
                hex::encode_upper(session.s2)
            )))
            .call(),
    )
    .unwrap();
    assert_eq!(upper.verdict.unwrap().outcome, Outcome::Complete);
}

// ---- invariant 6: adversaries hold genuine cards of the same issuer ----------------------

impl Court {
    fn block_list(&self, list: &BlockList) -> Answer<BlockListStatus> {
        self.post("/arbiter/v1/block-list", list)
    }
}

#[test]
fn a_third_card_of_the_same_issuer_cannot_settle_anothers_session() {
    let court = Court::new();
    let (a, b, c) = (court.card(), court.card(), court.card());
    let session = Session::new(&a, &b);
    // C signs a cancel for A–B's session, as the responder, with A's certificate.
    court.refused("C cancels as the responder", ErrorCode::NotAParty, || {
        court.cancel(&cancel_request(&a, &c, &session))
    });
    // ... or with B's certificate as the initiator's (it names C as responder anyway).
    court.refused("C cancels next to B", ErrorCode::NotAParty, || {
        court.cancel(&cancel_request(&b, &c, &session))
    });
    // C resolves as the initiator, with a Sa it signed itself and one it has not.
    court.refused("C resolves as the initiator", ErrorCode::NotAParty, || {
        court.resolve(&ArbiterResolveRequest {
            agreement_signature: c.sign(domains::AGREE, &session.a, &session.s2),
            ..resolve_request(&c, &b, &session)
        })
    });
    // C replays B's real agreement Sa (seen on the wire) in a resolve as the initiator.
    court.refused("C resolves with B's real Sa", ErrorCode::NotAParty, || {
        court.resolve(&ArbiterResolveRequest {
            agreement_signature: b.sign(domains::AGREE, &session.a, &session.s2),
            ..resolve_request(&c, &b, &session)
        })
    });
    assert_eq!(court.verdict(&session), None);
    assert_eq!(court.verdict_rows(), 0);
    // The session's own parties still settle it.
    let v = court.cancel(&cancel_request(&a, &b, &session)).unwrap();
    assert_verdict(&v, &court.published_key(), &session, Outcome::Cancel);
}

#[test]
fn one_party_cannot_sign_as_the_other() {
    let court = Court::new();
    let (a, b) = (court.card(), court.card());
    let session = Session::new(&a, &b);
    // A signing as B: A's signature over the cancel, with B's certificate.
    court.refused(
        "A's Sab with B's certificate",
        ErrorCode::BadSignature,
        || {
            court.cancel(&ArbiterCancelRequest {
                cancel_signature: a.sign(domains::CANCEL, &session.a, &session.s2),
                ..cancel_request(&a, &b, &session)
            })
        },
    );
    // A's Sa with B's certificate, in A's own resolve.
    court.refused(
        "A's Sa with B's certificate",
        ErrorCode::BadSignature,
        || {
            court.resolve(&ArbiterResolveRequest {
                agreement_signature: a.sign(domains::AGREE, &session.a, &session.s2),
                ..resolve_request(&a, &b, &session)
            })
        },
    );
    // B's certificate with A's signature, in the initiator's place.
    court.refused(
        "B's certificate as the initiator's",
        ErrorCode::NotAParty,
        || {
            court.resolve(&ArbiterResolveRequest {
                initiator_certificate: b.certificate.clone(),
                responder_certificate: a.certificate.clone(),
                ..resolve_request(&a, &b, &session)
            })
        },
    );
    // B resolving with its own Sr (B is not the initiator).
    court.refused(
        "B's Sr with A's certificate",
        ErrorCode::BadSignature,
        || {
            court.resolve(&ArbiterResolveRequest {
                resolve_signature: b.sign(domains::RESOLVE, &session.a, &session.s2),
                ..resolve_request(&a, &b, &session)
            })
        },
    );
    // A cancelling with its own certificate in the responder's place (A is not B).
    court.refused("A cancels as the responder", ErrorCode::NotAParty, || {
        court.cancel(&cancel_request(&b, &a, &session))
    });
    assert_eq!(court.verdict_rows(), 0);
}

#[test]
fn an_agreement_that_names_other_cards_is_refused() {
    let court = Court::new();
    let (a, b, c, d) = (court.card(), court.card(), court.card(), court.card());
    let session = Session::new(&a, &b);
    // A made-up c: a is not SHA-256(c ‖ id_A ‖ id_B) any more.
    let made_up = Session {
        c: [0x5C; 32],
        ..session
    };
    court.refused("a made-up c (cancel)", ErrorCode::NotAParty, || {
        court.cancel(&cancel_request(&a, &b, &made_up))
    });
    court.refused("a made-up c (resolve)", ErrorCode::NotAParty, || {
        court.resolve(&resolve_request(&a, &b, &made_up))
    });
    // The certificates of other cards with A–B's agreement (signed by those cards).
    court.refused(
        "C and D's certificates (cancel)",
        ErrorCode::NotAParty,
        || court.cancel(&cancel_request(&c, &d, &session)),
    );
    court.refused(
        "C and D's certificates (resolve)",
        ErrorCode::NotAParty,
        || court.resolve(&resolve_request(&c, &d, &session)),
    );
    // One party right, the other another card.
    court.refused("A and C", ErrorCode::NotAParty, || {
        court.resolve(&resolve_request(&a, &c, &session))
    });
    // The same card as both parties.
    let alone = Session::new(&a, &a);
    court.refused("A with itself (cancel)", ErrorCode::InvalidField, || {
        court.cancel(&cancel_request(&a, &a, &alone))
    });
    court.refused("A with itself (resolve)", ErrorCode::InvalidField, || {
        court.resolve(&resolve_request(&a, &a, &alone))
    });
    assert_eq!(court.verdict_rows(), 0);
}

#[test]
fn a_second_agreement_under_one_s2_decides_nothing_of_the_first() {
    // B's holder has B's key out of its chip: after B's card agreed with A, it signs, with
    // B's key, a cancel for a second, made-up agreement under the same s2 (with C as the
    // initiator, or A again with another value commitment). That is another session: the
    // arbiter records it, and A's resolve request for the real session still gets
    // COMPLETE, recorded apart. An arbiter that kept one agreement per responder and s2
    // would refuse A for ever, and A's value would stay in escrow with no way out.
    let court = Court::new();
    let (a, b, c) = (court.card(), court.card(), court.card());
    let real = Session::new(&a, &b);
    let with_c = real.naming(&c, &b);
    let v = court.cancel(&cancel_request(&c, &b, &with_c)).unwrap();
    assert_verdict(&v, &court.published_key(), &with_c, Outcome::Cancel);
    let v = court.resolve(&resolve_request(&a, &b, &real)).unwrap();
    assert!(!v.replayed);
    assert_verdict(&v, &court.published_key(), &real, Outcome::Complete);
    assert_eq!(court.verdict_rows(), 2);
    // Each session's verdict is its own, and stays so.
    let again = court.cancel(&cancel_request(&c, &b, &with_c)).unwrap();
    assert!(again.replayed && again.outcome == Outcome::Cancel);
    let again = court.resolve(&resolve_request(&a, &b, &real)).unwrap();
    assert!(again.replayed && again.outcome == Outcome::Complete);
    assert_eq!(court.verdict_rows(), 2);
}

#[test]
fn a_blocked_signer_gets_no_verdict_and_its_counterparty_settles() {
    let court = Court::new();
    let (a, b) = (court.card(), court.card());
    let (blocked_b, blocked_a) = (Session::new(&a, &b), Session::new(&a, &b));
    let decided = Session::new(&a, &b);
    court.cancel(&cancel_request(&a, &b, &decided)).unwrap();
    // Lists the arbiter does not take: another issuer's, a tampered one.
    let list = BlockList::sign(&court.issuer, 1, &[BlockEntry::Card(b.id)]);
    let foreign = BlockList::sign(&new_key(), 1, &[BlockEntry::Card(b.id)]);
    court.refused("another issuer's list", ErrorCode::BadSignature, || {
        court.block_list(&foreign)
    });
    let tampered = BlockList {
        entries: vec![BlockEntry::Card(a.id)],
        ..list.clone()
    };
    court.refused("a tampered list", ErrorCode::BadSignature, || {
        court.block_list(&tampered)
    });
    assert_eq!(
        court.block_list(&list).unwrap(),
        BlockListStatus {
            version: 1,
            updated: true
        }
    );
    assert_eq!(court.info().block_list_version, 1);
    // B is blocked: its cancel is refused, even for a session it has a verdict for.
    court.refused("B's cancel", ErrorCode::CardBlocked, || {
        court.cancel(&cancel_request(&a, &b, &blocked_b))
    });
    court.refused(
        "B's cancel of a decided session",
        ErrorCode::CardBlocked,
        || court.cancel(&cancel_request(&a, &b, &decided)),
    );
    // A, the honest counterparty, settles with B's agreement.
    let v = court.resolve(&resolve_request(&a, &b, &blocked_b)).unwrap();
    assert_verdict(&v, &court.published_key(), &blocked_b, Outcome::Complete);
    // An older list does not replace the newer.
    let older = BlockList::sign(&court.issuer, 0, &[]);
    assert_eq!(
        court.block_list(&older).unwrap(),
        BlockListStatus {
            version: 1,
            updated: false
        }
    );
    // Then A is blocked too, by its maker: its resolve is refused, B's... B is still blocked.
    let list = BlockList::sign(
        &court.issuer,
        2,
        &[BlockEntry::Card(b.id), BlockEntry::Maker(test_maker_id())],
    );
    assert!(court.block_list(&list).unwrap().updated);
    court.refused(
        "A's resolve, its maker blocked",
        ErrorCode::CardBlocked,
        || court.resolve(&resolve_request(&a, &b, &blocked_a)),
    );
    // A card of another maker, with A blocked, cancels its own session with A.
    let other_maker = SoftCard::made_by(&court.issuer, [0x77; 32]);
    let session = Session::new(&a, &other_maker);
    let v = court
        .cancel(&cancel_request(&a, &other_maker, &session))
        .unwrap();
    assert_verdict(&v, &court.published_key(), &session, Outcome::Cancel);
}

/// A list carries only the newest 64 blocks, and blocks are for good: the arbiter keeps
/// every entry of every list it is given, so a card blocked long ago, whose entry newer
/// blocks pushed out of the list, is still refused.
#[test]
fn a_block_that_fell_off_the_list_still_holds_at_the_arbiter() {
    let court = Court::new();
    let (a, b) = (court.card(), court.card());
    let first = BlockList::sign(&court.issuer, 1, &[BlockEntry::Card(b.id)]);
    assert!(court.block_list(&first).unwrap().updated);
    // 64 newer blocks of other cards: version 65 no longer names B.
    let mut entries = vec![BlockEntry::Card(b.id)];
    entries.extend((0..64u8).map(|i| BlockEntry::Card([i; 32])));
    let newest = BlockList::sign(&court.issuer, 65, &entries);
    assert!(!newest.blocks_card(&b.id), "B fell off the list");
    assert!(court.block_list(&newest).unwrap().updated);
    court.refused("B's cancel", ErrorCode::CardBlocked, || {
        court.cancel(&cancel_request(&a, &b, &Session::new(&a, &b)))
    });
    // An old list relayed late fills a gap the same way: C was blocked in version 2, which
    // the arbiter never saw, and version 2 comes after version 65.
    let c = court.card();
    let gap = BlockList::sign(
        &court.issuer,
        2,
        &[BlockEntry::Card(b.id), BlockEntry::Card(c.id)],
    );
    assert!(
        !court.block_list(&gap).unwrap().updated,
        "older than the one held"
    );
    court.refused("C's cancel", ErrorCode::CardBlocked, || {
        court.cancel(&cancel_request(&a, &c, &Session::new(&a, &c)))
    });
}

/// The planted flaw (`planted-flaws` feature), for the model test: off unless switched on,
/// and when on, the hole of issue 12 is back.
#[cfg(feature = "planted-flaws")]
#[test]
fn the_planted_flaw_skips_the_party_check_only_when_switched_on() {
    let court = Court::new();
    let (a, b, c) = (court.card(), court.card(), court.card());
    let session = Session::new(&a, &b);
    court.refused("off by default", ErrorCode::NotAParty, || {
        court.cancel(&cancel_request(&a, &c, &session))
    });
    court.arbiter.plant_flaw_skip_party_check();
    let v = court.cancel(&cancel_request(&a, &c, &session)).unwrap();
    assert_verdict(&v, &court.published_key(), &session, Outcome::Cancel);
    // A's own resolve of the session now gets the CANCEL that C recorded.
    let late = court.resolve(&resolve_request(&a, &b, &session)).unwrap();
    assert_eq!((late.outcome, late.replayed), (Outcome::Cancel, true));
}
