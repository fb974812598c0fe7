//! The roles' long-term ECDSA P-256 keys (bank key, issuer key, arbiter key): made at the
//! first start and kept in the role's own database, in a one-row table.

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;

use crate::db::{Database, DbError, Value};

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
