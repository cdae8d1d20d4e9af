//! The embedded backend: one SQLite file in the data directory, WAL mode,
//! `synchronous=FULL` (a transaction is on disk when COMMIT returns).
//!
//! All writes go through one writer thread that owns the only writing connection. It takes
//! every commit that is waiting and writes them in one transaction, each under its own
//! savepoint (a refused commit rolls back alone), so concurrent updates share one fsync
//! (group commit). Reads use a small pool of read-only connections on blocking threads; in
//! WAL mode they never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use tokio::sync::oneshot;
use tuf::{Gun, RoleName};

use super::{Change, Commit, CommitFuture, KeyRecord, Result, Storage, StorageError, StoredFile};
use crate::db::Migration;
use tuf::Clock;

/// The schema, step by step (`PRAGMA user_version` records the last applied). Version 1
/// is the schema of every database made before migrations existed (hence `IF NOT EXISTS`).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "trust files, changefeed, server keys, settings",
    sql: r#"
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
"#,
}];

/// Most commits written in one transaction.
const MAX_BATCH: usize = 256;

type Job = Box<dyn FnOnce(&Transaction<'_>) -> Result<Box<dyn FnOnce(Result<()>) + Send>> + Send>;

enum Msg {
    Commit(Commit, oneshot::Sender<Result<()>>),
    /// Any other write, run in its own transaction. Returns what to do once the
    /// transaction's fate is known.
    Job(Job),
}

pub struct SqliteStorage {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Msg>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    clock: Arc<dyn Clock>,
}

fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    if !read_only {
        c.pragma_update(None, "journal_mode", "WAL")?;
    }
    c.pragma_update(None, "synchronous", "FULL")?;
    // Page cache per connection, in KiB: the writer's matters, readers' less so.
    c.pragma_update(None, "cache_size", if read_only { -2000 } else { -8000 })?;
    Ok(c)
}

impl SqliteStorage {
    /// Open (creating if needed) the database file at `path`.
    pub async fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut c = open(&p, false)?;
            crate::db::sqlite::migrate(&mut c, MIGRATIONS)?;
            Ok(c)
        })
        .await
        .map_err(|e| StorageError::Db(e.to_string()))??;
        let (tx, rx) = mpsc::channel();
        let c = clock.clone();
        std::thread::Builder::new()
            .name("notarium-sqlite-writer".into())
            .spawn(move || writer(conn, rx, c))
            .map_err(|e| StorageError::Db(e.to_string()))?;
        Ok(SqliteStorage {
            path,
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(Vec::new())),
            clock,
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_secs()
    }

    fn send(&self, m: Msg) -> Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(m)
            .map_err(|_| StorageError::Db("the database writer has stopped".into()))
    }

    /// Run a write in its own transaction on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |t| {
            let r = f(t);
            Ok(Box::new(move |committed: Result<()>| {
                let _ = tx.send(match (r, committed) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                });
            }) as Box<dyn FnOnce(Result<()>) + Send>)
        });
        self.send(Msg::Job(job))?;
        rx.await
            .map_err(|_| StorageError::Db("the database writer has stopped".into()))?
    }

    /// Run a read on a pooled read-only connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => open(&path, true)?,
            };
            let r = f(&conn);
            let mut pool = readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StorageError::Db(e.to_string()))?
    }
}

/// The writer thread: group-commit every waiting commit in one transaction.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Msg>, clock: Arc<dyn Clock>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut commits = Vec::new();
        for m in batch {
            match m {
                Msg::Commit(c, reply) => commits.push((c, reply)),
                Msg::Job(job) => {
                    // Keep order: write the commits queued before this job first.
                    write_commits(&mut conn, std::mem::take(&mut commits), &*clock);
                    run_job(&mut conn, job);
                }
            }
        }
        write_commits(&mut conn, commits, &*clock);
    }
}

fn run_job(conn: &mut Connection, job: Job) {
    let tx = match conn.transaction() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("begin: {e}");
            return;
        }
    };
    match job(&tx) {
        Ok(after) => after(tx.commit().map_err(StorageError::from)),
        Err(e) => {
            drop(tx);
            tracing::debug!("write job failed: {e}");
        }
    }
}

fn write_commits(
    conn: &mut Connection,
    commits: Vec<(Commit, oneshot::Sender<Result<()>>)>,
    clock: &dyn Clock,
) {
    if commits.is_empty() {
        return;
    }
    let mut results: Vec<Result<()>> = Vec::with_capacity(commits.len());
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = clock.now().unix_secs();
        for (c, _) in &commits {
            if c.after.as_ref().is_some_and(|a| !a.is_done()) {
                c.status.set(false);
                results.push(Err(StorageError::Skipped));
                continue;
            }
            tx.execute_batch("SAVEPOINT one")?;
            match insert_files(&tx, c, now) {
                Ok(()) => {
                    tx.execute_batch("RELEASE one")?;
                    // Provisional: a failed COMMIT below turns it back.
                    c.status.set(true);
                    results.push(Ok(()));
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO one; RELEASE one")?;
                    c.status.set(false);
                    results.push(Err(e));
                }
            }
        }
        tx.commit()
    })();
    match outcome {
        Ok(()) => {
            for ((_, reply), r) in commits.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            tracing::error!("commit of {} updates failed: {e}", commits.len());
            let e = StorageError::from(e);
            for (c, reply) in commits {
                c.status.set(false);
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The current timestamp version of a repository.
fn head(c: &Connection, gun: &str) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = c
        .prepare_cached("SELECT MAX(version) FROM tuf_files WHERE gun = ?1 AND role = 'timestamp'")?
        .query_row(params![gun], |r| r.get(0))?;
    Ok(v.map(|v| v as u64))
}

fn insert_files(tx: &Transaction<'_>, c: &Commit, now: i64) -> Result<()> {
    // Validated against the state that is still current, or not written at all.
    if head(tx, c.gun.as_str())? != c.base {
        return Err(StorageError::Stale);
    }
    for f in &c.files {
        let version = i64::try_from(f.version).map_err(|_| StorageError::Version {
            role: f.role.to_string(),
            version: f.version,
        })?;
        let sha = tuf::hash::sha256_hex(&f.data);
        // Insert only when no stored version of the role is as new: the version guard that
        // keeps every writer (and every server) honest.
        let n = tx
            .prepare_cached(
                "INSERT INTO tuf_files (gun, role, version, sha256, data, created_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6
                 WHERE NOT EXISTS (SELECT 1 FROM tuf_files WHERE gun = ?1 AND role = ?2 AND version >= ?3)",
            )?
            .execute(params![c.gun.as_str(), f.role.as_str(), version, sha, &f.data[..], now])?;
        if n == 0 {
            return Err(StorageError::Version {
                role: f.role.to_string(),
                version: f.version,
            });
        }
        if f.role.as_str() == "timestamp" {
            tx.prepare_cached(
                "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?1, ?2, ?3, ?4, 'update')",
            )?
            .execute(params![now, c.gun.as_str(), version, sha])?;
        }
    }
    Ok(())
}

fn file_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFile> {
    let data: Vec<u8> = row.get(0)?;
    Ok(StoredFile {
        data: Arc::from(data),
        version: row.get::<_, i64>(1)? as u64,
        sha256: row.get(2)?,
        created_at: row.get(3)?,
    })
}

fn key_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: row.get(0)?,
        gun: row.get(1)?,
        role: row.get(2)?,
        algorithm: row.get(3)?,
        sealed: row.get(4)?,
        created_at: row.get(5)?,
    })
}

const KEY_COLUMNS: &str = "key_id, gun, role, algorithm, sealed, created_at";

#[async_trait]
impl Storage for SqliteStorage {
    async fn current(&self, gun: &Gun, role: &RoleName) -> Result<Option<StoredFile>> {
        let (g, r) = (gun.to_string(), role.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT data, version, sha256, created_at FROM tuf_files
                 WHERE gun = ?1 AND role = ?2 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![g, r], file_row)
            .optional()?)
        })
        .await
    }

    async fn by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha256: &str,
    ) -> Result<Option<StoredFile>> {
        let (g, r, s) = (gun.to_string(), role.to_string(), sha256.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT data, version, sha256, created_at FROM tuf_files
                 WHERE gun = ?1 AND role = ?2 AND sha256 = ?3 LIMIT 1",
            )?
            .query_row(params![g, r, s], file_row)
            .optional()?)
        })
        .await
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
        let (g, r) = (gun.to_string(), role.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT data, version, sha256, created_at FROM tuf_files
                 WHERE gun = ?1 AND role = ?2 AND version = ?3",
            )?
            .query_row(params![g, r, v], file_row)
            .optional()?)
        })
        .await
    }

    fn submit(&self, commit: Commit) -> CommitFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Msg::Commit(commit, tx));
        Box::pin(async move {
            sent?;
            rx.await
                .map_err(|_| StorageError::Db("the database writer has stopped".into()))?
        })
    }

    async fn delete_repository(&self, gun: &Gun) -> Result<bool> {
        let g = gun.to_string();
        let now = self.now();
        self.write(move |tx| {
            let n = tx.execute("DELETE FROM tuf_files WHERE gun = ?1", params![g])?;
            tx.execute("DELETE FROM private_keys WHERE gun = ?1", params![g])?;
            tx.execute("DELETE FROM pending_keys WHERE gun = ?1", params![g])?;
            if n > 0 {
                tx.execute(
                    "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?1, ?2, 0, '', 'deletion')",
                    params![now, g],
                )?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn changes(
        &self,
        gun: Option<&Gun>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let gun = gun.map(|g| g.to_string());
        self.read(move |c| {
            let filter = if gun.is_some() {
                "AND gun = ?2"
            } else {
                "AND ?2 = ?2"
            };
            // As the reference: a negative ID or count pages backwards, from the latest
            // unless a positive ID is given.
            let desc = change_id < 0 || records < 0;
            let cond = match (desc, change_id > 0) {
                (true, true) => "id < ?1",
                (true, false) => "?1 = ?1",
                (false, _) => "id > ?1",
            };
            let sql = format!(
                "SELECT id, created_at, gun, version, sha256, category FROM changefeed
                 WHERE {cond} {filter} ORDER BY id {} LIMIT ?3",
                if desc { "DESC" } else { "ASC" }
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    change_id,
                    gun.unwrap_or_default(),
                    records.unsigned_abs() as i64
                ],
                |r| {
                    Ok(Change {
                        id: r.get(0)?,
                        created_at: r.get(1)?,
                        gun: r.get(2)?,
                        version: r.get::<_, i64>(3)? as u64,
                        sha256: r.get(4)?,
                        category: r.get(5)?,
                    })
                },
            )?;
            let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            if desc {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        let k = key.clone();
        self.write(move |tx| {
            // A key ID stored twice is a `Conflict` (constraint violation).
            tx.execute(
                "INSERT INTO private_keys (key_id, gun, role, algorithm, sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.key_id, k.gun, k.role, k.algorithm, k.sealed, k.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        let id = key_id.to_owned();
        self.write(move |tx| {
            tx.execute("DELETE FROM private_keys WHERE key_id = ?1", params![id])?;
            Ok(())
        })
        .await
    }

    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let id = key_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM private_keys WHERE key_id = ?1"
            ))?
            .query_row(params![id], key_row)
            .optional()?)
        })
        .await
    }

    async fn keys_for(&self, gun: &Gun) -> Result<Vec<KeyRecord>> {
        let g = gun.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM private_keys WHERE gun = ?1 ORDER BY created_at, key_id"
            ))?;
            let rows = stmt.query_map(params![g], key_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn unused_key_guns(&self, created_before: i64, limit: usize) -> Result<Vec<Gun>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT k.gun FROM private_keys k WHERE k.created_at < ?1 \
                 AND NOT EXISTS (SELECT 1 FROM tuf_files f WHERE f.gun = k.gun) LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![created_before, limit as i64], |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for g in rows {
                if let Ok(g) = Gun::new(&g?) {
                    out.push(g);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_unused_keys(&self, gun: &Gun) -> Result<Vec<String>> {
        let g = gun.to_string();
        self.write(move |tx| {
            let used: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM tuf_files WHERE gun = ?1)")?
                .query_row(params![g], |r| r.get(0))?;
            if used {
                return Ok(Vec::new());
            }
            let ids = tx
                .prepare_cached("SELECT key_id FROM private_keys WHERE gun = ?1")?
                .query_map(params![g], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.execute("DELETE FROM private_keys WHERE gun = ?1", params![g])?;
            tx.execute("DELETE FROM pending_keys WHERE gun = ?1", params![g])?;
            Ok(ids)
        })
        .await
    }

    async fn pending_key(&self, gun: &Gun, role: &str) -> Result<Option<String>> {
        let (g, r) = (gun.to_string(), role.to_owned());
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT key_id FROM pending_keys WHERE gun = ?1 AND role = ?2")?
                    .query_row(params![g, r], |row| row.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn set_pending_key(
        &self,
        gun: &Gun,
        role: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool> {
        let (g, r, e, n) = (
            gun.to_string(),
            role.to_owned(),
            expected.map(str::to_owned),
            new.to_owned(),
        );
        self.write(move |tx| {
            let changed = match e {
                None => tx.execute(
                    "INSERT INTO pending_keys (gun, role, key_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![g, r, n],
                )?,
                Some(old) => tx.execute(
                    "UPDATE pending_keys SET key_id = ?1 WHERE gun = ?2 AND role = ?3 AND key_id = ?4",
                    params![n, g, r, old],
                )?,
            };
            Ok(changed == 1)
        })
        .await
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let n = name.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
                    .query_row(params![n], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        // Read first: a server that starts on a full disk must not need to write.
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        let (n, v) = (name.to_owned(), value.to_vec());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![n, v],
            )?;
            Ok(tx.query_row(
                "SELECT value FROM settings WHERE name = ?1",
                params![n],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn repositories(&self, after: &str, limit: usize) -> Result<Vec<Gun>> {
        let after = after.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT gun FROM tuf_files WHERE gun > ?1 ORDER BY gun LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for g in rows {
                if let Ok(g) = Gun::new(&g?) {
                    out.push(g);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn head(&self, gun: &Gun) -> Result<Option<u64>> {
        let g = gun.to_string();
        self.read(move |c| Ok(head(c, &g)?)).await
    }

    fn shared(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM settings", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}
