//! The terminal's journal of withdrawals in flight (PROTOCOLS.md, "Funding: bank to center").
//!
//! A withdrawal moves money in two network steps per piece (the bank signs, the center
//! credits), and the terminal may die between any two of them. The journal is what lets
//! `valuecard recover` finish the job with exact totals:
//!
//! - every piece is journaled *blinded* before the bank hears of it, so that a lost answer
//!   can be fetched again with the same blinded message (the bank returns the same
//!   signature and debits nothing more);
//! - the finished token is journaled *signed* before the center hears of it, so that a lost
//!   answer can be fetched again with the same token (the center credits its nonce once);
//! - a piece the center credited is *redeemed*, and a withdrawal whose pieces are all
//!   redeemed leaves the journal.
//!
//! What links a token to its withdrawal is the blinding secret together with the blinded
//! message: both are dropped as soon as the token is signed, and the token itself as soon as
//! it is redeemed. Nothing here is the account credential: it is never written.
//!
//! The file is JSON (`{"version": 1, "withdrawals": [...]}`), mode 0600, replaced atomically
//! on every change (a temporary file in the same folder, fsync, rename, fsync of the folder),
//! so a crash leaves either the old journal or the new one. An exclusive lock on a file next
//! to it (`<journal>.lock`), held from [`Journal::open`] until the [`Journal`] is dropped,
//! keeps two `valuecard` processes from interleaving their changes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use valuecard_protocol::token::Blinded;

/// The journal's format version. A journal of another version is refused, never rewritten.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} the journal {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the journal {} is not a valuecard journal: {detail}", path.display())]
    Malformed { path: PathBuf, detail: String },
    #[error(
        "the journal {} has format version {found}, and this valuecard reads version {FORMAT_VERSION} only",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    /// A change the journal's states do not allow: a bug in the caller.
    #[error("journal: {0}")]
    Transition(String),
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// One withdrawal: an amount taken from one bank account for one card, in pieces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Random, for people and for the log; unique in the journal.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The bank account debited. Its credential is never journaled.
    pub account: String,
    /// Base URLs of the bank that signs and the center that redeems.
    pub bank: String,
    pub center: String,
    #[serde(with = "hex")]
    pub card_id: [u8; 32],
    pub currency: String,
    /// Keep the tokens until `valuecard redeem`, rather than redeeming them at once.
    pub redeem_later: bool,
    pub pieces: Vec<Piece>,
}

/// One token of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub amount: u64,
    #[serde(with = "hex")]
    pub key_id: [u8; 32],
    /// The denomination key's SubjectPublicKeyInfo, to finalize and check the token with.
    #[serde(with = "hex")]
    pub key_spki: Vec<u8>,
    /// The token message (`valuecard/token/v1`); its nonce makes it unique.
    #[serde(with = "hex")]
    pub message: Vec<u8>,
    #[serde(flatten)]
    pub state: PieceState,
}

/// Where a piece is. Each state holds what the next step needs, and no more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PieceState {
    /// Blinded; the bank may or may not have signed it. `blinded.secret` is never printed.
    Blinded { blinded: Blinded },
    /// The bank signed it and the token checks out; the center may or may not have
    /// credited it.
    Signed {
        #[serde(with = "hex")]
        randomizer: [u8; 32],
        #[serde(with = "hex")]
        signature: Vec<u8>,
    },
    /// The center credited it.
    Redeemed,
}

impl PieceState {
    pub fn name(&self) -> &'static str {
        match self {
            PieceState::Blinded { .. } => "blinded",
            PieceState::Signed { .. } => "signed",
            PieceState::Redeemed => "redeemed",
        }
    }
}

impl Withdrawal {
    pub fn amount(&self) -> u64 {
        self.pieces.iter().map(|p| p.amount).sum()
    }

    /// How many pieces are in the state named `state` ("blinded", "signed", "redeemed"),
    /// and their amount.
    pub fn tally(&self, state: &str) -> (usize, u64) {
        self.pieces
            .iter()
            .filter(|p| p.state.name() == state)
            .fold((0, 0), |(n, sum), p| (n + 1, sum + p.amount))
    }
}

#[derive(Serialize, Deserialize)]
struct Contents {
    version: u32,
    withdrawals: Vec<Withdrawal>,
}

/// The default place: `$XDG_DATA_HOME/valuecard/journal.json`, else
/// `~/.local/share/valuecard/journal.json`.
pub fn default_path() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let data_home =
        absolute("XDG_DATA_HOME").or_else(|| absolute("HOME").map(|h| h.join(".local/share")))?;
    Some(data_home.join("valuecard").join("journal.json"))
}

/// The journal, open and locked.
pub struct Journal {
    path: PathBuf,
    withdrawals: Vec<Withdrawal>,
    /// Held, locked, for as long as the journal is open; the lock goes with the descriptor.
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("withdrawals", &self.withdrawals.len())
            .finish()
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io {
        action,
        path,
        source,
    }
}

fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

fn sibling(path: &Path, suffix: &str, hidden: bool) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    let name = if hidden {
        format!(".{name}{suffix}")
    } else {
        format!("{name}{suffix}")
    };
    path.with_file_name(name)
}

impl Journal {
    /// Opens the journal at `path` (empty if the file does not exist yet), creating its
    /// folder if needed, and takes its lock. If another process holds the lock, `on_wait`
    /// is called once and this waits for it.
    pub fn open(path: &Path, on_wait: impl FnOnce()) -> Result<Journal> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(io_error("locate", path))?
                .join(path)
        };
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(io_error("create the folder of", &path))?;
        }
        let lock_path = sibling(&path, ".lock", false);
        let lock = private_file(OpenOptions::new().read(true).write(true).create(true))
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error("create the lock file of", &path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                lock.lock().map_err(io_error("lock", &path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", &path)(e)),
        }
        let withdrawals = match fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        tracing::debug!(path = %path.display(), withdrawals = withdrawals.len(), "journal opened");
        Ok(Journal {
            path,
            withdrawals,
            _lock: lock,
        })
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Withdrawal>> {
        let malformed = |detail: String| JournalError::Malformed {
            path: path.to_path_buf(),
            detail,
        };
        // The version first, so that a newer format is named as such rather than as junk.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if version.version != FORMAT_VERSION {
            return Err(JournalError::Version {
                path: path.to_path_buf(),
                found: version.version,
            });
        }
        let contents: Contents =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        Ok(contents.withdrawals)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn withdrawals(&self) -> &[Withdrawal] {
        &self.withdrawals
    }

    pub fn withdrawal(&self, id: &str) -> Option<&Withdrawal> {
        self.withdrawals.iter().find(|w| w.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.withdrawals.is_empty()
    }

    /// Journals a new withdrawal, every piece blinded. Nothing may have been sent yet.
    pub fn add(&mut self, withdrawal: Withdrawal) -> Result<()> {
        if self.withdrawal(&withdrawal.id).is_some() {
            return Err(JournalError::Transition(format!(
                "withdrawal {} is already journaled",
                withdrawal.id
            )));
        }
        if withdrawal.pieces.is_empty()
            || withdrawal
                .pieces
                .iter()
                .any(|p| !matches!(p.state, PieceState::Blinded { .. }))
        {
            return Err(JournalError::Transition(
                "a new withdrawal has pieces, all blinded".into(),
            ));
        }
        let mut next = self.withdrawals.clone();
        next.push(withdrawal);
        self.commit(next)
    }

    /// The piece of withdrawal `id` whose token message is `message`.
    pub fn piece(&self, id: &str, message: &[u8]) -> Option<&Piece> {
        self.withdrawal(id)?
            .pieces
            .iter()
            .find(|p| p.message == message)
    }

    /// Changes one piece in a copy of the journal, checks the change, and commits the copy.
    fn change(
        &mut self,
        id: &str,
        message: &[u8],
        step: impl FnOnce(&mut Vec<Piece>, usize) -> Result<()>,
    ) -> Result<()> {
        let mut next = self.withdrawals.clone();
        let w = next
            .iter_mut()
            .position(|w| w.id == id)
            .ok_or_else(|| JournalError::Transition(format!("no withdrawal {id}")))?;
        let p = next[w]
            .pieces
            .iter()
            .position(|p| p.message == message)
            .ok_or_else(|| {
                JournalError::Transition(format!("withdrawal {id} has no such piece"))
            })?;
        step(&mut next[w].pieces, p)?;
        // A withdrawal with nothing left to do leaves the journal, and what it linked with it.
        if next[w]
            .pieces
            .iter()
            .all(|p| matches!(p.state, PieceState::Redeemed))
        {
            next.remove(w);
        }
        self.commit(next)
    }

    /// blinded → signed: the bank's signature, finalized and checked. The blinding secret and
    /// the blinded message go.
    pub fn mark_signed(&mut self, id: &str, message: &[u8], signature: Vec<u8>) -> Result<()> {
        self.change(id, message, |pieces, p| match &pieces[p].state {
            PieceState::Blinded { blinded } => {
                pieces[p].state = PieceState::Signed {
                    randomizer: blinded.randomizer,
                    signature,
                };
                Ok(())
            }
            other => Err(JournalError::Transition(format!(
                "a {} piece cannot become signed",
                other.name()
            ))),
        })
    }

    /// signed → redeemed. When it was the withdrawal's last piece, the withdrawal leaves the
    /// journal.
    pub fn mark_redeemed(&mut self, id: &str, message: &[u8]) -> Result<()> {
        self.change(id, message, |pieces, p| match &pieces[p].state {
            PieceState::Signed { .. } => {
                pieces[p].state = PieceState::Redeemed;
                Ok(())
            }
            other => Err(JournalError::Transition(format!(
                "a {} piece cannot become redeemed",
                other.name()
            ))),
        })
    }

    /// Drops a blinded piece the bank refused outright (an API error leaves the bank as it
    /// was: nothing was debited for it). A withdrawal left without pieces goes too.
    pub fn abandon(&mut self, id: &str, message: &[u8]) -> Result<()> {
        // `change` drops a withdrawal whose pieces are all redeemed, which an empty one is.
        self.change(id, message, |pieces, p| match &pieces[p].state {
            PieceState::Blinded { .. } => {
                pieces.remove(p);
                Ok(())
            }
            other => Err(JournalError::Transition(format!(
                "a {} piece cannot be abandoned: the bank signed it",
                other.name()
            ))),
        })
    }

    /// Writes `next` in place of the journal, atomically, then takes it as the journal.
    /// On failure the journal on disk and in memory stay as they were.
    fn commit(&mut self, next: Vec<Withdrawal>) -> Result<()> {
        let contents = Contents {
            version: FORMAT_VERSION,
            withdrawals: next,
        };
        // A journal that cannot be serialised is never written as an empty file: the error
        // stops the step that wanted to write it, before anything is sent on its strength.
        let mut bytes = serde_json::to_vec_pretty(&contents).map_err(|e| JournalError::Io {
            action: "serialise",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        let temp = sibling(&self.path, ".tmp", true);
        let write = |temp: &Path| -> io::Result<()> {
            // Only this process writes the temporary file (it holds the lock); a stale one
            // from a crash is simply overwritten.
            let _ = fs::remove_file(temp);
            let mut file =
                private_file(OpenOptions::new().write(true).create_new(true)).open(temp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        write(&temp).map_err(io_error("write", &self.path))?;
        fs::rename(&temp, &self.path).map_err(io_error("replace", &self.path))?;
        // The rename itself must reach the disk before anything is sent on its strength.
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("sync the folder of", &self.path))?;
        }
        tracing::debug!(
            path = %self.path.display(),
            withdrawals = contents.withdrawals.len(),
            bytes = bytes.len(),
            "journal written"
        );
        self.withdrawals = contents.withdrawals;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blinded(seed: u8) -> Blinded {
        Blinded {
            blinded_message: vec![seed; 256],
            secret: vec![0xA0 ^ seed; 256],
            randomizer: [seed; 32],
        }
    }

    fn piece(seed: u8, amount: u64) -> Piece {
        Piece {
            amount,
            key_id: [seed; 32],
            key_spki: vec![seed; 10],
            message: vec![seed; 124],
            state: PieceState::Blinded {
                blinded: blinded(seed),
            },
        }
    }

    fn withdrawal(id: &str, pieces: Vec<Piece>) -> Withdrawal {
        Withdrawal {
            id: id.into(),
            created_at: 1_700_000_000,
            account: "1001".into(),
            bank: "http://127.0.0.1:8640".into(),
            center: "http://127.0.0.1:8640".into(),
            card_id: [7; 32],
            currency: "JPY".into(),
            redeem_later: false,
            pieces,
        }
    }

    fn open(path: &Path) -> Journal {
        Journal::open(path, || panic!("nobody else holds the lock")).expect("opens")
    }

    #[test]
    fn a_missing_journal_is_empty_and_its_folder_is_made() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deep/er/journal.json");
        let journal = open(&path);
        assert!(journal.is_empty());
        assert!(path.parent().is_some_and(Path::is_dir));
        assert!(!path.exists(), "nothing is written until something changes");
    }

    #[test]
    fn changes_are_on_disk_at_once_private_and_atomic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.json");
        // A temporary file left by a crash in the middle of a write changes nothing.
        fs::write(
            dir.path().join(".journal.json.tmp"),
            b"{\"version\": 1, \"withdr",
        )
        .expect("write");
        let mut journal = open(&path);
        journal
            .add(withdrawal("w1", vec![piece(1, 256), piece(2, 32)]))
            .expect("add");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join(".journal.json.tmp").exists());
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("JSON");
        assert_eq!(on_disk["version"], 1);
        assert_eq!(on_disk["withdrawals"][0]["pieces"][1]["state"], "blinded");
        assert_eq!(on_disk["withdrawals"][0]["pieces"][1]["amount"], 32);
        drop(journal);
        let again = open(&path);
        assert_eq!(
            again.withdrawals(),
            &[withdrawal("w1", vec![piece(1, 256), piece(2, 32)])]
        );
    }

    #[test]
    fn pieces_go_blinded_signed_redeemed_and_then_leave() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.json");
        let mut journal = open(&path);
        let (a, b) = (piece(1, 256), piece(2, 32));
        journal
            .add(withdrawal("w1", vec![a.clone(), b.clone()]))
            .expect("add");

        // Out of order: refused, and nothing changes.
        let before = fs::read(&path).expect("read");
        assert!(matches!(
            journal.mark_redeemed("w1", &a.message),
            Err(JournalError::Transition(_))
        ));
        assert_eq!(fs::read(&path).expect("read"), before);

        journal
            .mark_signed("w1", &a.message, vec![9; 256])
            .expect("signed");
        let text = fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains(&hex::encode(blinded(1).secret)),
            "a signed piece keeps no blinding secret"
        );
        assert!(text.contains(&hex::encode(blinded(2).secret)));
        assert_eq!(
            journal.piece("w1", &a.message).map(|p| &p.state),
            Some(&PieceState::Signed {
                randomizer: [1; 32],
                signature: vec![9; 256]
            })
        );
        assert!(matches!(
            journal.mark_signed("w1", &a.message, vec![9; 256]),
            Err(JournalError::Transition(_))
        ));
        assert!(matches!(
            journal.abandon("w1", &a.message),
            Err(JournalError::Transition(_))
        ));
        journal.mark_redeemed("w1", &a.message).expect("redeemed");
        assert_eq!(journal.withdrawals()[0].tally("redeemed"), (1, 256));
        assert_eq!(journal.withdrawals()[0].tally("blinded"), (1, 32));

        journal
            .mark_signed("w1", &b.message, vec![8; 256])
            .expect("signed");
        journal.mark_redeemed("w1", &b.message).expect("redeemed");
        assert!(
            journal.is_empty(),
            "a finished withdrawal leaves the journal"
        );
        drop(journal);
        assert!(open(&path).is_empty());
    }

    #[test]
    fn a_refused_piece_is_dropped_and_an_empty_withdrawal_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = open(&dir.path().join("journal.json"));
        let (a, b) = (piece(1, 256), piece(2, 32));
        journal
            .add(withdrawal("w1", vec![a.clone(), b.clone()]))
            .expect("add");
        journal.abandon("w1", &b.message).expect("abandon");
        assert_eq!(journal.withdrawals()[0].pieces, vec![a.clone()]);
        journal.abandon("w1", &a.message).expect("abandon");
        assert!(journal.is_empty());
    }

    #[test]
    fn new_withdrawals_are_all_blinded_and_unique() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = open(&dir.path().join("journal.json"));
        journal
            .add(withdrawal("w1", vec![piece(1, 4)]))
            .expect("add");
        assert!(journal.add(withdrawal("w1", vec![piece(2, 4)])).is_err());
        assert!(journal.add(withdrawal("w2", vec![])).is_err());
        let mut signed = piece(3, 4);
        signed.state = PieceState::Redeemed;
        assert!(journal.add(withdrawal("w3", vec![signed])).is_err());
        assert_eq!(journal.withdrawals().len(), 1);
    }

    #[test]
    fn another_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.json");
        fs::write(&path, br#"{"version": 2, "withdrawals": [], "more": true}"#).expect("write");
        assert!(matches!(
            Journal::open(&path, || {}),
            Err(JournalError::Version { found: 2, .. })
        ));
        fs::write(&path, b"not json").expect("write");
        assert!(matches!(
            Journal::open(&path, || {}),
            Err(JournalError::Malformed { .. })
        ));
    }

    #[test]
    fn a_second_opener_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.json");
        let mut first = open(&path);
        let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
        let second = {
            let path = path.clone();
            std::thread::spawn(move || {
                let journal = Journal::open(&path, || waiting_tx.send(()).expect("send"))
                    .expect("opens once the first lets go");
                journal.withdrawals().len()
            })
        };
        waiting_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second opener waits");
        first.add(withdrawal("w1", vec![piece(1, 4)])).expect("add");
        drop(first);
        // It reads the journal as the first left it.
        assert_eq!(second.join().expect("thread"), 1);
    }

    #[test]
    fn the_blinding_secret_is_not_in_debug_output() {
        let p = piece(5, 8);
        let shown = format!("{p:?}");
        assert!(!shown.contains(&hex::encode(blinded(5).secret)));
        assert!(shown.contains("redacted"));
    }
}
