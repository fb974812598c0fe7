//! The arbiter, so far only its key: `all` mode makes it once and keeps it in
//! `arbiter.sqlite`, so that the center can give cards the arbiter's public key. The
//! verdict service comes later (PROTOCOLS.md, "Fair exchange").

use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::db::{Database, DbError, Migration};
use crate::keys::{self, KeyTable};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init",
    sql: include_str!("../migrations/sqlite/arbiter/0001_init.sql"),
}];

pub struct Arbiter {
    db: Database,
    key: SigningKey,
}

impl std::fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter")
            .field(
                "public_key",
                &hex::encode(apdu_spec::cert::encode_public_key(self.public_key())),
            )
            .finish_non_exhaustive()
    }
}

impl Arbiter {
    /// Opens the arbiter's database (`:memory:` works) and loads or makes its key.
    pub fn open(path: &str) -> Result<Self, DbError> {
        let db = Database::open_sqlite(path, "arbiter", MIGRATIONS)?;
        let key = keys::load_or_generate(&db, KeyTable::Arbiter)?;
        Ok(Arbiter { db, key })
    }

    pub fn public_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}
