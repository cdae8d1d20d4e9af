//! Garbage collection (`notarium server gc`): delete blobs that no stored manifest
//! references, and uploads abandoned (or left by a crash). Blobs younger than the grace
//! period are kept, so a push whose manifest is not yet stored keeps its layers. Run it
//! with the server stopped: it takes the data directory's lock. (On a shared database and
//! bucket, other servers may go on running: the grace period covers their pushes in
//! progress.)

use std::time::{Duration, SystemTime};

use super::Registry;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs some manifest references.
    pub kept: usize,
    /// Unreferenced blobs younger than the grace period.
    pub young: usize,
    pub deleted: usize,
    pub bytes_freed: u64,
    pub uploads_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Meta(#[from] super::meta::MetaError),
}

pub async fn collect(reg: &Registry, grace: Duration, dry_run: bool) -> Result<GcReport, GcError> {
    let referenced = reg.meta.referenced().await?;
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    for b in reg.blobs.list_blobs().await? {
        let (digest, modified, size) = (b.digest, b.modified, b.size);
        if referenced.contains(&digest.to_string()) {
            report.kept += 1;
            continue;
        }
        if modified > cutoff {
            report.young += 1;
            continue;
        }
        report.bytes_freed += size;
        report.deleted += 1;
        if !dry_run {
            // Unlink first: a repository must never list a blob that is gone.
            reg.meta.drop_blob(&digest.to_string()).await?;
            reg.blobs.delete_blob(&digest).await?;
        }
    }
    report.uploads_removed = reg.blobs.remove_stale_uploads(cutoff, dry_run).await?;
    Ok(report)
}
