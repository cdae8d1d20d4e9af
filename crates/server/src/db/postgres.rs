//! What the PostgreSQL backends share: the connection pool, versioned migrations (a table
//! of applied versions, taken under an advisory lock so servers starting together migrate
//! once), and the mapping of PostgreSQL's errors.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::Migration;
use crate::oci::meta::MetaError;
use crate::storage::StorageError;

/// Connections per server process (each server's reads, its writer and key operations).
const POOL_SIZE: u32 = 16;

/// The advisory lock key under which migrations run (any fixed number; "ntrm").
const MIGRATION_LOCK: i64 = 0x6e74_726d;

/// The URL without its password (in the authority or the query), for messages and logs.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) if q.contains("password") => (b, Some("?…")),
        Some((b, _)) => (b, Some(&url[b.len()..])),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((user, host)) => {
                    let user = user.split_once(':').map_or(user, |(u, _)| u);
                    format!("{scheme}://{user}:…@{host}{path}")
                }
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    format!("{base}{}", query.unwrap_or(""))
}

pub async fn connect(url: &str) -> Result<PgPool, StorageError> {
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| StorageError::Db(format!("{}: {e}", redact(url))))
}

/// What a PostgreSQL error means to the server.
pub fn error_kind(e: &sqlx::Error) -> Kind {
    match e {
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // disk_full, out_of_memory-like storage failures
            Some("53100") => Kind::Full,
            // serialization_failure, deadlock_detected: try again
            Some("40001" | "40P01") => Kind::Retry,
            // unique_violation
            Some("23505") => Kind::Unique,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Full,
    Retry,
    Unique,
    Other,
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match error_kind(&e) {
            Kind::Full => StorageError::Full,
            Kind::Retry => StorageError::Stale,
            Kind::Unique => StorageError::Conflict(e.to_string()),
            Kind::Other => StorageError::Db(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        let full = error_kind(&e) == Kind::Full;
        MetaError::new(e.to_string(), full)
    }
}

/// Apply the migrations of `component` the database has not seen, each in its own
/// transaction; a database migrated by a newer build is refused.
pub async fn migrate(
    pool: &PgPool,
    component: &str,
    migrations: &[Migration],
) -> Result<(), StorageError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS notarium_migrations (
            component  TEXT   NOT NULL,
            version    BIGINT NOT NULL,
            name       TEXT   NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version))",
    )
    .execute(&mut *tx)
    .await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM notarium_migrations WHERE component = $1")
            .bind(component)
            .fetch_one(&mut *tx)
            .await?;
    let current = current.unwrap_or(0);
    let latest = migrations.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(StorageError::Db(format!(
            "the {component} schema is at version {current}, this build knows up to {latest}: \
             use a newer notarium"
        )));
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO notarium_migrations (component, version, name) VALUES ($1, $2, $3)",
        )
        .bind(component)
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            component,
            version = m.version,
            name = m.name,
            "postgres migration applied"
        );
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://alice:s3cret@db:5432/notarium?sslmode=require"),
            "postgres://alice:…@db:5432/notarium?sslmode=require"
        );
        assert_eq!(
            redact("postgres://db/notarium?user=a&password=s3cret"),
            "postgres://db/notarium?…"
        );
        assert_eq!(redact("postgres://db/notarium"), "postgres://db/notarium");
    }
}
