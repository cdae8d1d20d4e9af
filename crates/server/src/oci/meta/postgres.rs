//! Registry metadata in PostgreSQL, shared by every server on the database.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::Row;
use tuf::Clock;

use super::sqlite::now_ms;
use super::{
    MetaResult, NewManifest, Referrer, RegistryMeta, StoredManifest, UploadRecord, UploadSlot,
};
use crate::db::Migration;
use crate::storage::StorageError;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "blob links, manifests, references, tags",
        sql: r#"
-- Names and tags in byte order (`COLLATE "C"`), as SQLite and the distribution spec sort them.
CREATE TABLE blob_links (
    repo   TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blob_links_digest ON blob_links (digest);
CREATE TABLE manifests (
    repo          TEXT   COLLATE "C" NOT NULL,
    digest        TEXT   COLLATE "C" NOT NULL,
    media_type    TEXT   NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    content       BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, subject);
CREATE TABLE manifest_refs (
    repo   TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (repo, digest, target)
);
CREATE INDEX manifest_refs_target ON manifest_refs (target);
CREATE TABLE tags (
    repo   TEXT COLLATE "C" NOT NULL,
    tag    TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag)
);
"#,
    },
    Migration {
        version: 2,
        name: "upload sessions",
        sql: r#"
CREATE TABLE uploads (
    id         TEXT   NOT NULL PRIMARY KEY,
    repo       TEXT   COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    state      TEXT   NOT NULL,
    touched_ms BIGINT NOT NULL
);
CREATE INDEX uploads_repo ON uploads (repo);
CREATE INDEX uploads_touched ON uploads (touched_ms);
"#,
    },
];

pub struct PgMeta {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl PgMeta {
    pub async fn open(pool: PgPool, clock: Arc<dyn Clock>) -> Result<PgMeta, StorageError> {
        crate::db::postgres::migrate(&pool, "registry", MIGRATIONS).await?;
        Ok(PgMeta { pool, clock })
    }
}

#[async_trait]
impl RegistryMeta for PgMeta {
    async fn link_blob(&self, repo: &str, digest: &str) -> MetaResult<()> {
        sqlx::query("INSERT INTO blob_links (repo, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(repo)
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn unlink_blob(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        Ok(
            sqlx::query("DELETE FROM blob_links WHERE repo = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn blob_linked(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM blob_links WHERE repo = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    async fn put_manifest(&self, m: NewManifest) -> MetaResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO manifests
             (repo, digest, media_type, artifact_type, subject, annotations, content, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (repo, digest) DO UPDATE SET media_type = EXCLUDED.media_type,
               artifact_type = EXCLUDED.artifact_type, subject = EXCLUDED.subject,
               annotations = EXCLUDED.annotations, content = EXCLUDED.content,
               created_at = EXCLUDED.created_at",
        )
        .bind(&m.repo)
        .bind(&m.digest)
        .bind(&m.media_type)
        .bind(&m.artifact_type)
        .bind(&m.subject)
        .bind(&m.annotations)
        .bind(&m.content)
        .bind(self.clock.now().unix_secs())
        .execute(&mut *tx)
        .await?;
        if !m.refs.is_empty() {
            sqlx::query(
                "INSERT INTO manifest_refs (repo, digest, target)
                 SELECT $1, $2, t FROM unnest($3::TEXT[]) AS t ON CONFLICT DO NOTHING",
            )
            .bind(&m.repo)
            .bind(&m.digest)
            .bind(&m.refs)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(t) = &m.tag {
            sqlx::query(
                "INSERT INTO tags (repo, tag, digest) VALUES ($1, $2, $3)
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = EXCLUDED.digest",
            )
            .bind(&m.repo)
            .bind(t)
            .bind(&m.digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tag(&self, repo: &str, tag: &str) -> MetaResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND tag = $2")
                .bind(repo)
                .bind(tag)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn get_manifest(&self, repo: &str, digest: &str) -> MetaResult<Option<StoredManifest>> {
        let row = sqlx::query(
            "SELECT media_type, content FROM manifests WHERE repo = $1 AND digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(StoredManifest {
                digest: digest.to_owned(),
                media_type: r.try_get(0)?,
                content: r.try_get(1)?,
            }),
            None => None,
        })
    }

    async fn manifest_exists(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    async fn delete_manifest(&self, repo: &str, digest: &str) -> MetaResult<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["manifest_refs", "tags"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE repo = $1 AND digest = $2"
            ))
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> MetaResult<bool> {
        Ok(sqlx::query("DELETE FROM tags WHERE repo = $1 AND tag = $2")
            .bind(repo)
            .bind(tag)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn tags(
        &self,
        repo: &str,
        n: usize,
        last: Option<&str>,
    ) -> MetaResult<Option<Vec<String>>> {
        let known = sqlx::query(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo = $1)
                OR EXISTS (SELECT 1 FROM blob_links WHERE repo = $1)",
        )
        .bind(repo)
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        if !known {
            return Ok(None);
        }
        let tags: Vec<String> = sqlx::query_scalar(
            r#"SELECT tag FROM tags WHERE repo = $1 AND tag > $2
               ORDER BY tag LIMIT $3"#,
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(tags))
    }

    async fn catalog(&self, n: usize, last: Option<&str>) -> MetaResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            r#"SELECT repo FROM (SELECT repo FROM manifests UNION SELECT repo FROM blob_links) r
               WHERE repo > $1 ORDER BY repo LIMIT $2"#,
        )
        .bind(last.unwrap_or(""))
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn referrers(&self, repo: &str, subject: &str) -> MetaResult<Vec<Referrer>> {
        let rows = sqlx::query(
            r#"SELECT digest, media_type, octet_length(content)::BIGINT, artifact_type, annotations
               FROM manifests WHERE repo = $1 AND subject = $2 ORDER BY digest"#,
        )
        .bind(repo)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: r.try_get(0)?,
                    media_type: r.try_get(1)?,
                    size: r.try_get::<i64, _>(2)? as u64,
                    artifact_type: r.try_get(3)?,
                    annotations: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn referenced(&self) -> MetaResult<HashSet<String>> {
        let v: Vec<String> = sqlx::query_scalar("SELECT DISTINCT target FROM manifest_refs")
            .fetch_all(&self.pool)
            .await?;
        Ok(v.into_iter().collect())
    }

    async fn drop_blob(&self, digest: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM blob_links WHERE digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_upload(
        &self,
        r: &UploadRecord,
        max_total: usize,
        max_per_repo: usize,
    ) -> MetaResult<UploadSlot> {
        // One statement: the counts and the insert see the same snapshot.
        let row = sqlx::query(
            "WITH counts AS (
                SELECT count(*) AS total, count(*) FILTER (WHERE repo = $2) AS here FROM uploads
             ), ins AS (
                INSERT INTO uploads (id, repo, size, state, touched_ms)
                SELECT $1, $2, $3, $4, $5 FROM counts WHERE total < $6 AND here < $7
                RETURNING 1
             )
             SELECT total, here, (SELECT count(*) FROM ins) AS inserted FROM counts",
        )
        .bind(&r.id)
        .bind(&r.repo)
        .bind(r.size as i64)
        .bind(&r.state)
        .bind(r.touched_ms)
        .bind(max_total as i64)
        .bind(max_per_repo as i64)
        .fetch_one(&self.pool)
        .await?;
        let (total, here, inserted): (i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(if inserted > 0 {
            UploadSlot::Created
        } else if total as usize >= max_total {
            UploadSlot::RegistryFull(total as usize)
        } else {
            UploadSlot::RepositoryFull(here as usize)
        })
    }

    async fn get_upload(&self, id: &str) -> MetaResult<Option<UploadRecord>> {
        let row =
            sqlx::query("SELECT id, repo, size, state, touched_ms FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| upload_row(&r)).transpose()
    }

    async fn update_upload(
        &self,
        id: &str,
        old_size: u64,
        size: u64,
        state: &str,
    ) -> MetaResult<bool> {
        Ok(sqlx::query(
            "UPDATE uploads SET size = $3, state = $4, touched_ms = $5 WHERE id = $1 AND size = $2",
        )
        .bind(id)
        .bind(old_size as i64)
        .bind(size as i64)
        .bind(state)
        .bind(now_ms(&*self.clock))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn touch_upload(&self, id: &str) -> MetaResult<()> {
        sqlx::query("UPDATE uploads SET touched_ms = greatest(touched_ms, $2) WHERE id = $1")
            .bind(id)
            .bind(now_ms(&*self.clock))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> MetaResult<bool> {
        Ok(sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn uploads_touched_before(&self, ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT id, repo, size, state, touched_ms FROM uploads WHERE touched_ms < $1 \
             ORDER BY touched_ms LIMIT $2",
        )
        .bind(ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_row).collect()
    }

    async fn upload_ids(&self) -> MetaResult<HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().collect())
    }
}

fn upload_row(r: &sqlx::postgres::PgRow) -> MetaResult<UploadRecord> {
    Ok(UploadRecord {
        id: r.try_get(0)?,
        repo: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
        state: r.try_get(3)?,
        touched_ms: r.try_get(4)?,
    })
}
