//! The fair exchange between two in-process cards: the five steps for every kind of value,
//! the recovery commands with the arbiter's verdicts, and what a malicious terminal cannot
//! do. After every command of every card, the conservation invariant is checked (for each
//! asset, available plus escrowed summed over the cards is what was issued; every ticket is
//! on exactly one card), and the card's state passes the state-file decoder's consistency
//! checks (its escrow is exactly what its open sessions give, and the room they need is
//! kept). Every refusal leaves the refusing card's state byte for byte as it was, except
//! COMMIT's documented PENDING.

mod common;

use common::{
    Activated, PIN, activate_naming, block_list, bytes, card_from, issuer, maker_id, new_card,
    other_issuer, transmit,
};
use std::collections::BTreeMap;

use apdu_spec::blocklist::{BlockEntry, BlockList};
use apdu_spec::cert::Certificate;
use apdu_spec::commands::ins;
use apdu_spec::exchange::messages::{
    AbortBody, AgreeAnswer, CancelAnswer, CancelBody, CommitAnswer, CommitBody, ConfirmAnswer,
    ConfirmBody, FinishBody, ResolveAnswer, ResolveBody, Role, SessionInfo, SessionState,
    StartAnswer, StartBody, TicketProof, VerdictBody, decode_sessions,
};
use apdu_spec::exchange::{self, MAX_SESSIONS, Outcome, Value, domains};
use apdu_spec::objects::{AssetBalance, Ticket, Values, tag as obj};
use apdu_spec::units::{self, LoadApply, SignedMessage, UnitValue, tag as units_tag};
use apdu_spec::{CLA_ISO, CLA_PROPRIETARY, tlv};
use p256::ecdsa::{SigningKey, VerifyingKey};
use valuecard_card::Card;
use valuecard_card::applet::decode;
use valuecard_card::state::{Persistent, Session};

fn arbiter() -> SigningKey {
    SigningKey::from_slice(&[0x7C; 32]).expect("a P-256 scalar")
}

fn jpy(amount: u64) -> Value {
    asset("JPY", amount)
}

fn asset(code: &str, amount: u64) -> Value {
    Some(UnitValue::Asset {
        code: code.into(),
        amount,
    })
}

fn ticket(code: &str, serial: &[u8]) -> Value {
    Some(UnitValue::Ticket {
        code: code.into(),
        serial: serial.to_vec(),
    })
}

/// A command of ours in the extended form, with Le = 65536: every answer comes at once.
fn command(ins: u8, data: &[u8]) -> Vec<u8> {
    apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, 0, 0, data, 65536, true)
}

fn verdict(s2: [u8; 32], a: [u8; 32], outcome: Outcome) -> VerdictBody {
    VerdictBody {
        s2,
        a,
        outcome,
        signature: exchange::sign_verdict(&arbiter(), &s2, &a, outcome),
    }
}

/// An active card personalised by [`issuer`] with [`arbiter`]'s key and [`PIN`].
struct Party {
    name: &'static str,
    card: Card,
    key: VerifyingKey,
    id: [u8; 32],
    certificate: Certificate,
}

impl Party {
    fn new(name: &'static str, seed: u64) -> Self {
        Self::made_by(name, seed, maker_id())
    }

    /// A party whose certificate names `maker` as its card's maker.
    fn made_by(name: &'static str, seed: u64, maker: [u8; 32]) -> Self {
        let mut card = new_card(seed);
        let Activated {
            key,
            id,
            certificate,
        } = activate_naming(&mut card, &arbiter(), maker);
        let mut party = Party {
            name,
            card,
            key,
            id,
            certificate,
        };
        party.verify_pin();
        party
    }

    fn state(&self) -> Persistent {
        self.card.applet().persistent().clone()
    }

    /// Sends a command. Whatever the answer, the card's state must pass the state file's
    /// consistency checks.
    fn send(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        let answer = transmit(&mut self.card, apdu);
        let state = self.state();
        if let Err(e) = decode(&bytes(&state)) {
            panic!(
                "{}: the state after {} fails its checks: {e}",
                self.name,
                hex::encode_upper(apdu)
            );
        }
        answer
    }

    #[track_caller]
    fn ok(&mut self, apdu: &[u8]) -> Vec<u8> {
        let (data, sw) = self.send(apdu);
        assert_eq!(sw, 0x9000, "{}: {}", self.name, hex::encode_upper(apdu));
        data
    }

    /// Sends a command that must be refused with `sw`, with no data, and leave the state
    /// exactly as it was.
    #[track_caller]
    fn refused(&mut self, apdu: &[u8], sw: u16, why: &str) {
        let before = bytes(&self.state());
        let (data, got) = self.send(apdu);
        assert_eq!(
            got, sw,
            "{}: {why}: {got:04X} instead of {sw:04X}",
            self.name
        );
        assert!(data.is_empty(), "{why}: an error carries no data");
        assert_eq!(
            bytes(&self.state()),
            before,
            "{}: {why}: the state changed",
            self.name
        );
    }

    fn verify_pin(&mut self) {
        self.ok(&apdu_spec::apdu::encode(
            CLA_ISO,
            ins::VERIFY,
            0,
            apdu_spec::PIN_REFERENCE,
            PIN,
            0,
            false,
        ));
    }

    /// A power cycle: the PIN is not verified any more.
    fn power_cycle(&mut self) {
        self.card.power_off();
    }

    /// The card started again from its state file's bytes.
    fn restart(&mut self) {
        self.card = card_from(&self.state(), 7).expect("the state file loads");
    }

    /// Requests and applies a value from the issuer, with its empty block list (version 1).
    fn load(&mut self, value: &Value) {
        self.load_with_list(value, block_list(1, &[]));
    }

    /// Requests and applies a value from the issuer, with `list` beside it (the card keeps
    /// it when it is newer than its own).
    fn load_with_list(&mut self, value: &Value, list: BlockList) {
        let value = value.as_ref().expect("a value");
        let answer = self.ok(&command(ins::LOAD_REQUEST, &value.encode()));
        let request = SignedMessage::decode(&answer, units_tag::SIGNED_LOAD).expect("an EC answer");
        let ticket_signature = match value {
            UnitValue::Ticket { code, serial } => {
                Some(units::sign_ticket(&issuer(), code, serial, &self.id))
            }
            UnitValue::Asset { .. } => None,
        };
        let body = LoadApply {
            authorisation: units::sign(
                &issuer(),
                units::domains::LOAD_AUTH,
                &units::authorised(&request.message, list.version),
            ),
            ticket_signature,
            block_list: list,
        }
        .encode();
        self.ok(&command(ins::LOAD_APPLY, &body));
    }

    fn values(&mut self) -> Values {
        let bytes = self.ok(&apdu_spec::apdu::encode(
            CLA_ISO,
            ins::GET_DATA,
            0,
            0xE6,
            &[],
            65536,
            true,
        ));
        let top = tlv::parse_all(&bytes).expect("TLV");
        Values::from_children(tlv::find_constructed(&top, obj::VALUES).expect("E6"))
            .expect("a value store")
    }

    /// (available, escrowed) of an asset, as GET DATA shows it.
    fn balance(&mut self, code: &str) -> (u64, u64) {
        self.values()
            .assets
            .iter()
            .find(|a| a.code == code)
            .map_or((0, 0), |a| (a.available, a.escrowed))
    }

    fn ticket(&mut self, code: &str, serial: &[u8]) -> Option<Ticket> {
        self.values()
            .tickets
            .into_iter()
            .find(|t| t.asset == code && t.serial == serial)
    }

    fn sessions(&mut self) -> Vec<SessionInfo> {
        decode_sessions(&self.ok(&command(ins::LIST_SESSIONS, &[]))).expect("an EF answer")
    }

    fn start(&mut self, v1: &Value, v2: &Value) -> StartAnswer {
        let body = StartBody {
            v1: v1.clone(),
            wanted_v2: v2.clone(),
        };
        let answer = self.ok(&command(ins::START, &body.encode()));
        StartAnswer::decode(&answer).expect("a START answer")
    }

    fn agree(&mut self, start: &StartAnswer, v2: &Value) -> AgreeAnswer {
        let body = start.agree_body(v2.clone(), start.v1.clone());
        let answer = self.ok(&command(ins::AGREE, &body.encode()));
        AgreeAnswer::decode(&answer).expect("an AGREE answer")
    }

    fn confirm(&mut self, s1: [u8; 32], agree: &AgreeAnswer) -> ConfirmAnswer {
        let answer = self.ok(&command(ins::CONFIRM, &agree.confirm_body(s1).encode()));
        ConfirmAnswer::decode(&answer).expect("a CONFIRM answer")
    }

    fn commit(&mut self, confirm: &ConfirmAnswer) -> CommitAnswer {
        let answer = self.ok(&command(ins::COMMIT, &confirm.encode()));
        CommitAnswer::decode(&answer).expect("a COMMIT answer")
    }

    fn finish(&mut self, s2: [u8; 32], r2: [u8; 32]) {
        let answer = self.ok(&command(ins::FINISH, &FinishBody { s2, r2 }.encode()));
        assert!(answer.is_empty());
    }

    fn cancel(&mut self, s2: [u8; 32]) -> CancelAnswer {
        let answer = self.ok(&command(ins::CANCEL, &CancelBody { s2 }.encode()));
        CancelAnswer::decode(&answer).expect("a CANCEL answer")
    }

    fn resolve(&mut self, s2: [u8; 32]) -> ResolveAnswer {
        let answer = self.ok(&command(ins::RESOLVE, &ResolveBody { s2 }.encode()));
        ResolveAnswer::decode(&answer).expect("a RESOLVE answer")
    }

    fn apply(&mut self, body: &VerdictBody) {
        let answer = self.ok(&command(ins::APPLY_VERDICT, &body.encode()));
        assert!(answer.is_empty());
    }
}

/// What was issued to a set of cards, the exchanges between them the test follows, and the
/// check that every value is still there.
#[derive(Default)]
struct Ledger {
    assets: BTreeMap<String, u64>,
    tickets: Vec<(String, Vec<u8>)>,
    exchanges: Vec<Tracked>,
}

/// An exchange the ledger follows from START on, and what the arbiter decided of it.
struct Tracked {
    a: &'static str,
    b: &'static str,
    s1: [u8; 32],
    s2: Option<[u8; 32]>,
    agreement: Option<[u8; 32]>,
    v1: Value,
    v2: Value,
    aborted: bool,
    verdict: Option<Outcome>,
}

/// Where an exchanged value is counted in the cards' available + escrowed sums.
struct Places {
    /// How many times the sums count it: 1, or 2 while it is stored by its receiver and
    /// still in its giver's escrow, or 0 while its giver has handed it over and its receiver
    /// has not stored it yet.
    counted: u64,
    /// Counted in an escrow that can no longer come back to its giver.
    dead_escrow: bool,
}

impl Ledger {
    fn load(&mut self, party: &mut Party, value: &Value) {
        party.load(value);
        match value.as_ref().expect("a value") {
            UnitValue::Asset { code, amount } => {
                *self.assets.entry(code.clone()).or_default() += amount
            }
            UnitValue::Ticket { code, serial } => self.tickets.push((code.clone(), serial.clone())),
        }
    }

    /// Follows the exchange `start` opened on `a`, with `b` as its responder.
    fn follow(&mut self, a: &Party, b: &Party, start: &StartAnswer, v2: &Value) -> usize {
        self.exchanges.push(Tracked {
            a: a.name,
            b: b.name,
            s1: start.s1,
            s2: None,
            agreement: None,
            v1: start.v1.clone(),
            v2: v2.clone(),
            aborted: false,
            verdict: None,
        });
        self.exchanges.len() - 1
    }

    fn agreed(&mut self, i: usize, agree: &AgreeAnswer) {
        self.exchanges[i].s2 = Some(agree.s2);
        self.exchanges[i].agreement = Some(agree.a);
    }

    fn aborted(&mut self, i: usize) {
        self.exchanges[i].aborted = true;
    }

    /// The arbiter's verdict on a followed exchange, recorded once.
    fn verdict(&mut self, i: usize, outcome: Outcome) -> VerdictBody {
        let x = &mut self.exchanges[i];
        assert!(x.verdict.is_none_or(|v| v == outcome), "one verdict per s2");
        x.verdict = Some(outcome);
        verdict(x.s2.expect("agreed"), x.agreement.expect("agreed"), outcome)
    }

    /// Where V1 and V2 of a followed exchange are, from the sessions the cards show and
    /// what the test did (ABORT, the arbiter's verdict).
    fn places(x: &Tracked, parties: &mut [&mut Party]) -> (Places, Places) {
        let mut find = |name: &str| {
            parties
                .iter_mut()
                .position(|p| p.name == name)
                .expect("a party of the ledger")
        };
        let (ia, ib) = (find(x.a), find(x.b));
        let a_open = parties[ia]
            .sessions()
            .iter()
            .any(|s| s.role == Role::Initiator && s.s1 == x.s1);
        let b_open = x.s2.is_some_and(|s2| {
            parties[ib]
                .sessions()
                .iter()
                .any(|s| s.role == Role::Responder && s.s2 == Some(s2))
        });
        let agreed = x.s2.is_some();
        let cancelled = x.verdict == Some(Outcome::Cancel);
        let completed = x.verdict == Some(Outcome::Complete);
        // B stored V1: its session ended by COMMIT or COMPLETE. A stored V2: its session
        // ended by FINISH or COMPLETE.
        let b_stored = agreed && !b_open && !cancelled;
        let a_stored = !a_open && !x.aborted && !cancelled;
        let v1 = Places {
            counted: u64::from(a_open)
                + u64::from(b_stored)
                + u64::from(!a_open && (x.aborted || cancelled)),
            dead_escrow: a_open && (b_stored || completed),
        };
        let v2 = if agreed {
            Places {
                counted: u64::from(b_open) + u64::from(a_stored) + u64::from(!b_open && cancelled),
                dead_escrow: b_open && (a_stored || completed),
            }
        } else {
            // Still in B's store, available.
            Places {
                counted: 1,
                dead_escrow: false,
            }
        };
        (v1, v2)
    }

    /// Conservation, as PROTOCOLS.md states it and exactly:
    /// - for every asset, available plus the escrow that can still come back, over all
    ///   cards, never exceeds what was issued; every ticket is held (available or in such
    ///   escrow) on at most one card;
    /// - available plus all escrow is what was issued, once the values that the protocol
    ///   has in two places at this moment (stored by B after COMMIT, still in A's escrow
    ///   until FINISH) or in none (handed over by one side's COMPLETE, not yet stored by the
    ///   other's) are accounted for; and with every session ended, it is exactly what was
    ///   issued, every ticket on exactly one card.
    #[track_caller]
    fn check(&self, parties: &mut [&mut Party], when: &str) {
        let mut assets: BTreeMap<String, i128> = BTreeMap::new();
        let mut tickets: BTreeMap<(String, Vec<u8>), i128> = BTreeMap::new();
        let mut live_assets: BTreeMap<String, i128> = BTreeMap::new();
        let mut live_tickets: BTreeMap<(String, Vec<u8>), i128> = BTreeMap::new();
        for p in parties.iter_mut() {
            let values = p.values();
            for a in values.assets {
                *assets.entry(a.code.clone()).or_default() += i128::from(a.available + a.escrowed);
                *live_assets.entry(a.code).or_default() += i128::from(a.available + a.escrowed);
            }
            for t in values.tickets {
                *tickets
                    .entry((t.asset.clone(), t.serial.clone()))
                    .or_default() += 1;
                *live_tickets.entry((t.asset, t.serial)).or_default() += 1;
            }
        }
        let mut expected_assets: BTreeMap<String, i128> = self
            .assets
            .iter()
            .map(|(c, n)| (c.clone(), i128::from(*n)))
            .collect();
        let mut expected_tickets: BTreeMap<(String, Vec<u8>), i128> =
            self.tickets.iter().map(|t| (t.clone(), 1)).collect();
        for x in &self.exchanges {
            let (p1, p2) = Self::places(x, parties);
            for (value, places) in [(&x.v1, p1), (&x.v2, p2)] {
                let extra = i128::from(places.counted) - 1;
                match value {
                    Some(UnitValue::Asset { code, amount }) => {
                        *expected_assets.entry(code.clone()).or_default() +=
                            extra * i128::from(*amount);
                        if places.dead_escrow {
                            *live_assets.entry(code.clone()).or_default() -= i128::from(*amount);
                        }
                    }
                    Some(UnitValue::Ticket { code, serial }) => {
                        *expected_tickets
                            .entry((code.clone(), serial.clone()))
                            .or_default() += extra;
                        if places.dead_escrow {
                            *live_tickets
                                .entry((code.clone(), serial.clone()))
                                .or_default() -= 1;
                        }
                    }
                    None => {}
                }
            }
        }
        for (code, issued) in &self.assets {
            let live = live_assets.get(code).copied().unwrap_or_default();
            assert!(
                live <= i128::from(*issued),
                "{when}: {live} {code} available or in live escrow, {issued} issued"
            );
        }
        for (t, n) in &live_tickets {
            assert!(*n <= 1, "{when}: ticket {t:?} held on {n} cards");
        }
        let nonzero = |m: BTreeMap<String, i128>| -> BTreeMap<String, i128> {
            m.into_iter().filter(|(_, n)| *n != 0).collect()
        };
        assert_eq!(
            nonzero(assets),
            nonzero(expected_assets),
            "{when}: the units are not conserved"
        );
        let tickets: BTreeMap<_, _> = tickets.into_iter().filter(|(_, n)| *n != 0).collect();
        let expected_tickets: BTreeMap<_, _> = expected_tickets
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .collect();
        assert_eq!(
            tickets, expected_tickets,
            "{when}: the tickets are not conserved"
        );
    }
}

/// The five steps between A and B, checking balances, sessions and conservation after each.
fn full_exchange(v1: Value, v2: Value, seed: u64) {
    let mut a = Party::new("A", seed);
    let mut b = Party::new("B", seed + 1);
    let mut ledger = Ledger::default();
    for (party, v) in [(&mut a, &v1), (&mut b, &v2)] {
        match v {
            // A little more than the exchange needs: what stays must stay.
            Some(UnitValue::Asset { code, amount }) => ledger.load(party, &asset(code, amount + 5)),
            Some(UnitValue::Ticket { .. }) => ledger.load(party, v),
            None => {}
        }
    }
    let a_before = a.values();
    let b_before = b.values();
    ledger.check(&mut [&mut a, &mut b], "loaded");

    let start = a.start(&v1, &v2);
    let x = ledger.follow(&a, &b, &start, &v2);
    assert_eq!(start.v1, v1);
    assert_eq!(start.initiator_certificate, a.certificate);
    assert_eq!(
        start.v1_proof.is_some(),
        matches!(v1, Some(UnitValue::Ticket { .. }))
    );
    assert_escrowed(&mut a, &v1, true);
    let listed = a.sessions();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].role, listed[0].state, listed[0].s1, listed[0].s2),
        (Role::Initiator, SessionState::Start, start.s1, None)
    );
    assert_eq!(
        (&listed[0].v1, &listed[0].v2),
        (&v1, &v2),
        "V2 is the one wanted"
    );
    ledger.check(&mut [&mut a, &mut b], "after START");

    let agree = b.agree(&start, &v2);
    ledger.agreed(x, &agree);
    assert_eq!(
        agree.a,
        exchange::agreement(&start.s1, &v1, &v2, &a.id, &b.id)
    );
    assert!(exchange::verify(
        &b.key,
        domains::AGREE,
        &agree.a,
        &agree.s2,
        &agree.sa
    ));
    assert_eq!(agree.responder_certificate, b.certificate);
    assert_escrowed(&mut b, &v2, true);
    let listed = b.sessions();
    assert_eq!(
        (listed[0].role, listed[0].state, listed[0].s2, listed[0].a),
        (
            Role::Responder,
            SessionState::Valid,
            Some(agree.s2),
            Some(agree.a)
        )
    );
    ledger.check(&mut [&mut a, &mut b], "after AGREE");

    let confirm = a.confirm(start.s1, &agree);
    assert_eq!(confirm.s2, agree.s2);
    assert!(exchange::verify(
        &a.key,
        domains::CONFIRM,
        &agree.a,
        &agree.s2,
        &confirm.se
    ));
    assert_eq!(a.sessions()[0].state, SessionState::Valid);
    assert_escrowed(&mut a, &v1, true);
    ledger.check(&mut [&mut a, &mut b], "after CONFIRM");

    let commit = b.commit(&confirm);
    assert_eq!(exchange::commitment(&commit.r2), agree.s2);
    assert!(b.sessions().is_empty());
    ledger.check(&mut [&mut a, &mut b], "after COMMIT");

    a.finish(agree.s2, commit.r2);
    assert!(a.sessions().is_empty());
    ledger.check(&mut [&mut a, &mut b], "after FINISH");

    // A has what it had, but V1, and V2; B the other way round.
    assert_eq!(a.values(), moved(&a_before, &v1, &v2, &b.id));
    assert_eq!(b.values(), moved(&b_before, &v2, &v1, &a.id));
}

/// A store after giving `gone` and receiving `came` from the card `from`.
fn moved(before: &Values, gone: &Value, came: &Value, from: &[u8; 32]) -> Values {
    let mut v = before.clone();
    match gone {
        Some(UnitValue::Asset { code, amount }) => {
            let a = v.assets.iter_mut().find(|a| &a.code == code).expect("held");
            a.available -= amount;
        }
        Some(UnitValue::Ticket { code, serial }) => v
            .tickets
            .retain(|t| !(&t.asset == code && &t.serial == serial)),
        None => {}
    }
    v.assets.retain(|a| a.available + a.escrowed > 0);
    match came {
        Some(UnitValue::Asset { code, amount }) => {
            match v.assets.iter_mut().find(|a| &a.code == code) {
                Some(a) => a.available += amount,
                None => v.assets.push(AssetBalance {
                    code: code.clone(),
                    available: *amount,
                    escrowed: 0,
                }),
            }
        }
        Some(UnitValue::Ticket { code, serial }) => v.tickets.push(Ticket {
            asset: code.clone(),
            serial: serial.clone(),
            issuer_signature: units::sign_ticket(&issuer(), code, serial, from).to_vec(),
            escrowed: false,
            owner: Some(*from),
        }),
        None => {}
    }
    v
}

/// Whether `value` sits in the card's escrow (units: at least that much escrowed).
#[track_caller]
fn assert_escrowed(party: &mut Party, value: &Value, escrowed: bool) {
    match value {
        Some(UnitValue::Asset { code, amount }) => {
            let (_, held) = party.balance(code);
            assert_eq!(
                held >= *amount,
                escrowed,
                "{}: {held} {code} escrowed",
                party.name
            );
        }
        Some(UnitValue::Ticket { code, serial }) => {
            let t = party.ticket(code, serial).expect("the ticket is held");
            assert_eq!(t.escrowed, escrowed, "{}: ticket escrow", party.name);
        }
        None => {}
    }
}

// ---- the five steps ---------------------------------------------------------------------

#[test]
fn units_for_a_ticket() {
    full_exchange(jpy(300), ticket("CONCERT", &[1, 2, 3]), 100);
}

#[test]
fn a_ticket_for_units() {
    full_exchange(ticket("CONCERT", &[9]), jpy(300), 110);
}

#[test]
fn units_for_units() {
    full_exchange(jpy(100), asset("EUR", 50), 120);
    full_exchange(jpy(100), jpy(40), 125);
}

#[test]
fn a_one_way_payment() {
    full_exchange(jpy(100), None, 130);
}

#[test]
fn receiving_without_giving() {
    full_exchange(None, jpy(40), 140);
    full_exchange(None, ticket("T", &[1]), 145);
}

#[test]
fn a_ticket_passes_on_with_its_proof_and_comes_home() {
    let mut a = Party::new("A", 150);
    let mut b = Party::new("B", 151);
    let mut c = Party::new("C", 152);
    let mut ledger = Ledger::default();
    let t = ticket("CONCERT", &[7]);
    ledger.load(&mut b, &t);
    ledger.load(&mut a, &jpy(10));
    ledger.load(&mut c, &jpy(20));
    let swap = |x: &mut Party, y: &mut Party, v1: &Value, v2: &Value| {
        let start = x.start(v1, v2);
        let agree = y.agree(&start, v2);
        let confirm = x.confirm(start.s1, &agree);
        let commit = y.commit(&confirm);
        x.finish(agree.s2, commit.r2);
        (start, agree)
    };
    // B -> A: A keeps B's proof.
    let (_, agree) = swap(&mut a, &mut b, &jpy(10), &t);
    let proof = agree.v2_proof.expect("a ticket's proof");
    assert_eq!(proof.owner, b.id);
    let held = a.ticket("CONCERT", &[7]).expect("A holds the ticket");
    assert_eq!(held.owner, Some(b.id));
    assert_eq!(held.issuer_signature, proof.signature.to_vec());
    ledger.check(&mut [&mut a, &mut b, &mut c], "B to A");

    // A -> C: A shows B's proof, which C checks and keeps.
    let (start, _) = swap(&mut a, &mut c, &t, &jpy(20));
    assert_eq!(start.v1_proof, Some(proof));
    assert_eq!(c.ticket("CONCERT", &[7]).and_then(|t| t.owner), Some(b.id));
    ledger.check(&mut [&mut a, &mut b, &mut c], "A to C");

    // C -> B: back on the card it was issued to, the ticket is B's own again.
    let (_, agree) = swap(&mut b, &mut c, &None, &t);
    assert_eq!(agree.v2_proof, Some(proof));
    assert_eq!(b.ticket("CONCERT", &[7]).map(|t| t.owner), Some(None));
    ledger.check(&mut [&mut a, &mut b, &mut c], "C to B");
}

// ---- recovery -----------------------------------------------------------------------------

#[test]
fn abort_releases_v1() {
    let mut a = Party::new("A", 200);
    let mut b = Party::new("B", 201);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut a, &ticket("T", &[1]));
    ledger.load(&mut b, &jpy(100));
    let before = a.values();
    let start = a.start(&jpy(60), &ticket("U", &[2]));
    let x = ledger.follow(&a, &b, &start, &None);
    let other = a.start(&ticket("T", &[1]), &None);
    assert_eq!(a.balance("JPY"), (40, 60));
    // B answers the first START; A aborts it all the same.
    let agree = b.agree(&start, &None);
    ledger.agreed(x, &agree);
    a.ok(&command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()));
    ledger.aborted(x);
    a.ok(&command(ins::ABORT, &AbortBody { s1: other.s1 }.encode()));
    assert_eq!(a.values(), before, "V1 is back, available");
    assert!(a.sessions().is_empty());
    a.refused(
        &command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()),
        0x6A88,
        "aborted already",
    );
    a.refused(
        &command(ins::CONFIRM, &agree.confirm_body(start.s1).encode()),
        0x6A88,
        "no session to confirm after ABORT",
    );
    ledger.check(&mut [&mut a, &mut b], "after ABORT");
    // B is VALID and gets its V2 back through CANCEL and the arbiter.
    b.cancel(agree.s2);
    let v = ledger.verdict(x, Outcome::Cancel);
    b.apply(&v);
    assert!(b.sessions().is_empty());
    ledger.check(&mut [&mut a, &mut b], "B cancelled");
}

#[test]
fn cancel_then_the_cancel_verdict_on_both() {
    let mut a = Party::new("A", 210);
    let mut b = Party::new("B", 211);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut b, &ticket("T", &[1]));
    let (a_before, b_before) = (a.values(), b.values());
    let start = a.start(&jpy(100), &ticket("T", &[1]));
    let x = ledger.follow(&a, &b, &start, &ticket("T", &[1]));
    let agree = b.agree(&start, &ticket("T", &[1]));
    ledger.agreed(x, &agree);
    let confirm = a.confirm(start.s1, &agree);
    ledger.check(&mut [&mut a, &mut b], "both VALID");

    let cancel = b.cancel(agree.s2);
    assert_eq!(
        (cancel.a, cancel.s2, cancel.sa),
        (agree.a, agree.s2, agree.sa)
    );
    assert!(exchange::verify(
        &b.key,
        domains::CANCEL,
        &cancel.a,
        &cancel.s2,
        &cancel.sab
    ));
    assert_eq!(cancel.responder_certificate, b.certificate);
    // What the arbiter needs to see that B is this session's responder and A its
    // initiator: c and both certificates give back a.
    assert_eq!(
        cancel.c,
        exchange::values_commitment(&start.s1, &jpy(100), &ticket("T", &[1]))
    );
    assert_eq!(cancel.initiator_certificate, a.certificate);
    assert_eq!(
        exchange::agreement_of(
            &cancel.c,
            &cancel.initiator_certificate.card_id,
            &cancel.responder_certificate.card_id
        ),
        cancel.a
    );
    assert_eq!(b.sessions()[0].state, SessionState::Pending);
    // Repeatable, with the same answer and no write.
    let state = bytes(&b.state());
    assert_eq!(b.cancel(agree.s2), cancel);
    assert_eq!(bytes(&b.state()), state);
    // PENDING never commits, even with the right Se.
    b.refused(&command(ins::COMMIT, &confirm.encode()), 0x6985, "PENDING");
    ledger.check(&mut [&mut a, &mut b], "B PENDING");

    let v = ledger.verdict(x, Outcome::Cancel);
    assert_eq!(v, verdict(cancel.s2, cancel.a, Outcome::Cancel));
    a.apply(&v);
    ledger.check(&mut [&mut a, &mut b], "A cancelled");
    b.apply(&v);
    assert_eq!(a.values(), a_before);
    assert_eq!(b.values(), b_before);
    assert!(a.sessions().is_empty() && b.sessions().is_empty());
    a.refused(
        &command(ins::APPLY_VERDICT, &v.encode()),
        0x6A88,
        "applied already",
    );
    b.refused(
        &command(ins::APPLY_VERDICT, &v.encode()),
        0x6A88,
        "applied already",
    );
    ledger.check(&mut [&mut a, &mut b], "cancelled");
}

#[test]
fn resolve_then_the_complete_verdict_on_both() {
    let mut a = Party::new("A", 220);
    let mut b = Party::new("B", 221);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &ticket("T", &[1]));
    ledger.load(&mut b, &jpy(500));
    let (a_before, b_before) = (a.values(), b.values());
    let start = a.start(&ticket("T", &[1]), &jpy(500));
    let x = ledger.follow(&a, &b, &start, &jpy(500));
    let agree = b.agree(&start, &jpy(500));
    ledger.agreed(x, &agree);
    let confirm = a.confirm(start.s1, &agree);
    // Se never reaches B: A asks the arbiter.
    let state = bytes(&a.state());
    let resolve = a.resolve(agree.s2);
    assert_eq!(bytes(&a.state()), state, "RESOLVE writes nothing");
    assert_eq!(
        (resolve.a, resolve.s2, resolve.sa),
        (agree.a, agree.s2, agree.sa)
    );
    assert!(exchange::verify(
        &a.key,
        domains::RESOLVE,
        &resolve.a,
        &resolve.s2,
        &resolve.sr
    ));
    assert_eq!(
        resolve.c,
        exchange::values_commitment(&start.s1, &ticket("T", &[1]), &jpy(500))
    );
    assert_eq!(
        (
            &resolve.initiator_certificate,
            &resolve.responder_certificate
        ),
        (&a.certificate, &b.certificate)
    );
    assert_eq!(
        exchange::agreement_of(&resolve.c, &a.id, &b.id),
        resolve.a,
        "the arbiter recomputes a from c and the two card ids"
    );
    assert_eq!(resolve.initiator_certificate, a.certificate);
    assert_eq!(resolve.responder_certificate, b.certificate);
    assert_eq!(a.sessions()[0].state, SessionState::Valid, "still VALID");

    let v = ledger.verdict(x, Outcome::Complete);
    ledger.check(&mut [&mut a, &mut b], "COMPLETE recorded");
    b.apply(&v);
    ledger.check(&mut [&mut a, &mut b], "B completed");
    a.apply(&v);
    ledger.check(&mut [&mut a, &mut b], "both completed");
    assert_eq!(
        a.values(),
        moved(&a_before, &ticket("T", &[1]), &jpy(500), &b.id)
    );
    assert_eq!(
        b.values(),
        moved(&b_before, &jpy(500), &ticket("T", &[1]), &a.id)
    );
    // The late COMMIT finds nothing: no double credit.
    b.refused(
        &command(ins::COMMIT, &confirm.encode()),
        0x6A88,
        "ended by the verdict",
    );
}

#[test]
fn a_bad_confirmation_makes_the_responder_pending_and_the_arbiter_completes() {
    let mut a = Party::new("A", 230);
    let mut b = Party::new("B", 231);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut b, &asset("EUR", 80));
    let start = a.start(&jpy(100), &asset("EUR", 80));
    let x = ledger.follow(&a, &b, &start, &asset("EUR", 80));
    let agree = b.agree(&start, &asset("EUR", 80));
    ledger.agreed(x, &agree);
    let confirm = a.confirm(start.s1, &agree);
    let mut forged = confirm;
    forged.se[10] ^= 1;

    // The one refusal that writes: the session becomes PENDING, nothing else changes.
    let mut expected = b.state();
    if let Some(Session::Responder(r)) = expected.sessions.first_mut() {
        r.pending = true;
    }
    let (data, sw) = b.send(&command(ins::COMMIT, &forged.encode()));
    assert_eq!((data.len(), sw), (0, 0x6300));
    assert_eq!(b.state(), expected, "only the PENDING mark");
    b.refused(
        &command(ins::COMMIT, &confirm.encode()),
        0x6985,
        "PENDING never commits",
    );
    b.refused(
        &command(ins::COMMIT, &forged.encode()),
        0x6985,
        "nor a second bad Se",
    );
    ledger.check(&mut [&mut a, &mut b], "B PENDING");

    a.resolve(agree.s2);
    let v = ledger.verdict(x, Outcome::Complete);
    a.apply(&v);
    ledger.check(&mut [&mut a, &mut b], "A completed first");
    b.apply(&v);
    assert_eq!(a.balance("EUR"), (80, 0));
    assert_eq!(b.balance("JPY"), (100, 0));
    ledger.check(&mut [&mut a, &mut b], "completed");
}

#[test]
fn sessions_survive_a_power_cycle_and_are_listed() {
    let mut a = Party::new("A", 240);
    let mut b = Party::new("B", 241);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    let start = a.start(&jpy(30), &None);
    let agree = b.agree(&start, &None);
    // Only START and AGREE need the PIN; the state file carries the sessions.
    a.restart();
    b.restart();
    assert_eq!(a.sessions()[0].s1, start.s1);
    let confirm = a.confirm(start.s1, &agree);
    b.power_cycle();
    let commit = b.commit(&confirm);
    a.restart();
    assert_eq!(a.sessions()[0].s2, Some(agree.s2));
    a.finish(agree.s2, commit.r2);
    ledger.check(&mut [&mut a, &mut b], "done");
    assert_eq!(b.balance("JPY"), (30, 0));
}

// ---- limits and escrow ----------------------------------------------------------------------

#[test]
fn eight_sessions_at_once_then_6a84() {
    let mut a = Party::new("A", 300);
    let mut b = Party::new("B", 301);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut b, &jpy(100));
    let mut starts = Vec::new();
    for i in 0..MAX_SESSIONS {
        starts.push(a.start(&jpy(1 + i as u64), &None));
    }
    assert_eq!(a.sessions().len(), MAX_SESSIONS);
    assert_eq!(a.balance("JPY"), (64, 36));
    a.refused(
        &command(
            ins::START,
            &StartBody {
                v1: jpy(1),
                wanted_v2: None,
            }
            .encode(),
        ),
        0x6A84,
        "a ninth session",
    );
    // B, as responder to all eight at once.
    let mut agrees = Vec::new();
    for s in &starts {
        agrees.push(b.agree(s, &None));
    }
    b.refused(
        &command(
            ins::AGREE,
            &starts[0].agree_body(None, starts[0].v1.clone()).encode(),
        ),
        0x6A84,
        "a ninth session",
    );
    ledger.check(&mut [&mut a, &mut b], "eight open");
    // All eight complete, in another order than they were opened.
    for (s, g) in starts.iter().zip(&agrees).rev() {
        let confirm = a.confirm(s.s1, g);
        let commit = b.commit(&confirm);
        a.finish(g.s2, commit.r2);
    }
    assert_eq!(a.balance("JPY"), (64, 0));
    assert_eq!(b.balance("JPY"), (136, 0));
    ledger.check(&mut [&mut a, &mut b], "all done");
}

#[test]
fn escrowed_values_are_not_spendable() {
    let mut a = Party::new("A", 310);
    let mut b = Party::new("B", 311);
    let mut ledger = Ledger::default();
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut a, &ticket("T", &[1]));
    ledger.load(&mut b, &ticket("U", &[2]));
    let start = a.start(&jpy(100), &None);
    a.start(&ticket("T", &[1]), &None);
    assert_eq!(a.balance("JPY"), (0, 100));
    let unload = |v: &Value| {
        apdu_spec::apdu::encode(
            CLA_PROPRIETARY,
            ins::UNLOAD,
            0,
            0,
            &v.as_ref().expect("a value").encode(),
            256,
            false,
        )
    };
    a.refused(&unload(&jpy(1)), 0x6985, "UNLOAD of escrowed units");
    let start_of = |v: &Value| {
        command(
            ins::START,
            &StartBody {
                v1: v.clone(),
                wanted_v2: None,
            }
            .encode(),
        )
    };
    a.refused(&start_of(&jpy(1)), 0x6985, "START with escrowed units");
    a.refused(
        &start_of(&ticket("T", &[1])),
        0x6985,
        "START with an escrowed ticket",
    );
    a.refused(
        &start_of(&ticket("V", &[1])),
        0x6985,
        "START with a ticket not held",
    );
    a.refused(
        &start_of(&asset("EUR", 1)),
        0x6985,
        "START with units not held",
    );
    // AGREE offering B's ticket twice: the second finds it in escrow.
    b.agree(&start, &ticket("U", &[2]));
    let again = start.agree_body(ticket("U", &[2]), start.v1.clone());
    b.refused(
        &command(ins::AGREE, &again.encode()),
        0x6985,
        "AGREE with an escrowed ticket",
    );
    let more = start.agree_body(jpy(1), start.v1.clone());
    b.refused(
        &command(ins::AGREE, &more.encode()),
        0x6985,
        "AGREE with units not held",
    );
    ledger.check(&mut [&mut a, &mut b], "escrowed");
}

#[test]
fn the_store_keeps_room_for_what_sessions_bring_in() {
    let mut a = Party::new("A", 320);
    let mut b = Party::new("B", 321);
    for i in 0..units::MAX_ASSETS - 1 {
        a.load(&asset(&format!("A{i}"), 1));
    }
    a.load(&asset("JPY", 10));
    b.load(&asset("EUR", 10));
    // A holds 8 assets; wanting a ninth has no room.
    let body = StartBody {
        v1: jpy(1),
        wanted_v2: asset("EUR", 1),
    };
    a.refused(
        &command(ins::START, &body.encode()),
        0x6A84,
        "a ninth asset",
    );
    // Giving all of an asset frees nothing while it is in escrow.
    let body = StartBody {
        v1: jpy(10),
        wanted_v2: asset("EUR", 1),
    };
    a.refused(
        &command(ins::START, &body.encode()),
        0x6A84,
        "the escrow keeps its entry",
    );

    // B keeps room for the JPY a START of its own and an AGREE will bring in...
    let mut c = Party::new("C", 322);
    c.load(&jpy(50));
    for i in 0..units::MAX_ASSETS - 2 {
        b.load(&asset(&format!("B{i}"), 1));
    }
    let start = c.start(&jpy(50), &None);
    b.agree(&start, &None);
    // ... so no load may take the last place.
    let request = apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::LOAD_REQUEST,
        0,
        0,
        &asset("NEW", 1).expect("a value").encode(),
        256,
        false,
    );
    b.refused(&request, 0x6A84, "the place is kept for JPY");
    // Nor may an amount that would overflow together with what comes in.
    b.load(&jpy(1));
    let overflow = apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::LOAD_REQUEST,
        0,
        0,
        &jpy(u64::MAX - 50).expect("a value").encode(),
        256,
        false,
    );
    b.refused(&overflow, 0x6A80, "50 JPY are on their way in");
    // Two sessions cannot both wait for the same ticket.
    let wants = StartBody {
        v1: None,
        wanted_v2: ticket("T", &[1]),
    };
    a.ok(&command(ins::START, &wants.encode()));
    a.refused(
        &command(ins::START, &wants.encode()),
        0x6A80,
        "the ticket is awaited already",
    );
}

// ---- a malicious terminal -------------------------------------------------------------------

/// Two cards with funds, A in START and B in VALID for one exchange of 100 JPY against a
/// ticket.
struct Open {
    a: Party,
    b: Party,
    start: StartAnswer,
    agree: AgreeAnswer,
}

fn open(seed: u64) -> Open {
    let mut a = Party::new("A", seed);
    let mut b = Party::new("B", seed + 1);
    a.load(&jpy(200));
    b.load(&ticket("T", &[1]));
    b.load(&jpy(200));
    let start = a.start(&jpy(100), &ticket("T", &[1]));
    let agree = b.agree(&start, &ticket("T", &[1]));
    Open { a, b, start, agree }
}

#[test]
fn values_altered_between_steps() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(400);
    let t = ticket("T", &[1]);
    // B2 is told that A gives 150 JPY and agrees to that: its Sa verifies, but A computes
    // its agreement over the 100 it gave.
    let mut inflated = start.clone();
    inflated.v1 = jpy(150);
    let mut b2 = Party::new("B2", 402);
    b2.load(&t);
    let other = b2.agree(&inflated, &t);
    a.refused(
        &command(ins::CONFIRM, &other.confirm_body(start.s1).encode()),
        0x6A80,
        "the agreement over another V1",
    );
    // B3 agrees to give 5 JPY; the terminal tells A it gives the ticket.
    let mut b3 = Party::new("B3", 403);
    b3.load(&jpy(5));
    let cheap = b3.agree(&start, &jpy(5));
    a.refused(
        &command(ins::CONFIRM, &cheap.confirm_body(start.s1).encode()),
        0x6A80,
        "V2 is not what A's user wanted",
    );
    let claimed = ConfirmBody {
        v2: t.clone(),
        v2_proof: agree.v2_proof,
        ..cheap.confirm_body(start.s1)
    };
    a.refused(
        &command(ins::CONFIRM, &claimed.encode()),
        0x6A80,
        "B3's agreement is over another V2",
    );
    let recomputed = ConfirmBody {
        a: exchange::agreement(&start.s1, &jpy(100), &t, &a.id, &b3.id),
        ..claimed
    };
    a.refused(
        &command(ins::CONFIRM, &recomputed.encode()),
        0x6300,
        "Sa does not cover the V2 claimed",
    );
    // AGREE with a V1 that is not what B's user wants.
    let body = start.agree_body(jpy(1), jpy(99));
    b.refused(
        &command(ins::AGREE, &body.encode()),
        0x6A80,
        "V1 not wanted",
    );
    // The real exchange still goes through.
    let confirm = a.confirm(start.s1, &agree);
    let commit = b.commit(&confirm);
    a.finish(agree.s2, commit.r2);
    assert_eq!(a.balance("JPY"), (100, 0));
    assert!(a.ticket("T", &[1]).is_some());
    assert_eq!(b.balance("JPY"), (300, 0));
}

// ---- the issuer's block list ------------------------------------------------------------

/// The list naming `entries`, version `version`.
fn listing(version: u32, entries: &[BlockEntry]) -> BlockList {
    block_list(version, entries)
}

#[test]
fn a_card_on_its_own_list_starts_agrees_and_confirms_nothing() {
    // By its card id, then by its maker: a lost card, or a maker whose keys are out.
    for (seed, by_maker) in [(600, false), (610, true)] {
        let mut a = Party::new("A", seed);
        let mut b = Party::new("B", seed + 1);
        a.load(&jpy(100));
        b.load(&jpy(100));
        let start = a.start(&jpy(10), &None);
        let agree = b.agree(&start, &None);
        let blocks = |p: &Party| {
            if by_maker {
                BlockEntry::Maker(p.certificate.maker)
            } else {
                BlockEntry::Card(p.id)
            }
        };
        let list_a = listing(2, &[blocks(&a)]);
        let list_b = listing(2, &[blocks(&b)]);
        a.load_with_list(&jpy(1), list_a);
        b.load_with_list(&jpy(1), list_b);
        a.verify_pin();
        b.verify_pin();
        let start_body = StartBody {
            v1: jpy(5),
            wanted_v2: None,
        };
        a.refused(
            &command(ins::START, &start_body.encode()),
            0x6985,
            "START by a listed card",
        );
        let mut c = Party::new("C", seed + 2);
        c.load(&jpy(50));
        let c_start = c.start(&jpy(5), &None);
        b.refused(
            &command(ins::AGREE, &c_start.agree_body(None, jpy(5)).encode()),
            0x6985,
            "AGREE by a listed card",
        );
        a.refused(
            &command(ins::CONFIRM, &agree.confirm_body(start.s1).encode()),
            0x6985,
            "CONFIRM by a listed card",
        );
        // What was agreed before the block still ends: A aborts its START.
        a.ok(&command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()));
        assert_eq!(a.balance("JPY"), (101, 0));
    }
}

#[test]
fn the_other_card_on_the_list_is_refused_by_id_or_by_maker() {
    let other_maker = [0xD1; 32];
    let mut a = Party::made_by("A", 620, other_maker);
    let mut b = Party::new("B", 621);
    let mut c = Party::new("C", 622);
    a.load(&jpy(100));
    b.load(&jpy(100));
    c.load(&jpy(100));
    let start = a.start(&jpy(10), &None);

    // B knows of A: by card id, then by the maker A's certificate names.
    for (version, entry) in [
        (2, BlockEntry::Card(a.id)),
        (3, BlockEntry::Maker(other_maker)),
    ] {
        b.load_with_list(&jpy(1), listing(version, &[entry]));
        b.verify_pin();
        b.refused(
            &command(ins::AGREE, &start.agree_body(None, jpy(10)).encode()),
            0x6A80,
            "AGREE with a listed initiator",
        );
    }
    // C, which has no such list, agrees; then A learns that C is blocked and does not
    // confirm: its session stays in START, and ABORT ends it.
    let agree = c.agree(&start, &None);
    for (version, entry) in [
        (4, BlockEntry::Card(c.id)),
        (5, BlockEntry::Maker(c.certificate.maker)),
    ] {
        a.load_with_list(&jpy(1), listing(version, &[entry]));
        a.refused(
            &command(ins::CONFIRM, &agree.confirm_body(start.s1).encode()),
            0x6A80,
            "CONFIRM with a listed responder",
        );
    }
    assert_eq!(a.sessions()[0].state, SessionState::Start);
    a.ok(&command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()));
    // C cancels through the arbiter, whatever lists say.
    let cancel = c.cancel(agree.s2);
    c.apply(&verdict(cancel.s2, cancel.a, Outcome::Cancel));
    assert_eq!(c.balance("JPY"), (100, 0));
    // A list that names neither card lets them exchange.
    let mut d = Party::new("D", 623);
    d.load_with_list(&jpy(100), listing(6, &[BlockEntry::Card([0x77; 32])]));
    a.load_with_list(&jpy(1), listing(6, &[BlockEntry::Card([0x77; 32])]));
    d.verify_pin();
    a.verify_pin();
    let start = a.start(&jpy(10), &None);
    let agree = d.agree(&start, &None);
    let confirm = a.confirm(start.s1, &agree);
    let commit = d.commit(&confirm);
    a.finish(confirm.s2, commit.r2);
    assert_eq!(d.balance("JPY"), (110, 0));
}

#[test]
fn the_honest_counterparty_of_a_blocked_card_still_settles() {
    // A and B agreed before the block; the lists reach them afterwards. COMMIT and FINISH,
    // and CANCEL, RESOLVE and APPLY VERDICT, end what was agreed.
    let mut ledger = Ledger::default();
    let mut a = Party::new("A", 630);
    let mut b = Party::new("B", 631);
    ledger.load(&mut a, &jpy(100));
    ledger.load(&mut b, &ticket("T", &[1]));
    ledger.load(&mut b, &ticket("T", &[2]));
    let start = a.start(&jpy(40), &ticket("T", &[1]));
    let x = ledger.follow(&a, &b, &start, &ticket("T", &[1]));
    let agree = b.agree(&start, &ticket("T", &[1]));
    ledger.agreed(x, &agree);
    let confirm = a.confirm(start.s1, &agree);
    let start2 = a.start(&jpy(40), &ticket("T", &[2]));
    let y = ledger.follow(&a, &b, &start2, &ticket("T", &[2]));
    let agree2 = b.agree(&start2, &ticket("T", &[2]));
    ledger.agreed(y, &agree2);
    let confirm2 = a.confirm(start2.s1, &agree2);

    let both = listing(2, &[BlockEntry::Card(a.id), BlockEntry::Card(b.id)]);
    a.load_with_list(&jpy(1), both.clone());
    b.load_with_list(&jpy(1), both);
    *ledger.assets.entry("JPY".into()).or_default() += 2;
    ledger.check(&mut [&mut a, &mut b], "both listed");

    let commit = b.commit(&confirm);
    a.finish(confirm.s2, commit.r2);
    ledger.check(&mut [&mut a, &mut b], "first exchange ended");

    let cancel = b.cancel(agree2.s2);
    let resolve = a.resolve(agree2.s2);
    assert_eq!((cancel.a, resolve.a), (agree2.a, agree2.a));
    let v = ledger.verdict(y, Outcome::Cancel);
    a.apply(&v);
    b.apply(&v);
    b.refused(&command(ins::COMMIT, &confirm2.encode()), 0x6A88, "ended");
    assert!(a.sessions().is_empty() && b.sessions().is_empty());
    ledger.check(&mut [&mut a, &mut b], "second exchange cancelled");
}

#[test]
fn certificates_swapped_or_foreign() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(410);
    let foreign = Certificate::issue(&other_issuer(), &b.key, maker_id(), 0, u64::MAX);
    let c = Party::new("C", 412);

    let own = ConfirmBody {
        responder_certificate: a.certificate.clone(),
        ..agree.confirm_body(start.s1)
    };
    a.refused(
        &command(ins::CONFIRM, &own.encode()),
        0x6A80,
        "A's cert given as B's",
    );
    let from_other = ConfirmBody {
        responder_certificate: foreign.clone(),
        ..agree.confirm_body(start.s1)
    };
    a.refused(
        &command(ins::CONFIRM, &from_other.encode()),
        0x6A80,
        "B's key, another issuer",
    );
    let third = ConfirmBody {
        responder_certificate: c.certificate.clone(),
        ..agree.confirm_body(start.s1)
    };
    a.refused(
        &command(ins::CONFIRM, &third.encode()),
        0x6300,
        "another card's certificate",
    );
    let mut bad = agree.confirm_body(start.s1);
    bad.responder_certificate.signature[5] ^= 1;
    a.refused(
        &command(ins::CONFIRM, &bad.encode()),
        0x6A80,
        "a forged certificate",
    );

    let mut body = start.agree_body(jpy(5), start.v1.clone());
    body.initiator_certificate = b.certificate.clone();
    b.refused(
        &command(ins::AGREE, &body.encode()),
        0x6A80,
        "B's own cert as A's",
    );
    body.initiator_certificate =
        Certificate::issue(&other_issuer(), &a.key, maker_id(), 0, u64::MAX);
    b.refused(
        &command(ins::AGREE, &body.encode()),
        0x6A80,
        "A's key, another issuer",
    );
}

#[test]
fn signatures_of_another_session_are_refused() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(420);
    // A second session between the same cards and values.
    let start2 = a.start(&jpy(100), &None);
    let agree2 = b.agree(&start2, &None);
    let replayed = AgreeAnswer {
        sa: agree2.sa,
        ..agree.clone()
    };
    a.refused(
        &command(ins::CONFIRM, &replayed.confirm_body(start.s1).encode()),
        0x6300,
        "Sa of another session",
    );
    let wrong_domain = AgreeAnswer {
        sa: exchange::sign(&issuer(), domains::AGREE, &agree.a, &agree.s2),
        ..agree.clone()
    };
    a.refused(
        &command(ins::CONFIRM, &wrong_domain.confirm_body(start.s1).encode()),
        0x6300,
        "Sa by another key",
    );
    let confirm = a.confirm(start.s1, &agree);
    let confirm2 = a.confirm(start2.s1, &agree2);
    // Se of session 2 sent for session 1: the documented PENDING.
    let swapped = CommitBody {
        s2: agree.s2,
        se: confirm2.se,
    };
    let (_, sw) = b.send(&command(ins::COMMIT, &swapped.encode()));
    assert_eq!(sw, 0x6300);
    assert_eq!(b.sessions()[0].state, SessionState::Pending);
    assert_eq!(
        b.sessions()[1].state,
        SessionState::Valid,
        "the other session is untouched"
    );
    b.refused(&command(ins::COMMIT, &confirm.encode()), 0x6985, "PENDING");
    // COMMIT twice: the second finds no session, and nothing is credited twice.
    let commit2 = b.commit(&confirm2);
    let jpy_now = b.balance("JPY");
    b.refused(
        &command(ins::COMMIT, &confirm2.encode()),
        0x6A88,
        "committed already",
    );
    assert_eq!(b.balance("JPY"), jpy_now);
    // FINISH with another session's r2, or a wrong one.
    a.refused(
        &command(
            ins::FINISH,
            &FinishBody {
                s2: agree.s2,
                r2: commit2.r2,
            }
            .encode(),
        ),
        0x6300,
        "r2 of another session",
    );
    a.refused(
        &command(
            ins::FINISH,
            &FinishBody {
                s2: agree2.s2,
                r2: [0; 32],
            }
            .encode(),
        ),
        0x6300,
        "a wrong r2",
    );
    a.finish(agree2.s2, commit2.r2);
    a.refused(
        &command(
            ins::FINISH,
            &FinishBody {
                s2: agree2.s2,
                r2: commit2.r2,
            }
            .encode(),
        ),
        0x6A88,
        "finished already",
    );
}

#[test]
fn verdicts_for_another_session_or_by_another_key() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(430);
    let _ = a.confirm(start.s1, &agree);
    let start2 = a.start(&jpy(10), &None);
    let agree2 = b.agree(&start2, &None);
    let _ = a.confirm(start2.s1, &agree2);
    for party in [&mut a, &mut b] {
        party.refused(
            &command(
                ins::APPLY_VERDICT,
                &verdict([9; 32], agree.a, Outcome::Cancel).encode(),
            ),
            0x6A88,
            "an s2 no session has",
        );
        party.refused(
            &command(
                ins::APPLY_VERDICT,
                &verdict(agree.s2, agree2.a, Outcome::Cancel).encode(),
            ),
            0x6A80,
            "another session's a",
        );
        let mut other_key = verdict(agree.s2, agree.a, Outcome::Complete);
        other_key.signature =
            exchange::sign_verdict(&issuer(), &agree.s2, &agree.a, Outcome::Complete);
        party.refused(
            &command(ins::APPLY_VERDICT, &other_key.encode()),
            0x6300,
            "signed by another key",
        );
        let mut flipped = verdict(agree.s2, agree.a, Outcome::Complete);
        flipped.outcome = Outcome::Cancel;
        party.refused(
            &command(ins::APPLY_VERDICT, &flipped.encode()),
            0x6300,
            "the other outcome than signed",
        );
        let mut other_session = verdict(agree2.s2, agree2.a, Outcome::Complete);
        other_session.s2 = agree.s2;
        other_session.a = agree.a;
        party.refused(
            &command(ins::APPLY_VERDICT, &other_session.encode()),
            0x6300,
            "the signature of another session's verdict",
        );
    }
    // An initiator in START has no s2: no verdict reaches it.
    let start3 = a.start(&jpy(1), &None);
    let agree3 = b.agree(&start3, &None);
    a.refused(
        &command(
            ins::APPLY_VERDICT,
            &verdict(agree3.s2, agree3.a, Outcome::Cancel).encode(),
        ),
        0x6A88,
        "START has no s2",
    );
}

#[test]
fn commands_in_the_wrong_state() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(440);
    a.refused(
        &command(
            ins::FINISH,
            &FinishBody {
                s2: agree.s2,
                r2: [1; 32],
            }
            .encode(),
        ),
        0x6A88,
        "FINISH in START",
    );
    a.refused(
        &command(ins::RESOLVE, &ResolveBody { s2: agree.s2 }.encode()),
        0x6A88,
        "RESOLVE in START",
    );
    a.refused(
        &command(ins::CANCEL, &CancelBody { s2: agree.s2 }.encode()),
        0x6A88,
        "CANCEL at the initiator",
    );
    b.refused(
        &command(ins::RESOLVE, &ResolveBody { s2: agree.s2 }.encode()),
        0x6A88,
        "RESOLVE at the responder",
    );
    b.refused(
        &command(
            ins::FINISH,
            &FinishBody {
                s2: agree.s2,
                r2: [1; 32],
            }
            .encode(),
        ),
        0x6A88,
        "FINISH at the responder",
    );
    b.refused(
        &command(ins::CONFIRM, &agree.confirm_body(start.s1).encode()),
        0x6A88,
        "CONFIRM at the responder",
    );
    b.refused(
        &command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()),
        0x6A88,
        "ABORT at the responder",
    );
    let confirm = a.confirm(start.s1, &agree);
    a.refused(
        &command(ins::CONFIRM, &agree.confirm_body(start.s1).encode()),
        0x6985,
        "CONFIRM twice",
    );
    a.refused(
        &command(ins::ABORT, &AbortBody { s1: start.s1 }.encode()),
        0x6985,
        "ABORT after CONFIRM",
    );
    a.refused(
        &command(ins::COMMIT, &confirm.encode()),
        0x6A88,
        "COMMIT at the initiator",
    );
    b.cancel(agree.s2);
    b.refused(
        &command(ins::COMMIT, &confirm.encode()),
        0x6985,
        "COMMIT when PENDING",
    );
}

#[test]
fn start_and_agree_need_the_pin() {
    let Open {
        mut a,
        mut b,
        start,
        ..
    } = open(450);
    a.power_cycle();
    b.power_cycle();
    let body = StartBody {
        v1: jpy(1),
        wanted_v2: None,
    };
    a.refused(
        &command(ins::START, &body.encode()),
        0x6982,
        "START without the PIN",
    );
    a.refused(
        &command(ins::START, &[0xFF]),
        0x6982,
        "the PIN comes before the body",
    );
    let agree = start.agree_body(jpy(1), start.v1.clone());
    b.refused(
        &command(ins::AGREE, &agree.encode()),
        0x6982,
        "AGREE without the PIN",
    );
    b.refused(
        &command(ins::AGREE, &[0xFF]),
        0x6982,
        "the PIN comes before the body",
    );
    b.verify_pin();
    b.ok(&command(ins::AGREE, &agree.encode()));
}

#[test]
fn ticket_proofs_are_checked() {
    let mut a = Party::new("A", 460);
    let mut b = Party::new("B", 461);
    a.load(&ticket("T", &[1]));
    b.load(&jpy(10));
    let start = a.start(&ticket("T", &[1]), &jpy(10));
    let mut body = start.agree_body(jpy(10), start.v1.clone());
    body.v1_proof = Some(TicketProof {
        owner: b.id,
        ..start.v1_proof.expect("a proof")
    });
    b.refused(
        &command(ins::AGREE, &body.encode()),
        0x6300,
        "the proof names another owner",
    );
    body.v1_proof = Some(TicketProof {
        owner: a.id,
        signature: units::sign_ticket(&other_issuer(), "T", &[1], &a.id),
    });
    b.refused(
        &command(ins::AGREE, &body.encode()),
        0x6300,
        "signed by another issuer",
    );
    body.v1_proof = None;
    b.refused(&command(ins::AGREE, &body.encode()), 0x6A80, "no proof");
    let agree = b.agree(&start, &jpy(10));
    assert!(agree.v2_proof.is_none());

    // And at CONFIRM, for a ticket V2.
    let mut c = Party::new("C", 462);
    c.load(&jpy(5));
    let start = c.start(&jpy(5), &ticket("U", &[2]));
    a.load(&ticket("U", &[2]));
    let agree = a.agree(&start, &ticket("U", &[2]));
    let mut body = agree.confirm_body(start.s1);
    body.v2_proof = Some(TicketProof {
        owner: c.id,
        ..agree.v2_proof.expect("a proof")
    });
    c.refused(
        &command(ins::CONFIRM, &body.encode()),
        0x6300,
        "the proof names another owner",
    );
}

/// Bodies that are not what a command takes: each must answer 6A80 and change nothing.
fn malformed_bodies(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let objects = tlv::parse_all(good).expect("the good body parses");
    let mut out = vec![
        ("garbage".to_string(), vec![0xFF]),
        ("cut short".to_string(), good[..good.len() - 1].to_vec()),
        ("a byte more".to_string(), [good, &[0]].concat()),
        (
            "an unknown object".to_string(),
            [good, &[0x9F, 0x20, 0x00]].concat(),
        ),
    ];
    for (i, object) in objects.iter().enumerate() {
        let t = tlv::tag_number(object);
        let mut without = objects.clone();
        without.remove(i);
        if !without.is_empty() {
            out.push((format!("without {t:X}"), tlv::encode_all(&without)));
        }
        let mut twice = objects.clone();
        twice.push(object.clone());
        out.push((format!("{t:X} twice"), tlv::encode_all(&twice)));
        // A fixed-length field a byte short.
        if let tlv::Value::Primitive(v) = object.value()
            && !v.is_empty()
        {
            let mut short = objects.clone();
            short[i] = tlv::primitive(t, v[..v.len() - 1].to_vec());
            out.push((format!("{t:X} a byte short"), tlv::encode_all(&short)));
        }
    }
    out
}

#[test]
fn malformed_bodies_for_every_command() {
    let Open {
        mut a,
        mut b,
        start,
        agree,
    } = open(470);
    let confirm_body = agree.confirm_body(start.s1);
    let start_body = StartBody {
        v1: jpy(1),
        wanted_v2: jpy(1),
    };
    let agree_body = start.agree_body(jpy(1), start.v1.clone());
    let s2 = agree.s2;
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("START", ins::START, start_body.encode()),
        ("CONFIRM", ins::CONFIRM, confirm_body.encode()),
        (
            "FINISH",
            ins::FINISH,
            FinishBody { s2, r2: [0; 32] }.encode(),
        ),
        ("ABORT", ins::ABORT, AbortBody { s1: start.s1 }.encode()),
        ("RESOLVE", ins::RESOLVE, ResolveBody { s2 }.encode()),
        (
            "APPLY VERDICT",
            ins::APPLY_VERDICT,
            verdict(s2, agree.a, Outcome::Cancel).encode(),
        ),
    ];
    for (name, ins, good) in cases {
        for (why, body) in malformed_bodies(&good) {
            a.refused(&command(ins, &body), 0x6A80, &format!("{name}: {why}"));
        }
    }
    let confirm = ConfirmAnswer { s2, se: [0; 64] };
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("AGREE", ins::AGREE, agree_body.encode()),
        ("COMMIT", ins::COMMIT, confirm.encode()),
        ("CANCEL", ins::CANCEL, CancelBody { s2 }.encode()),
    ];
    for (name, ins, good) in cases {
        for (why, body) in malformed_bodies(&good) {
            b.refused(&command(ins, &body), 0x6A80, &format!("{name}: {why}"));
        }
    }
    // Values out of range, a proof for units, an unknown outcome.
    let zero = StartBody {
        v1: jpy(0),
        wanted_v2: None,
    };
    a.refused(&command(ins::START, &zero.encode()), 0x6A80, "zero units");
    let mut bad_outcome = verdict(s2, agree.a, Outcome::Cancel).encode();
    let at = bad_outcome
        .windows(3)
        .position(|w| w == [0x84, 0x01, 0x02])
        .expect("84");
    bad_outcome[at + 2] = 0x03;
    a.refused(
        &command(ins::APPLY_VERDICT, &bad_outcome),
        0x6A80,
        "outcome 03",
    );
    let mut units_proof = start.agree_body(jpy(1), start.v1.clone());
    units_proof.v1_proof = Some(TicketProof {
        owner: a.id,
        signature: [0; 64],
    });
    b.refused(
        &command(ins::AGREE, &units_proof.encode()),
        0x6A80,
        "a proof for units",
    );
    // LIST SESSIONS takes no body; the others need one.
    let (_, sw) = a.send(&command(ins::LIST_SESSIONS, &[1]));
    assert_eq!(sw, 0x6700);
    for ins in [
        ins::START,
        ins::AGREE,
        ins::CONFIRM,
        ins::COMMIT,
        ins::FINISH,
        ins::ABORT,
        ins::CANCEL,
        ins::RESOLVE,
        ins::APPLY_VERDICT,
    ] {
        a.refused(&command(ins, &[]), 0x6700, "no body");
        a.refused(
            &apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, 1, 0, &[0x80, 0], 0, false),
            0x6A86,
            "P1 01",
        );
    }
}

// ---- the state file -------------------------------------------------------------------------

#[test]
fn a_state_file_with_inconsistent_sessions_is_corrupt() {
    let Open { a, b, .. } = open(480);
    let corrupt = |state: &Persistent, edit: &dyn Fn(&mut Persistent), why: &str| {
        let mut s = state.clone();
        edit(&mut s);
        assert!(decode(&bytes(&s)).is_err(), "{why}");
        assert!(card_from(&s, 1).is_err(), "{why}: the card does not start");
    };
    let sa = a.state();
    let sb = b.state();
    assert!(decode(&bytes(&sa)).is_ok() && decode(&bytes(&sb)).is_ok());
    corrupt(&sa, &|s| s.sessions.clear(), "escrow without its session");
    corrupt(
        &sa,
        &|s| s.values.assets[0].escrowed += 1,
        "more in escrow than the sessions give",
    );
    corrupt(
        &sb,
        &|s| s.values.tickets[0].escrowed = false,
        "a given ticket out of escrow",
    );
    corrupt(
        &sb,
        &|s| {
            if let Some(Session::Responder(r)) = s.sessions.first_mut() {
                r.r2.0[0] ^= 1;
            }
        },
        "r2 that is not behind s2",
    );
    corrupt(
        &sb,
        &|s| {
            if let Some(Session::Responder(r)) = s.sessions.first_mut() {
                r.a[0] ^= 1;
            }
        },
        "an agreement of other values",
    );
    corrupt(
        &sb,
        &|s| {
            if let Some(Session::Responder(r)) = s.sessions.first_mut() {
                r.initiator_certificate =
                    Certificate::issue(&other_issuer(), &a.key, maker_id(), 0, 1).encode();
            }
        },
        "a certificate of another issuer",
    );
    corrupt(
        &sa,
        &|s| {
            let copy = s.sessions[0].clone();
            s.sessions.push(copy);
            s.values.assets[0].escrowed *= 2;
            s.values.assets[0].available -= 100;
        },
        "two sessions with one s1",
    );
    corrupt(
        &sb,
        &|s| {
            if let Some(Session::Responder(r)) = s.sessions.first_mut() {
                r.v1_proof = Some(TicketProof {
                    owner: a.id,
                    signature: [0; 64],
                });
            }
        },
        "a proof for units",
    );
    // A blank card with a session.
    let mut blank = Persistent::blank();
    blank.sessions = sa.sessions.clone();
    assert!(decode(&bytes(&blank)).is_err(), "sessions on a blank card");
    // A state file from before sessions existed reads as one without them.
    let old = String::from_utf8(bytes(&Persistent::blank())).expect("JSON");
    let old = old.replace(",\n  \"sessions\": []", "");
    assert!(!old.contains("sessions"), "{old}");
    assert_eq!(
        decode(old.as_bytes()).map(|s| s.sessions.len()).ok(),
        Some(0)
    );
}

#[test]
fn answers_need_no_extended_length() {
    // A terminal that uses short APDUs gets the long answers through 61xx and GET RESPONSE,
    // and sends the long bodies as chains.
    let mut a = Party::new("A", 490);
    a.load(&ticket("T", &[1]));
    let body = StartBody {
        v1: ticket("T", &[1]),
        wanted_v2: None,
    }
    .encode();
    let r = a.card.transmit(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::START,
        0,
        0,
        &body,
        256,
        false,
    ));
    assert_eq!(
        r[r.len() - 2],
        0x61,
        "more than 256 bytes: {}",
        hex::encode_upper(&r[r.len() - 2..])
    );
    let mut answer = r[..r.len() - 2].to_vec();
    let rest = a.card.transmit(&[0x00, 0xC0, 0x00, 0x00, r[r.len() - 1]]);
    answer.extend_from_slice(&rest[..rest.len() - 2]);
    assert_eq!(&rest[rest.len() - 2..], &[0x90, 0x00]);
    let start = StartAnswer::decode(&answer).expect("a START answer");

    let mut b = Party::new("B", 491);
    let body = start.agree_body(None, start.v1.clone()).encode();
    assert!(body.len() > 255);
    let (first, second) = body.split_at(200);
    let r = b.card.transmit(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY | 0x10,
        ins::AGREE,
        0,
        0,
        first,
        0,
        false,
    ));
    assert_eq!(r, [0x90, 0x00]);
    let r = b.card.transmit(&apdu_spec::apdu::encode(
        CLA_PROPRIETARY,
        ins::AGREE,
        0,
        0,
        second,
        256,
        false,
    ));
    assert_eq!(r[r.len() - 2], 0x61);
}
