//! Where the server keeps everything: TUF files (every version, forever), the changefeed,
//! server-held private keys (sealed), settings. One trait, one module per backend.
//!
//! Writes of TUF files are *submitted* ([`Storage::submit`]): the backend may group many
//! into one transaction (one fsync). A commit can name the commit it was validated after
//! ([`Commit::after`]); if that one did not land, this one is skipped, never written on a
//! state that does not exist.
//!
//! Several servers may share one backend ([`Storage::shared`]): then the backend alone
//! decides whether a commit lands. Every commit names the timestamp version it was
//! validated against ([`Commit::base`]); it lands only if that is still the repository's
//! current timestamp ([`StorageError::Stale`] otherwise), so an update validated against
//! a state another server has since replaced is validated again, never written.
//! Timestamps (`created_at`) come from the clock the backend is given, not the database.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tuf::{Gun, RoleName};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A write's version is not newer than what is stored (HTTP 400 `VERSION`).
    #[error("{role}: version {version} is not newer than the stored version")]
    Version { role: String, version: u64 },
    /// The commit this one was validated after did not land; validate again.
    #[error("an earlier update of this repository failed")]
    Skipped,
    /// The repository changed since this commit was validated (another server's update,
    /// a deletion, or a database serialization conflict); validate again.
    #[error("the repository changed while this update was validated")]
    Stale,
    /// A uniqueness conflict that is not a version conflict (e.g. a key created twice).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The disk (or the database) is full.
    #[error("{}", crate::health::NO_SPACE)]
    Full,
    #[error("database: {0}")]
    Db(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One stored version of a role file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub data: Arc<[u8]>,
    pub version: u64,
    pub sha256: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A file to write.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub role: RoleName,
    pub version: u64,
    pub data: Arc<[u8]>,
}

/// Whether a submitted commit landed: pending until the backend decides.
#[derive(Debug, Default)]
pub struct CommitStatus(AtomicU8);

impl CommitStatus {
    const PENDING: u8 = 0;
    const DONE: u8 = 1;
    const FAILED: u8 = 2;

    pub fn new() -> Arc<Self> {
        Arc::new(CommitStatus(AtomicU8::new(Self::PENDING)))
    }
    pub fn set(&self, ok: bool) {
        self.0
            .store(if ok { Self::DONE } else { Self::FAILED }, Ordering::SeqCst);
    }
    pub fn is_done(&self) -> bool {
        self.0.load(Ordering::SeqCst) == Self::DONE
    }
}

/// All files of one update, written together or not at all.
pub struct Commit {
    pub gun: Gun,
    pub files: Vec<NewFile>,
    /// The repository's timestamp version this update was validated against (`None`: the
    /// repository had none). The commit lands only if it is still the current one.
    pub base: Option<u64>,
    /// The commit this update was validated after (same repository), if still in flight.
    pub after: Option<Arc<CommitStatus>>,
    /// Set by the backend when this commit's fate is known.
    pub status: Arc<CommitStatus>,
}

pub type CommitFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A changefeed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    pub created_at: i64,
    pub gun: String,
    pub version: u64,
    pub sha256: String,
    pub category: String,
}

/// A server-held private key, sealed with the server's master key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key_id: String,
    pub gun: String,
    pub role: String,
    pub algorithm: String,
    pub sealed: Vec<u8>,
    pub created_at: i64,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The highest stored version of a role.
    async fn current(&self, gun: &Gun, role: &RoleName) -> Result<Option<StoredFile>>;
    /// The highest stored version of each of `roles` that has one, in the order asked:
    /// one read where the backend can (a server loading a repository's state that another
    /// server changed).
    async fn current_many(
        &self,
        gun: &Gun,
        roles: &[RoleName],
    ) -> Result<Vec<(RoleName, StoredFile)>> {
        let mut out = Vec::with_capacity(roles.len());
        for role in roles {
            if let Some(f) = self.current(gun, role).await? {
                out.push((role.clone(), f));
            }
        }
        Ok(out)
    }
    /// The version of a role whose SHA-256 (lower-case hex) is `sha256`.
    async fn by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha256: &str,
    ) -> Result<Option<StoredFile>>;
    async fn by_version(
        &self,
        gun: &Gun,
        role: &RoleName,
        version: u64,
    ) -> Result<Option<StoredFile>>;
    /// Queue a commit. It is queued when this returns (so commits of one repository keep
    /// their order); the future resolves when it is durable or refused. Every file's
    /// version must be newer than every stored version of its role; a timestamp adds a
    /// changefeed record.
    fn submit(&self, commit: Commit) -> CommitFuture;
    /// Delete every file and key of a repository (after the commits queued before it);
    /// records a deletion in the changefeed when anything was deleted.
    async fn delete_repository(&self, gun: &Gun) -> Result<bool>;
    /// Changefeed records after `change_id` (`records > 0`), or the `|records|` before it
    /// when `records < 0` or `change_id < 0` (from the latest unless `change_id > 0`);
    /// always oldest first.
    async fn changes(&self, gun: Option<&Gun>, change_id: i64, records: i64)
        -> Result<Vec<Change>>;

    async fn insert_key(&self, key: &KeyRecord) -> Result<()>;
    async fn delete_key(&self, key_id: &str) -> Result<()>;
    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>>;
    async fn keys_for(&self, gun: &Gun) -> Result<Vec<KeyRecord>>;
    async fn pending_key(&self, gun: &Gun, role: &str) -> Result<Option<String>>;
    /// Set the pending key of (gun, role) to `new` if it is currently `expected`
    /// (compare-and-set; `None` = no pending key). Returns whether it was set.
    async fn set_pending_key(
        &self,
        gun: &Gun,
        role: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool>;

    /// Repositories with server keys created before `created_before` (unix seconds) and
    /// no metadata at all: keys asked for, never used by a first update (at most `limit`).
    async fn unused_key_guns(&self, created_before: i64, limit: usize) -> Result<Vec<Gun>>;
    /// Delete `gun`'s server keys (and pending keys) if it still has no metadata; the IDs
    /// deleted.
    async fn delete_unused_keys(&self, gun: &Gun) -> Result<Vec<String>>;
    async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Store a setting unless one exists; returns the value that is stored afterwards.
    async fn init_setting(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;

    /// The current timestamp version of a repository (one indexed lookup; what a cached
    /// timestamp is checked against when other servers may write).
    async fn head(&self, gun: &Gun) -> Result<Option<u64>>;
    /// Up to `limit` repositories with trust data whose names sort after `after`, in
    /// order (keyset paging over every repository).
    async fn repositories(&self, after: &str, limit: usize) -> Result<Vec<Gun>>;
    /// Whether other server processes may write this storage too (caches must then be
    /// checked against it before they are trusted).
    fn shared(&self) -> bool;

    /// Health check.
    async fn ping(&self) -> Result<()>;
}
