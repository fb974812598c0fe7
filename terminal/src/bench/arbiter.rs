//! Arbiter verdicts over HTTP: resolve requests, each for a session of its own, from cards
//! registered at the backend's center, against the arbiter's cryptography for one verdict
//! measured alone: both certificates checked against the issuer, the agreement recomputed
//! from the commitment and the two card ids, Sa and Sr verified, the verdict signed.

use std::time::Instant;

use apdu_spec::cert::Certificate;
use apdu_spec::exchange::{self, Outcome, domains};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use rand::RngExt;
use valuecard_protocol::api::ArbiterResolveRequest;

use super::backend::{Fixture, in_parallel};
use super::{BenchError, Plan, Progress, Result, alternate, per_second};
use crate::backend_client::ArbiterClient;

/// `count` resolve requests, each for a fresh session between two of the fixture's cards.
fn requests(fixture: &Fixture, count: usize) -> Vec<ArbiterResolveRequest> {
    let mut rng = rand::rng();
    let cards = &fixture.cards;
    (0..count)
        .map(|i| {
            let initiator = &cards[i % cards.len()];
            let responder = &cards[(i + 1) % cards.len()];
            let (s2, c): ([u8; 32], [u8; 32]) = (rng.random(), rng.random());
            let a = exchange::agreement_of(&c, &initiator.id, &responder.id);
            ArbiterResolveRequest {
                s2,
                a,
                commitment: c,
                agreement_signature: exchange::sign(&responder.key, domains::AGREE, &a, &s2)
                    .to_vec(),
                resolve_signature: exchange::sign(&initiator.key, domains::RESOLVE, &a, &s2)
                    .to_vec(),
                initiator_certificate: initiator.certificate.clone(),
                responder_certificate: responder.certificate.clone(),
            }
        })
        .collect()
}

/// What the arbiter checks of a certificate: its encoding, and the issuer's signature; the
/// card's id and key.
fn card_key(bytes: &[u8], issuer: &VerifyingKey) -> Result<([u8; 32], VerifyingKey)> {
    let bad = |e| BenchError::Check(format!("a certificate: {e}"));
    let certificate = Certificate::decode(bytes).map_err(bad)?;
    if certificate.encode() != bytes {
        return Err(BenchError::Check("a certificate is not canonical".into()));
    }
    Ok((
        certificate.card_id,
        certificate.verify(issuer).map_err(bad)?,
    ))
}

/// The arbiter's cryptography for each request, alone; verdicts per second.
fn crypto(
    requests: &[ArbiterResolveRequest],
    issuer: &VerifyingKey,
    arbiter: &SigningKey,
) -> Result<f64> {
    let start = Instant::now();
    for r in requests {
        let (initiator_id, initiator) = card_key(&r.initiator_certificate, issuer)?;
        let (responder_id, responder) = card_key(&r.responder_certificate, issuer)?;
        // The party check: the agreement is between the two cards that signed.
        if exchange::agreement_of(&r.commitment, &initiator_id, &responder_id) != r.a {
            return Err(BenchError::Check(
                "a request's agreement is not its cards'".into(),
            ));
        }
        if !exchange::verify(
            &responder,
            domains::AGREE,
            &r.a,
            &r.s2,
            &r.agreement_signature,
        ) || !exchange::verify(
            &initiator,
            domains::RESOLVE,
            &r.a,
            &r.s2,
            &r.resolve_signature,
        ) {
            return Err(BenchError::Check(
                "a request's signature does not verify".into(),
            ));
        }
        std::hint::black_box(exchange::sign_verdict(
            arbiter,
            &r.s2,
            &r.a,
            Outcome::Complete,
        ));
    }
    Ok(per_second(requests.len(), start.elapsed()))
}

fn resolve(arbiter: &ArbiterClient, request: &ArbiterResolveRequest) -> Result<()> {
    let verdict = arbiter.resolve(request)?;
    if verdict.replayed || verdict.outcome != Outcome::Complete {
        return Err(BenchError::Check(format!(
            "the arbiter answered a fresh resolve request with {:?} (replayed: {})",
            verdict.outcome, verdict.replayed
        )));
    }
    Ok(())
}

/// Verdicts per second over HTTP (fresh sessions every run), and their cryptography alone,
/// in alternate runs.
pub(super) fn verdicts(plan: &Plan, progress: &Progress, fixture: &Fixture) -> Result<(f64, f64)> {
    let stage = progress.stage(
        format!(
            "arbiter verdicts over HTTP ({} clients), and their cryptography alone",
            plan.clients
        ),
        plan.runs,
    );
    let warm_up = requests(fixture, plan.clients);
    let runs: Vec<Vec<ArbiterResolveRequest>> = (0..plan.runs)
        .map(|_| requests(fixture, plan.verdicts))
        .collect();
    let clients: Vec<ArbiterClient> = (0..plan.clients).map(|_| fixture.arbiter()).collect();
    // Opens each client's connection, untimed.
    in_parallel(&clients, &warm_up, resolve)?;
    // A key of the arbiter's kind: the verdict's signature costs the same with any.
    let arbiter = SigningKey::generate_from_rng(&mut rand::rng());
    let (mut http, mut alone) = (runs.iter(), runs.iter());
    let (verdicts, reference) = alternate(
        plan.runs,
        &stage,
        || {
            let run = http.next().map(Vec::as_slice).unwrap_or_default();
            Ok(per_second(run.len(), in_parallel(&clients, run, resolve)?))
        },
        || {
            let run = alone.next().map(Vec::as_slice).unwrap_or_default();
            crypto(run, &fixture.issuer, &arbiter)
        },
    )?;
    stage.done(format!(
        "{verdicts:.0}/s (cryptography alone: {reference:.0}/s)"
    ));
    Ok((verdicts, reference))
}
