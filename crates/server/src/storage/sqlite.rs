//! The embedded backend: one SQLite file in the data directory, in WAL mode with
//! `synchronous=FULL` (a commit is on disk when it returns). One writer connection (SQLite
//! allows one writer at a time anyway), a small pool of readers that never block on it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Acquire, Row};
use tuf::{Gun, RoleName};

use super::{Change, KeyRecord, NewFile, Result, Storage, StorageError, StoredFile};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tuf_files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    gun        TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX IF NOT EXISTS tuf_files_checksum ON tuf_files (gun, role, sha256);
CREATE TABLE IF NOT EXISTS changefeed (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    gun        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    category   TEXT    NOT NULL CHECK (category IN ('update', 'deletion'))
);
CREATE INDEX IF NOT EXISTS changefeed_gun ON changefeed (gun, id);
CREATE TABLE IF NOT EXISTS private_keys (
    key_id     TEXT    PRIMARY KEY,
    gun        TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    algorithm  TEXT    NOT NULL,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS private_keys_gun ON private_keys (gun);
CREATE TABLE IF NOT EXISTS pending_keys (
    gun    TEXT NOT NULL,
    role   TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (gun, role)
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#;

pub struct SqliteStorage {
    read: SqlitePool,
    write: SqlitePool,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteStorage {
    /// Open (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStorage { read, write })
    }

    fn file(row: &sqlx::sqlite::SqliteRow) -> Result<StoredFile> {
        let data: Vec<u8> = row.try_get("data")?;
        let version: i64 = row.try_get("version")?;
        Ok(StoredFile {
            data: Arc::from(data),
            version: version as u64,
            sha256: row.try_get("sha256")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

fn key_record(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: row.try_get("key_id")?,
        gun: row.try_get("gun")?,
        role: row.try_get("role")?,
        algorithm: row.try_get("algorithm")?,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn current(&self, gun: &Gun, role: &RoleName) -> Result<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT data, version, sha256, created_at FROM tuf_files
             WHERE gun = ? AND role = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(gun.as_str())
        .bind(role.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(Self::file).transpose()
    }

    async fn by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha256: &str,
    ) -> Result<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT data, version, sha256, created_at FROM tuf_files
             WHERE gun = ? AND role = ? AND sha256 = ? LIMIT 1",
        )
        .bind(gun.as_str())
        .bind(role.as_str())
        .bind(sha256)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(Self::file).transpose()
    }

    async fn by_version(
        &self,
        gun: &Gun,
        role: &RoleName,
        version: u64,
    ) -> Result<Option<StoredFile>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT data, version, sha256, created_at FROM tuf_files
             WHERE gun = ? AND role = ? AND version = ?",
        )
        .bind(gun.as_str())
        .bind(role.as_str())
        .bind(v)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(Self::file).transpose()
    }

    async fn commit(&self, gun: &Gun, files: &[NewFile]) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        let mut tx = conn.begin().await?;
        let now = now_secs();
        for f in files {
            let version = i64::try_from(f.version).map_err(|_| StorageError::Version {
                role: f.role.to_string(),
                version: f.version,
            })?;
            let max: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM tuf_files WHERE gun = ? AND role = ?")
                    .bind(gun.as_str())
                    .bind(f.role.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            if max.is_some_and(|m| m >= version) {
                return Err(StorageError::Version {
                    role: f.role.to_string(),
                    version: f.version,
                });
            }
            let sha = tuf::hash::sha256_hex(&f.data);
            sqlx::query(
                "INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(gun.as_str())
            .bind(f.role.as_str())
            .bind(version)
            .bind(&sha)
            .bind(&f.data[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if f.role.as_str() == "timestamp" {
                sqlx::query(
                    "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?, ?, ?, ?, 'update')",
                )
                .bind(now)
                .bind(gun.as_str())
                .bind(version)
                .bind(&sha)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_repository(&self, gun: &Gun) -> Result<bool> {
        let mut conn = self.write.acquire().await?;
        let mut tx = conn.begin().await?;
        let n = sqlx::query("DELETE FROM tuf_files WHERE gun = ?")
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM private_keys WHERE gun = ?")
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pending_keys WHERE gun = ?")
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?;
        if n > 0 {
            sqlx::query(
                "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?, ?, 0, '', 'deletion')",
            )
            .bind(now_secs())
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn changes(
        &self,
        gun: Option<&Gun>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let filter = if gun.is_some() { "AND gun = ?2" } else { "" };
        let (cond, order) = match (records < 0, change_id < 0) {
            // From the latest, backwards (whatever the sign of `records`).
            (_, true) => ("1 = 1", "DESC"),
            (false, false) => ("id > ?1", "ASC"),
            (true, false) => ("id < ?1", "DESC"),
        };
        let sql = format!(
            "SELECT id, created_at, gun, version, sha256, category FROM changefeed
             WHERE {cond} {filter} ORDER BY id {order} LIMIT ?3"
        );
        let rows = sqlx::query(&sql)
            .bind(change_id)
            .bind(gun.map(|g| g.as_str()).unwrap_or(""))
            .bind(records.unsigned_abs() as i64)
            .fetch_all(&self.read)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| -> Result<Change> {
                Ok(Change {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    gun: r.try_get("gun")?,
                    version: r.try_get::<i64, _>("version")? as u64,
                    sha256: r.try_get("sha256")?,
                    category: r.try_get("category")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if order == "DESC" {
            out.reverse();
        }
        Ok(out)
    }

    async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO private_keys (key_id, gun, role, algorithm, sealed, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.key_id)
        .bind(&key.gun)
        .bind(&key.role)
        .bind(&key.algorithm)
        .bind(&key.sealed)
        .bind(key.created_at)
        .execute(&self.write)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StorageError::Conflict(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM private_keys WHERE key_id = ?")
            .bind(key_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query("SELECT * FROM private_keys WHERE key_id = ?")
            .bind(key_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(key_record).transpose()
    }

    async fn keys_for(&self, gun: &Gun) -> Result<Vec<KeyRecord>> {
        let rows =
            sqlx::query("SELECT * FROM private_keys WHERE gun = ? ORDER BY created_at, key_id")
                .bind(gun.as_str())
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(key_record).collect()
    }

    async fn pending_key(&self, gun: &Gun, role: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM pending_keys WHERE gun = ? AND role = ?")
                .bind(gun.as_str())
                .bind(role)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn set_pending_key(
        &self,
        gun: &Gun,
        role: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool> {
        let n = match expected {
            None => sqlx::query("INSERT INTO pending_keys (gun, role, key_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(gun.as_str())
                .bind(role)
                .bind(new)
                .execute(&self.write)
                .await?
                .rows_affected(),
            Some(old) => sqlx::query("UPDATE pending_keys SET key_id = ? WHERE gun = ? AND role = ? AND key_id = ?")
                .bind(new)
                .bind(gun.as_str())
                .bind(role)
                .bind(old)
                .execute(&self.write)
                .await?
                .rows_affected(),
        };
        Ok(n == 1)
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn init_setting(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        sqlx::query("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.write)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_one(&self.write)
                .await?,
        )
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT COUNT(*) FROM settings")
            .execute(&self.read)
            .await?;
        Ok(())
    }
}
