//! The card core: complete commands in, response data or a status word out.
//!
//! Dispatch follows one order for every command: INS, then P1 P2, then the body's
//! presence, then the life-cycle state, and only then the command's own handler, so that
//! a handler never sees a command that the table in `apdu-spec` does not allow.

mod attest;
mod auth;
mod data;
mod exchange;
mod lifecycle;
mod pin;
mod select;
mod store;
mod units;

use std::cell::RefCell;

use apdu_spec::cert::{self, Certificate};
use apdu_spec::commands::{self, CommandDef, LifeCycle, ins};
use apdu_spec::units::ReceiptKind;
use apdu_spec::{Apdu, Status};
use p256::ecdsa::{SigningKey, VerifyingKey};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::state::{Persistent, Volatile};
use crate::storage::{Storage, StorageError};

pub struct Applet {
    persistent: Persistent,
    /// The last state that reached storage. After every command `persistent` equals it:
    /// a change that was not committed is discarded, never half-kept.
    committed: Persistent,
    /// A commit failed and the card could tell neither that storage holds the planned state
    /// nor that it holds `committed`: the next command reads storage again first.
    stale: bool,
    volatile: Volatile,
    storage: Box<dyn Storage + Send>,
    rng: StdRng,
    test_mode: bool,
    /// Keys parsed from `persistent`, kept between commands: making a P-256 signing key from
    /// its secret costs a scalar multiplication, and a compressed public key a square root.
    /// Each entry remembers the bytes it came from, so a changed state is never served from
    /// a stale entry.
    keys: RefCell<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    card: Option<([u8; 32], SigningKey)>,
    issuer: Option<([u8; 33], VerifyingKey)>,
    arbiter: Option<([u8; 33], VerifyingKey)>,
    root: Option<([u8; 33], VerifyingKey)>,
    attestation: Option<([u8; 32], SigningKey)>,
}

/// The key parsed from `bytes`, from `slot` when it holds the same bytes.
fn cached<B: PartialEq + Copy, K: Clone>(
    slot: &mut Option<(B, K)>,
    bytes: B,
    parse: impl FnOnce(&B) -> Option<K>,
) -> Option<K> {
    if let Some((held, key)) = slot
        && *held == bytes
    {
        return Some(key.clone());
    }
    let key = parse(&bytes)?;
    *slot = Some((bytes, key.clone()));
    Some(key)
}

impl Applet {
    /// Loads the state from `storage`; a card that never committed starts blank and commits
    /// that at once, so that its state file exists from the start.
    pub fn new(
        mut storage: Box<dyn Storage + Send>,
        test_mode: bool,
        rng_seed: Option<u64>,
    ) -> Result<Self, StorageError> {
        let persistent = match storage.load()? {
            Some(bytes) => decode(&bytes)?,
            None => {
                let blank = Persistent::blank();
                storage.commit(&encode(&blank)?)?;
                blank
            }
        };
        let rng = match rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Ok(Applet {
            committed: persistent.clone(),
            persistent,
            stale: false,
            volatile: Volatile::default(),
            storage,
            rng,
            test_mode,
            keys: RefCell::new(KeyCache::default()),
        })
    }

    pub fn persistent(&self) -> &Persistent {
        &self.persistent
    }

    pub fn volatile(&self) -> &Volatile {
        &self.volatile
    }

    /// Reset, power-off: volatile state is gone.
    pub fn clear_volatile(&mut self) {
        self.volatile = Volatile::default();
    }

    pub fn process(&mut self, apdu: &Apdu) -> Result<Vec<u8>, Status> {
        if self.stale {
            self.reread()?;
        }
        let def =
            commands::lookup(apdu.cla, apdu.ins).ok_or(Status::InstructionNotSupportedOrInvalid)?;
        if def.ins == ins::TEST_RESET && !self.test_mode {
            return Err(Status::InstructionNotSupportedOrInvalid);
        }
        if !params_allowed(def, apdu) {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        let has_body = !apdu.data.is_empty();
        let body_ok = match def.body {
            commands::Body::None => !has_body,
            commands::Body::Required => has_body,
            commands::Body::Optional => true,
        };
        if !body_ok {
            return Err(Status::WrongLength);
        }
        if !def.states.contains(&self.persistent.life_cycle()) {
            return Err(Status::ConditionsOfUseNotSatisfied);
        }
        let result = self.execute(def, apdu);
        // A command the table marks read-only cannot change persistent state; release builds
        // skip comparing the whole state after it (GET DATA is the hot path), tests don't.
        let may_have_changed = def.writes || cfg!(debug_assertions);
        if may_have_changed && self.persistent != self.committed {
            // Only a bug gets here; the card still never keeps an uncommitted change.
            debug_assert!(false, "{} changed state without committing", def.name);
            self.persistent = self.committed.clone();
        }
        result
    }

    fn execute(&mut self, def: &CommandDef, apdu: &Apdu) -> Result<Vec<u8>, Status> {
        match def.ins {
            ins::SELECT => self.select(apdu),
            ins::GET_DATA => self.get_data(apdu.p1p2()),
            ins::VERIFY => self.verify(apdu.data),
            ins::CHANGE_REFERENCE_DATA => self.change_pin(apdu.data),
            ins::INTERNAL_AUTHENTICATE => self.internal_authenticate(apdu.data),
            ins::ATTEST => self.attest(apdu.data),
            ins::GENERATE_KEY => self.generate_key(),
            ins::PERSONALIZE => self.personalize(apdu.data),
            ins::TEST_RESET => self.test_reset(apdu.data),
            ins::LOAD_REQUEST => self.load_request(apdu.data),
            ins::LOAD_APPLY => self.load_apply(apdu.data),
            ins::LOAD_CANCEL => self.load_cancel(),
            ins::UNLOAD => self.unload(apdu.data),
            ins::UNLOAD_ACK => match ReceiptKind::from_ack_p1(apdu.p1) {
                Some(kind) => self.unload_ack(kind, apdu.data),
                // `params_allowed` let through only the P1 values of a receipt kind.
                None => Err(Status::IncorrectP1OrP2Parameter),
            },
            ins::START => self.start(apdu.data),
            ins::AGREE => self.agree(apdu.data),
            ins::CONFIRM => self.confirm(apdu.data),
            ins::COMMIT => self.commit_exchange(apdu.data),
            ins::FINISH => self.finish(apdu.data),
            ins::ABORT => self.abort(apdu.data),
            ins::CANCEL => self.cancel(apdu.data),
            ins::RESOLVE => self.resolve(apdu.data),
            ins::APPLY_VERDICT => self.apply_verdict(apdu.data),
            ins::LIST_SESSIONS => self.list_sessions(),
            // GET RESPONSE belongs to the ISO layer and never reaches the applet.
            _ => Err(Status::InstructionNotSupportedOrInvalid),
        }
    }

    /// Commits the persistent state before the card answers.
    ///
    /// 6581 promises that the card kept its previous state, and the terminal tells the user
    /// so; a failed commit is therefore never taken at its word. The card reads back what
    /// storage holds: the planned state (the rename was done, a flush after it failed)
    /// means the command took effect, and it succeeds; the previous state means it did
    /// not, and the card answers 6581. When it cannot tell, see [`Self::settle`].
    fn commit(&mut self) -> Result<(), Status> {
        // Whatever happens below, `persistent` is only ever a state storage holds.
        let planned = std::mem::replace(&mut self.persistent, self.committed.clone());
        // A state that cannot be serialised is refused, before anything is written.
        let bytes = encode(&planned).map_err(|_| Status::MemoryFailure)?;
        let kept = self.storage.commit(&bytes).is_ok() || self.settle(&planned);
        if !kept {
            return Err(Status::MemoryFailure);
        }
        self.committed = planned.clone();
        self.persistent = planned;
        Ok(())
    }

    /// After a failed commit of `planned`: whether storage holds it after all. When not,
    /// storage holds the previous state (`committed`, which `persistent` is again), except
    /// in the one case the card cannot make sure of: then `stale` is set.
    ///
    /// Storage that cannot be read back, or that holds neither state (its contract rules
    /// that out), gets the previous state written again, so that 6581 stays true: no answer
    /// has left the card, so undoing the command is allowed. Only when that write fails too
    /// and storage still cannot be read does the card answer 6581 without knowing: its
    /// storage neither writes nor reads, which is a card whose power was cut after the
    /// commit as far as the protocols go (every flow survives that), and the next command
    /// reads storage first and works from what it finds.
    fn settle(&mut self, planned: &Persistent) -> bool {
        match self.stored() {
            Some(found) if found == *planned => return true,
            Some(found) if found == self.committed => return false,
            _ => {}
        }
        let rolled_back = encode(&self.committed)
            .map(|previous| self.storage.commit(&previous).is_ok())
            .unwrap_or(false);
        if rolled_back {
            return false;
        }
        match self.stored() {
            Some(found) if found == *planned => true,
            Some(found) if found == self.committed => false,
            _ => {
                self.stale = true;
                false
            }
        }
    }

    /// What storage holds, if it can be read and decoded.
    fn stored(&mut self) -> Option<Persistent> {
        let bytes = self.storage.load().ok().flatten()?;
        decode(&bytes).ok()
    }

    /// Before a command, after a commit whose outcome the card could not tell: work from
    /// what storage holds. While it cannot be read, every command answers 6581 and changes
    /// nothing.
    fn reread(&mut self) -> Result<(), Status> {
        let found = self.stored().ok_or(Status::MemoryFailure)?;
        if found != self.persistent {
            // The command whose answer was 6581 did take effect after all: nothing the
            // volatile state says about the old state holds any more.
            self.clear_volatile();
        }
        self.committed = found.clone();
        self.persistent = found;
        self.stale = false;
        Ok(())
    }

    fn life_cycle(&self) -> LifeCycle {
        self.persistent.life_cycle()
    }

    /// Installs a planned state, commits it (on failure the card is back to what storage
    /// holds, 6581), and only then answers.
    fn carry_out(&mut self, (next, answer): Plan) -> Result<Vec<u8>, Status> {
        self.persistent = next;
        self.commit()?;
        Ok(answer)
    }

    /// The card's own signing key. `decode` refuses a state file where it is unusable.
    fn card_key(&self) -> Option<SigningKey> {
        let secret = self.persistent.key.as_ref()?.secret;
        cached(&mut self.keys.borrow_mut().card, secret, |s| {
            SigningKey::from_slice(s).ok()
        })
    }

    fn own_card_id(&self) -> Option<[u8; 32]> {
        self.persistent
            .key
            .as_ref()
            .map(|k| apdu_spec::card_id(&k.public))
    }

    fn issuer_key(&self) -> Option<VerifyingKey> {
        let bytes = self.persistent.personalization.as_ref()?.issuer_key;
        cached(&mut self.keys.borrow_mut().issuer, bytes, |b| {
            cert::decode_public_key(b)
        })
    }

    fn arbiter_key(&self) -> Option<VerifyingKey> {
        let bytes = self.persistent.personalization.as_ref()?.arbiter_key;
        cached(&mut self.keys.borrow_mut().arbiter, bytes, |b| {
            cert::decode_public_key(b)
        })
    }

    /// The scheme root's key from manufacture.
    fn root_key(&self) -> Option<VerifyingKey> {
        let bytes = self.persistent.manufacture.as_ref()?.root_key;
        cached(&mut self.keys.borrow_mut().root, bytes, |b| {
            cert::decode_public_key(b)
        })
    }

    /// The attestation key from manufacture. `decode` refuses a state file where it is not
    /// the key the maker certified.
    fn attestation_key(&self) -> Option<SigningKey> {
        let secret = self.persistent.manufacture.as_ref()?.attestation_secret.0;
        cached(&mut self.keys.borrow_mut().attestation, secret, |s| {
            SigningKey::from_slice(s).ok()
        })
    }

    /// The certificate PERSONALIZE installed, which verified under the issuer key then.
    fn own_certificate(&self) -> Option<Certificate> {
        self.persistent
            .personalization
            .as_ref()
            .and_then(|p| Certificate::decode(&p.certificate).ok())
    }
}

/// A planned command: the whole next persistent state, and the answer to give once it is
/// committed. A command is planned from `&self`, so a refused one cannot change anything.
type Plan = (Persistent, Vec<u8>);

fn params_allowed(def: &CommandDef, apdu: &Apdu) -> bool {
    match def.ins {
        ins::SELECT => {
            apdu.p1 == commands::SELECT_BY_NAME
                && matches!(
                    apdu.p2,
                    commands::SELECT_RETURN_FCI | commands::SELECT_NO_RESPONSE
                )
        }
        ins::GET_DATA => apdu_spec::objects::READABLE.contains(&apdu.p1p2()),
        ins::VERIFY | ins::CHANGE_REFERENCE_DATA => {
            apdu.p1 == 0 && apdu.p2 == apdu_spec::PIN_REFERENCE
        }
        // INTERNAL AUTHENTICATE names no algorithm or key: the card has one key.
        ins::INTERNAL_AUTHENTICATE
        | ins::ATTEST
        | ins::GENERATE_KEY
        | ins::PERSONALIZE
        | ins::TEST_RESET
        | ins::LOAD_REQUEST
        | ins::LOAD_APPLY
        | ins::LOAD_CANCEL
        | ins::UNLOAD
        | ins::START
        | ins::AGREE
        | ins::CONFIRM
        | ins::COMMIT
        | ins::FINISH
        | ins::ABORT
        | ins::CANCEL
        | ins::RESOLVE
        | ins::APPLY_VERDICT
        | ins::LIST_SESSIONS => apdu.p1p2() == 0,
        // P1 names the kind of receipt acknowledged: 01 an unload, 02 a load cancellation.
        ins::UNLOAD_ACK => ReceiptKind::from_ack_p1(apdu.p1).is_some() && apdu.p2 == 0,
        // A command without an entry here accepts no P1 P2 at all (GET RESPONSE is the ISO
        // layer's and never gets here).
        _ => false,
    }
}

/// The state-file encoding: JSON, so that a developer can read a card's state.
///
/// An error here refuses the command that made the state (6581), before anything is
/// written: an empty or partial file would be a card that lost everything.
pub fn encode(state: &Persistent) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec_pretty(state).map_err(|e| StorageError::Serialise(e.to_string()))
}

pub fn decode(bytes: &[u8]) -> Result<Persistent, StorageError> {
    // The caller knows the file and names it.
    let corrupt = |reason: String| StorageError::Corrupt {
        path: String::new(),
        reason,
    };
    // The format first, alone: a file of another format is named as such, not as a file
    // that misses this format's fields.
    #[derive(serde::Deserialize)]
    struct Format {
        format: u32,
    }
    let Format { format } = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if format != crate::state::FORMAT {
        return Err(StorageError::Format { found: format });
    }
    let state: Persistent = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if let Some(m) = &state.manufacture
        && !m.is_consistent()
    {
        return Err(corrupt(
            "the manufacture record does not fit together: its attestation key is not the one \
             the maker certified, or its root key is not a P-256 point"
                .into(),
        ));
    }
    if let Some(key) = &state.key
        && !key.is_consistent()
    {
        return Err(corrupt("the card key is not a P-256 key pair".into()));
    }
    if let Some(p) = &state.personalization {
        if state.manufacture.is_none() {
            // PERSONALIZE checks the anchors under the root key from manufacture.
            return Err(corrupt(
                "a personalised card without a manufacture record".into(),
            ));
        }
        if cert::decode_public_key(&p.issuer_key).is_none()
            || cert::decode_public_key(&p.arbiter_key).is_none()
        {
            return Err(corrupt(
                "the issuer or arbiter key is not a P-256 point".into(),
            ));
        }
    }
    if let Some(list) = &state.block_list {
        if state.personalization.is_none() {
            return Err(corrupt("a block list on a card that is not active".into()));
        }
        if list.entries.len() > apdu_spec::blocklist::MAX_ENTRIES {
            return Err(corrupt("the block list is longer than a card keeps".into()));
        }
    }
    if !units::in_flight_is_consistent(&state) {
        return Err(corrupt(
            "the pending load or a receipt is not a message of this card".into(),
        ));
    }
    exchange::sessions_are_consistent(&state).map_err(|reason| corrupt(reason.into()))?;
    Ok(state)
}
