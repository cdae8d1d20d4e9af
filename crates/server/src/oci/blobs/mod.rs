//! Blob bytes and uploads in progress, behind a trait; one module per backend:
//!
//! * [`fs`]: the local filesystem (`--blobs file://PATH`, the default `<data>/registry`):
//!   uploads are files appended to as the body streams in, sessions are those files;
//! * [`s3`]: an S3-compatible object store (`--blobs s3://BUCKET/PREFIX`) through the
//!   `object_store` crate: uploads stream into S3 multipart uploads, sessions live in the
//!   registry database, so an upload begun on one server is continued and completed on
//!   any other server on the same database and bucket.
//!
//! Whatever the backend, a blob becomes visible only once its upload is complete and its
//! digest checked; memory per upload and per download is a few megabytes (a part), held
//! against the server's memory budget.

pub mod fs;
pub mod s3;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use registry::digest::Hasher;
use registry::Digest;

/// A blob's bytes (or a range of them) as they are read.
pub type BlobStream = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// An upload session, locked while a request works on it.
pub type UploadHandle = Arc<tokio::sync::Mutex<Upload>>;

/// One upload in progress.
#[derive(Debug)]
pub struct Upload {
    pub id: String,
    pub repo: String,
    /// Bytes received so far.
    pub size: u64,
    /// SHA-256 of those bytes, when this process saw them all in order (else the content
    /// is hashed again when the upload completes).
    pub(crate) hasher: Option<Hasher>,
    /// What the backend needs to go on with the upload (for S3: the multipart upload and
    /// its parts), as it stores it with the session.
    pub(crate) state: String,
}

impl Upload {
    fn new(id: String, repo: String) -> Upload {
        Upload {
            id,
            repo,
            size: 0,
            hasher: Some(Hasher::new(registry::digest::Algorithm::Sha256)),
            state: String::new(),
        }
    }
}

/// What uploads may take (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_blob_bytes: u64,
    pub max_sessions: usize,
    pub max_sessions_per_repository: usize,
    /// An upload untouched this long is removed.
    pub expiry: Duration,
}

impl From<&crate::config::Limits> for UploadLimits {
    fn from(l: &crate::config::Limits) -> Self {
        UploadLimits {
            max_blob_bytes: l.max_blob_bytes,
            max_sessions: l.max_upload_sessions,
            max_sessions_per_repository: l.max_upload_sessions_per_repository,
            expiry: l.upload_expiry,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the uploaded content has digest {actual}, not {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("the request body ended early: {0}")]
    Body(String),
    #[error("a blob may be {limit} bytes at most")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    TooManySessions(String),
    #[error("the server is busy; try again shortly")]
    Busy,
    /// Another request (on this or another server) changed the upload meanwhile.
    #[error("upload {0} was changed by another request at the same time; ask where it stands and go on from there")]
    Concurrent(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<super::meta::MetaError> for BlobError {
    fn from(e: super::meta::MetaError) -> Self {
        BlobError::Io(meta_io(e))
    }
}

/// A registry-database error as I/O, still saying "out of space" when it was (so the
/// answer is 507 and health turns read-only, as for a full blob directory).
fn meta_io(e: super::meta::MetaError) -> std::io::Error {
    use crate::health::OutOfSpace as _;
    let kind = if e.out_of_space() {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, e.to_string())
}

impl crate::health::OutOfSpace for BlobError {
    fn out_of_space(&self) -> bool {
        matches!(self, BlobError::Io(e) if e.out_of_space())
    }
}

/// A stored blob as garbage collection sees it.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub modified: SystemTime,
    pub size: u64,
}

/// Blob bytes and uploads. Every method's error names what failed; none panics on input.
#[async_trait]
pub trait BlobStore: Send + Sync {
    fn limits(&self) -> &UploadLimits;
    /// Where the blobs are, for logs and health (no credentials).
    fn location(&self) -> String;
    /// The size of a stored blob, if it is stored.
    async fn stat(&self, d: &Digest) -> std::io::Result<Option<u64>>;
    /// `count` bytes of a stored blob from `start` (the caller checked the range against
    /// `stat`); `None` if it is not stored.
    async fn read(&self, d: &Digest, start: u64, count: u64)
        -> std::io::Result<Option<BlobStream>>;
    /// Start an upload to `repo`, if the session limits allow one more.
    async fn start(&self, repo: &str) -> Result<UploadHandle, BlobError>;
    /// An upload in progress (also one begun before a restart, or on another server
    /// sharing this store), if it belongs to `repo`.
    async fn session(&self, repo: &str, id: &str) -> Result<Option<UploadHandle>, BlobError>;
    /// Append a request body to an upload; the new size. On a body that ends early, what
    /// arrived is kept (the client may resume from the new size).
    async fn append(&self, up: &mut Upload, body: Body) -> Result<u64, BlobError>;
    /// Complete an upload as `expected`: check the content's digest, then make it the
    /// blob, durably. The upload is gone afterwards, whatever the outcome.
    async fn finish(&self, up: &mut Upload, expected: &Digest) -> Result<u64, BlobError>;
    /// Drop an upload and what it stored.
    async fn discard(&self, id: &str);
    /// Remove the uploads untouched for the expiry time; how many.
    async fn expire(&self) -> usize;
    /// Every stored blob (garbage collection).
    async fn list_blobs(&self) -> std::io::Result<Vec<StoredBlob>>;
    async fn delete_blob(&self, d: &Digest) -> std::io::Result<()>;
    /// Uploads not touched since `before` are removed (unless `dry_run`); how many.
    async fn remove_stale_uploads(
        &self,
        before: SystemTime,
        dry_run: bool,
    ) -> std::io::Result<usize>;
    /// Whether the store answers (health): `Err` says what failed.
    async fn check(&self) -> Result<(), String>;
}

/// Where blobs are kept: `file://PATH` or `s3://BUCKET[/PREFIX]` (`--blobs`, `[storage]
/// blobs`; S3 settings in `[storage.s3]` or the standard `AWS_*` variables).
#[derive(Clone, PartialEq, Eq)]
pub enum BlobLocation {
    File(std::path::PathBuf),
    S3(s3::S3Location),
}

impl std::fmt::Debug for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobLocation::File(p) => write!(f, "file://{}", p.display()),
            BlobLocation::S3(s) => write!(f, "{s}"),
        }
    }
}

impl BlobLocation {
    /// Parse `file://PATH` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(url: &str) -> Result<BlobLocation, String> {
        if let Some(p) = url.strip_prefix("file://") {
            if p.is_empty() {
                return Err("file:// needs a path (file:///var/lib/notarium/blobs)".into());
            }
            return Ok(BlobLocation::File(p.into()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return s3::S3Location::parse(rest).map(BlobLocation::S3);
        }
        Err(format!(
            "blob store {:?}: use file://PATH or s3://BUCKET/PREFIX",
            url.chars().take(100).collect::<String>()
        ))
    }

    /// Whether several servers can share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, BlobLocation::S3(_))
    }
}

/// Open the blob store at `location`; S3 sessions live in `meta`.
pub async fn open(
    location: &BlobLocation,
    meta: Arc<dyn super::meta::RegistryMeta>,
    limits: UploadLimits,
    budget: Arc<crate::budget::MemoryBudget>,
    clock: Arc<dyn tuf::Clock>,
) -> Result<Arc<dyn BlobStore>, BlobError> {
    Ok(match location {
        BlobLocation::File(root) => Arc::new(fs::FsBlobs::open(root, limits, budget)?),
        BlobLocation::S3(s) => Arc::new(s3::S3Blobs::open(s, meta, limits, budget, clock).await?),
    })
}

fn io_other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A fresh upload id: 128 random bits in hex.
fn new_upload_id() -> std::io::Result<String> {
    let mut rnd = [0u8; 16];
    aws_lc_rs::rand::fill(&mut rnd).map_err(io_other)?;
    Ok(hex::encode(rnd))
}

/// Copy every blob of `from` into `to` (`notarium server migrate`): each is streamed
/// through an upload of the target, so its digest is checked before it exists there; a
/// blob the target holds already with the same size is skipped. Then every blob of the
/// target is read back and hashed. Returns (blobs, copied now, already there, bytes
/// copied now).
pub async fn copy_all(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
) -> Result<(u64, u64, u64, u64), String> {
    use futures_util::StreamExt as _;
    let blobs = from
        .list_blobs()
        .await
        .map_err(|e| format!("listing {}: {e}", from.location()))?;
    let (mut new, mut had, mut bytes) = (0u64, 0u64, 0u64);
    for b in &blobs {
        let d = &b.digest;
        if to.stat(d).await.map_err(|e| e.to_string())? == Some(b.size) {
            had += 1;
            continue;
        }
        let body = if b.size == 0 {
            Body::empty()
        } else {
            let stream = from
                .read(d, 0, b.size)
                .await
                .map_err(|e| format!("reading {d}: {e}"))?
                .ok_or_else(|| format!("{d} vanished from {}", from.location()))?;
            Body::from_stream(stream)
        };
        let up = to
            .start("notarium-migrate")
            .await
            .map_err(|e| e.to_string())?;
        let mut up = up.lock().await;
        if let Err(e) = to.append(&mut up, body).await {
            to.discard(&up.id).await;
            return Err(format!("copying {d}: {e}"));
        }
        to.finish(&mut up, d)
            .await
            .map_err(|e| format!("copying {d}: {e}"))?;
        new += 1;
        bytes += b.size;
    }
    // Read back: every blob of the source is in the target, whole, under its digest.
    for b in &blobs {
        let d = &b.digest;
        let size = to.stat(d).await.map_err(|e| e.to_string())?;
        if size != Some(b.size) {
            return Err(format!(
                "{d}: {} bytes in the source, {size:?} in the target",
                b.size
            ));
        }
        let mut h = Hasher::new(d.algorithm());
        if b.size > 0 {
            let mut s = to
                .read(d, 0, b.size)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{d} is not in {}", to.location()))?;
            while let Some(chunk) = s.next().await {
                h.update(&chunk.map_err(|e| e.to_string())?);
            }
        }
        let actual = h.finish();
        if &actual != d {
            return Err(format!("{d} reads back from the target as {actual}"));
        }
    }
    Ok((blobs.len() as u64, new, had, bytes))
}

#[cfg(test)]
mod tests {
    use crate::health::OutOfSpace as _;
    use crate::oci::meta::MetaError;

    /// A full registry database during an upload is a full disk to the client (507) and
    /// to health, as a full blob directory is; any other database error is not.
    #[test]
    fn a_full_registry_database_stays_out_of_space_through_the_blob_store() {
        let full = super::BlobError::from(MetaError::new("database or disk is full".into(), true));
        assert!(full.out_of_space());
        assert!(full.to_string().contains("database or disk is full"));
        let other = super::BlobError::from(MetaError::new("locked".into(), false));
        assert!(!other.out_of_space());
    }
}
