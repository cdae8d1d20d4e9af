//! What the SQLite backends share: versioned migrations (`PRAGMA user_version`) and the
//! mapping of SQLite's errors.

use rusqlite::Connection;

use super::Migration;
use crate::health::OutOfSpace;
use crate::oci::meta::MetaError;
use crate::storage::StorageError;

impl OutOfSpace for rusqlite::Error {
    fn out_of_space(&self) -> bool {
        matches!(
            self,
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        if e.out_of_space() {
            return StorageError::Full;
        }
        match &e {
            rusqlite::Error::SqliteFailure(f, m)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StorageError::Conflict(m.clone().unwrap_or_default())
            }
            _ => StorageError::Db(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> Self {
        MetaError::new(e.to_string(), e.out_of_space())
    }
}

/// Apply the migrations `conn` has not seen yet, in one immediate transaction (so two
/// processes opening a new file at once migrate it once), and record the version reached in
/// `user_version`. A database newer than this build is refused.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = migrations.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database is at schema version {current}, this build knows up to {latest}: \
                 use a newer notarium"
            )),
        ));
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)?;
        tx.pragma_update(None, "user_version", m.version)?;
        tracing::debug!(
            version = m.version,
            name = m.name,
            "sqlite migration applied"
        );
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            version: 2,
            name: "b",
            sql: "ALTER TABLE a ADD COLUMN y INTEGER;",
        },
    ];

    #[test]
    fn migrations_run_once_in_order_and_newer_databases_are_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, &STEPS[..1]).unwrap();
        c.execute("INSERT INTO a (x) VALUES (1)", []).unwrap();
        migrate(&mut c, STEPS).unwrap();
        migrate(&mut c, STEPS).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        let y: Option<i64> = c.query_row("SELECT y FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(y, None);
        let e = migrate(&mut c, &STEPS[..1]).unwrap_err().to_string();
        assert!(e.contains("schema version 2"), "{e}");
    }
}
