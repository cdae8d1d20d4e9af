//! Which database the server keeps its metadata in, chosen by URL, and what every backend
//! shares: opening, versioned migrations, and the mapping of its errors.
//!
//! * `sqlite://DIR` (the default, `DIR` = the data directory): two embedded SQLite files,
//!   `DIR/notarium.db` (trust data) and `DIR/registry.db` (registry metadata). One server
//!   process per directory (the data directory's lock).
//! * `postgres://USER@HOST:PORT/DB?...`: one PostgreSQL database shared by any number of
//!   `notarium server` processes; the database has the last word on every version.

pub mod copy;
pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tuf::Clock;

use crate::oci::meta::RegistryMeta;
use crate::storage::{Storage, StorageError};

/// A `--database` URL, parsed.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Shown in logs: never a password.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Database::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--database {url:?}: {why}")]
pub struct DatabaseUrlError {
    url: String,
    why: &'static str,
}

impl Database {
    /// `sqlite://PATH` (a directory), `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<Database, DatabaseUrlError> {
        let err = |why| DatabaseUrlError {
            url: postgres::redact(url),
            why,
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(err("sqlite:// needs the directory of the database files"));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        Err(err(
            "expected sqlite://DIR or postgres://USER@HOST/DATABASE",
        ))
    }

    /// The default: SQLite files in the data directory.
    pub fn in_data_dir(dir: &Path) -> Database {
        Database::Sqlite(dir.to_path_buf())
    }

    /// Whether other server processes may write the same database.
    pub fn is_shared(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

/// The stores of one database: trust data and registry metadata.
pub struct Stores {
    pub trust: Arc<dyn Storage>,
    pub registry: Arc<dyn RegistryMeta>,
}

/// Open (creating, migrating) a database's stores.
pub async fn open(db: &Database, clock: Arc<dyn Clock>) -> Result<Stores, StorageError> {
    match db {
        Database::Sqlite(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Db(format!("{}: {e}", dir.display())))?;
            let trust = crate::storage::sqlite::SqliteStorage::open(
                &dir.join("notarium.db"),
                clock.clone(),
            )
            .await?;
            let registry =
                crate::oci::meta::sqlite::SqliteMeta::open(&dir.join("registry.db"), clock)
                    .map_err(|e| StorageError::Db(e.to_string()))?;
            Ok(Stores {
                trust: Arc::new(trust),
                registry: Arc::new(registry),
            })
        }
        Database::Postgres(url) => {
            let pool = postgres::connect(url).await?;
            let trust =
                crate::storage::postgres::PgStorage::open(pool.clone(), clock.clone()).await?;
            let registry = crate::oci::meta::postgres::PgMeta::open(pool, clock).await?;
            Ok(Stores {
                trust: Arc::new(trust),
                registry: Arc::new(registry),
            })
        }
    }
}

/// One step of a backend's schema: applied once, in order, in its own transaction.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Database::parse("sqlite:///var/lib/notarium").unwrap(),
            Database::Sqlite("/var/lib/notarium".into())
        );
        assert!(Database::parse("postgres://u:secret@db/notarium")
            .unwrap()
            .is_shared());
        assert!(Database::parse("postgresql://db/notarium").is_ok());
        assert!(Database::parse("sqlite://").is_err());
        let e = Database::parse("mysql://u:secret@db/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected sqlite://"), "{e}");
        let shown = Database::parse("postgres://u:secret@db/notarium")
            .unwrap()
            .to_string();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
