//! The roles' long-term ECDSA P-256 keys (bank key, issuer key, arbiter key): made at the
//! first start and kept in the role's own database, in a one-row table. And [`KeyCache`],
//! the denomination keys the bank and the center parse once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;

use crate::db::{Database, DbError, Value};
use crate::error::ApiResult;

/// The tables that hold one; the name is never taken from input.
#[derive(Clone, Copy, Debug)]
pub enum KeyTable {
    Bank,
    Issuer,
    Arbiter,
}

impl KeyTable {
    fn name(self) -> &'static str {
        match self {
            KeyTable::Bank => "bank_key",
            KeyTable::Issuer => "issuer_key",
            KeyTable::Arbiter => "arbiter_key",
        }
    }
}

/// The key in `table`, made now if there is none yet. One transaction: two processes that
/// start at once on one database end with one key.
pub fn load_or_generate(db: &Database, table: KeyTable) -> Result<SigningKey, DbError> {
    let name = table.name();
    db.transaction(|tx| {
        if let Some(row) =
            tx.query_opt(&format!("SELECT private_key FROM {name} WHERE id = 1"), &[])?
        {
            return SigningKey::from_slice(&row.blob(0)?)
                .map_err(|_| DbError::Engine(format!("{name} holds no valid P-256 key")));
        }
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        tx.execute(
            &format!("INSERT INTO {name} (id, private_key) VALUES (1, ?1)"),
            &[Value::Blob(key.to_bytes().to_vec())],
        )?;
        Ok(key)
    })
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
