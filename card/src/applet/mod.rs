//! The card core: complete commands in, response data or a status word out.
//!
//! Dispatch follows one order for every command: INS, then P1 P2, then the body's
//! presence, then the life-cycle state, and only then the command's own handler, so that
//! a handler never sees a command that the table in `apdu-spec` does not allow.

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
                storage.commit(&encode(&blank))?;
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
            ins::GENERATE_KEY => self.generate_key(),
            ins::PERSONALIZE => self.personalize(apdu.data),
            ins::TEST_RESET => self.test_reset(),
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

    /// Commits the persistent state before the card answers. On failure the card goes back
    /// to what storage holds and answers 6581.
    fn commit(&mut self) -> Result<(), Status> {
        match self.storage.commit(&encode(&self.persistent)) {
            Ok(()) => {
                self.committed = self.persistent.clone();
                Ok(())
            }
            Err(_) => {
                self.persistent = match self.storage.load() {
                    Ok(Some(bytes)) => decode(&bytes).unwrap_or_else(|_| self.committed.clone()),
                    _ => self.committed.clone(),
                };
                self.committed = self.persistent.clone();
                Err(Status::MemoryFailure)
            }
        }
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
pub fn encode(state: &Persistent) -> Vec<u8> {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_vec_pretty(state).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<Persistent, StorageError> {
    // The caller knows the file and names it.
    let corrupt = |reason: String| StorageError::Corrupt {
        path: String::new(),
        reason,
    };
    let state: Persistent = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if state.format != crate::state::FORMAT {
        return Err(corrupt(format!("unknown format {}", state.format)));
    }
    if let Some(key) = &state.key
        && !key.is_consistent()
    {
        return Err(corrupt("the card key is not a P-256 key pair".into()));
    }
    if let Some(p) = &state.personalization
        && apdu_spec::cert::decode_public_key(&p.issuer_key).is_none()
    {
        return Err(corrupt("the issuer key is not a P-256 point".into()));
    }
    if !units::in_flight_is_consistent(&state) {
        return Err(corrupt(
            "the pending load or a receipt is not a message of this card".into(),
        ));
    }
    exchange::sessions_are_consistent(&state).map_err(|reason| corrupt(reason.into()))?;
    Ok(state)
}
