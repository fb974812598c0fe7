//! The exhaustive fault test of the fair exchange (PROTOCOLS.md, "Fair exchange: card to
//! card" and "Invariants the tests must prove"), against the real card and arbiter code,
//! in-process: every schedule of one exchange within the bounds below, in which any subset
//! of the protocol messages is lost or duplicated, either card loses power after any command
//! (so that its answer is lost), and the settling calls (ABORT, CANCEL, RESOLVE, the
//! requests to the arbiter, APPLY VERDICT on either card) happen at any point and in any
//! order, the two cards racing each other at the arbiter.
//!
//! ## The model
//!
//! A **world** is: card A's and card B's persistent state (the state file, as the real
//! `Card` commits it), the arbiter's records (the real `Arbiter` over an in-memory SQLite
//! database), what the terminal has learned (the latest answer of START, AGREE, CONFIRM,
//! COMMIT, CANCEL and RESOLVE: everything it needs to build the next bodies and the
//! requests to the arbiter), how each session that ended on a card ended (a history
//! variable the invariants need: COMMIT or FINISH, ABORT, or a verdict applied), and the
//! counters of the bounds.
//!
//! A card is rebuilt from its state file for every command, so its volatile state is always
//! fresh, as after a power cut: the terminal VERIFYs the PIN before START and AGREE (the
//! only commands that need it). A card's randomness is drawn from an RNG seeded with its
//! state, the command and the delivery's number (first or second) in the schedule, so runs
//! are deterministic and two deliveries of one schedule never draw the same r1 or r2 (a
//! real card's RNG never repeats; a seed from the state alone would make a card that is
//! back in its initial state answer a second AGREE with the first one's r2). The arbiter
//! is rebuilt for a request by replaying, into a fresh one, the requests that made its
//! records; all arbiters share one key, which the cards are personalised with.
//!
//! **Actions** from a world (each one delivery; every action is enabled only while its
//! bound allows it and the terminal knows its body):
//!
//! | action | to | body from | answer |
//! |---|---|---|---|
//! | START | A | the values (300 JPY for a ticket; or 300 JPY for nothing) | received or lost |
//! | AGREE | B | the latest START answer | received or lost |
//! | CONFIRM | A | the latest START and AGREE answers | received or lost |
//! | COMMIT | B | the latest CONFIRM answer | received or lost |
//! | FINISH | A | the latest COMMIT answer (and its body's s2) | carries no data |
//! | ABORT | A | every s1 the terminal knows or LIST SESSIONS shows on A | carries no data |
//! | CANCEL | B | every s2 the terminal knows or LIST SESSIONS shows on B | received or lost |
//! | RESOLVE | A | every s2 the terminal knows or LIST SESSIONS shows on A | received or lost |
//! | cancel request | arbiter | the latest CANCEL answer | the verdict |
//! | resolve request | arbiter | the latest RESOLVE answer | the verdict |
//! | APPLY VERDICT | A | every verdict the arbiter has recorded | carries no data |
//! | APPLY VERDICT | B | every verdict the arbiter has recorded | carries no data |
//!
//! Refusals are transitions like the others (they use up a delivery). What the model folds
//! together, and why nothing is lost by it:
//! - A message lost before it reaches the card, or a power cut before a command, leaves the
//!   world as it was: it is the schedule without that delivery, which is enumerated too. A
//!   power cut *during* a command is one before or after it (each command commits
//!   atomically; `card/tests/tearing.rs` cuts the power inside commits). A power cut after
//!   a command is the command with its answer lost.
//! - A lost answer matters only when it carries something: FINISH, ABORT and APPLY
//!   VERDICT answer no data, so they have one variant.
//! - The terminal can always ask the arbiter for the verdict of an s2 (a read), so it knows
//!   every recorded verdict: an arbiter's answer lost on the way is the same world.
//! - The terminal keeps the latest answer of each kind, as a terminal does: it never
//!   replays an answer that a newer one of its kind replaced (a CANCEL answer for another
//!   s2, say). Settling does not need it: every settling call works from LIST SESSIONS.
//! - Besides relaying, the terminal is the adversary of invariant 6: it also holds a third
//!   genuine card C, certified by the same issuer, whose key it uses as it likes, and B's
//!   key, as B's own holder whose key is out of its chip (below).
//!
//! ## The adversary: genuine cards in the terminal's hands
//!
//! C's certificate is the issuer's, like A's and B's, and the terminal signs with C's key
//! whatever it wants, from everything it has seen (the latest START and AGREE answers give
//! it s1, V1, V2, a, s2, Sa and both certificates, so it can compute the value commitment
//! c). It also holds B's key, as the holder of a card B of its own would who got the key out
//! of the chip. On top of the honest actions it may, at any point:
//!
//! | action | to | what |
//! |---|---|---|
//! | forged cancel | arbiter | a cancel request for A and B's session (a, s2), signed by C as its responder, with A's and C's certificates |
//! | forged cancel | arbiter | the same, but naming B's certificate over C's signature |
//! | forged cancel | arbiter | a cancel request signed with B's key for a second agreement a'' = H(c'' ‖ id_A ‖ id_B) under B's own s2 (no genuine card signs two agreements under one s2) |
//! | forged resolve | arbiter | a resolve request for (a, s2) signed by C as its initiator, carrying B's real Sa |
//! | forged commit | B | COMMIT with a confirmation Se signed by C over B's (a, s2) |
//!
//! and every recorded verdict, the second agreement's included, goes to APPLY VERDICT on
//! either card. The arbiter must refuse every request that the session's own parties did not
//! sign, key its verdicts by (a, s2) so that a made-up agreement under a real s2 decides
//! nothing of the real session, and the cards must refuse a verdict for another agreement.
//! What the keys are not used for: an agreement or a confirmation that promises a value its
//! card never put in escrow (Sa as a responder, or Se as an initiator, of a session of its
//! own with A or B), or a cancel of B's real session after B's card committed it. A key out
//! of its chip that signs such messages mints or duplicates value, which no exchange
//! protocol can prevent: that is what tamper-resistant cards, the block list and the
//! center's float (invariant 5, tested in `backend/tests/provenance.rs` and
//! `tests/tests/ledger.rs`) are for. The second agreement under B's s2 is in the model
//! because it must not do even that: it is another session, and A's resolve request for the
//! real one still gets its verdict (an arbiter that allowed one agreement per responder and
//! s2 would refuse it for ever and strand A's value). C's genuine sessions with A or B are
//! ordinary exchanges between two genuine cards, which the model enumerates with B's card.
//!
//! A **planted flaw** (`planted_flaw_is_caught`): the backend built with its
//! `planted-flaws` feature lets the test switch the arbiter's party check off; the same
//! enumeration must then fail, and print the schedule that leads to the failure.
//!
//! ## Bounds
//!
//! Each of the twelve actions above (the two APPLY VERDICTs apart) is delivered at most
//! [`MAX_DELIVERIES`] = 2 times in a schedule, whatever it carries (so every message can be
//! duplicated, and every settling call can be made twice, at any point), and each card
//! loses at most [`MAX_CUTS`] = 2 answers (power cuts after a command). A schedule is
//! therefore at most 24 deliveries long. Card A holds exactly the 300 JPY it offers: a
//! second START while the first session is open is refused, as it would be for a user with
//! nothing more to give; after an ABORT or a CANCEL verdict it opens a new session.
//!
//! ## Invariants, checked in every reachable world
//!
//! 1. **Conservation**: for every asset, what is available on both cards plus the escrow
//!    that can still come back (escrow is dead once the other card stored the value, by
//!    COMMIT, FINISH or a COMPLETE verdict, or once the arbiter recorded COMPLETE) never
//!    exceeds what was issued, and no asset or ticket appears that was not issued; every
//!    ticket is held (available or in live escrow) on at most one card.
//! 2. **Resolution**: from the world, the settle procedure of the terminal (LIST SESSIONS;
//!    ABORT an initiator in START; otherwise the arbiter's verdict if it has one, else
//!    RESOLVE at A or CANCEL at B and the request to the arbiter; then APPLY VERDICT), run
//!    on A then B and, separately, on B then A, ends every session on both cards, every
//!    command of it is accepted, and every step of it keeps invariant 1.
//! 3. **Agreement**: after each such resolution, every session that ended under an s2 with
//!    a record ended as the record says (COMMIT and FINISH only under COMPLETE, a verdict
//!    only the recorded one); A received V2 exactly when B received V1, both under the same
//!    s2, at most once.
//! 4. **Exact totals**: after each resolution no value is in escrow and the two cards hold
//!    exactly what was issued, either as issued (A: V1, B: V2) or exchanged (A: V2, B: V1).
//!
//! Also, every refusal leaves the refusing card's state file byte for byte as it was
//! (COMMIT's documented PENDING excepted), RESOLVE and LIST SESSIONS never write, only
//! COMMIT, FINISH, ABORT and APPLY VERDICT end sessions, every state a card commits passes
//! the state file's consistency checks, and the arbiter never answers a second verdict for
//! an s2 (its table has one row per recorded verdict). A failure panics with the schedule
//! that leads to it, step by step, with what each card and the arbiter answered.
//!
//! ## Counting
//!
//! The invariants depend on the world without its counters (a `Sem`), and so does what an
//! action does; only whether it is enabled depends on the counters. Each `Sem` that some
//! world reaches is checked once and has its actions carried out by the real code once
//! (`expand`). A world is then a `Sem` and its counters, and the enumeration runs layer by
//! layer (every action is one delivery, so layer d holds the worlds d deliveries deep and
//! the graph is acyclic), counting the paths from the initial world to each world of the
//! layer. A **schedule** is a maximal sequence of actions: a path to a world where no
//! action is enabled. The number of schedules is the sum of the path counts of such
//! worlds: the full enumeration, not a sample. The test prints it, the number of reachable
//! worlds and of transitions (world, enabled action), and the time taken, and checks that
//! the enumeration reached both outcomes, both verdicts, every way of ending a session and
//! the races that matter (B cancelled but A's resolve request was first, and the other way
//! round; one card applied the verdict or committed and the other has not yet).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::apdu::Response;
use apdu_spec::blocklist::BlockList;
use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::ins;
use apdu_spec::exchange::messages::{
    AbortBody, AgreeAnswer, CancelAnswer, CancelBody, CommitAnswer, ConfirmAnswer, ResolveAnswer,
    ResolveBody, Role, SessionInfo, SessionState, StartAnswer, StartBody, VerdictBody,
    decode_sessions,
};
use apdu_spec::exchange::{self, Outcome, Value, domains};
use apdu_spec::maker::Manufacture;
use apdu_spec::objects::Personalization;
use apdu_spec::units::{self, LoadApply, SignedMessage, UnitValue, tag as units_tag};
use apdu_spec::{CLA_ISO, CLA_PROPRIETARY};
use p256::ecdsa::SigningKey;
use sha2::Digest;
use valuecard_backend::arbiter::{self, Arbiter, ArbiterConfig};
use valuecard_backend::clock::ManualClock;
use valuecard_card::applet::{decode, encode};
use valuecard_card::state::{Persistent, Session};
use valuecard_card::storage::MemoryStorage;
use valuecard_card::{Card, Options};
use valuecard_protocol::api::{ArbiterCancelRequest, ArbiterResolveRequest, Verdict};

/// The most times one action is delivered in a schedule.
const MAX_DELIVERIES: u8 = 2;
/// The most answers one card loses in a schedule (power cuts after a command).
const MAX_CUTS: u8 = 2;

const PIN: &[u8] = b"123456";
/// "No id": an unknown message, or a session without s2.
const NONE: u32 = u32::MAX;
const A: usize = 0;
const B: usize = 1;
const CARD_NAMES: [&str; 2] = ["A", "B"];

fn issuer() -> SigningKey {
    SigningKey::from_slice(&[0x5A; 32]).expect("a P-256 scalar")
}

fn arbiter_key() -> SigningKey {
    SigningKey::from_slice(&[0x7C; 32]).expect("a P-256 scalar")
}

/// The scheme root: the cards are made for it, and it anchors the issuer and arbiter keys.
fn root_key() -> SigningKey {
    SigningKey::from_slice(&[0x4E; 32]).expect("a P-256 scalar")
}

/// The card maker of the three cards.
fn maker_key() -> SigningKey {
    SigningKey::from_slice(&[0x3A; 32]).expect("a P-256 scalar")
}

/// The key of card C, which the adversary holds.
fn card_c_key() -> SigningKey {
    SigningKey::from_slice(&[0x3C; 32]).expect("a P-256 scalar")
}

/// C's certificate: the issuer's, like A's and B's.
fn card_c_certificate() -> Certificate {
    let maker = apdu_spec::maker::maker_id(maker_key().verifying_key());
    Certificate::issue(&issuer(), card_c_key().verifying_key(), maker, 0, u64::MAX)
}

fn jpy(amount: u64) -> Value {
    Some(UnitValue::Asset {
        code: "JPY".into(),
        amount,
    })
}

fn concert() -> Value {
    Some(UnitValue::Ticket {
        code: "CONCERT".into(),
        serial: vec![0x00, 0xC0, 0xFF, 0xEE],
    })
}

/// The actions, each with its own bound; `List` (LIST SESSIONS) is a read the settle
/// procedure uses, never an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Start,
    Agree,
    Confirm,
    Commit,
    Finish,
    Abort,
    Cancel,
    Resolve,
    ApplyA,
    ApplyB,
    ArbiterCancel,
    ArbiterResolve,
    /// The adversary's: requests signed with C's key, to the arbiter...
    ForgedCancel,
    ForgedResolve,
    /// ... and a confirmation signed with C's key, to B.
    ForgedCommit,
    List,
}

/// The actions with a bound: all but the adversary's forgeries, which come first in
/// [`Kind`] after them.
const KINDS: usize = 12;

impl Kind {
    fn card(self) -> Option<usize> {
        match self {
            Kind::Start
            | Kind::Confirm
            | Kind::Finish
            | Kind::Abort
            | Kind::Resolve
            | Kind::ApplyA => Some(A),
            Kind::Agree | Kind::Commit | Kind::Cancel | Kind::ApplyB | Kind::ForgedCommit => {
                Some(B)
            }
            Kind::ArbiterCancel
            | Kind::ArbiterResolve
            | Kind::ForgedCancel
            | Kind::ForgedResolve
            | Kind::List => None,
        }
    }

    fn ins(self) -> u8 {
        match self {
            Kind::Start => ins::START,
            Kind::Agree => ins::AGREE,
            Kind::Confirm => ins::CONFIRM,
            Kind::Commit | Kind::ForgedCommit => ins::COMMIT,
            Kind::Finish => ins::FINISH,
            Kind::Abort => ins::ABORT,
            Kind::Cancel => ins::CANCEL,
            Kind::Resolve => ins::RESOLVE,
            Kind::ApplyA | Kind::ApplyB => ins::APPLY_VERDICT,
            Kind::List => ins::LIST_SESSIONS,
            Kind::ArbiterCancel
            | Kind::ArbiterResolve
            | Kind::ForgedCancel
            | Kind::ForgedResolve => unreachable!("not a card command"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Start => "START",
            Kind::Agree => "AGREE",
            Kind::Confirm => "CONFIRM",
            Kind::Commit => "COMMIT",
            Kind::Finish => "FINISH",
            Kind::Abort => "ABORT",
            Kind::Cancel => "CANCEL",
            Kind::Resolve => "RESOLVE",
            Kind::ApplyA | Kind::ApplyB => "APPLY VERDICT",
            Kind::List => "LIST SESSIONS",
            Kind::ArbiterCancel => "cancel request",
            Kind::ArbiterResolve => "resolve request",
            Kind::ForgedCancel => "forged cancel request",
            Kind::ForgedResolve => "forged resolve request",
            Kind::ForgedCommit => "COMMIT with a forged confirmation",
        }
    }

    /// Whether the adversary's key signed what the action carries.
    fn forged(self) -> bool {
        matches!(
            self,
            Kind::ForgedCancel | Kind::ForgedResolve | Kind::ForgedCommit
        )
    }

    /// Whether a lost answer is a world of its own: the answer carries what the terminal
    /// needs next.
    fn answer_matters(self) -> bool {
        matches!(
            self,
            Kind::Start | Kind::Agree | Kind::Confirm | Kind::Commit | Kind::Cancel | Kind::Resolve
        )
    }
}

/// The terminal's knowledge: the latest answer of each of these.
const K_START: usize = 0;
const K_AGREE: usize = 1;
const K_CONFIRM: usize = 2;
/// FINISH's body, made of COMMIT's body (s2) and its answer (r2).
const K_FINISH: usize = 3;
const K_CANCEL: usize = 4;
const K_RESOLVE: usize = 5;

/// A world but its counters: what the cards, the arbiter and the terminal hold, and how
/// the sessions that ended ended. A world is a `Sem`'s id and its [`Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Sem {
    cards: [u32; 2],
    arbiter: u32,
    endings: u32,
    know: [u32; 6],
}

/// The counters of the bounds, two bits each: the deliveries of each bounded action (bits
/// 2k and 2k + 1 for action k), then the answers lost by A and by B. The adversary's
/// forgeries have no counter: each one that the real code takes changes the world for good
/// (a verdict recorded, a session made PENDING), and one that it refuses changes nothing
/// and is no transition at all (`expand`), so they can come at any point, any number of
/// times, and still every schedule is finite.
type Counters = u32;

const _: () = assert!(MAX_DELIVERIES <= 3 && MAX_CUTS <= 3 && 2 * (KINDS + 2) <= 32);

fn sent(c: Counters, kind: Kind) -> u8 {
    ((c >> (2 * kind as u32)) & 3) as u8
}

fn cuts(c: Counters, card: usize) -> u8 {
    ((c >> (2 * (KINDS + card))) & 3) as u8
}

/// A world as one key: its `Sem` id and its counters.
fn world(sem: u32, c: Counters) -> u64 {
    (u64::from(sem) << 32) | u64::from(c)
}

fn split(w: u64) -> (u32, Counters) {
    ((w >> 32) as u32, w as u32)
}

/// One action from a `Sem`, and the `Sem` it leads to.
#[derive(Clone, Debug)]
struct Edge {
    act: Action,
    /// START and AGREE draw randomness seeded with the delivery's number: this edge is
    /// the delivery with this number.
    index: Option<u8>,
    next: u32,
    /// What came back, for the report.
    what: String,
}

impl Edge {
    fn enabled(&self, c: Counters) -> bool {
        if self.act.forged {
            return true;
        }
        let n = sent(c, self.act.kind);
        n < MAX_DELIVERIES
            && self.index.is_none_or(|i| i == n)
            && (!self.act.lose || self.act.kind.card().is_some_and(|x| cuts(c, x) < MAX_CUTS))
    }

    fn counters(&self, c: Counters) -> Counters {
        if self.act.forged {
            return c;
        }
        let mut c = c + (1 << (2 * self.act.kind as u32));
        if self.act.lose
            && let Some(x) = self.act.kind.card()
        {
            c += 1 << (2 * (KINDS + x));
        }
        c
    }
}

/// A hasher for the worlds' u64 keys (SipHash costs more than the rest of a transition).
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let h = (self.0.rotate_left(23) ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// The worlds of one layer, each with the number of paths that reach it.
type Layer = HashMap<u64, u128, BuildHasherDefault<Mix>>;

/// What the enumeration counted.
#[derive(Debug, Default)]
struct Counts {
    worlds: u64,
    transitions: u64,
    schedules: u128,
    longest: usize,
    widest: usize,
}

/// How a session ended on a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum How {
    /// COMMIT (B) or FINISH (A): the card stored what it was to get.
    Exchanged,
    Aborted,
    Verdict(Outcome),
}

impl How {
    /// The card stored the value the other card gave.
    fn receives(self) -> bool {
        matches!(self, How::Exchanged | How::Verdict(Outcome::Complete))
    }
}

/// One session that ended: on which card, its s1, s2 and a (ids; `NONE` when it had none),
/// and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct End {
    card: usize,
    s1: u32,
    s2: u32,
    a: u32,
    how: How,
}

impl End {
    fn key(&self) -> (usize, u32, u32, u32, u8) {
        let how = match self.how {
            How::Exchanged => 0,
            How::Aborted => 1,
            How::Verdict(o) => 1 + o as u8,
        };
        (self.card, self.s1, self.s2, self.a, how)
    }
}

#[derive(Clone, Copy, Debug)]
struct Action {
    kind: Kind,
    /// The body's message id (card commands) or the request's (arbiter).
    body: u32,
    /// The s1 or s2 the action names, for the report.
    target: u32,
    lose: bool,
    /// The adversary's doing: a forgery, or a verdict given on one relayed to a card (no
    /// bound; see `Counters`).
    forged: bool,
}

/// What a card did with a command.
#[derive(Clone, Debug)]
struct CardStep {
    next: u32,
    sw: u16,
    data: u32,
    ended: Vec<End>,
}

#[derive(Clone, Copy, Debug)]
struct ArbiterStep {
    next: u32,
    /// The verdict's message id (a `VerdictBody`), or `NONE` if the arbiter refused.
    verdict: u32,
}

struct Interner<T> {
    items: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The item's id, and whether it is new.
    fn intern(&mut self, item: T) -> (u32, bool) {
        if let Some(&id) = self.index.get(&item) {
            return (id, false);
        }
        let id = u32::try_from(self.items.len()).expect("fewer than 2^32 items");
        self.items.push(item.clone());
        self.index.insert(item, id);
        (id, true)
    }

    fn id(&mut self, item: T) -> u32 {
        self.intern(item).0
    }

    fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// A command of ours in the extended form, with Le = 65536: every answer comes at once.
fn command(ins: u8, data: &[u8]) -> Vec<u8> {
    apdu_spec::apdu::encode(CLA_PROPRIETARY, ins, 0, 0, data, 65536, true)
}

fn transmit(card: &mut Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = Response::from_bytes(&card.transmit(apdu)).expect("a status word");
    (r.data, r.sw)
}

#[track_caller]
fn ok(card: &mut Card, apdu: &[u8]) -> Vec<u8> {
    let (data, sw) = transmit(card, apdu);
    assert_eq!(sw, 0x9000, "{}", hex::encode_upper(apdu));
    data
}

fn verify_pin(card: &mut Card) {
    ok(
        card,
        &apdu_spec::apdu::encode(
            CLA_ISO,
            ins::VERIFY,
            0,
            apdu_spec::PIN_REFERENCE,
            PIN,
            0,
            false,
        ),
    );
}

/// A card made by [`maker_key`] for [`root_key`], personalised with the root's anchors over
/// [`issuer`] and [`arbiter_key`] and [`PIN`], holding `value` loaded from the issuer: its
/// state file.
fn personalised(seed: u64, value: &Value) -> Vec<u8> {
    let options = Options {
        test_mode: true,
        rng_seed: Some(seed),
    };
    let mut card = Card::new(Box::new(MemoryStorage::default()), options).expect("a card");
    // Manufacture, here through TEST RESET's record (the card is in test mode).
    let attestation = SigningKey::from_slice(&[seed as u8 + 0x60; 32]).expect("a P-256 scalar");
    let made = Manufacture::make(&maker_key(), root_key().verifying_key(), &attestation);
    ok(&mut card, &command(ins::TEST_RESET, &made.encode()));
    let public = ok(&mut card, &command(ins::GENERATE_KEY, &[]))[2..].to_vec();
    let key = cert::decode_public_key(&public).expect("a P-256 key");
    let id = apdu_spec::card_id(&public);
    let body = Personalization {
        issuer: Anchor::issue(&root_key(), AnchorRole::Issuer, issuer().verifying_key()),
        arbiter: Anchor::issue(
            &root_key(),
            AnchorRole::Arbiter,
            arbiter_key().verifying_key(),
        ),
        certificate: Certificate::issue(&issuer(), &key, made.certificate.maker, 0, u64::MAX)
            .encode(),
        pin: PIN.to_vec(),
    }
    .encode();
    ok(&mut card, &command(ins::PERSONALIZE, &body));
    verify_pin(&mut card);
    if let Some(value) = value {
        let answer = ok(&mut card, &command(ins::LOAD_REQUEST, &value.encode()));
        let request = SignedMessage::decode(&answer, units_tag::SIGNED_LOAD).expect("a request");
        let ticket_signature = match value {
            UnitValue::Ticket { code, serial } => {
                Some(units::sign_ticket(&issuer(), code, serial, &id))
            }
            UnitValue::Asset { .. } => None,
        };
        // The issuer's block list travels with the load: it lists no card.
        let block_list = BlockList::sign(&issuer(), 1, &[]);
        let body = LoadApply {
            authorisation: units::sign(
                &issuer(),
                units::domains::LOAD_AUTH,
                &units::authorised(&request.message, block_list.version),
            ),
            ticket_signature,
            block_list,
        }
        .encode();
        ok(&mut card, &command(ins::LOAD_APPLY, &body));
    }
    encode(card.applet().persistent()).expect("a state encodes")
}

fn seed(bytes: &[u8], kind: Kind, index: u8) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    kind.hash(&mut h);
    index.hash(&mut h);
    h.finish()
}

/// What a card holds, escrow included: assets (zero amounts left out) and tickets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Holdings {
    assets: BTreeMap<String, u64>,
    tickets: BTreeSet<(String, Vec<u8>)>,
}

impl Holdings {
    fn of_value(value: &Value) -> Holdings {
        let mut h = Holdings::default();
        match value {
            Some(UnitValue::Asset { code, amount }) => {
                h.assets.insert(code.clone(), *amount);
            }
            Some(UnitValue::Ticket { code, serial }) => {
                h.tickets.insert((code.clone(), serial.clone()));
            }
            None => {}
        }
        h
    }

    fn of_card(p: &Persistent) -> Holdings {
        let mut h = Holdings::default();
        for a in &p.values.assets {
            let n = a.available + a.escrowed;
            if n > 0 {
                *h.assets.entry(a.code.clone()).or_default() += n;
            }
        }
        for t in &p.values.tickets {
            h.tickets.insert((t.asset.clone(), t.serial.clone()));
        }
        h
    }
}

/// A card's sessions, as LIST SESSIONS shows them, with their ids.
#[derive(Clone, Debug)]
struct Listed {
    sessions: Vec<SessionInfo>,
    /// s1 of every initiator session (ABORT's targets).
    initiator_s1: Vec<u32>,
    /// s2 of every session that has one (RESOLVE's or CANCEL's targets).
    s2: Vec<u32>,
}

/// One of the adversary's forgeries: the action that delivers it, its message, its name.
type Forgery = (Kind, u32, &'static str);

/// What the settle procedure ends with: the cards, the arbiter and the endings.
type Settled = ([u32; 2], u32, u32);

/// The explorer of one configuration.
struct Model {
    name: &'static str,
    v1: Value,
    v2: Value,
    /// The terminal holds card C and forges with its key.
    adversary: bool,
    /// The arbiter runs with its party check switched off (the planted flaw).
    flawed: bool,
    /// B's key, for the one forgery that B's own holder makes (`forgeries`).
    responder_key: SigningKey,
    /// What the issuer gave, over both cards.
    issued: Holdings,
    /// Every message: bodies, answers, requests, verdicts.
    msgs: Interner<Vec<u8>>,
    /// 32-byte identifiers: s1 and s2.
    ids: Interner<[u8; 32]>,
    /// Card state files, and their decoded form.
    cards: Interner<Vec<u8>>,
    persistent: Vec<Persistent>,
    listed: HashMap<u32, Listed>,
    card_memo: HashMap<(usize, u32, Kind, u32, u8), CardStep>,
    /// The arbiter's records: sorted verdict message ids; and for each such state the
    /// requests that created it, to replay into a fresh arbiter.
    arbiters: Interner<Vec<u32>>,
    creators: Vec<Vec<(Kind, u32)>>,
    arbiter_memo: HashMap<(u32, Kind, u32), ArbiterStep>,
    /// A verdict message's a id, s2 id and outcome.
    verdicts: HashMap<u32, (u32, u32, Outcome)>,
    /// Requests that A or B made and the arbiter refused (there must be none).
    honest_refusals: u64,
    /// The adversary's forgeries, from the terminal's latest START and AGREE answers: the
    /// forged action, its message, and which forgery it is.
    forgeries: HashMap<(u32, u32), Vec<Forgery>>,
    /// Each forgery (by name): how often the real code refused it and took it.
    forged: BTreeMap<&'static str, [u64; 2]>,
    /// A forgery's name by its message.
    forgery_names: HashMap<u32, &'static str>,
    /// Verdicts the arbiter gave on the adversary's requests, and how often a card refused
    /// to apply one.
    forgery_verdicts: HashSet<u32>,
    made_up_verdicts_refused: u64,
    endings: Interner<Vec<End>>,
    bodies: HashMap<(Kind, u32, u32), u32>,
    /// s1 of a START answer, s2 of an AGREE answer (message id to identifier id).
    answer_ids: HashMap<u32, u32>,
    checked: HashSet<([u32; 2], u32, u32)>,
    settled: HashMap<(Settled, [usize; 2]), Result<Settled, String>>,
    outcomes: BTreeMap<&'static str, u64>,
    /// The corners of the protocol some world was in (`corners`).
    reached: BTreeSet<&'static str>,
    sems: Interner<Sem>,
    /// Each `Sem`'s actions, once a world of it has been reached.
    edges: Vec<Option<Vec<Edge>>>,
    /// What the real code did wrong in the step being made (a refusal that wrote, a
    /// state that fails the state file's checks, ...).
    faults: Vec<String>,
}

impl Model {
    fn new(name: &'static str, v1: Value, v2: Value, adversary: bool, flawed: bool) -> Model {
        let mut issued = Holdings::of_value(&v1);
        let other = Holdings::of_value(&v2);
        for (code, n) in other.assets {
            *issued.assets.entry(code).or_default() += n;
        }
        issued.tickets.extend(other.tickets);
        let mut m = Model {
            name,
            v1,
            v2,
            adversary,
            flawed,
            responder_key: card_c_key(),
            issued,
            msgs: Interner::new(),
            ids: Interner::new(),
            cards: Interner::new(),
            persistent: Vec::new(),
            listed: HashMap::new(),
            card_memo: HashMap::new(),
            arbiters: Interner::new(),
            creators: Vec::new(),
            arbiter_memo: HashMap::new(),
            verdicts: HashMap::new(),
            honest_refusals: 0,
            forgeries: HashMap::new(),
            forged: BTreeMap::new(),
            forgery_names: HashMap::new(),
            forgery_verdicts: HashSet::new(),
            made_up_verdicts_refused: 0,
            endings: Interner::new(),
            bodies: HashMap::new(),
            answer_ids: HashMap::new(),
            checked: HashSet::new(),
            settled: HashMap::new(),
            outcomes: BTreeMap::new(),
            reached: BTreeSet::new(),
            sems: Interner::new(),
            edges: Vec::new(),
            faults: Vec::new(),
        };
        m.arbiters.id(Vec::new());
        m.creators.push(Vec::new());
        m.endings.id(Vec::new());
        m
    }

    /// The initial world's `Sem` (counters all zero): A holds V1, B holds V2.
    fn initial(&mut self) -> u32 {
        let a = personalised(1, &self.v1.clone());
        let b = personalised(2, &self.v2.clone());
        let secret = decode(&b)
            .ok()
            .and_then(|p| p.key)
            .map(|k| k.secret)
            .expect("B has its key");
        self.responder_key = SigningKey::from_slice(&secret).expect("a P-256 scalar");
        let sem = Sem {
            cards: [self.card_id(a), self.card_id(b)],
            arbiter: 0,
            endings: 0,
            know: [NONE; 6],
        };
        assert!(self.faults.is_empty(), "{:?}", self.faults);
        self.edges.push(None);
        self.sems.id(sem)
    }

    fn card_id(&mut self, bytes: Vec<u8>) -> u32 {
        let (id, new) = self.cards.intern(bytes);
        if new {
            let p = decode(self.cards.get(id)).unwrap_or_else(|e| {
                self.faults.push(format!(
                    "a state a card committed fails the state file's checks: {e}"
                ));
                Persistent::blank()
            });
            self.persistent.push(p);
        }
        id
    }

    fn msg(&mut self, bytes: Vec<u8>) -> u32 {
        self.msgs.id(bytes)
    }

    // ---- the real card -------------------------------------------------------------------

    /// Runs one command on a card rebuilt from its state file (as after a power cut), with
    /// the PIN verified first for START and AGREE.
    fn card_step(&mut self, card: usize, state: u32, kind: Kind, body: u32, index: u8) -> CardStep {
        let key = (card, state, kind, body, index);
        if let Some(step) = self.card_memo.get(&key) {
            return step.clone();
        }
        let before = self.cards.get(state).clone();
        let options = Options {
            test_mode: true,
            rng_seed: Some(seed(&before, kind, index)),
        };
        let mut c = Card::new(Box::new(MemoryStorage::with_state(before.clone())), options)
            .expect("the state file loads");
        if matches!(kind, Kind::Start | Kind::Agree) {
            verify_pin(&mut c);
        }
        let data = if body == NONE {
            Vec::new()
        } else {
            self.msgs.get(body).clone()
        };
        let (answer, sw) = transmit(&mut c, &command(kind.ins(), &data));
        let after = encode(c.applet().persistent()).expect("a state encodes");
        let who = CARD_NAMES[card];
        if sw != 0x9000 {
            if !answer.is_empty() {
                self.faults
                    .push(format!("{who}: {} refused {sw:04X} with data", kind.name()));
            }
            let commit = matches!(kind, Kind::Commit | Kind::ForgedCommit);
            if after != before && !commit {
                self.faults
                    .push(format!("{who}: {} refused {sw:04X} and wrote", kind.name()));
            }
            if after != before && commit {
                // The one refusal that writes: COMMIT with a confirmation that does not
                // verify makes its session PENDING, and changes nothing else.
                let mut expected = self.persistent[state as usize].clone();
                let s2 = ConfirmAnswer::decode(&data).expect("a COMMIT body").s2;
                for s in &mut expected.sessions {
                    if let Session::Responder(r) = s
                        && r.s2 == s2
                    {
                        r.pending = true;
                    }
                }
                if encode(&expected).expect("a state encodes") != after {
                    self.faults
                        .push(format!("{who}: a refused COMMIT changed more than PENDING"));
                }
            }
        }
        if matches!(kind, Kind::Resolve | Kind::List) && after != before {
            self.faults.push(format!("{who}: {} wrote", kind.name()));
        }
        let next = self.card_id(after);
        let ended = self.ended(card, state, next, kind, &data);
        let data = if answer.is_empty() {
            NONE
        } else {
            self.msg(answer)
        };
        let step = CardStep {
            next,
            sw,
            data,
            ended,
        };
        self.card_memo.insert(key, step.clone());
        step
    }

    /// The sessions open on `before` and not on `after`, and how they ended (from the
    /// command that ended them).
    fn ended(&mut self, card: usize, before: u32, after: u32, kind: Kind, body: &[u8]) -> Vec<End> {
        let gone: Vec<Session> = {
            let (old, new) = (
                &self.persistent[before as usize],
                &self.persistent[after as usize],
            );
            let same = |x: &Session, y: &Session| match (x, y) {
                (Session::Initiator(x), Session::Initiator(y)) => x.s1 == y.s1,
                (Session::Responder(x), Session::Responder(y)) => x.s2 == y.s2,
                _ => false,
            };
            old.sessions
                .iter()
                .filter(|s| !new.sessions.iter().any(|t| same(s, t)))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for s in gone {
            let how = match kind {
                Kind::Commit | Kind::Finish => How::Exchanged,
                Kind::Abort => How::Aborted,
                Kind::ApplyA | Kind::ApplyB => {
                    How::Verdict(VerdictBody::decode(body).expect("a verdict").outcome)
                }
                _ => {
                    self.faults.push(format!(
                        "{}: {} ended a session",
                        CARD_NAMES[card],
                        kind.name()
                    ));
                    How::Aborted
                }
            };
            let s1 = self.ids.id(*s.s1());
            let (s2, a) = match s.agreement() {
                Some((s2, a)) => (self.ids.id(*s2), self.ids.id(*a)),
                None => (NONE, NONE),
            };
            out.push(End {
                card,
                s1,
                s2,
                a,
                how,
            });
        }
        out
    }

    /// LIST SESSIONS on a card state.
    fn listed(&mut self, card: usize, state: u32) -> Listed {
        if let Some(l) = self.listed.get(&state) {
            return l.clone();
        }
        let step = self.card_step(card, state, Kind::List, NONE, 0);
        assert_eq!(step.sw, 0x9000, "LIST SESSIONS");
        let sessions = decode_sessions(self.msgs.get(step.data)).expect("an EF answer");
        let mut l = Listed {
            sessions: sessions.clone(),
            initiator_s1: Vec::new(),
            s2: Vec::new(),
        };
        for s in &sessions {
            if s.role == Role::Initiator {
                l.initiator_s1.push(self.ids.id(s.s1));
            }
            if let Some(s2) = s.s2 {
                l.s2.push(self.ids.id(s2));
            }
        }
        self.listed.insert(state, l.clone());
        l
    }

    // ---- the real arbiter ----------------------------------------------------------------

    fn fresh_arbiter(&self) -> Arbiter {
        let db = arbiter::open_database(":memory:").expect("an arbiter database");
        let court = Arbiter::new(
            db,
            Arc::new(ManualClock::new(1_750_000_000)),
            ArbiterConfig {
                issuer_public_key: *issuer().verifying_key(),
            },
            arbiter_key(),
        )
        .expect("an arbiter");
        if self.flawed {
            court.plant_flaw_skip_party_check();
        }
        court
    }

    fn request(&self, arbiter: &Arbiter, kind: Kind, req: u32) -> Result<Verdict, String> {
        let bytes = self.msgs.get(req);
        // A forged request has the form of a card's answer, signed with C's key.
        let answer = match kind {
            Kind::ArbiterCancel | Kind::ForgedCancel => {
                let c = CancelAnswer::decode(bytes).expect("a CANCEL answer");
                arbiter.cancel(&ArbiterCancelRequest::from(&c))
            }
            Kind::ArbiterResolve | Kind::ForgedResolve => {
                let r = ResolveAnswer::decode(bytes).expect("a RESOLVE answer");
                arbiter.resolve(&ArbiterResolveRequest::from(&r))
            }
            _ => unreachable!("not a request"),
        };
        answer.map_err(|e| format!("{e:?}"))
    }

    /// The verdict the arbiter state `arbiter` holds for the session (a, s2).
    fn record(&self, arbiter: u32, a: u32, s2: u32) -> Option<u32> {
        self.arbiters
            .get(arbiter)
            .iter()
            .copied()
            .find(|v| self.verdicts[v].0 == a && self.verdicts[v].1 == s2)
    }

    /// The outcome recorded for the session (a, s2), if any.
    fn outcome(&self, arbiter: u32, a: u32, s2: u32) -> Option<Outcome> {
        self.record(arbiter, a, s2).map(|v| self.verdicts[&v].2)
    }

    /// Counts what the real arbiter or card did with a forgery: refused or took it.
    fn note_forgery(&mut self, body: u32, taken: bool) {
        if let Some(name) = self.forgery_names.get(&body) {
            self.forged.entry(name).or_default()[usize::from(taken)] += 1;
        }
    }

    /// Sends a request to an arbiter in state `arbiter`: a fresh arbiter, the requests that
    /// made that state replayed into it, then this one.
    fn arbiter_step(&mut self, arbiter: u32, kind: Kind, req: u32) -> ArbiterStep {
        let key = (arbiter, kind, req);
        if let Some(step) = self.arbiter_memo.get(&key) {
            return *step;
        }
        let court = self.fresh_arbiter();
        for (k, r) in self.creators[arbiter as usize].clone() {
            let v = self.request(&court, k, r).expect("a replayed request");
            assert!(!v.replayed, "a replayed request found a verdict");
        }
        let answer = self.request(&court, kind, req);
        if kind.forged() {
            self.note_forgery(req, answer.is_ok());
        } else if answer.is_err() {
            self.honest_refusals += 1;
        }
        let step = match answer {
            Err(_) => ArbiterStep {
                next: arbiter,
                verdict: NONE,
            },
            Ok(v) => {
                assert!(
                    exchange::verify_verdict(
                        arbiter_key().verifying_key(),
                        &v.s2,
                        &v.a,
                        v.outcome,
                        &v.signature
                    ),
                    "the verdict's signature"
                );
                let body = VerdictBody::from(&v).encode();
                let verdict = self.msg(body);
                let (a, s2) = (self.ids.id(v.a), self.ids.id(v.s2));
                self.verdicts.insert(verdict, (a, s2, v.outcome));
                if kind.forged() {
                    self.forgery_verdicts.insert(verdict);
                }
                let existing = self.record(arbiter, a, s2);
                let next = if v.replayed {
                    assert_eq!(existing, Some(verdict), "a replayed verdict is the record");
                    arbiter
                } else {
                    assert_eq!(existing, None, "a second verdict for one (a, s2)");
                    let mut records = self.arbiters.get(arbiter).clone();
                    records.push(verdict);
                    records.sort_unstable();
                    let (next, new) = self.arbiters.intern(records);
                    if new {
                        let mut creators = self.creators[arbiter as usize].clone();
                        creators.push((kind, req));
                        self.creators.push(creators);
                    }
                    next
                };
                let rows = court
                    .database()
                    .dump()
                    .expect("a dump")
                    .get("verdicts")
                    .map_or(0, Vec::len);
                assert_eq!(rows, self.arbiters.get(next).len(), "verdict rows");
                ArbiterStep { next, verdict }
            }
        };
        self.arbiter_memo.insert(key, step);
        step
    }

    // ---- the terminal ----------------------------------------------------------------------

    fn body(&mut self, kind: Kind, x: u32, y: u32) -> u32 {
        if let Some(b) = self.bodies.get(&(kind, x, y)) {
            return *b;
        }
        let bytes = match kind {
            Kind::Start => StartBody {
                v1: self.v1.clone(),
                wanted_v2: self.v2.clone(),
            }
            .encode(),
            Kind::Agree => StartAnswer::decode(self.msgs.get(x))
                .expect("a START answer")
                .agree_body(self.v2.clone(), self.v1.clone())
                .encode(),
            Kind::Confirm => {
                let s1 = StartAnswer::decode(self.msgs.get(x))
                    .expect("a START answer")
                    .s1;
                AgreeAnswer::decode(self.msgs.get(y))
                    .expect("an AGREE answer")
                    .confirm_body(s1)
                    .encode()
            }
            Kind::Finish => {
                let s2 = ConfirmAnswer::decode(self.msgs.get(x))
                    .expect("a COMMIT body")
                    .s2;
                CommitAnswer::decode(self.msgs.get(y))
                    .expect("a COMMIT answer")
                    .finish_body(s2)
                    .encode()
            }
            Kind::Abort => AbortBody {
                s1: *self.ids.get(x),
            }
            .encode(),
            Kind::Cancel => CancelBody {
                s2: *self.ids.get(x),
            }
            .encode(),
            Kind::Resolve => ResolveBody {
                s2: *self.ids.get(x),
            }
            .encode(),
            _ => unreachable!("no body to make"),
        };
        let id = self.msg(bytes);
        self.bodies.insert((kind, x, y), id);
        id
    }

    /// What the adversary forges with C's key from a START answer and an AGREE answer (see
    /// the module's table), each with its name.
    fn forgeries(&mut self, start: u32, agree: u32) -> Vec<Forgery> {
        if let Some(f) = self.forgeries.get(&(start, agree)) {
            return f.clone();
        }
        let started = StartAnswer::decode(self.msgs.get(start)).expect("a START answer");
        let agreed = AgreeAnswer::decode(self.msgs.get(agree)).expect("an AGREE answer");
        let (a, s2) = (agreed.a, agreed.s2);
        // Everything the terminal saw: the value commitment of the offer it relayed.
        let c = exchange::values_commitment(&started.s1, &started.v1, &agreed.v2);
        let card_a = started.initiator_certificate.clone();
        let card_b = agreed.responder_certificate.clone();
        let (key_c, card_c) = (card_c_key(), card_c_certificate());
        let cancel =
            |key: &SigningKey, a: [u8; 32], c: [u8; 32], responder: &Certificate| CancelAnswer {
                a,
                s2,
                c,
                sab: exchange::sign(key, domains::CANCEL, &a, &s2),
                sa: exchange::sign(key, domains::AGREE, &a, &s2),
                initiator_certificate: card_a.clone(),
                responder_certificate: responder.clone(),
            };
        let made_up = |what: &[u8], responder: &Certificate| {
            let c: [u8; 32] = sha2::Sha256::digest([what, &s2].concat()).into();
            (
                exchange::agreement_of(&c, &card_a.card_id, &responder.card_id),
                c,
            )
        };
        // A second agreement under B's own s2, signed with B's key: what B's holder can do
        // when B is the adversary's own card (its key out of its chip). (A made-up agreement
        // under B's s2 in which the third card C is the responder is the same to the
        // arbiter, another session; `backend/tests/arbiter.rs` checks it, and the model
        // leaves it out, as it would double the arbiter's states for nothing more.)
        let (second_a, second_c) = made_up(b"made up by B", &card_b);
        let key_b = self.responder_key.clone();
        let forged = [
            (
                Kind::ForgedCancel,
                cancel(&key_b, second_a, second_c, &card_b).encode(),
                "cancel: B's own key, a second agreement under its s2",
            ),
            (
                Kind::ForgedCancel,
                cancel(&key_c, a, c, &card_c).encode(),
                "cancel: C signs as the responder of A and B's session",
            ),
            (
                Kind::ForgedCancel,
                cancel(&key_c, a, c, &card_b).encode(),
                "cancel: C signs under B's certificate",
            ),
            (
                Kind::ForgedResolve,
                ResolveAnswer {
                    a,
                    s2,
                    c,
                    sr: exchange::sign(&key_c, domains::RESOLVE, &a, &s2),
                    sa: agreed.sa,
                    initiator_certificate: card_c.clone(),
                    responder_certificate: card_b,
                }
                .encode(),
                "resolve: C signs as the initiator, with B's real agreement",
            ),
            (
                Kind::ForgedCommit,
                ConfirmAnswer {
                    s2,
                    se: exchange::sign(&key_c, domains::CONFIRM, &a, &s2),
                }
                .encode(),
                "commit: B gets a confirmation signed by C",
            ),
        ];
        let mut out = Vec::new();
        for (kind, bytes, name) in forged {
            let id = self.msg(bytes);
            self.forgery_names.insert(id, name);
            out.push((kind, id, name));
        }
        self.forgeries.insert((start, agree), out.clone());
        out
    }

    /// s1 of a START answer, or s2 of an AGREE answer.
    fn answer_id(&mut self, kind: Kind, msg: u32) -> u32 {
        if let Some(id) = self.answer_ids.get(&msg) {
            return *id;
        }
        let bytes = self.msgs.get(msg);
        let raw = match kind {
            Kind::Start => StartAnswer::decode(bytes).expect("a START answer").s1,
            Kind::Agree => AgreeAnswer::decode(bytes).expect("an AGREE answer").s2,
            _ => unreachable!("no identifier"),
        };
        let id = self.ids.id(raw);
        self.answer_ids.insert(msg, id);
        id
    }

    /// Every action the terminal can take from `sem` (whatever the counters allow).
    fn candidates(&mut self, sem: &Sem) -> Vec<Action> {
        let mut out = Vec::new();
        // Verdicts given on a forgery, as they stand when this world is expanded (a verdict is
        // given once, in a world before this one).
        let forged_verdicts = self.forgery_verdicts.clone();
        let mut add = |kind: Kind, body: u32, target: u32| {
            let forged = kind.forged()
                || (matches!(kind, Kind::ApplyA | Kind::ApplyB) && forged_verdicts.contains(&body));
            out.push(Action {
                kind,
                body,
                target,
                lose: false,
                forged,
            });
            if kind.answer_matters() {
                out.push(Action {
                    kind,
                    body,
                    target,
                    lose: true,
                    forged,
                });
            }
        };
        let k = sem.know;
        let start = self.body(Kind::Start, 0, 0);
        add(Kind::Start, start, NONE);
        if k[K_START] != NONE {
            let agree = self.body(Kind::Agree, k[K_START], 0);
            add(Kind::Agree, agree, NONE);
        }
        if k[K_START] != NONE && k[K_AGREE] != NONE {
            let confirm = self.body(Kind::Confirm, k[K_START], k[K_AGREE]);
            add(Kind::Confirm, confirm, NONE);
        }
        if k[K_CONFIRM] != NONE {
            add(Kind::Commit, k[K_CONFIRM], NONE);
        }
        if k[K_FINISH] != NONE {
            add(Kind::Finish, k[K_FINISH], NONE);
        }
        let on_a = self.listed(A, sem.cards[A]);
        let on_b = self.listed(B, sem.cards[B]);
        let known_s1 = (k[K_START] != NONE).then(|| self.answer_id(Kind::Start, k[K_START]));
        let known_s2 = (k[K_AGREE] != NONE).then(|| self.answer_id(Kind::Agree, k[K_AGREE]));
        for s1 in union(known_s1, &on_a.initiator_s1) {
            let body = self.body(Kind::Abort, s1, 0);
            add(Kind::Abort, body, s1);
        }
        for s2 in union(known_s2, &on_b.s2) {
            let body = self.body(Kind::Cancel, s2, 0);
            add(Kind::Cancel, body, s2);
        }
        for s2 in union(known_s2, &on_a.s2) {
            let body = self.body(Kind::Resolve, s2, 0);
            add(Kind::Resolve, body, s2);
        }
        if k[K_CANCEL] != NONE {
            add(Kind::ArbiterCancel, k[K_CANCEL], NONE);
        }
        if k[K_RESOLVE] != NONE {
            add(Kind::ArbiterResolve, k[K_RESOLVE], NONE);
        }
        // Every verdict the arbiter recorded, whoever asked for it, goes to both cards.
        for &v in self.arbiters.get(sem.arbiter) {
            let s2 = self.verdicts[&v].1;
            add(Kind::ApplyA, v, s2);
            add(Kind::ApplyB, v, s2);
        }
        if self.adversary && k[K_START] != NONE && k[K_AGREE] != NONE {
            let s2 = known_s2.unwrap_or(NONE);
            for (kind, body, _) in self.forgeries(k[K_START], k[K_AGREE]) {
                add(kind, body, s2);
            }
        }
        out
    }

    fn add_endings(&mut self, endings: u32, ended: &[End]) -> u32 {
        if ended.is_empty() {
            return endings;
        }
        let mut all = self.endings.get(endings).clone();
        all.extend_from_slice(ended);
        all.sort_unstable_by_key(End::key);
        self.endings.id(all)
    }

    /// The world after `act`, and what came back (for the report).
    /// The `Sem` after `act`, delivered as the `index`th of its kind (0 or 1: it seeds START's
    /// and AGREE's randomness), and what came back (for the report).
    fn apply(&mut self, sem: &Sem, act: Action, index: u8) -> (Sem, String) {
        let mut n = *sem;
        let Some(card) = act.kind.card() else {
            let step = self.arbiter_step(sem.arbiter, act.kind, act.body);
            n.arbiter = step.next;
            let what = if step.verdict == NONE {
                "refused".to_string()
            } else {
                format!("verdict {}", self.verdicts[&step.verdict].2.name())
            };
            return (n, what);
        };
        let step = self.card_step(card, sem.cards[card], act.kind, act.body, index);
        if act.kind.forged() {
            self.note_forgery(act.body, step.sw == 0x9000);
        }
        if matches!(act.kind, Kind::ApplyA | Kind::ApplyB)
            && step.sw != 0x9000
            && self.forgery_verdicts.contains(&act.body)
        {
            self.made_up_verdicts_refused += 1;
        }
        n.cards[card] = step.next;
        n.endings = self.add_endings(sem.endings, &step.ended);
        if step.sw == 0x9000 && !act.lose {
            match act.kind {
                Kind::Start => n.know[K_START] = step.data,
                Kind::Agree => n.know[K_AGREE] = step.data,
                Kind::Confirm => n.know[K_CONFIRM] = step.data,
                Kind::Commit => n.know[K_FINISH] = self.body(Kind::Finish, act.body, step.data),
                Kind::Cancel => n.know[K_CANCEL] = step.data,
                Kind::Resolve => n.know[K_RESOLVE] = step.data,
                _ => {}
            }
        }
        let what = match (step.sw, act.lose) {
            (0x9000, false) => "9000".to_string(),
            (0x9000, true) => "9000, answer lost".to_string(),
            (sw, false) => format!("{sw:04X}"),
            (sw, true) => format!("{sw:04X}, answer lost"),
        };
        (n, what)
    }

    /// Checks the invariants in a `Sem` that a world has reached, and computes its edges:
    /// every candidate action, carried out by the real code. The error says what failed:
    /// an invariant in this world, or the card or arbiter code in one of its actions.
    fn expand(&mut self, sem: u32) -> Result<(), String> {
        if self.edges[sem as usize].is_some() {
            return Ok(());
        }
        let from = *self.sems.get(sem);
        self.check(from.cards, from.arbiter, from.endings)
            .map_err(|e| format!("an invariant fails in the world it reaches:\n  {e}"))?;
        let mut edges = Vec::new();
        for act in self.candidates(&from) {
            let indices: Vec<Option<u8>> = if matches!(act.kind, Kind::Start | Kind::Agree) {
                (0..MAX_DELIVERIES).map(Some).collect()
            } else {
                vec![None]
            };
            for index in indices {
                let (to, what) = self.apply(&from, act, index.unwrap_or(0));
                let step = format!("{} -> {what}", self.describe(&act));
                if !self.faults.is_empty() {
                    return Err(format!(
                        "then {step}: the real code misbehaves: {}",
                        self.faults.join("; ")
                    ));
                }
                if act.forged && to == from {
                    // The real code refused the forgery and changed nothing: the schedule
                    // with it is the schedule without it (see `Counters`).
                    continue;
                }
                let (next, new) = self.sems.intern(to);
                if new {
                    self.edges.push(None);
                }
                edges.push(Edge {
                    act,
                    index,
                    next,
                    what,
                });
            }
        }
        self.edges[sem as usize] = Some(edges);
        Ok(())
    }

    /// The enumeration, one layer of worlds (all the worlds reached by as many deliveries)
    /// at a time, counting the paths that reach each world: a world without an enabled
    /// action ends that many schedules.
    fn enumerate(&mut self, initial: u32) -> Counts {
        let mut counts = Counts::default();
        let mut layer = Layer::default();
        layer.insert(world(initial, 0), 1);
        let mut depth = 0;
        while !layer.is_empty() {
            counts.worlds += layer.len() as u64;
            counts.widest = counts.widest.max(layer.len());
            counts.longest = depth;
            let sems: BTreeSet<u32> = layer.keys().map(|w| split(*w).0).collect();
            for sem in sems {
                if let Err(e) = self.expand(sem) {
                    let (&at, _) = layer
                        .iter()
                        .find(|(w, _)| split(**w).0 == sem)
                        .expect("a world of this Sem");
                    panic!(
                        "{}: the schedule\n{}\n{e}",
                        self.name,
                        self.schedule_to(at, initial, depth),
                    );
                }
            }
            let mut next = Layer::default();
            for (&w, &paths) in &layer {
                let (sem, c) = split(w);
                let mut ends = true;
                for e in self.edges[sem as usize].as_ref().expect("expanded") {
                    if e.enabled(c) {
                        ends = false;
                        counts.transitions += 1;
                        let to = next.entry(world(e.next, e.counters(c))).or_default();
                        *to = to.checked_add(paths).expect("fewer than 2^128 paths");
                    }
                }
                if ends {
                    counts.schedules = counts
                        .schedules
                        .checked_add(paths)
                        .expect("fewer than 2^128 schedules");
                }
            }
            layer = next;
            depth += 1;
        }
        counts
    }

    /// A schedule from the initial world to the world `target`, `depth` deliveries deep:
    /// every world less deep has its edges.
    fn schedule_to(&self, target: u64, initial: u32, depth: usize) -> String {
        fn search(
            m: &Model,
            w: u64,
            left: usize,
            target: u64,
            seen: &mut HashSet<u64>,
            path: &mut Vec<String>,
        ) -> bool {
            if w == target {
                return true;
            }
            if left == 0 || !seen.insert(w) {
                return false;
            }
            let (sem, c) = split(w);
            for e in m.edges[sem as usize].as_ref().expect("expanded") {
                if e.enabled(c) {
                    path.push(format!("{} -> {}", m.describe(&e.act), e.what));
                    if search(
                        m,
                        world(e.next, e.counters(c)),
                        left - 1,
                        target,
                        seen,
                        path,
                    ) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        let mut path = Vec::new();
        let found = search(
            self,
            world(initial, 0),
            depth,
            target,
            &mut HashSet::new(),
            &mut path,
        );
        assert!(found, "the failing world is reachable");
        if path.is_empty() {
            return "  (none: from the initial world)".into();
        }
        path.iter()
            .enumerate()
            .map(|(i, step)| format!("  {:2}. {step}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }

    // ---- the invariants --------------------------------------------------------------------

    /// Invariant 1 in one world.
    fn conservation(&mut self, cards: [u32; 2], arbiter: u32, endings: u32) -> Result<(), String> {
        let mut live: BTreeMap<String, u64> = BTreeMap::new();
        let mut holders: BTreeMap<(String, Vec<u8>), u64> = BTreeMap::new();
        for (x, &state) in cards.iter().enumerate() {
            let p = self.persistent[state as usize].clone();
            for a in &p.values.assets {
                *live.entry(a.code.clone()).or_default() += a.available;
            }
            for t in p.values.tickets.iter().filter(|t| !t.escrowed) {
                *holders
                    .entry((t.asset.clone(), t.serial.clone()))
                    .or_default() += 1;
            }
            for s in &p.sessions {
                let dead =
                    match s.agreement() {
                        None => false,
                        Some((s2, a)) => {
                            let (s2, a) = (self.ids.id(*s2), self.ids.id(*a));
                            self.outcome(arbiter, a, s2) == Some(Outcome::Complete)
                                || self.endings.get(endings).iter().any(|e| {
                                    e.card != x && e.s2 == s2 && e.a == a && e.how.receives()
                                })
                        }
                    };
                if dead {
                    continue;
                }
                match s.outgoing() {
                    Some(UnitValue::Asset { code, amount }) => {
                        *live.entry(code.clone()).or_default() += amount
                    }
                    Some(UnitValue::Ticket { code, serial }) => {
                        *holders.entry((code.clone(), serial.clone())).or_default() += 1
                    }
                    None => {}
                }
            }
        }
        for (code, n) in &live {
            let issued = self.issued.assets.get(code).copied().unwrap_or(0);
            if *n > issued {
                return Err(format!(
                    "conservation: {n} {code} available or in escrow that can still come back, {issued} issued"
                ));
            }
        }
        for (t, n) in &holders {
            if *n > 1 || !self.issued.tickets.contains(t) {
                return Err(format!(
                    "conservation: ticket {t:?} held on {n} cards (issued: {})",
                    self.issued.tickets.contains(t)
                ));
            }
        }
        Ok(())
    }

    /// Invariants 3 and 4 once the settle procedure has run.
    fn resolved(
        &mut self,
        cards: [u32; 2],
        arbiter: u32,
        endings: u32,
    ) -> Result<&'static str, String> {
        let mut held = Vec::new();
        for (x, &state) in cards.iter().enumerate() {
            let p = &self.persistent[state as usize];
            if !p.sessions.is_empty() {
                return Err(format!(
                    "resolution: {} still has {} open sessions",
                    CARD_NAMES[x],
                    p.sessions.len()
                ));
            }
            if p.values.assets.iter().any(|a| a.escrowed > 0)
                || p.values.tickets.iter().any(|t| t.escrowed)
            {
                return Err(format!(
                    "exact totals: {} has value in escrow and no session",
                    CARD_NAMES[x]
                ));
            }
            held.push(Holdings::of_card(p));
        }
        let (h1, h2) = (Holdings::of_value(&self.v1), Holdings::of_value(&self.v2));
        let swapped = if held == [h1.clone(), h2.clone()] {
            false
        } else if held == [h2, h1] {
            true
        } else {
            return Err(format!(
                "exact totals: A holds {:?}, B holds {:?}; issued: A {:?}, B {:?}",
                held[A], held[B], self.v1, self.v2
            ));
        };
        let ends = self.endings.get(endings).clone();
        let mut received: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for e in &ends {
            let record = if e.s2 == NONE {
                None
            } else {
                self.outcome(arbiter, e.a, e.s2)
            };
            match (e.how, record) {
                (How::Aborted, _) if e.s2 == NONE => {}
                (How::Exchanged, None | Some(Outcome::Complete)) if e.s2 != NONE => {}
                (How::Verdict(o), Some(r)) if o == r => {}
                (how, record) => {
                    return Err(format!(
                        "agreement: a session of {} under s2 {} ended {how:?}, the arbiter's record is {record:?}",
                        CARD_NAMES[e.card],
                        self.short(e.s2)
                    ));
                }
            }
            if e.how.receives() {
                received[e.card].push(e.s2);
            }
        }
        let fits = match (&received[A][..], &received[B][..]) {
            ([], []) => !swapped,
            ([x], [y]) => x == y && swapped,
            _ => false,
        };
        if !fits {
            return Err(format!(
                "agreement: A received V2 under {:?}, B received V1 under {:?}, the values {}",
                received[A]
                    .iter()
                    .map(|s| self.short(*s))
                    .collect::<Vec<_>>(),
                received[B]
                    .iter()
                    .map(|s| self.short(*s))
                    .collect::<Vec<_>>(),
                if swapped { "swapped" } else { "not swapped" }
            ));
        }
        Ok(if swapped {
            "exchanged"
        } else {
            "not exchanged"
        })
    }

    /// The settle procedure on the cards in `order`, from the world's cards, arbiter and
    /// endings: the final ones, every step keeping conservation.
    fn settle(
        &mut self,
        cards: [u32; 2],
        arbiter: u32,
        endings: u32,
        order: [usize; 2],
    ) -> Result<Settled, String> {
        let key = ((cards, arbiter, endings), order);
        if let Some(r) = self.settled.get(&key) {
            return r.clone();
        }
        let result = self.settle_now(cards, arbiter, endings, order);
        self.settled.insert(key, result.clone());
        result
    }

    fn settle_now(
        &mut self,
        mut cards: [u32; 2],
        mut arbiter: u32,
        mut endings: u32,
        order: [usize; 2],
    ) -> Result<Settled, String> {
        for x in order {
            let name = CARD_NAMES[x];
            let listed = self.listed(x, cards[x]);
            for s in &listed.sessions {
                let session = {
                    let s1 = self.ids.id(s.s1);
                    let s2 = s.s2.map_or(NONE, |s2| self.ids.id(s2));
                    let a = s.a.map_or(NONE, |a| self.ids.id(a));
                    let record = self.outcome(arbiter, a, s2).map_or("none", Outcome::name);
                    format!(
                        "its {} session s1 {} s2 {} in {} (arbiter's record: {record})",
                        s.role.name(),
                        self.short(s1),
                        self.short(s2),
                        s.state.name()
                    )
                };
                let run = |m: &mut Model, kind: Kind, body: u32, cards: &mut [u32; 2]| {
                    let step = m.card_step(x, cards[x], kind, body, 0);
                    if step.sw != 0x9000 {
                        return Err(format!(
                            "resolution: {} to {name} for {session} answered {:04X}",
                            kind.name(),
                            step.sw
                        ));
                    }
                    cards[x] = step.next;
                    Ok(step)
                };
                if s.role == Role::Initiator && s.state == SessionState::Start {
                    let s1 = self.ids.id(s.s1);
                    let body = self.body(Kind::Abort, s1, 0);
                    let step = run(self, Kind::Abort, body, &mut cards)?;
                    endings = self.add_endings(endings, &step.ended);
                    self.conservation(cards, arbiter, endings)
                        .map_err(|e| format!("{e} (settling: ABORT on {name})"))?;
                    continue;
                }
                let s2 = self.ids.id(s.s2.expect("an agreed session has s2"));
                let a = self.ids.id(s.a.expect("an agreed session has a"));
                let verdict = match self.record(arbiter, a, s2) {
                    Some(v) => v,
                    None => {
                        let (kind, request) = match s.role {
                            Role::Initiator => (Kind::Resolve, Kind::ArbiterResolve),
                            Role::Responder => (Kind::Cancel, Kind::ArbiterCancel),
                        };
                        let body = self.body(kind, s2, 0);
                        let step = run(self, kind, body, &mut cards)?;
                        self.conservation(cards, arbiter, endings)
                            .map_err(|e| format!("{e} (settling: {} on {name})", kind.name()))?;
                        let answer = self.arbiter_step(arbiter, request, step.data);
                        if answer.verdict == NONE {
                            return Err(format!(
                                "resolution: the arbiter refused {name}'s {}",
                                request.name()
                            ));
                        }
                        arbiter = answer.next;
                        self.conservation(cards, arbiter, endings)
                            .map_err(|e| format!("{e} (settling: {} of {name})", request.name()))?;
                        answer.verdict
                    }
                };
                let apply = if x == A { Kind::ApplyA } else { Kind::ApplyB };
                let step = run(self, apply, verdict, &mut cards)?;
                endings = self.add_endings(endings, &step.ended);
                self.conservation(cards, arbiter, endings)
                    .map_err(|e| format!("{e} (settling: APPLY VERDICT on {name})"))?;
            }
        }
        Ok((cards, arbiter, endings))
    }

    /// Every invariant for a world's cards, arbiter and endings (the terminal's knowledge
    /// and the counters do not enter them).
    fn check(&mut self, cards: [u32; 2], arbiter: u32, endings: u32) -> Result<(), String> {
        if !self.checked.insert((cards, arbiter, endings)) {
            return Ok(());
        }
        self.corners(cards, arbiter, endings);
        let mut failures = Vec::new();
        if let Err(e) = self.conservation(cards, arbiter, endings) {
            failures.push(e);
        }
        for order in [[A, B], [B, A]] {
            let first = CARD_NAMES[order[0]];
            match self.settle(cards, arbiter, endings, order) {
                Err(e) => failures.push(format!("{e} (settling {first} first)")),
                Ok((cards, arbiter, endings)) => match self.resolved(cards, arbiter, endings) {
                    Err(e) => failures.push(format!("{e} (settled {first} first)")),
                    Ok(outcome) => *self.outcomes.entry(outcome).or_default() += 1,
                },
            }
        }
        if !self.faults.is_empty() {
            failures.push(format!("while settling: {}", self.faults.join("; ")));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n  "))
        }
    }

    /// Notes the corners of the protocol a world is in, so that the test can show that the
    /// enumeration reached them.
    fn corners(&mut self, cards: [u32; 2], arbiter: u32, endings: u32) {
        let ends = self.endings.get(endings).clone();
        let mut found = Vec::new();
        for (x, &state) in cards.iter().enumerate() {
            for s in &self.persistent[state as usize].sessions.clone() {
                let Some((s2, a)) = s.agreement() else {
                    continue;
                };
                let (s2, a) = (self.ids.id(*s2), self.ids.id(*a));
                let record = self.outcome(arbiter, a, s2);
                let other = ends
                    .iter()
                    .find(|e| e.card != x && e.s2 == s2 && e.a == a)
                    .map(|e| e.how);
                if let Session::Responder(r) = s
                    && r.pending
                    && self
                        .arbiters
                        .get(arbiter)
                        .iter()
                        .any(|v| self.forgery_verdicts.contains(v) && self.verdicts[v].1 == s2)
                {
                    found.push(
                        "a second agreement under B's s2 has a verdict, B's own session is open",
                    );
                }
                match (s, record, other) {
                    (Session::Responder(r), Some(Outcome::Complete), _) if r.pending => {
                        found.push("B cancelled, but A's resolve request came first: COMPLETE")
                    }
                    (Session::Initiator(_), _, Some(How::Verdict(Outcome::Cancel))) => {
                        found.push("B applied CANCEL, A has not")
                    }
                    (Session::Initiator(_), Some(Outcome::Cancel), _) => {
                        found.push("A confirmed, but B's cancel request came first: CANCEL")
                    }
                    (Session::Initiator(_), _, Some(How::Exchanged)) => {
                        found.push("B committed, A has not finished")
                    }
                    (Session::Responder(_), _, Some(How::Verdict(Outcome::Complete))) => {
                        found.push("A applied COMPLETE, B has not")
                    }
                    _ => {}
                }
            }
        }
        self.reached.extend(found);
    }

    fn short(&self, id: u32) -> String {
        if id == NONE {
            "-".into()
        } else {
            format!("#{id}:{}", hex::encode(&self.ids.get(id)[..4]))
        }
    }

    fn describe(&self, act: &Action) -> String {
        let to = match act.kind.card() {
            Some(c) => format!(" to {}", CARD_NAMES[c]),
            None => " to the arbiter".into(),
        };
        let target = match act.kind {
            Kind::Abort => format!(" s1 {}", self.short(act.target)),
            Kind::Cancel | Kind::Resolve => format!(" s2 {}", self.short(act.target)),
            Kind::ApplyA | Kind::ApplyB => format!(
                " {} s2 {} a {}",
                self.verdicts[&act.body].2.name(),
                self.short(act.target),
                self.short(self.verdicts[&act.body].0)
            ),
            Kind::ForgedCancel | Kind::ForgedResolve | Kind::ForgedCommit => format!(
                " ({}) s2 {}",
                self.forgery_names.get(&act.body).copied().unwrap_or("?"),
                self.short(act.target)
            ),
            _ => String::new(),
        };
        format!("{}{target}{to}", act.kind.name())
    }
}

/// `known` and `listed`, each once.
fn union(known: Option<u32>, listed: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = known.into_iter().collect();
    for id in listed {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

/// Enumerates every schedule of one configuration, checking the invariants in every world;
/// panics with the schedule that leads to the first world where something fails.
fn explore(name: &'static str, v1: Value, v2: Value, adversary: bool, flawed: bool) -> Model {
    let began = Instant::now();
    let mut model = Model::new(name, v1, v2, adversary, flawed);
    let initial = model.initial();
    let counts = model.enumerate(initial);
    let elapsed = began.elapsed();
    println!(
        "{name}: bounds: each of the {KINDS} honest actions delivered at most {MAX_DELIVERIES} \
         times in a schedule, each card losing at most {MAX_CUTS} answers; the adversary's \
         forgeries at any point, any number of times"
    );
    println!(
        "{name}: {} schedules (the full enumeration), {} reachable worlds, {} transitions, \
         schedules of up to {} deliveries; {:.1?}",
        counts.schedules, counts.worlds, counts.transitions, counts.longest, elapsed
    );
    println!(
        "{name}: {} card states, {} arbiter states, {} worlds but counters, {} (cards, \
         arbiter, endings) checked; resolutions ending {:?}; widest layer {} worlds",
        model.cards.len(),
        model.arbiters.len(),
        model.sems.len(),
        model.checked.len(),
        model.outcomes,
        counts.widest
    );
    println!("{name}: corners reached: {:?}", model.reached);
    println!(
        "{name}: the adversary's forgeries, [refused, taken] by the real code: {:?}; verdicts \
         of made-up agreements refused by a card {} times",
        model.forged, model.made_up_verdicts_refused
    );
    model
}

fn run(name: &'static str, v1: Value, v2: Value) {
    let model = explore(name, v1, v2, true, false);
    // A request a card made is never refused: the arbiter decides every session it is asked
    // about, whatever the adversary sent before.
    assert_eq!(
        model.honest_refusals, 0,
        "the arbiter refused a card's request"
    );
    // The enumeration reached the corners that matter: both ends after resolution, both
    // verdicts at the arbiter, sessions ended every way, the races.
    assert_eq!(model.outcomes.len(), 2, "{:?}", model.outcomes);
    let verdicts: BTreeSet<u8> = model.verdicts.values().map(|(_, _, o)| *o as u8).collect();
    assert_eq!(verdicts.len(), 2, "both verdicts were given");
    let hows: BTreeSet<u8> = model
        .endings
        .items
        .iter()
        .flatten()
        .map(|e| e.key().4)
        .collect();
    assert_eq!(
        hows.len(),
        4,
        "sessions ended by exchange, ABORT and both verdicts"
    );
    assert_eq!(model.reached.len(), 6, "{:?}", model.reached);
    // The adversary's part: every forgery was tried and met the real code, which refused
    // each one that the session's own parties did not sign, and took only B's second
    // agreement, another session of B's, without it deciding anything of A's and B's.
    let refused = |name: &str| model.forged.get(name).copied().unwrap_or_default();
    for name in [
        "cancel: C signs as the responder of A and B's session",
        "cancel: C signs under B's certificate",
        "resolve: C signs as the initiator, with B's real agreement",
        "commit: B gets a confirmation signed by C",
    ] {
        let [no, yes] = refused(name);
        assert!(no > 0 && yes == 0, "{name}: refused {no}, taken {yes}");
    }
    let name = "cancel: B's own key, a second agreement under its s2";
    let [no, yes] = refused(name);
    assert!(yes > 0 && no == 0, "{name}: refused {no}, taken {yes}");
    assert!(
        model.made_up_verdicts_refused > 0,
        "the cards refused the verdict of the made-up agreement"
    );
}

#[test]
fn every_schedule_of_300_jpy_for_a_ticket() {
    run("300 JPY for a ticket", jpy(300), concert());
}

#[test]
fn every_schedule_of_a_one_way_payment() {
    run("a one-way payment of 300 JPY", jpy(300), None);
}

/// The same enumeration against an arbiter whose party check is switched off (the
/// backend's `planted-flaws` feature): the adversary's forged cancel or resolve then
/// decides A and B's session, and an invariant fails in some world. The test passes only if
/// the enumeration fails, and fails with a schedule.
#[test]
fn planted_flaw_is_caught() {
    let caught = std::panic::catch_unwind(|| {
        explore(
            "300 JPY for a ticket, the arbiter's party check off",
            jpy(300),
            concert(),
            true,
            true,
        )
    });
    let Err(payload) = caught else {
        panic!("with the arbiter's party check off, every invariant still held");
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    println!("the planted flaw was caught:\n{message}");
    assert!(message.contains("the schedule"), "{message}");
    assert!(
        message.contains("forged"),
        "the schedule uses a forgery: {message}"
    );
    assert!(
        ["conservation", "agreement", "resolution", "exact totals"]
            .iter()
            .any(|invariant| message.contains(invariant)),
        "an invariant fails: {message}"
    );
}
