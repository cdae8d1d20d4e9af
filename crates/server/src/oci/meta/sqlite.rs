//! The embedded registry metadata: `<data>/registry.db` (WAL, `synchronous=FULL`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tuf::Clock;

use super::{
    MetaError, MetaResult, NewManifest, Referrer, RegistryMeta, StoredManifest, UploadRecord,
    UploadSlot,
};
use crate::db::Migration;

/// Version 1 is the schema of every database made before migrations existed.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "blob links, manifests, references, tags",
        sql: r#"
CREATE TABLE IF NOT EXISTS blob_links (
    repo   TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links (digest);
CREATE TABLE IF NOT EXISTS manifests (
    repo          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    content       BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repo, subject);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo   TEXT NOT NULL,
    digest TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (repo, digest, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_target ON manifest_refs (target);
CREATE TABLE IF NOT EXISTS tags (
    repo   TEXT NOT NULL,
    tag    TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 2,
        name: "upload sessions",
        sql: r#"
CREATE TABLE uploads (
    id         TEXT    NOT NULL PRIMARY KEY,
    repo       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    touched_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_repo ON uploads (repo);
CREATE INDEX uploads_touched ON uploads (touched_ms);
"#,
    },
];

pub struct SqliteMeta {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
}

impl SqliteMeta {
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> MetaResult<SqliteMeta> {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )?;
        crate::db::sqlite::migrate(&mut conn, MIGRATIONS)?;
        Ok(SqliteMeta {
            conn: Arc::new(Mutex::new(conn)),
            clock,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> MetaResult<T> + Send + 'static,
    ) -> MetaResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| MetaError::new(e.to_string(), false))?
    }
}

#[async_trait]
impl RegistryMeta for SqliteMeta {
    async fn link_blob(&self, repo: &str, digest: &str) -> MetaResult<()> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO blob_links (repo, digest) VALUES (?1, ?2)",
                params![repo, digest],
            )?;
            Ok(())
        })
        .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
            )? > 0)
        })
        .await
    }

    async fn blob_linked(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM blob_links WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn put_manifest(&self, m: NewManifest) -> MetaResult<()> {
        let now = self.clock.now().unix_secs();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO manifests
                 (repo, digest, media_type, artifact_type, subject, annotations, content, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    m.repo,
                    m.digest,
                    m.media_type,
                    m.artifact_type,
                    m.subject,
                    m.annotations,
                    m.content,
                    now
                ],
            )?;
            for r in &m.refs {
                tx.execute(
                    "INSERT OR IGNORE INTO manifest_refs (repo, digest, target) VALUES (?1, ?2, ?3)",
                    params![m.repo, m.digest, r],
                )?;
            }
            if let Some(t) = &m.tag {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (repo, tag, digest) VALUES (?1, ?2, ?3)",
                    params![m.repo, t, m.digest],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn tag(&self, repo: &str, tag: &str) -> MetaResult<Option<String>> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
                |row| row.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn get_manifest(&self, repo: &str, digest: &str) -> MetaResult<Option<StoredManifest>> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT media_type, content FROM manifests WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
                |row| {
                    Ok(StoredManifest {
                        digest: digest.clone(),
                        media_type: row.get(0)?,
                        content: row.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn manifest_exists(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn delete_manifest(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
            )?;
            tx.execute(
                "DELETE FROM manifest_refs WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
            )?;
            tx.execute(
                "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> MetaResult<bool> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
            )? > 0)
        })
        .await
    }

    async fn tags(
        &self,
        repo: &str,
        n: usize,
        last: Option<&str>,
    ) -> MetaResult<Option<Vec<String>>> {
        let repo = repo.to_owned();
        let last = last.unwrap_or("").to_owned();
        self.run(move |c| {
            let known = c
                .query_row(
                    "SELECT 1 FROM manifests WHERE repo = ?1 UNION SELECT 1 FROM blob_links WHERE repo = ?1 LIMIT 1",
                    params![repo],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !known {
                return Ok(None);
            }
            let mut st = c.prepare(
                "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
            )?;
            let rows = st.query_map(params![repo, last, n as i64], |r| r.get(0))?;
            Ok(Some(rows.collect::<Result<Vec<String>, _>>()?))
        })
        .await
    }

    async fn catalog(&self, n: usize, last: Option<&str>) -> MetaResult<Vec<String>> {
        let last = last.unwrap_or("").to_owned();
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT repo FROM (SELECT repo FROM manifests UNION SELECT repo FROM blob_links)
                 WHERE repo > ?1 ORDER BY repo LIMIT ?2",
            )?;
            let rows = st.query_map(params![last, n as i64], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn referrers(&self, repo: &str, subject: &str) -> MetaResult<Vec<Referrer>> {
        let (repo, subject) = (repo.to_owned(), subject.to_owned());
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT digest, media_type, length(content), artifact_type, annotations
                 FROM manifests WHERE repo = ?1 AND subject = ?2 ORDER BY digest",
            )?;
            let rows = st.query_map(params![repo, subject], |r| {
                Ok(Referrer {
                    digest: r.get(0)?,
                    media_type: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    artifact_type: r.get(3)?,
                    annotations: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn referenced(&self) -> MetaResult<HashSet<String>> {
        self.run(|c| {
            let mut st = c.prepare("SELECT DISTINCT target FROM manifest_refs")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<HashSet<String>, _>>()?)
        })
        .await
    }

    async fn drop_blob(&self, digest: &str) -> MetaResult<()> {
        let digest = digest.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM blob_links WHERE digest = ?1", params![digest])?;
            Ok(())
        })
        .await
    }

    async fn create_upload(
        &self,
        r: &UploadRecord,
        max_total: usize,
        max_per_repo: usize,
    ) -> MetaResult<UploadSlot> {
        let r = r.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let total: i64 = tx.query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))?;
            if total as usize >= max_total {
                return Ok(UploadSlot::RegistryFull(total as usize));
            }
            let here: i64 = tx.query_row(
                "SELECT count(*) FROM uploads WHERE repo = ?1",
                params![r.repo],
                |r| r.get(0),
            )?;
            if here as usize >= max_per_repo {
                return Ok(UploadSlot::RepositoryFull(here as usize));
            }
            tx.execute(
                "INSERT INTO uploads (id, repo, size, state, touched_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.id, r.repo, r.size as i64, r.state, r.touched_ms],
            )?;
            tx.commit()?;
            Ok(UploadSlot::Created)
        })
        .await
    }

    async fn get_upload(&self, id: &str) -> MetaResult<Option<UploadRecord>> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, repo, size, state, touched_ms FROM uploads WHERE id = ?1",
                params![id],
                upload_row,
            )
            .optional()?)
        })
        .await
    }

    async fn update_upload(
        &self,
        id: &str,
        old_size: u64,
        size: u64,
        state: &str,
    ) -> MetaResult<bool> {
        let (id, state, now) = (id.to_owned(), state.to_owned(), now_ms(&*self.clock));
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE uploads SET size = ?3, state = ?4, touched_ms = ?5 WHERE id = ?1 AND size = ?2",
                params![id, old_size as i64, size as i64, state, now],
            )? > 0)
        })
        .await
    }

    async fn touch_upload(&self, id: &str) -> MetaResult<()> {
        let (id, now) = (id.to_owned(), now_ms(&*self.clock));
        self.run(move |c| {
            c.execute(
                "UPDATE uploads SET touched_ms = max(touched_ms, ?2) WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> MetaResult<bool> {
        let id = id.to_owned();
        self.run(move |c| Ok(c.execute("DELETE FROM uploads WHERE id = ?1", params![id])? > 0))
            .await
    }

    async fn uploads_touched_before(&self, ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>> {
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT id, repo, size, state, touched_ms FROM uploads WHERE touched_ms < ?1 \
                 ORDER BY touched_ms LIMIT ?2",
            )?;
            let rows = st.query_map(params![ms, limit as i64], upload_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn upload_ids(&self) -> MetaResult<HashSet<String>> {
        self.run(move |c| {
            let mut st = c.prepare("SELECT id FROM uploads")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<HashSet<_>, _>>()?)
        })
        .await
    }
}

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        id: r.get(0)?,
        repo: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        state: r.get(3)?,
        touched_ms: r.get(4)?,
    })
}

/// The clock's time in Unix milliseconds.
pub(crate) fn now_ms(clock: &dyn Clock) -> i64 {
    (clock.now().unix_nanos() / 1_000_000) as i64
}
