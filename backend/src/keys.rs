//! The roles' long-term ECDSA P-256 keys (bank key, issuer key, arbiter key) and the scheme
//! they belong to; and [`KeyCache`], the denomination keys the bank and the center parse once.
//!
//! - **One offline step makes every key** ([`init`], `valuecard-backend keys init --out
//!   DIR`): the scheme root, the issuer, the arbiter and the bank, each in its own file of 64
//!   hex digits (mode 0600), and `scheme.json` (`valuecard_protocol::scheme::Scheme`: the
//!   root's public key, its anchors over the issuer and the arbiter keys, the bank's public
//!   key). The roles then start in any order: none of them needs another's running process
//!   to learn a key.
//! - **Keys apart from ledgers.** A role reads its private key from its file
//!   ([`read_key`]); its database holds only the role's PUBLIC key, recorded on the first
//!   start ([`bind`]). A later start with another key refuses to start: a database stays
//!   with the key that signed what it holds (certificates, authorisations, verdicts).
//! - Each role also checks its key against the scheme ([`check_in_scheme`]): an issuer key
//!   that is not the one the root anchored would certify cards that no card accepts.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;

use apdu_spec::anchor::{Anchor, AnchorRole};
use apdu_spec::cert::encode_public_key;
use valuecard_protocol::scheme::{Scheme, SchemeError, SchemeKeys};

use crate::db::{Database, DbError, Value};
use crate::error::ApiResult;

/// The files `keys init` writes, and `all --keys DIR` reads.
pub const ROOT_KEY_FILE: &str = "root.key";
pub const ROOT_PUB_FILE: &str = "root.pub";
pub const ISSUER_KEY_FILE: &str = "issuer.key";
pub const ARBITER_KEY_FILE: &str = "arbiter.key";
pub const BANK_KEY_FILE: &str = "bank.key";
pub const SCHEME_FILE: &str = "scheme.json";

/// Why a role does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Config(String),
    /// The database was first started with another key.
    #[error(
        "this {role} database belongs to the {role} key {stored}, not to the key given ({given}): a database stays with the key it was first started with"
    )]
    KeyMismatch {
        role: &'static str,
        stored: String,
        given: String,
    },
    /// The key is not the one the scheme names for the role.
    #[error("the {role} key given ({given}) is not the {role} key of the scheme ({scheme})")]
    NotInScheme {
        role: &'static str,
        given: String,
        scheme: String,
    },
}

/// Why a key or scheme file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {error}", path = .0.display(), error = .1)]
    Read(PathBuf, std::io::Error),
    #[error("{} does not hold a P-256 private key as 64 hex digits", .0.display())]
    NotAKey(PathBuf),
    #[error("{path} is not a scheme file: {error}", path = .0.display(), error = .1)]
    NotAScheme(PathBuf, String),
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    BadScheme(PathBuf, SchemeError),
    #[error("{} exists already; keys init never overwrites a key", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {path}: {error}", path = .0.display(), error = .1)]
    Write(PathBuf, std::io::Error),
}

/// Reads a private key file: 64 hex digits (white space around them is ignored). The key is
/// never shown in an error. A file others may read is taken, with a warning in the log.
pub fn read_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| KeyFileError::Read(path.to_path_buf(), e))?;
    let mut secret = [0u8; 32];
    let digits = text.trim();
    if digits.len() != 64 || hex::decode_to_slice(digits, &mut secret).is_err() {
        return Err(KeyFileError::NotAKey(path.to_path_buf()));
    }
    let key =
        SigningKey::from_slice(&secret).map_err(|_| KeyFileError::NotAKey(path.to_path_buf()));
    secret.fill(0);
    warn_if_readable_by_others(path);
    key
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the key file may be read by other users: chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Reads and checks `scheme.json`: its anchors must verify under its root.
pub fn read_scheme(path: &Path) -> Result<SchemeKeys, KeyFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| KeyFileError::Read(path.to_path_buf(), e))?;
    let scheme: Scheme = serde_json::from_str(&text)
        .map_err(|e| KeyFileError::NotAScheme(path.to_path_buf(), e.to_string()))?;
    scheme
        .keys()
        .map_err(|e| KeyFileError::BadScheme(path.to_path_buf(), e))
}

/// Creates `path` with `contents`, never overwriting: mode 0600 for secrets, 0644 else.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.to_path_buf()),
        _ => KeyFileError::Write(path.to_path_buf(), e),
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyFileError::Write(path.to_path_buf(), e))
}

/// What [`init`] made: the public keys, and the files it wrote.
#[derive(Clone, Debug)]
pub struct Initialised {
    pub root: VerifyingKey,
    pub issuer: VerifyingKey,
    pub arbiter: VerifyingKey,
    pub bank: VerifyingKey,
    pub files: Vec<PathBuf>,
}

/// The scheme's four secret keys and the scheme file they make, in memory: what `keys init`
/// writes (tests make theirs the same way).
pub struct SchemeSecrets {
    pub root: SigningKey,
    pub issuer: SigningKey,
    pub arbiter: SigningKey,
    pub bank: SigningKey,
    /// The public keys and the root's anchors over the issuer and the arbiter keys.
    pub scheme: Scheme,
}

impl SchemeSecrets {
    /// Four fresh keys, and the root's anchors.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let root = SigningKey::generate_from_rng(&mut rng);
        let issuer = SigningKey::generate_from_rng(&mut rng);
        let arbiter = SigningKey::generate_from_rng(&mut rng);
        let bank = SigningKey::generate_from_rng(&mut rng);
        let scheme = Scheme::new(
            root.verifying_key(),
            &Anchor::issue(&root, AnchorRole::Issuer, issuer.verifying_key()),
            &Anchor::issue(&root, AnchorRole::Arbiter, arbiter.verifying_key()),
            bank.verifying_key(),
        );
        SchemeSecrets {
            root,
            issuer,
            arbiter,
            bank,
            scheme,
        }
    }

    /// Writes `root.key`, `issuer.key`, `arbiter.key`, `bank.key` (64 hex digits each, mode
    /// 0600), `root.pub` (66 hex digits) and `scheme.json` in `dir` (created if missing).
    /// Refuses, before writing anything, if any of them exists. The files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, KeyFileError> {
        std::fs::create_dir_all(dir).map_err(|e| KeyFileError::Write(dir.to_path_buf(), e))?;
        let names = [
            ROOT_KEY_FILE,
            ISSUER_KEY_FILE,
            ARBITER_KEY_FILE,
            BANK_KEY_FILE,
            ROOT_PUB_FILE,
            SCHEME_FILE,
        ];
        if let Some(existing) = names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
            return Err(KeyFileError::Exists(existing));
        }
        let scheme_text = serde_json::to_string_pretty(&self.scheme)
            .map_err(|e| KeyFileError::NotAScheme(dir.join(SCHEME_FILE), e.to_string()))?;
        let mut files = Vec::new();
        // The public files last: a folder with scheme.json in it has every key too.
        for (name, key) in [
            (ROOT_KEY_FILE, &self.root),
            (ISSUER_KEY_FILE, &self.issuer),
            (ARBITER_KEY_FILE, &self.arbiter),
            (BANK_KEY_FILE, &self.bank),
        ] {
            let path = dir.join(name);
            write_new(&path, &format!("{}\n", hex::encode(key.to_bytes())), true)?;
            files.push(path);
        }
        let root_pub = dir.join(ROOT_PUB_FILE);
        write_new(
            &root_pub,
            &format!(
                "{}\n",
                hex::encode(encode_public_key(self.root.verifying_key()))
            ),
            false,
        )?;
        files.push(root_pub);
        let scheme_path = dir.join(SCHEME_FILE);
        write_new(&scheme_path, &format!("{scheme_text}\n"), false)?;
        files.push(scheme_path);
        Ok(files)
    }
}

/// Makes the scheme's four keys in `dir` (`SchemeSecrets::write`): `keys init`.
pub fn init(dir: &Path) -> Result<Initialised, KeyFileError> {
    let secrets = SchemeSecrets::generate();
    let files = secrets.write(dir)?;
    Ok(Initialised {
        root: *secrets.root.verifying_key(),
        issuer: *secrets.issuer.verifying_key(),
        arbiter: *secrets.arbiter.verifying_key(),
        bank: *secrets.bank.verifying_key(),
        files,
    })
}

/// A public key as the roles log it: compressed SEC1, hex.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(encode_public_key(key))
}

/// Checks that `key` is the key the scheme names for `role`.
pub fn check_in_scheme(
    role: &'static str,
    key: &VerifyingKey,
    scheme: &VerifyingKey,
) -> Result<(), StartError> {
    if key == scheme {
        Ok(())
    } else {
        Err(StartError::NotInScheme {
            role,
            given: public_hex(key),
            scheme: public_hex(scheme),
        })
    }
}

/// Binds `db` to the role's public key: records it on the first start, and refuses any
/// other key afterwards. One transaction: two processes that start at once on one database
/// with two keys end with one of them refused.
pub fn bind(db: &Database, role: &'static str, key: &VerifyingKey) -> Result<(), StartError> {
    let given = encode_public_key(key);
    let stored = db.transaction(|tx| -> Result<Option<[u8; 33]>, DbError> {
        if let Some(row) = tx.query_opt("SELECT public_key FROM role_key WHERE id = 1", &[])? {
            return Ok(Some(row.array(0)?));
        }
        tx.execute(
            "INSERT INTO role_key (id, public_key) VALUES (1, ?1)",
            &[Value::Blob(given.to_vec())],
        )?;
        Ok(None)
    })?;
    match stored {
        Some(stored) if stored != given => Err(StartError::KeyMismatch {
            role,
            stored: hex::encode(stored),
            given: hex::encode(given),
        }),
        _ => Ok(()),
    }
}

/// Keys by their 32-byte id, each parsed once: a key never changes once stored, so an entry
/// never goes stale.
pub(crate) struct KeyCache<T>(Mutex<HashMap<[u8; 32], Arc<T>>>);

impl<T> Default for KeyCache<T> {
    fn default() -> Self {
        KeyCache(Mutex::new(HashMap::new()))
    }
}

impl<T> KeyCache<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Arc<T>>> {
        // Nothing panics while the map is held: its content is whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key `id`, from `load` the first time. The lock is not held while `load` runs (it
    /// reads the database): two first requests may both load it, and both get an equal key.
    pub(crate) fn get_or_load(
        &self,
        id: &[u8; 32],
        load: impl FnOnce() -> ApiResult<T>,
    ) -> ApiResult<Arc<T>> {
        if let Some(key) = self.lock().get(id) {
            return Ok(key.clone());
        }
        let key = Arc::new(load()?);
        self.lock().insert(*id, key.clone());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_every_key_once_and_the_scheme_checks() {
        let temp = tempfile::tempdir().expect("a folder");
        let dir = temp.path().join("keys");
        let made = init(&dir).expect("init");
        assert_eq!(made.files.len(), 6);
        let scheme = read_scheme(&dir.join(SCHEME_FILE)).expect("a scheme");
        assert_eq!(scheme.issuer, made.issuer);
        assert_eq!(scheme.arbiter, made.arbiter);
        assert_eq!(scheme.bank, made.bank);
        assert_eq!(scheme.root, made.root);
        for (file, key) in [
            (ISSUER_KEY_FILE, made.issuer),
            (ARBITER_KEY_FILE, made.arbiter),
            (BANK_KEY_FILE, made.bank),
            (ROOT_KEY_FILE, made.root),
        ] {
            assert_eq!(
                *read_key(&dir.join(file)).expect("a key").verifying_key(),
                key
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.join(file))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
        let root_pub = std::fs::read_to_string(dir.join(ROOT_PUB_FILE)).expect("root.pub");
        assert_eq!(root_pub.trim(), public_hex(&made.root));
        // Never overwrites: the second run refuses and changes nothing.
        let before = std::fs::read(dir.join(ISSUER_KEY_FILE)).expect("read");
        assert!(matches!(init(&dir), Err(KeyFileError::Exists(_))));
        assert_eq!(
            std::fs::read(dir.join(ISSUER_KEY_FILE)).expect("read"),
            before
        );
    }

    #[test]
    fn a_key_file_holds_64_hex_digits() {
        let temp = tempfile::tempdir().expect("a folder");
        let dir = temp.path();
        for (name, text) in [
            ("short", "abcd"),
            ("not hex", &"zz".repeat(32)),
            ("zero", &"00".repeat(32)),
            ("order", &"ff".repeat(32)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            let e = read_key(&path).expect_err(name);
            assert!(!e.to_string().contains(text) || text.len() < 8, "{e}");
        }
        let path = dir.join("ok");
        std::fs::write(&path, format!("  {}\n\n", "11".repeat(32))).expect("write");
        assert!(read_key(&path).is_ok());
    }
}
