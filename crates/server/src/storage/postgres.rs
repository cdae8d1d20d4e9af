//! The shared backend: PostgreSQL, for any number of `notarium server` processes on one
//! database.
//!
//! The database alone decides what lands. Every repository has a row in `repositories`
//! whose `head` is its current timestamp version; a commit moves it from the version it was
//! validated against (`UPDATE … WHERE head = base`, or an insert that must not conflict for
//! a new repository), which takes the row's lock until the transaction ends: two servers'
//! updates of one repository are serialized by the database, and the one validated
//! against a state that is gone is refused as [`StorageError::Stale`] and validated again.
//! Each role's version must also be newer than every stored one (and `(gun, role,
//! version)` is unique).
//!
//! Each server writes through one task that groups the commits waiting into one
//! transaction (each under a savepoint), ordered by repository so that two servers' batches
//! take row locks in the same order. Changefeed records are inserted last, under a
//! transaction-level advisory lock held until COMMIT: ids are handed out in commit order
//! across servers, so a reader paging by id never skips a record that commits later.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{mpsc, oneshot};
use tuf::{Clock, Gun, RoleName};

use super::{Change, Commit, CommitFuture, KeyRecord, Result, Storage, StorageError, StoredFile};
use crate::db::Migration;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "trust files, repositories, changefeed, server keys, settings",
    sql: r#"
CREATE TABLE tuf_files (
    id         BIGSERIAL PRIMARY KEY,
    gun        TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    data       BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX tuf_files_checksum ON tuf_files (gun, role, sha256);
CREATE TABLE repositories (
    gun  TEXT   PRIMARY KEY,
    head BIGINT NOT NULL
);
CREATE TABLE changefeed (
    id         BIGSERIAL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    gun        TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    category   TEXT   NOT NULL CHECK (category IN ('update', 'deletion'))
);
CREATE INDEX changefeed_gun ON changefeed (gun, id);
CREATE TABLE private_keys (
    key_id     TEXT   PRIMARY KEY,
    gun        TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    algorithm  TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX private_keys_gun ON private_keys (gun);
CREATE TABLE pending_keys (
    gun    TEXT NOT NULL,
    role   TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (gun, role)
);
CREATE TABLE settings (
    name  TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);
"#,
}];

/// The advisory lock under which changefeed ids are handed out ("feed").
const FEED_LOCK: i64 = 0x6665_6564;
/// Most commits written in one transaction.
const MAX_BATCH: usize = 256;

enum Msg {
    Commit(Commit, oneshot::Sender<Result<()>>),
    Delete(Gun, oneshot::Sender<Result<bool>>),
}

pub struct PgStorage {
    pool: PgPool,
    writer: mpsc::UnboundedSender<Msg>,
}

impl PgStorage {
    /// Migrate the database and start this server's writer.
    pub async fn open(pool: PgPool, clock: Arc<dyn Clock>) -> Result<Self> {
        crate::db::postgres::migrate(&pool, "trust", MIGRATIONS).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(pool.clone(), rx, clock));
        Ok(PgStorage { pool, writer: tx })
    }
}

fn stopped() -> StorageError {
    StorageError::Db("the database writer has stopped".into())
}

fn db_version(role: &RoleName, version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| StorageError::Version {
        role: role.to_string(),
        version,
    })
}

async fn writer(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Msg>, clock: Arc<dyn Clock>) {
    while let Some(first) = rx.recv().await {
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
                Msg::Delete(gun, reply) => {
                    // Keep order: the commits queued before a deletion land first.
                    write_commits(&pool, std::mem::take(&mut commits), &*clock).await;
                    let _ = reply.send(delete(&pool, &gun, clock.now().unix_secs()).await);
                }
            }
        }
        write_commits(&pool, commits, &*clock).await;
    }
}

/// The changefeed record a landed commit adds: (gun, timestamp version, its SHA-256).
type FeedRow = (String, i64, String);

async fn write_commits(
    pool: &PgPool,
    mut commits: Vec<(Commit, oneshot::Sender<Result<()>>)>,
    clock: &dyn Clock,
) {
    if commits.is_empty() {
        return;
    }
    // One lock order for every server: by repository (stable, so one repository's
    // commits keep the order they were validated in).
    commits.sort_by(|a, b| a.0.gun.as_str().cmp(b.0.gun.as_str()));
    let now = clock.now().unix_secs();
    let mut results: Vec<Result<()>> = Vec::with_capacity(commits.len());
    let outcome: Result<()> = async {
        let mut tx = pool.begin().await?;
        let mut feed: Vec<FeedRow> = Vec::new();
        let single = commits.len() == 1;
        for (c, _) in &commits {
            if c.after.as_ref().is_some_and(|a| !a.is_done()) {
                c.status.set(false);
                results.push(Err(StorageError::Skipped));
                continue;
            }
            if !single {
                sqlx::query("SAVEPOINT one").execute(&mut *tx).await?;
            }
            match insert_commit(&mut tx, c, now).await {
                Ok(rows) => {
                    if !single {
                        sqlx::query("RELEASE SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                    }
                    // Provisional: a failed COMMIT below turns it back.
                    c.status.set(true);
                    feed.extend(rows);
                    results.push(Ok(()));
                }
                Err(e) => {
                    if single {
                        // Nothing else in this transaction: give it up.
                        let _ = tx.rollback().await;
                        c.status.set(false);
                        results.push(Err(e));
                        return Ok(());
                    }
                    sqlx::query("ROLLBACK TO SAVEPOINT one")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT one")
                        .execute(&mut *tx)
                        .await?;
                    c.status.set(false);
                    results.push(Err(e));
                }
            }
        }
        if !feed.is_empty() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FEED_LOCK)
                .execute(&mut *tx)
                .await?;
            for (gun, version, sha) in &feed {
                sqlx::query(
                    "INSERT INTO changefeed (created_at, gun, version, sha256, category) \
                     VALUES ($1, $2, $3, $4, 'update')",
                )
                .bind(now)
                .bind(gun)
                .bind(version)
                .bind(sha)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            for ((_, reply), r) in commits.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            if !matches!(e, StorageError::Stale) {
                tracing::error!("commit of {} updates failed: {e}", commits.len());
            }
            for (c, reply) in commits {
                c.status.set(false);
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// One commit's writes inside the batch's transaction, in one statement for a repository
/// that exists: the head moved from the commit's base (the row's lock: another server's
/// commit of this repository waits, then finds the head moved and writes nothing), and
/// every file inserted if newer than all stored versions of its role.
async fn insert_commit(
    tx: &mut Transaction<'_, Postgres>,
    c: &Commit,
    now: i64,
) -> Result<Vec<FeedRow>> {
    let gun = c.gun.as_str();
    let mut head = c.base.unwrap_or(0);
    let (mut roles, mut versions, mut shas, mut data) = (vec![], vec![], vec![], vec![]);
    for f in &c.files {
        if f.role.as_str() == "timestamp" {
            head = f.version;
        }
        roles.push(f.role.as_str().to_owned());
        versions.push(db_version(&f.role, f.version)?);
        shas.push(tuf::hash::sha256_hex(&f.data));
        data.push(f.data.to_vec());
    }
    let head = db_version(&RoleName::timestamp(), head)?;
    let moved = match c.base {
        None => {
            // A repository's first update: keep out a reclaim of its unused keys.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(gun)
                .execute(&mut **tx)
                .await?;
            "INSERT INTO repositories (gun, head) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING gun"
        }
        Some(_) => "UPDATE repositories SET head = $2 WHERE gun = $1 AND head = $3 RETURNING gun",
    };
    let base = db_version(&RoleName::timestamp(), c.base.unwrap_or(0))?;
    let row = sqlx::query(&format!(
        "WITH moved AS ({moved}),
         ins AS (
           INSERT INTO tuf_files (gun, role, version, sha256, data, created_at)
           SELECT $1, f.role, f.version, f.sha256, f.data, $4
           FROM unnest($5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::BYTEA[]) AS f(role, version, sha256, data)
           WHERE EXISTS (SELECT 1 FROM moved)
             AND NOT EXISTS (SELECT 1 FROM tuf_files t
                             WHERE t.gun = $1 AND t.role = f.role AND t.version >= f.version)
           RETURNING role)
         SELECT (SELECT count(*) FROM moved), ARRAY(SELECT role FROM ins)"
    ))
    .bind(gun)
    .bind(head)
    .bind(base)
    .bind(now)
    .bind(&roles)
    .bind(&versions)
    .bind(&shas)
    .bind(&data)
    .fetch_one(&mut **tx)
    .await?;
    let moved: i64 = row.try_get(0)?;
    if moved != 1 {
        return Err(StorageError::Stale);
    }
    let inserted: Vec<String> = row.try_get(1)?;
    if let Some(f) = c
        .files
        .iter()
        .find(|f| !inserted.iter().any(|r| r == f.role.as_str()))
    {
        return Err(StorageError::Version {
            role: f.role.to_string(),
            version: f.version,
        });
    }
    Ok(c.files
        .iter()
        .zip(versions.iter().zip(shas))
        .filter(|(f, _)| f.role.as_str() == "timestamp")
        .map(|(_, (v, sha))| (gun.to_owned(), *v, sha))
        .collect())
}

async fn delete(pool: &PgPool, gun: &Gun, now: i64) -> Result<bool> {
    let g = gun.as_str();
    let mut tx = pool.begin().await?;
    // The repository's row lock: no commit of it lands in between.
    sqlx::query("DELETE FROM repositories WHERE gun = $1")
        .bind(g)
        .execute(&mut *tx)
        .await?;
    let n = sqlx::query("DELETE FROM tuf_files WHERE gun = $1")
        .bind(g)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM private_keys WHERE gun = $1")
        .bind(g)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM pending_keys WHERE gun = $1")
        .bind(g)
        .execute(&mut *tx)
        .await?;
    if n > 0 {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEED_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO changefeed (created_at, gun, version, sha256, category) \
             VALUES ($1, $2, 0, '', 'deletion')",
        )
        .bind(now)
        .bind(g)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

fn file_row(r: &PgRow) -> Result<StoredFile> {
    let data: Vec<u8> = r.try_get(0)?;
    Ok(StoredFile {
        data: Arc::from(data),
        version: r.try_get::<i64, _>(1)? as u64,
        sha256: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn key_row(r: &PgRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: r.try_get(0)?,
        gun: r.try_get(1)?,
        role: r.try_get(2)?,
        algorithm: r.try_get(3)?,
        sealed: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

const FILE_COLUMNS: &str = "data, version, sha256, created_at";
const KEY_COLUMNS: &str = "key_id, gun, role, algorithm, sealed, created_at";

#[async_trait]
impl Storage for PgStorage {
    async fn current(&self, gun: &Gun, role: &RoleName) -> Result<Option<StoredFile>> {
        sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files WHERE gun = $1 AND role = $2 \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(gun.as_str())
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(file_row)
        .transpose()
    }

    async fn current_many(
        &self,
        gun: &Gun,
        roles: &[RoleName],
    ) -> Result<Vec<(RoleName, StoredFile)>> {
        let names: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
        // One index lookup per role (the newest version), not a scan of its versions.
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS}, r.role FROM unnest($2::TEXT[]) AS r(role) \
             CROSS JOIN LATERAL (SELECT {FILE_COLUMNS} FROM tuf_files t \
               WHERE t.gun = $1 AND t.role = r.role ORDER BY t.version DESC LIMIT 1) f"
        ))
        .bind(gun.as_str())
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            let role: String = r.try_get(4)?;
            found.push((role, file_row(r)?));
        }
        Ok(roles
            .iter()
            .filter_map(|role| {
                let i = found.iter().position(|(n, _)| n == role.as_str())?;
                Some((role.clone(), found.swap_remove(i).1))
            })
            .collect())
    }

    async fn by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha256: &str,
    ) -> Result<Option<StoredFile>> {
        sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files WHERE gun = $1 AND role = $2 AND sha256 = $3 LIMIT 1"
        ))
        .bind(gun.as_str())
        .bind(role.as_str())
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(file_row)
        .transpose()
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
        sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3"
        ))
        .bind(gun.as_str())
        .bind(role.as_str())
        .bind(v)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(file_row)
        .transpose()
    }

    fn submit(&self, commit: Commit) -> CommitFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .writer
            .send(Msg::Commit(commit, tx))
            .map_err(|_| stopped());
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| stopped())?
        })
    }

    async fn delete_repository(&self, gun: &Gun) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Msg::Delete(gun.clone(), tx))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    async fn changes(
        &self,
        gun: Option<&Gun>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let desc = change_id < 0 || records < 0;
        let cond = match (desc, change_id > 0) {
            (true, true) => "id < $1",
            (true, false) => "$1::BIGINT IS NOT NULL",
            (false, _) => "id > $1",
        };
        let sql = format!(
            "SELECT id, created_at, gun, version, sha256, category FROM changefeed
             WHERE {cond} AND ($2::TEXT IS NULL OR gun = $2) ORDER BY id {} LIMIT $3",
            if desc { "DESC" } else { "ASC" }
        );
        let rows = sqlx::query(&sql)
            .bind(change_id)
            .bind(gun.map(|g| g.as_str().to_owned()))
            .bind(records.unsigned_abs().min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(Change {
                    id: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    gun: r.try_get(2)?,
                    version: r.try_get::<i64, _>(3)? as u64,
                    sha256: r.try_get(4)?,
                    category: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if desc {
            out.reverse();
        }
        Ok(out)
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO private_keys (key_id, gun, role, algorithm, sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.key_id)
        .bind(&k.gun)
        .bind(&k.role)
        .bind(&k.algorithm)
        .bind(&k.sealed)
        .bind(k.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM private_keys WHERE key_id = $1")
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM private_keys WHERE key_id = $1"
        ))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(key_row)
        .transpose()
    }

    async fn keys_for(&self, gun: &Gun) -> Result<Vec<KeyRecord>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM private_keys WHERE gun = $1 ORDER BY created_at, key_id"
        ))
        .bind(gun.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_row)
        .collect()
    }

    async fn pending_key(&self, gun: &Gun, role: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM pending_keys WHERE gun = $1 AND role = $2")
                .bind(gun.as_str())
                .bind(role)
                .fetch_optional(&self.pool)
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
            None => {
                sqlx::query(
                    "INSERT INTO pending_keys (gun, role, key_id) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(gun.as_str())
                .bind(role)
                .bind(new)
                .execute(&self.pool)
                .await?
            }
            Some(old) => sqlx::query(
                "UPDATE pending_keys SET key_id = $1 WHERE gun = $2 AND role = $3 AND key_id = $4",
            )
            .bind(new)
            .bind(gun.as_str())
            .bind(role)
            .bind(old)
            .execute(&self.pool)
            .await?,
        };
        Ok(n.rows_affected() == 1)
    }

    async fn unused_key_guns(&self, created_before: i64, limit: usize) -> Result<Vec<Gun>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT k.gun FROM private_keys k WHERE k.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.gun = k.gun) LIMIT $2",
        )
        .bind(created_before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().filter_map(|g| Gun::new(g).ok()).collect())
    }

    async fn delete_unused_keys(&self, gun: &Gun) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // The lock a repository's first update takes: it cannot land in between.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?;
        let used: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM repositories WHERE gun = $1)")
                .bind(gun.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if used {
            return Ok(Vec::new());
        }
        let ids: Vec<String> =
            sqlx::query_scalar("DELETE FROM private_keys WHERE gun = $1 RETURNING key_id")
                .bind(gun.as_str())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM pending_keys WHERE gun = $1")
            .bind(gun.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn init_setting(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StorageError::Db(format!("setting {name} vanished")))
    }

    async fn repositories(&self, after: &str, limit: usize) -> Result<Vec<Gun>> {
        let rows = sqlx::query("SELECT gun FROM repositories WHERE gun > $1 ORDER BY gun LIMIT $2")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let g: String = r.try_get(0)?;
            if let Ok(g) = Gun::new(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }

    async fn head(&self, gun: &Gun) -> Result<Option<u64>> {
        let v: Option<i64> = sqlx::query_scalar("SELECT head FROM repositories WHERE gun = $1")
            .bind(gun.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|v| v as u64))
    }

    fn shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
