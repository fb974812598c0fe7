//! 6581 promises "the card kept its previous state", and the terminal tells the user so.
//! These tests put the card on a storage whose commits and reads fail as scripted, and check
//! the promise in every case the card can tell apart, and what it does in the one it
//! cannot (SPEC.md, "Persistent state and atomic commits"):
//!
//! - a commit that reports a failure but whose bytes are in place (a flush after the rename
//!   failed): the command succeeds, and the card holds the new state;
//! - a commit that failed before its bytes were in place: 6581, the previous state;
//! - a storage that cannot be read back: the card writes the previous state again, then
//!   6581 is true again;
//! - a storage that neither writes nor reads: 6581, and the card reads storage again
//!   before its next command, answering 6581 to everything until it can.
//!
//! (`tearing.rs` cuts the power at every file-system operation of every command on the
//! real file storage.)

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use apdu_spec::commands::ins;
use apdu_spec::objects::tag;
use apdu_spec::units::{SignedMessage, UnitValue, tag as units_tag};
use common::{activate, bytes, card_on, ok, proprietary, transmit};
use p256::ecdsa::SigningKey;
use valuecard_card::Card;
use valuecard_card::applet::decode;
use valuecard_card::state::Persistent;
use valuecard_card::storage::{Storage, StorageError};

/// What the next commit does.
#[derive(Clone, Copy, Debug)]
enum Commit {
    /// Stores the bytes and reports success.
    Ok,
    /// Stores the bytes, then reports a failure (the rename done, the flush failed).
    StoredThenFailed,
    /// Reports a failure with nothing stored.
    Failed,
}

#[derive(Default)]
struct Script {
    bytes: Option<Vec<u8>>,
    commits: VecDeque<Commit>,
    /// How many of the next reads fail.
    failing_loads: usize,
    /// Every read fails.
    unreadable: bool,
    loads: usize,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

impl Scripted {
    fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        f(&mut self.0.lock().expect("not poisoned"))
    }

    fn stored(&self) -> Persistent {
        decode(&self.with(|s| s.bytes.clone()).expect("a state")).expect("decodes")
    }
}

fn failure() -> StorageError {
    StorageError::Io(std::io::Error::other("scripted failure"))
}

impl Storage for Scripted {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|s| {
            s.loads += 1;
            if s.unreadable {
                return Err(failure());
            }
            if s.failing_loads > 0 {
                s.failing_loads -= 1;
                return Err(failure());
            }
            Ok(s.bytes.clone())
        })
    }

    fn commit(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.with(|s| match s.commits.pop_front().unwrap_or(Commit::Ok) {
            Commit::Ok => {
                s.bytes = Some(bytes.to_vec());
                Ok(())
            }
            Commit::StoredThenFailed => {
                s.bytes = Some(bytes.to_vec());
                Err(failure())
            }
            Commit::Failed => Err(failure()),
        })
    }
}

fn arbiter() -> SigningKey {
    SigningKey::from_slice(&[0x7C; 32]).expect("a P-256 scalar")
}

fn load_request() -> Vec<u8> {
    let value = UnitValue::Asset {
        code: "JPY".into(),
        amount: 100,
    };
    proprietary(ins::LOAD_REQUEST, &value.encode())
}

/// GET DATA E5.
fn counters() -> Vec<u8> {
    let [p1, p2] = tag::COUNTERS.to_be_bytes();
    apdu_spec::apdu::encode(apdu_spec::CLA_ISO, ins::GET_DATA, p1, p2, &[], 256, false)
}

/// An active card on a scripted storage.
fn active(seed: u64) -> (Card, Scripted) {
    let storage = Scripted::default();
    let mut card = card_on(Box::new(storage.clone()), seed);
    activate(&mut card, &arbiter());
    (card, storage)
}

#[test]
fn a_commit_whose_bytes_are_in_place_succeeds() {
    let (mut card, storage) = active(1);
    let before = card.applet().persistent().clone();
    storage.with(|s| s.commits.push_back(Commit::StoredThenFailed));
    let answer = ok(&mut card, &load_request());
    SignedMessage::decode(&answer, units_tag::SIGNED_LOAD).expect("the signed request");
    let after = card.applet().persistent().clone();
    assert_ne!(after, before);
    assert!(after.in_flight.pending_load.is_some());
    assert_eq!(storage.stored(), after, "the card holds what storage holds");
}

#[test]
fn a_commit_that_failed_answers_6581_with_the_previous_state() {
    let (mut card, storage) = active(2);
    let before = bytes(card.applet().persistent());
    storage.with(|s| s.commits.push_back(Commit::Failed));
    assert_eq!(transmit(&mut card, &load_request()), (Vec::new(), 0x6581));
    assert_eq!(bytes(card.applet().persistent()), before);
    assert_eq!(bytes(&storage.stored()), before);
    // The next try works.
    ok(&mut card, &load_request());
}

#[test]
fn unreadable_storage_gets_the_previous_state_back_before_6581() {
    for first in [Commit::StoredThenFailed, Commit::Failed] {
        let (mut card, storage) = active(3);
        let before = bytes(card.applet().persistent());
        // The commit fails (its bytes in place or not), the read-back fails, and the card
        // writes the previous state again.
        storage.with(|s| {
            s.commits.push_back(first);
            s.commits.push_back(Commit::Ok);
            s.failing_loads = 1;
        });
        assert_eq!(
            transmit(&mut card, &load_request()),
            (Vec::new(), 0x6581),
            "{first:?}"
        );
        assert_eq!(bytes(card.applet().persistent()), before, "{first:?}");
        assert_eq!(bytes(&storage.stored()), before, "{first:?}: rolled back");
        ok(&mut card, &load_request());
    }
}

#[test]
fn storage_that_neither_writes_nor_reads_is_read_again_before_the_next_command() {
    for (first, took_effect) in [(Commit::StoredThenFailed, true), (Commit::Failed, false)] {
        let (mut card, storage) = active(4);
        let before = card.applet().persistent().clone();
        storage.with(|s| {
            s.commits.push_back(first);
            s.commits.push_back(Commit::Failed); // the rollback
            s.unreadable = true;
        });
        // The card cannot tell what storage holds: 6581, its memory the previous state.
        assert_eq!(transmit(&mut card, &load_request()), (Vec::new(), 0x6581));
        assert_eq!(card.applet().persistent(), &before);
        // While storage cannot be read, every command answers 6581 and changes nothing.
        let loads = storage.with(|s| s.loads);
        assert_eq!(card.transmit(&counters()), vec![0x65, 0x81]);
        assert_eq!(card.transmit(&load_request()), vec![0x65, 0x81]);
        assert!(storage.with(|s| s.loads) > loads, "it tried to read again");
        assert_eq!(card.applet().persistent(), &before);
        // Storage reads again: the card works from what it holds.
        storage.with(|s| s.unreadable = false);
        let (_, sw) = transmit(&mut card, &counters());
        assert_eq!(sw, 0x9000);
        let found = storage.stored();
        assert_eq!(card.applet().persistent(), &found);
        assert_eq!(
            found.in_flight.pending_load.is_some(),
            took_effect,
            "{first:?}"
        );
        // A second request is refused while one is pending, allowed otherwise.
        let (_, sw) = transmit(&mut card, &load_request());
        assert_eq!(sw, if took_effect { 0x6985 } else { 0x9000 }, "{first:?}");
    }
}
