//! What the registry knows besides blob bytes: which repository may use which blob,
//! manifests (exact bytes) with what they reference, and tags. Behind a trait; the
//! backends are SQLite (`<data>/registry.db`, WAL, `synchronous=FULL`, the default) and
//! PostgreSQL (shared by many servers); timestamps come from the clock they are given.

pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("registry database: {message}")]
pub struct MetaError {
    message: String,
    /// The database could not be written for lack of space.
    full: bool,
}

impl MetaError {
    /// `full`: the database could not be written for lack of space.
    pub fn new(message: String, full: bool) -> Self {
        MetaError { message, full }
    }
}

impl crate::health::OutOfSpace for MetaError {
    fn out_of_space(&self) -> bool {
        self.full
    }
}

pub type MetaResult<T> = Result<T, MetaError>;

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// A manifest to store, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    /// JSON of the manifest's annotations (for referrers).
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    /// Digests of the blobs and manifests it references.
    pub refs: Vec<String>,
    pub tag: Option<String>,
}

/// A manifest that refers to another (a referrer).
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// An upload session kept in the database (blob stores whose uploads any server may
/// continue: S3). `state` is the blob store's own description of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub repo: String,
    pub size: u64,
    pub state: String,
    /// Last touched, Unix milliseconds from the service's clock.
    pub touched_ms: i64,
}

/// Whether a new upload session fit the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadSlot {
    Created,
    /// The registry holds this many sessions, its limit.
    RegistryFull(usize),
    /// The repository holds this many sessions, the limit per repository.
    RepositoryFull(usize),
}

#[async_trait]
pub trait RegistryMeta: Send + Sync {
    async fn link_blob(&self, repo: &str, digest: &str) -> MetaResult<()>;
    async fn unlink_blob(&self, repo: &str, digest: &str) -> MetaResult<bool>;
    async fn blob_linked(&self, repo: &str, digest: &str) -> MetaResult<bool>;
    async fn put_manifest(&self, m: NewManifest) -> MetaResult<()>;
    /// The digest a tag points at.
    async fn tag(&self, repo: &str, tag: &str) -> MetaResult<Option<String>>;
    async fn get_manifest(&self, repo: &str, digest: &str) -> MetaResult<Option<StoredManifest>>;
    async fn manifest_exists(&self, repo: &str, digest: &str) -> MetaResult<bool>;
    /// Delete a manifest and the tags pointing at it.
    async fn delete_manifest(&self, repo: &str, digest: &str) -> MetaResult<bool>;
    async fn delete_tag(&self, repo: &str, tag: &str) -> MetaResult<bool>;
    /// Tags in order after `last`, at most `n`; `None` when the repository is unknown.
    async fn tags(
        &self,
        repo: &str,
        n: usize,
        last: Option<&str>,
    ) -> MetaResult<Option<Vec<String>>>;
    async fn catalog(&self, n: usize, last: Option<&str>) -> MetaResult<Vec<String>>;
    async fn referrers(&self, repo: &str, subject: &str) -> MetaResult<Vec<Referrer>>;
    /// Every blob or manifest digest a stored manifest references (garbage collection).
    async fn referenced(&self) -> MetaResult<HashSet<String>>;
    /// Forget every repository's link to a blob (it is being deleted).
    async fn drop_blob(&self, digest: &str) -> MetaResult<()>;
    /// Record a new upload session unless the registry already holds `max_total`
    /// sessions or its repository `max_per_repo` (counted by the database, so across
    /// servers; two servers starting sessions at the same instant may pass a bound by one
    /// each).
    async fn create_upload(
        &self,
        r: &UploadRecord,
        max_total: usize,
        max_per_repo: usize,
    ) -> MetaResult<UploadSlot>;
    async fn get_upload(&self, id: &str) -> MetaResult<Option<UploadRecord>>;
    /// Move an upload from `old_size` to `size` with its new state, touched now; `false`
    /// (nothing changed) when its size is no longer `old_size` or it is gone.
    async fn update_upload(
        &self,
        id: &str,
        old_size: u64,
        size: u64,
        state: &str,
    ) -> MetaResult<bool>;
    /// Mark an upload as in use now (a long request keeps it from expiring).
    async fn touch_upload(&self, id: &str) -> MetaResult<()>;
    async fn delete_upload(&self, id: &str) -> MetaResult<bool>;
    /// Upload sessions last touched before `ms` (Unix milliseconds), at most `limit`.
    async fn uploads_touched_before(&self, ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>>;
    /// Every upload session's id (garbage collection of stray objects).
    async fn upload_ids(&self) -> MetaResult<HashSet<String>>;
}
