//! The SQL layer: one small engine abstraction, so that the roles never name SQLite.
//!
//! A role runs all of its reads and writes for one request in [`Database::transaction`].
//! Parameters are [`Value`]s and placeholders are written `?1, ?2, ...`; an engine for
//! PostgreSQL would rewrite them to `$1, $2, ...` and bring its own migration files
//! (`migrations/<engine>/<role>/`). The roles' SQL sticks to what both engines share.
//!
//! Migrations are versioned files embedded in the binary, applied in order, each in its own
//! transaction, and recorded in `schema_migrations`: opening a database twice is a no-op.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

/// One SQL value. Amounts and times are `Int` (they always fit in an i64: the roles check).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// An unsigned number as an SQL integer, if it fits.
    pub fn uint(value: u64) -> Result<Value, DbError> {
        i64::try_from(value)
            .map(Value::Int)
            .map_err(|_| DbError::OutOfRange(value.to_string()))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<const N: usize> From<[u8; N]> for Value {
    fn from(v: [u8; N]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Value::Blob(v.to_vec())
    }
}

/// One result row, with typed accessors that fail instead of guessing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value, DbError> {
        self.0.get(i).ok_or(DbError::Type(i, "a column"))
    }

    pub fn i64(&self, i: usize) -> Result<i64, DbError> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            _ => Err(DbError::Type(i, "an integer")),
        }
    }

    pub fn u64(&self, i: usize) -> Result<u64, DbError> {
        u64::try_from(self.i64(i)?).map_err(|_| DbError::Type(i, "a non-negative integer"))
    }

    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.get(i)? {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(DbError::Type(i, "text")),
        }
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, DbError> {
        match self.get(i)? {
            Value::Blob(v) => Ok(v.clone()),
            _ => Err(DbError::Type(i, "a blob")),
        }
    }

    pub fn array<const N: usize>(&self, i: usize) -> Result<[u8; N], DbError> {
        match self.get(i)? {
            Value::Blob(v) => v
                .as_slice()
                .try_into()
                .map_err(|_| DbError::Type(i, "a fixed-size blob")),
            _ => Err(DbError::Type(i, "a blob")),
        }
    }
}

/// Which rule of the schema refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// PRIMARY KEY or UNIQUE: the natural key exists already.
    Unique,
    /// A CHECK, such as `balance >= 0`.
    Check,
    ForeignKey,
    /// A trigger's `RAISE(ABORT, ...)`, or NOT NULL, or a type mismatch.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("the schema refused the write ({0:?}): {1}")]
    Constraint(Constraint, String),
    #[error("column {0} is not {1}")]
    Type(usize, &'static str),
    #[error("{0} does not fit in an SQL integer")]
    OutOfRange(String),
    #[error(
        "the database is at schema version {found} of {role}, newer than this program's {known}"
    )]
    TooNew {
        role: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the database is at schema version {found} of {role}, older than this program's {known}"
    )]
    TooOld {
        role: String,
        found: i64,
        known: i64,
    },
    #[error("database error: {0}")]
    Engine(String),
}

impl DbError {
    pub fn constraint(&self) -> Option<Constraint> {
        match self {
            DbError::Constraint(c, _) => Some(*c),
            _ => None,
        }
    }
}

/// Every row of every table: table name → rows, sorted. For tests that check that a refused
/// request changed nothing, and that the bank and the center share no data.
pub type Dump = BTreeMap<String, Vec<Vec<Value>>>;

/// What a transaction body can do.
pub trait Tx {
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize, DbError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs several statements without parameters (migrations).
    fn execute_batch(&mut self, sql: &str) -> Result<(), DbError>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// The body of a transaction as the engine sees it: returns whether to commit.
pub type TxBody<'a> = dyn FnMut(&mut dyn Tx) -> Result<bool, DbError> + 'a;

/// An SQL engine.
pub trait Engine: Send + Sync {
    /// Runs `body` in one serialisable write transaction; commits if it returns `Ok(true)`,
    /// and rolls back otherwise (also on a panic). On a read-only database, one consistent
    /// read snapshot.
    fn run(&self, body: &mut TxBody<'_>) -> Result<(), DbError>;
    fn dump(&self) -> Result<Dump, DbError>;
    /// Writes a consistent copy of the whole database to a new file `path` (a backup; the
    /// audit's tests tamper with copies).
    fn copy_to(&self, path: &str) -> Result<(), DbError>;
}

/// One versioned migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A role's database.
pub struct Database {
    engine: Box<dyn Engine>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Database")
    }
}

impl Database {
    /// Opens (creating if needed) an SQLite database, `:memory:` for one that lives in
    /// this process only, and brings its schema up to date.
    pub fn open_sqlite(path: &str, role: &str, migrations: &[Migration]) -> Result<Self, DbError> {
        let db = Database {
            engine: Box::new(Sqlite::open(path)?),
        };
        db.migrate(role, migrations)?;
        Ok(db)
    }

    /// Opens an existing SQLite database for reading only (the audit): nothing is migrated
    /// nor written, and the schema must be exactly `migrations`' newest version, so that
    /// every query means what the program thinks it means.
    pub fn open_sqlite_read_only(
        path: &str,
        role: &str,
        migrations: &[Migration],
    ) -> Result<Self, DbError> {
        let db = Database {
            engine: Box::new(Sqlite::open_read_only(path)?),
        };
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        let found = db.schema_version()?;
        if found > known {
            return Err(DbError::TooNew {
                role: role.to_owned(),
                found,
                known,
            });
        }
        if found < known {
            return Err(DbError::TooOld {
                role: role.to_owned(),
                found,
                known,
            });
        }
        Ok(db)
    }

    /// The newest migration applied, 0 for a database without any.
    pub fn schema_version(&self) -> Result<i64, DbError> {
        self.transaction(|tx| {
            let table = tx.query_opt(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                &[],
            )?;
            if table.is_none() {
                return Ok(0);
            }
            match tx.query_opt("SELECT MAX(version) FROM schema_migrations", &[])? {
                Some(row) => match row.0.first() {
                    Some(Value::Int(v)) => Ok(*v),
                    _ => Ok(0),
                },
                None => Ok(0),
            }
        })
    }

    /// Applies the migrations this database has not seen yet, in order.
    pub fn migrate(&self, role: &str, migrations: &[Migration]) -> Result<(), DbError> {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        self.transaction(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version INTEGER PRIMARY KEY,
                     name TEXT NOT NULL
                 ) STRICT;",
            )?;
            let found = tx.query_opt("SELECT MAX(version) FROM schema_migrations", &[])?;
            if let Some(Value::Int(found)) = found.and_then(|r| r.0.into_iter().next())
                && found > known
            {
                return Err(DbError::TooNew {
                    role: role.to_owned(),
                    found,
                    known,
                });
            }
            Ok(())
        })?;
        for m in migrations {
            self.transaction(|tx| {
                let done = tx.query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = ?1",
                    &[Value::Int(m.version)],
                )?;
                if done.is_none() {
                    tx.execute_batch(m.sql)?;
                    // The name carries the role, so that no two roles' databases hold an
                    // equal row here (the unlinkability test compares every value).
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                        &[Value::Int(m.version), format!("{role}/{}", m.name).into()],
                    )?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs `body` in one transaction: everything it wrote is committed if it returns `Ok`,
    /// and nothing is if it returns `Err`.
    pub fn transaction<T, E, F>(&self, body: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn Tx) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut body = Some(body);
        let mut outcome: Option<Result<T, E>> = None;
        let run = self.engine.run(&mut |tx| {
            let Some(body) = body.take() else {
                return Err(DbError::Engine("transaction body ran twice".into()));
            };
            let result = body(tx);
            let commit = result.is_ok();
            outcome = Some(result);
            Ok(commit)
        });
        match (run, outcome) {
            // The commit itself failed: whatever the body answered did not happen.
            (Err(e), _) => Err(e.into()),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(DbError::Engine("transaction body did not run".into()).into()),
        }
    }

    pub fn dump(&self) -> Result<Dump, DbError> {
        self.engine.dump()
    }

    /// Writes a consistent copy of the database to the new file `path`.
    pub fn copy_to(&self, path: &str) -> Result<(), DbError> {
        self.engine.copy_to(path)
    }
}

// ---- SQLite ----------------------------------------------------------------------------

/// SQLite through one connection behind a mutex: SQLite has one writer at a time anyway,
/// and every request here is a short transaction.
struct Sqlite {
    conn: Mutex<Connection>,
    read_only: bool,
}

fn engine_error(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(err, ref msg) = e
        && err.code == rusqlite::ErrorCode::ConstraintViolation
    {
        let kind = match err.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Constraint::Unique,
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => Constraint::Check,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Constraint::ForeignKey,
            _ => Constraint::Other,
        };
        return DbError::Constraint(kind, msg.clone().unwrap_or_default());
    }
    DbError::Engine(e.to_string())
}

impl Sqlite {
    fn open(path: &str) -> Result<Self, DbError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(Path::new(path))
        }
        .map_err(engine_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(engine_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(engine_error)?;
        if path != ":memory:" {
            // WAL: readers in other processes (a backup, sqlite3 by hand) do not block us.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(engine_error)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(engine_error)?;
        }
        Ok(Sqlite {
            conn: Mutex::new(conn),
            read_only: false,
        })
    }

    /// An existing database file, opened so that no statement can write to it.
    fn open_read_only(path: &str) -> Result<Self, DbError> {
        if path == ":memory:" || !Path::new(path).is_file() {
            return Err(DbError::Engine(format!("{path}: no such database file")));
        }
        let conn = Connection::open_with_flags(
            Path::new(path),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(engine_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(engine_error)?;
        // A second lock: even a statement that tried would be refused.
        conn.pragma_update(None, "query_only", true)
            .map_err(engine_error)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
            read_only: true,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction poisons the mutex; rusqlite's Transaction rolled back
        // on unwinding, so the connection itself is fine to use again.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

fn from_sql(v: ValueRef<'_>) -> Result<Value, DbError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        // Every table is STRICT and declares no REAL column.
        ValueRef::Real(r) => return Err(DbError::Engine(format!("unexpected REAL value {r}"))),
    })
}

fn query_rows(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
    let mut stmt = conn.prepare_cached(sql).map_err(engine_error)?;
    let width = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(engine_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(engine_error)? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(from_sql(row.get_ref(i).map_err(engine_error)?)?);
        }
        out.push(Row(values));
    }
    Ok(out)
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(engine_error)?;
        stmt.execute(rusqlite::params_from_iter(params))
            .map_err(engine_error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        query_rows(self.0, sql, params)
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.execute_batch(sql).map_err(engine_error)
    }
}

impl Engine for Sqlite {
    fn run(&self, body: &mut TxBody<'_>) -> Result<(), DbError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock at BEGIN: a read-then-write body cannot be
        // overtaken by another process between its read and its write. A read-only
        // connection takes no write lock: DEFERRED reads one snapshot.
        let behavior = if self.read_only {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let tx = conn
            .transaction_with_behavior(behavior)
            .map_err(engine_error)?;
        let commit = body(&mut SqliteTx(&tx))?;
        if commit {
            tx.commit().map_err(engine_error)
        } else {
            tx.rollback().map_err(engine_error)
        }
    }

    fn dump(&self) -> Result<Dump, DbError> {
        let conn = self.lock();
        let tables = query_rows(
            &conn,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            &[],
        )?;
        let mut dump = Dump::new();
        for table in tables {
            let name = table.text(0)?;
            let quoted = name.replace('"', "\"\"");
            let rows = query_rows(&conn, &format!("SELECT * FROM \"{quoted}\""), &[])?;
            let mut rows: Vec<Vec<Value>> = rows.into_iter().map(|r| r.0).collect();
            rows.sort();
            dump.insert(name, rows);
        }
        Ok(dump)
    }

    fn copy_to(&self, path: &str) -> Result<(), DbError> {
        let conn = self.lock();
        conn.execute("VACUUM INTO ?1", [path])
            .map(|_| ())
            .map_err(engine_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[Migration] = &[
        Migration {
            version: 1,
            name: "0001_a",
            sql: "CREATE TABLE a (x INTEGER NOT NULL CHECK (x >= 0)) STRICT;",
        },
        Migration {
            version: 2,
            name: "0002_b",
            sql: "CREATE TABLE b (y TEXT PRIMARY KEY) STRICT;",
        },
    ];

    #[test]
    fn transaction_commits_on_ok_and_rolls_back_on_err() {
        let db = Database::open_sqlite(":memory:", "test", M).expect("opens");
        db.transaction(|tx| tx.execute("INSERT INTO a (x) VALUES (?1)", &[Value::Int(1)]))
            .expect("inserts");
        let refused: Result<(), DbError> = db.transaction(|tx| {
            tx.execute("INSERT INTO a (x) VALUES (?1)", &[Value::Int(2)])?;
            tx.execute("INSERT INTO a (x) VALUES (?1)", &[Value::Int(-1)])?;
            Ok(())
        });
        assert_eq!(
            refused.expect_err("check fails").constraint(),
            Some(Constraint::Check)
        );
        let dump = db.dump().expect("dumps");
        assert_eq!(dump["a"], vec![vec![Value::Int(1)]]);
        db.transaction(|tx| tx.execute("INSERT INTO b (y) VALUES ('k')", &[]))
            .expect("inserts");
        let dup = db.transaction(|tx| tx.execute("INSERT INTO b (y) VALUES ('k')", &[]));
        assert_eq!(
            dup.expect_err("unique").constraint(),
            Some(Constraint::Unique)
        );
    }

    #[test]
    fn migrations_are_recorded_and_a_newer_schema_is_refused() {
        let db = Database::open_sqlite(":memory:", "test", M).expect("opens");
        let before = db.dump().expect("dumps");
        db.migrate("test", M).expect("no-op");
        assert_eq!(db.dump().expect("dumps"), before);
        assert_eq!(before["schema_migrations"].len(), 2);
        assert!(matches!(
            db.migrate("test", &M[..1]),
            Err(DbError::TooNew {
                found: 2,
                known: 1,
                ..
            })
        ));
    }
}
