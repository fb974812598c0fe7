//! START, AGREE, CONFIRM, COMMIT, FINISH, ABORT, CANCEL, RESOLVE, APPLY VERDICT and LIST
//! SESSIONS: the fair exchange between two cards (PROTOCOLS.md, "Fair exchange: card to
//! card"; the bytes are in `apdu_spec::exchange`).
//!
//! Each command is planned from `&self` like the units commands: the plan checks everything
//! and returns the whole next persistent state with the answer, which is installed and
//! committed at once. One refusal writes: COMMIT with a confirmation that does not verify
//! commits its session as PENDING before it answers 6300, so that the session can never
//! commit afterwards.
//!
//! The safety argument, step by step, sits next to the lines that rely on it. In short: the
//! value a card gives is in escrow from the first step of its session until the session
//! ends; the responder stores V1 only after the initiator's Se, which the initiator signs
//! only with V1 in escrow and no way left to abort; the initiator stores V2 only after r2,
//! which the responder gives only in the commit that stores V1, or after the arbiter's
//! COMPLETE; and a responder that has cancelled never commits.

use apdu_spec::Status;
use apdu_spec::cert::Certificate;
use apdu_spec::exchange::messages::{
    AbortBody, AgreeAnswer, AgreeBody, CancelAnswer, CancelBody, CommitAnswer, CommitBody,
    ConfirmAnswer, ConfirmBody, FinishBody, ResolveAnswer, ResolveBody, StartAnswer, StartBody,
    TicketProof, VerdictBody, encode_sessions,
};
use apdu_spec::exchange::{self, MAX_SESSIONS, Outcome, Value, domains};
use apdu_spec::units::{self, UnitValue};
use p256::ecdsa::VerifyingKey;
use rand::RngExt;

use super::store::{self, StoreError};
use super::{Applet, Plan};
use crate::state::{Confirmed, InitiatorSession, Persistent, ResponderSession, Secret, Session};

/// Why an exchange command is refused. Mapped to a status word once, in `From<Refusal>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("the body is not what the command takes")]
    Malformed,
    #[error("the PIN is not verified in this session")]
    PinNotVerified,
    #[error("the value offered is not available: not held, or in escrow")]
    NotAvailable,
    #[error("the card holds as many open sessions as it can")]
    SessionsFull,
    #[error("the value store has no room for the value to receive")]
    StoreFull,
    #[error("the value to receive would take an amount past 2^64 - 1")]
    Overflow,
    #[error("the card holds, or awaits, the ticket to receive already")]
    DuplicateTicket,
    #[error("the other card's certificate does not verify under the issuer key")]
    BadCertificate,
    #[error("the other card's certificate is this card's")]
    OwnCertificate,
    #[error("this card, or its maker, is on the issuer's block list")]
    Blocked,
    #[error("the other card, or its maker, is on the issuer's block list")]
    PeerBlocked,
    #[error("the value is not the one the user asked for")]
    NotWanted,
    #[error("the agreement is not the one this card computes")]
    AgreementMismatch,
    #[error("another open session already has this s2")]
    SessionClash,
    #[error("the ticket's proof does not verify")]
    BadProof,
    #[error("a signature does not verify")]
    BadSignature,
    #[error("r2 does not hash to s2")]
    BadCommitment,
    #[error("the verdict's agreement is not the session's")]
    OtherAgreement,
    #[error("no open session with this s1 or s2 in this role")]
    NoSession,
    #[error("the session's state does not allow the command")]
    WrongState,
    /// The dispatcher lets these commands through only when active, and `decode` refuses a
    /// state file whose keys, certificates or sessions are unusable: out of reach.
    #[error("the card's own key, trust anchors or session is unusable")]
    Unusable,
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::Malformed
            | Refusal::Overflow
            | Refusal::DuplicateTicket
            | Refusal::BadCertificate
            | Refusal::OwnCertificate
            | Refusal::PeerBlocked
            | Refusal::NotWanted
            | Refusal::AgreementMismatch
            | Refusal::SessionClash
            | Refusal::OtherAgreement => Status::IncorrectDataParameter,
            Refusal::PinNotVerified => Status::SecurityStatusNotSatisfied,
            Refusal::NotAvailable | Refusal::WrongState | Refusal::Blocked | Refusal::Unusable => {
                Status::ConditionsOfUseNotSatisfied
            }
            Refusal::SessionsFull | Refusal::StoreFull => Status::NotEnoughMemory,
            Refusal::BadProof | Refusal::BadSignature | Refusal::BadCommitment => {
                Status::VerificationFailed
            }
            Refusal::NoSession => Status::KeyReferenceNotFound,
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::Overflow => Refusal::Overflow,
            StoreError::DuplicateTicket => Refusal::DuplicateTicket,
            StoreError::Full => Refusal::StoreFull,
            StoreError::NotAvailable => Refusal::NotAvailable,
            // Every open session holds its value in escrow (`escrow_is_consistent`).
            StoreError::NotInEscrow => Refusal::Unusable,
        }
    }
}

/// What COMMIT does: store V1 and answer r2, or mark the session PENDING and refuse.
enum CommitPlan {
    Stored(Plan),
    Pending(Persistent),
}

/// The keys and identity of an active card.
struct Own {
    key: p256::ecdsa::SigningKey,
    id: [u8; 32],
    issuer: VerifyingKey,
    certificate: Certificate,
}

impl Applet {
    pub(super) fn start(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let r1: [u8; 32] = self.rng.random();
        let plan = self.plan_start(body, r1)?;
        self.carry_out(plan)
    }

    pub(super) fn agree(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let r2: [u8; 32] = self.rng.random();
        let plan = self.plan_agree(body, r2)?;
        self.carry_out(plan)
    }

    pub(super) fn confirm(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_confirm(body)?;
        self.carry_out(plan)
    }

    pub(super) fn commit_exchange(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        match self.plan_commit(body)? {
            CommitPlan::Stored(plan) => self.carry_out(plan),
            CommitPlan::Pending(next) => {
                // The one refusal that writes: PENDING is committed before the card answers,
                // so that no later COMMIT of this session can store V1 (the responder may
                // cancel now, and must then never have committed).
                self.carry_out((next, Vec::new()))?;
                Err(Refusal::BadSignature.into())
            }
        }
    }

    pub(super) fn finish(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_finish(body)?;
        self.carry_out(plan)
    }

    pub(super) fn abort(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_abort(body)?;
        self.carry_out(plan)
    }

    pub(super) fn cancel(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let (next, answer) = self.plan_cancel(body)?;
        if next == self.persistent {
            // Asked again: the session is PENDING already, the same answer needs no write.
            return Ok(answer);
        }
        self.carry_out((next, answer))
    }

    pub(super) fn resolve(&self, body: &[u8]) -> Result<Vec<u8>, Status> {
        Ok(self.plan_resolve(body)?)
    }

    pub(super) fn apply_verdict(&mut self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let plan = self.plan_apply_verdict(body)?;
        self.carry_out(plan)
    }

    pub(super) fn list_sessions(&self) -> Result<Vec<u8>, Status> {
        let sessions: Vec<_> = self.persistent.sessions.iter().map(Session::info).collect();
        Ok(encode_sessions(&sessions))
    }

    fn own(&self) -> Result<Own, Refusal> {
        Ok(Own {
            key: self.card_key().ok_or(Refusal::Unusable)?,
            id: self.own_card_id().ok_or(Refusal::Unusable)?,
            issuer: self.issuer_key().ok_or(Refusal::Unusable)?,
            certificate: self.own_certificate().ok_or(Refusal::Unusable)?,
        })
    }

    /// START, AGREE and CONFIRM are the steps that open or commit to an exchange: a card
    /// the issuer blocked (lost, stolen, its key known to be out) takes none of them, so
    /// that whoever holds it cannot spend with it offline. The card is named by its id, or
    /// by its maker's id in its certificate. The steps that end a session (COMMIT, FINISH,
    /// CANCEL, RESOLVE, APPLY VERDICT) stay open to it: they only settle what was agreed
    /// before the block, and its honest counterparty must be able to settle too.
    fn not_blocked(&self, own: &Own) -> Result<(), Refusal> {
        match &self.persistent.block_list {
            Some(list) if list.blocks(&own.certificate) => Err(Refusal::Blocked),
            _ => Ok(()),
        }
    }

    /// The other card of a START's agreement or a confirmation must not be on the list
    /// either, by its id or by the maker its certificate names: a card that knows of the
    /// block does not hand value to it.
    fn peer_not_blocked(&self, certificate: &Certificate) -> Result<(), Refusal> {
        match &self.persistent.block_list {
            Some(list) if list.blocks(certificate) => Err(Refusal::PeerBlocked),
            _ => Ok(()),
        }
    }

    fn plan_start(&self, body: &[u8], r1: [u8; 32]) -> Result<Plan, Refusal> {
        // START offers a value: the PIN comes before anything else, as for UNLOAD.
        if !self.volatile.pin_verified {
            return Err(Refusal::PinNotVerified);
        }
        let body = StartBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let own = self.own()?;
        self.not_blocked(&own)?;
        let p = &self.persistent;
        let mut next = p.clone();
        // Reserved now, V1 can be offered in no other session and spent in no other way;
        // only ABORT or a CANCEL verdict gives it back.
        store::reserve(&mut next.values, &body.v1)?;
        if p.sessions.len() >= MAX_SESSIONS {
            return Err(Refusal::SessionsFull);
        }
        if let Some(v2) = &body.wanted_v2 {
            store::check_room(&p.values, &p.sessions, v2)?;
        }
        let proof = store::proof_of(&p.values, &body.v1, &own.id).ok_or(Refusal::Unusable)?;
        // s1 := r1, fresh: it names the session until CONFIRM, and makes every agreement
        // of this card new even between the same cards and values.
        let s1 = r1;
        if p.sessions.iter().any(|s| s.s1() == &s1) {
            return Err(Refusal::SessionClash);
        }
        let answer = StartAnswer {
            s1,
            v1: body.v1.clone(),
            v1_proof: proof,
            initiator_certificate: own.certificate,
        }
        .encode();
        next.sessions.push(Session::Initiator(InitiatorSession {
            s1,
            v1: body.v1,
            v2: body.wanted_v2,
            confirmed: None,
        }));
        Ok((next, answer))
    }

    fn plan_agree(&self, body: &[u8], r2: [u8; 32]) -> Result<Plan, Refusal> {
        if !self.volatile.pin_verified {
            return Err(Refusal::PinNotVerified);
        }
        let body = AgreeBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let own = self.own()?;
        self.not_blocked(&own)?;
        let initiator = peer(&body.initiator_certificate, &own)?;
        self.peer_not_blocked(&body.initiator_certificate)?;
        // The body carries both V1 and what the user wants of it: a terminal error, not a
        // terminal's malice, is what this catches (see SPEC.md).
        if body.v1 != body.wanted_v1 {
            return Err(Refusal::NotWanted);
        }
        check_proof(&own.issuer, &body.v1, body.v1_proof.as_ref())?;
        let p = &self.persistent;
        let mut next = p.clone();
        // V2 leaves the store for escrow before Sa exists: Sa is the arbiter's proof that B
        // escrowed V2, and a COMPLETE verdict stands on it.
        store::reserve(&mut next.values, &body.v2)?;
        if p.sessions.len() >= MAX_SESSIONS {
            return Err(Refusal::SessionsFull);
        }
        if let Some(v1) = &body.v1 {
            store::check_room(&p.values, &p.sessions, v1)?;
        }
        let s2 = exchange::commitment(&r2);
        if session_with_s2(&p.sessions, &s2).is_some() {
            // A 2^-256 event; refused rather than leaving two sessions one name.
            return Err(Refusal::SessionClash);
        }
        let a = exchange::agreement(&body.s1, &body.v1, &body.v2, &initiator.id, &own.id);
        let sa = exchange::sign(&own.key, domains::AGREE, &a, &s2);
        let proof = store::proof_of(&p.values, &body.v2, &own.id).ok_or(Refusal::Unusable)?;
        let answer = AgreeAnswer {
            a,
            s2,
            sa,
            v2: body.v2.clone(),
            v2_proof: proof,
            responder_certificate: own.certificate,
        }
        .encode();
        next.sessions.push(Session::Responder(ResponderSession {
            s1: body.s1,
            s2,
            a,
            r2: Secret(r2),
            v1: body.v1,
            v1_proof: body.v1_proof,
            v2: body.v2,
            initiator_certificate: body.initiator_certificate.encode(),
            pending: false,
        }));
        Ok((next, answer))
    }

    fn plan_confirm(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let body = ConfirmBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let p = &self.persistent;
        let (index, session) = self.started_session(&body.s1)?;
        let own = self.own()?;
        self.not_blocked(&own)?;
        let responder = peer(&body.responder_certificate, &own)?;
        self.peer_not_blocked(&body.responder_certificate)?;
        if body.v2 != session.v2 {
            return Err(Refusal::NotWanted);
        }
        check_proof(&own.issuer, &body.v2, body.v2_proof.as_ref())?;
        // Sa proves that B escrowed exactly this V2 for exactly this a and s2.
        if !exchange::verify(&responder.key, domains::AGREE, &body.a, &body.s2, &body.sa) {
            return Err(Refusal::BadSignature);
        }
        // The agreement must be the one this card computes from its own s1 and V1, its own
        // id, B's id and the V2 its user asked for: Se then commits A to nothing else.
        let a = exchange::agreement(&session.s1, &session.v1, &body.v2, &own.id, &responder.id);
        if a != body.a {
            return Err(Refusal::AgreementMismatch);
        }
        if session_with_s2(&p.sessions, &body.s2).is_some() {
            return Err(Refusal::SessionClash);
        }
        // V1 has been in escrow since START; from this commit on the session is VALID and
        // ABORT refuses it, so A can no longer take V1 back on its own once Se exists.
        let se = exchange::sign(&own.key, domains::CONFIRM, &a, &body.s2);
        let mut next = p.clone();
        next.sessions[index] = Session::Initiator(InitiatorSession {
            confirmed: Some(Confirmed {
                s2: body.s2,
                a,
                sa: body.sa,
                responder_certificate: body.responder_certificate.encode(),
                v2_proof: body.v2_proof,
            }),
            ..session.clone()
        });
        Ok((next, ConfirmAnswer { s2: body.s2, se }.encode()))
    }

    fn plan_commit(&self, body: &[u8]) -> Result<CommitPlan, Refusal> {
        let body = CommitBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let p = &self.persistent;
        let (index, session) = self.responder_session(&body.s2)?;
        // A PENDING session never commits: its cancel request may be with the arbiter.
        if session.pending {
            return Err(Refusal::WrongState);
        }
        let own = self.own()?;
        let initiator = stored_peer(&session.initiator_certificate, &own)?;
        let mut next = p.clone();
        if !exchange::verify(
            &initiator.key,
            domains::CONFIRM,
            &session.a,
            &session.s2,
            &body.se,
        ) {
            let mut pending = session.clone();
            pending.pending = true;
            next.sessions[index] = Session::Responder(pending);
            return Ok(CommitPlan::Pending(next));
        }
        // Se verifies: A holds V1 in escrow and can no longer abort, so V1 is B's. Storing
        // it, handing V2 over and forgetting r2's session are one commit, and r2 is answered
        // only after it: r2 then proves to A that B has V1.
        next.sessions.remove(index);
        store::hand_over(&mut next.values, &session.v2)?;
        store::receive(
            &mut next.values,
            &next.sessions,
            &session.v1,
            session.v1_proof,
            &own.id,
        )
        .map_err(unreachable_store)?;
        let answer = CommitAnswer { r2: session.r2.0 }.encode();
        Ok(CommitPlan::Stored((next, answer)))
    }

    fn plan_finish(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let body = FinishBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let (index, session, confirmed) = self.confirmed_session(&body.s2)?;
        // Only B knows r2, and B gives it only in the commit that stores V1.
        if exchange::commitment(&body.r2) != confirmed.s2 {
            return Err(Refusal::BadCommitment);
        }
        let own = self.own()?;
        let mut next = self.persistent.clone();
        next.sessions.remove(index);
        store::hand_over(&mut next.values, &session.v1)?;
        store::receive(
            &mut next.values,
            &next.sessions,
            &session.v2,
            confirmed.v2_proof,
            &own.id,
        )
        .map_err(unreachable_store)?;
        Ok((next, Vec::new()))
    }

    fn plan_abort(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let body = AbortBody::decode(body).map_err(|_| Refusal::Malformed)?;
        // Safe only while A has signed nothing: after CONFIRM, B may hold Se and store V1.
        let (index, session) = self.started_session(&body.s1)?;
        let mut next = self.persistent.clone();
        next.sessions.remove(index);
        store::release(&mut next.values, &session.v1)?;
        Ok((next, Vec::new()))
    }

    fn plan_cancel(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let body = CancelBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let (index, session) = self.responder_session(&body.s2)?;
        let own = self.own()?;
        // Sab is answered only with PENDING committed: from then on no COMMIT of this
        // session stores V1, so the arbiter's CANCEL can give V2 back safely.
        let sab = exchange::sign(&own.key, domains::CANCEL, &session.a, &session.s2);
        // RFC 6979: the same Sa that AGREE answered.
        let sa = exchange::sign(&own.key, domains::AGREE, &session.a, &session.s2);
        // c and both certificates let the arbiter recompute a = H(c ‖ id_A ‖ id_B), and so
        // check that this card, which signed Sab, is the session's responder: a cancel
        // signed by any other card does not settle this session. c hides the values.
        let c = exchange::values_commitment(&session.s1, &session.v1, &session.v2);
        let initiator_certificate =
            Certificate::decode(&session.initiator_certificate).map_err(|_| Refusal::Unusable)?;
        let mut next = self.persistent.clone();
        let mut pending = session.clone();
        pending.pending = true;
        next.sessions[index] = Session::Responder(pending);
        let answer = CancelAnswer {
            a: session.a,
            s2: session.s2,
            c,
            sab,
            sa,
            initiator_certificate,
            responder_certificate: own.certificate,
        }
        .encode();
        Ok((next, answer))
    }

    fn plan_resolve(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let body = ResolveBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let (_, session, confirmed) = self.confirmed_session(&body.s2)?;
        let own = self.own()?;
        let responder_certificate =
            Certificate::decode(&confirmed.responder_certificate).map_err(|_| Refusal::Unusable)?;
        // Sr only asks: A keeps its session VALID, and FINISH stays possible. The arbiter
        // records COMPLETE only if B has not cancelled first.
        let sr = exchange::sign(&own.key, domains::RESOLVE, &confirmed.a, &confirmed.s2);
        Ok(ResolveAnswer {
            a: confirmed.a,
            s2: confirmed.s2,
            // As in CANCEL: the arbiter recomputes a from c and the two certificates.
            c: exchange::values_commitment(&session.s1, &session.v1, &session.v2),
            sr,
            sa: confirmed.sa,
            initiator_certificate: own.certificate,
            responder_certificate,
        }
        .encode())
    }

    fn plan_apply_verdict(&self, body: &[u8]) -> Result<Plan, Refusal> {
        let body = VerdictBody::decode(body).map_err(|_| Refusal::Malformed)?;
        let p = &self.persistent;
        let index = session_with_s2(&p.sessions, &body.s2).ok_or(Refusal::NoSession)?;
        let session = &p.sessions[index];
        let Some((_, a)) = session.agreement() else {
            // An initiator in START has no s2, so the search above never finds one.
            return Err(Refusal::WrongState);
        };
        if *a != body.a {
            return Err(Refusal::OtherAgreement);
        }
        let arbiter = self.arbiter_key().ok_or(Refusal::Unusable)?;
        if !exchange::verify_verdict(&arbiter, &body.s2, &body.a, body.outcome, &body.signature) {
            return Err(Refusal::BadSignature);
        }
        let own = self.own()?;
        let mut next = p.clone();
        next.sessions.remove(index);
        // The arbiter decides each s2 once. COMPLETE needs Sa (B escrowed V2) and Sr (A
        // signed Se with V1 in escrow); CANCEL needs Sab (B is PENDING and never commits).
        match (session, body.outcome) {
            (Session::Initiator(i), Outcome::Complete) => {
                let proof = i.confirmed.as_ref().and_then(|c| c.v2_proof);
                store::hand_over(&mut next.values, &i.v1)?;
                store::receive(&mut next.values, &next.sessions, &i.v2, proof, &own.id)
                    .map_err(unreachable_store)?;
            }
            (Session::Responder(r), Outcome::Complete) => {
                store::hand_over(&mut next.values, &r.v2)?;
                store::receive(&mut next.values, &next.sessions, &r.v1, r.v1_proof, &own.id)
                    .map_err(unreachable_store)?;
            }
            (Session::Initiator(i), Outcome::Cancel) => store::release(&mut next.values, &i.v1)?,
            (Session::Responder(r), Outcome::Cancel) => store::release(&mut next.values, &r.v2)?,
        }
        Ok((next, Vec::new()))
    }

    /// The initiator session that START named `s1`, while it is in START: CONFIRM and ABORT
    /// take no other.
    fn started_session(&self, s1: &[u8; 32]) -> Result<(usize, &InitiatorSession), Refusal> {
        let (index, session) = self
            .persistent
            .sessions
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s {
                Session::Initiator(x) if x.s1 == *s1 => Some((i, x)),
                _ => None,
            })
            .ok_or(Refusal::NoSession)?;
        if session.confirmed.is_some() {
            return Err(Refusal::WrongState);
        }
        Ok((index, session))
    }

    fn responder_session(&self, s2: &[u8; 32]) -> Result<(usize, &ResponderSession), Refusal> {
        self.persistent
            .sessions
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s {
                Session::Responder(r) if r.s2 == *s2 => Some((i, r)),
                _ => None,
            })
            .ok_or(Refusal::NoSession)
    }

    /// The initiator session that CONFIRM named `s2`: it is VALID.
    fn confirmed_session(
        &self,
        s2: &[u8; 32],
    ) -> Result<(usize, &InitiatorSession, &Confirmed), Refusal> {
        self.persistent
            .sessions
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s {
                Session::Initiator(x) => match &x.confirmed {
                    Some(c) if c.s2 == *s2 => Some((i, x, c)),
                    _ => None,
                },
                Session::Responder(_) => None,
            })
            .ok_or(Refusal::NoSession)
    }
}

/// The open session named `s2`, in either role (an initiator in START has no s2 yet).
fn session_with_s2(sessions: &[Session], s2: &[u8; 32]) -> Option<usize> {
    sessions
        .iter()
        .position(|s| s.agreement().is_some_and(|(x, _)| x == s2))
}

/// The room for a value to receive was kept when its session started, and the state decoder
/// checks that it still is: a full store here is a broken invariant. It is refused as such,
/// and the session stays open rather than a value being lost.
fn unreachable_store(_: StoreError) -> Refusal {
    Refusal::Unusable
}

/// The other card of an exchange, from its certificate.
struct Peer {
    id: [u8; 32],
    key: VerifyingKey,
}

/// The other card, after checking its certificate under the issuer key: a card the issuer
/// made, and not this one (a card cannot exchange with itself: the agreement would name it
/// twice, and its own escrow would pay itself).
fn peer(certificate: &Certificate, own: &Own) -> Result<Peer, Refusal> {
    let key = certificate
        .verify(&own.issuer)
        .map_err(|_| Refusal::BadCertificate)?;
    if certificate.card_id == own.id {
        return Err(Refusal::OwnCertificate);
    }
    Ok(Peer {
        id: certificate.card_id,
        key,
    })
}

/// The other card from a certificate kept in a session, which was checked when it came in.
fn stored_peer(bytes: &[u8], own: &Own) -> Result<Peer, Refusal> {
    let certificate = Certificate::decode(bytes).map_err(|_| Refusal::Unusable)?;
    peer(&certificate, own).map_err(|_| Refusal::Unusable)
}

/// A ticket comes with the issuer's signature for the card it names as owner. The body's
/// decoder has made sure that a ticket, and only a ticket, has a proof.
fn check_proof(
    issuer: &VerifyingKey,
    value: &Value,
    proof: Option<&TicketProof>,
) -> Result<(), Refusal> {
    match (value, proof) {
        (Some(UnitValue::Ticket { code, serial }), Some(p)) => {
            if units::verify_ticket(issuer, code, serial, &p.owner, &p.signature) {
                Ok(())
            } else {
                Err(Refusal::BadProof)
            }
        }
        (Some(UnitValue::Ticket { .. }), None) => Err(Refusal::Malformed),
        _ => Ok(()),
    }
}

/// Whether a state file's sessions are consistent: at most [`MAX_SESSIONS`]; each with the
/// values, proofs, certificates, s2 and a its state needs; no two with one s1 or one s2;
/// the escrow exactly what they give; the room they need kept. `decode` refuses a state file
/// where they are not.
pub(crate) fn sessions_are_consistent(state: &Persistent) -> Result<(), &'static str> {
    let sessions = &state.sessions;
    // Checked with no session too: then nothing may be in escrow.
    if !store::escrow_is_consistent(&state.values, sessions) {
        return Err("the escrow is not what the open sessions give");
    }
    if sessions.is_empty() {
        return Ok(());
    }
    if sessions.len() > MAX_SESSIONS {
        return Err("more open sessions than a card holds");
    }
    let (Some(key), Some(personal)) = (&state.key, &state.personalization) else {
        return Err("open sessions on a card that is not active");
    };
    let own_id = apdu_spec::card_id(&key.public);
    let issuer = apdu_spec::cert::decode_public_key(&personal.issuer_key)
        .ok_or("the issuer key is not a P-256 point")?;
    let peer_id = |bytes: &[u8]| -> Result<[u8; 32], &'static str> {
        let c = Certificate::decode(bytes).map_err(|_| "a session's certificate is malformed")?;
        c.verify(&issuer)
            .map_err(|_| "a session's certificate does not verify")?;
        if c.card_id == own_id {
            return Err("a session names this card as the other card");
        }
        Ok(c.card_id)
    };
    let proof_fits = |value: &Value, proof: &Option<TicketProof>| {
        matches!(value, Some(UnitValue::Ticket { .. })) == proof.is_some()
    };
    for (i, session) in sessions.iter().enumerate() {
        for v in [session.outgoing(), session.incoming()]
            .into_iter()
            .flatten()
        {
            v.validate()
                .map_err(|_| "a session's value is out of range")?;
        }
        match session {
            Session::Initiator(x) => {
                if let Some(c) = &x.confirmed {
                    let b = peer_id(&c.responder_certificate)?;
                    if c.a != exchange::agreement(&x.s1, &x.v1, &x.v2, &own_id, &b)
                        || !proof_fits(&x.v2, &c.v2_proof)
                    {
                        return Err("a confirmed session's agreement or proof does not fit");
                    }
                }
            }
            Session::Responder(x) => {
                let a_id = peer_id(&x.initiator_certificate)?;
                if x.s2 != exchange::commitment(&x.r2.0)
                    || x.a != exchange::agreement(&x.s1, &x.v1, &x.v2, &a_id, &own_id)
                    || !proof_fits(&x.v1, &x.v1_proof)
                {
                    return Err("a responder session's s2, agreement or proof does not fit");
                }
            }
        }
        let earlier = &sessions[..i];
        if let Session::Initiator(x) = session
            && earlier
                .iter()
                .any(|s| matches!(s, Session::Initiator(e) if e.s1 == x.s1))
        {
            return Err("two initiator sessions with one s1");
        }
        if let Some((s2, _)) = session.agreement()
            && session_with_s2(earlier, s2).is_some()
        {
            return Err("two sessions with one s2");
        }
    }
    if !store::room_is_kept(&state.values, sessions) {
        return Err("the store has no room for what the open sessions bring in");
    }
    Ok(())
}
