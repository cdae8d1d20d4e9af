//! The trust service behind the Notary v1 routes: the update pipeline (parse → load stored
//! state → `tuf::upload::validate` → one transaction), reads with lazy timestamp renewal,
//! key endpoints, deletion, the changefeed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tuf::metadata::Metadata;
use tuf::upload::{self, Limits, Parsed, Stored};
use tuf::{Clock, Gun, RoleName, Root, Snapshot, Timestamp};

use crate::errors::{ApiError, Code};
use crate::signing::KeyService;
use crate::storage::{NewFile, Storage, StorageError, StoredFile};

/// Timestamps are renewed when read within this many seconds of expiring.
pub const REFRESH_BEFORE_SECS: i64 = 3 * 86_400;

/// Per-repository serialization of writes inside one process: a fixed set of locks chosen
/// by hash, so memory does not grow with the number of repositories.
pub struct RepoLocks {
    shards: Vec<tokio::sync::Mutex<()>>,
}

impl RepoLocks {
    pub fn new(n: usize) -> Self {
        RepoLocks {
            shards: (0..n.max(1)).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, gun: &Gun) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        gun.hash(&mut h);
        self.shards[(h.finish() as usize) % self.shards.len()]
            .lock()
            .await
    }
}

/// The current timestamp of each repository, for reads that need no database.
///
/// Safe against a reader publishing an old timestamp after a writer published a new one:
/// both publish under one lock, a reader only when no write was published since it read
/// the database (epoch), and never over a newer version.
pub struct TimestampCache {
    cache: quick_cache::sync::Cache<Gun, CachedTimestamp>,
    epoch: AtomicU64,
    publish: std::sync::Mutex<()>,
}

#[derive(Clone)]
pub struct CachedTimestamp {
    pub file: StoredFile,
    pub expires: tuf::DateTime,
}

impl TimestampCache {
    pub fn new(entries: usize) -> Self {
        TimestampCache {
            cache: quick_cache::sync::Cache::new(entries.max(16)),
            epoch: AtomicU64::new(0),
            publish: std::sync::Mutex::new(()),
        }
    }

    pub fn get(&self, gun: &Gun) -> Option<CachedTimestamp> {
        self.cache.get(gun)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn insert_newer(&self, gun: &Gun, entry: CachedTimestamp) {
        if self
            .cache
            .get(gun)
            .is_none_or(|c| c.file.version < entry.file.version)
        {
            self.cache.insert(gun.clone(), entry);
        }
    }

    /// A reader's insert: only if nothing was written since `epoch`.
    pub fn offer(&self, gun: &Gun, epoch: u64, entry: CachedTimestamp) {
        let _g = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.insert_newer(gun, entry);
        }
    }

    /// A writer's publish after a commit (`entry` = the timestamp it wrote, if any).
    pub fn published(&self, gun: &Gun, entry: Option<CachedTimestamp>) {
        let _g = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match entry {
            Some(e) => self.insert_newer(gun, e),
            None => {
                self.cache.remove(gun);
            }
        }
    }
}

pub struct TrustService {
    pub storage: Arc<dyn Storage>,
    pub keys: KeyService,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub locks: RepoLocks,
    pub timestamps: TimestampCache,
}

fn storage_err(code: Code) -> impl Fn(StorageError) -> ApiError {
    move |e| ApiError::internal(code, e)
}

fn parse_stored<T: tuf::metadata::Role>(
    role: &str,
    f: &StoredFile,
) -> Result<Metadata<T>, ApiError> {
    Metadata::parse(role, f.data.clone())
        .map_err(|e| ApiError::internal(Code::Unknown, format!("stored {role}: {e}")))
}

impl TrustService {
    async fn current_parsed<T: tuf::metadata::Role>(
        &self,
        gun: &Gun,
        role: &RoleName,
    ) -> Result<Option<Metadata<T>>, ApiError> {
        match self
            .storage
            .current(gun, role)
            .await
            .map_err(storage_err(Code::Unknown))?
        {
            Some(f) => Ok(Some(parse_stored(role.as_str(), &f)?)),
            None => Ok(None),
        }
    }

    async fn load_stored(&self, gun: &Gun, upload: &Parsed) -> Result<Stored, ApiError> {
        let mut stored = Stored {
            root: self.current_parsed(gun, &RoleName::root()).await?,
            snapshot: self.current_parsed(gun, &RoleName::snapshot()).await?,
            timestamp: self.current_parsed(gun, &RoleName::timestamp()).await?,
            ..Default::default()
        };
        for role in Stored::roles_needed(&upload.roles()) {
            if role.is_targets_like() {
                if let Some(m) = self.current_parsed(gun, &role).await? {
                    stored.targets.insert(role, m);
                }
            }
        }
        Ok(stored)
    }

    /// `POST /v2/<gun>/_trust/tuf/`.
    pub async fn update(&self, gun: &Gun, parts: Vec<(String, Vec<u8>)>) -> Result<(), ApiError> {
        let upload = upload::parse_parts(parts)?;
        if upload.is_empty() {
            return Ok(());
        }
        let _guard = self.locks.lock(gun).await;
        // Retried only when another server process wrote the same repository between our
        // read and our commit, and only the server-made roles collided.
        for _ in 0..5 {
            let stored = self.load_stored(gun, &upload).await?;
            let held = self
                .keys
                .held(gun)
                .await
                .map_err(|e| ApiError::internal(Code::Unknown, e))?;
            let plan = upload::validate(
                gun,
                &stored,
                upload.clone(),
                &held,
                self.clock.now(),
                &self.limits,
            )?;
            match self.commit(gun, &plan).await {
                Ok(()) => return Ok(()),
                Err(StorageError::Version { role, .. })
                    if matches!(role.as_str(), "snapshot" | "timestamp")
                        && !upload.roles().iter().any(|r| r.as_str() == role) =>
                {
                    continue
                }
                Err(StorageError::Version { .. }) => {
                    return Err(ApiError::with_detail(Code::Version, serde_json::json!({})))
                }
                Err(e) => return Err(ApiError::internal(Code::Updating, e)),
            }
        }
        Err(ApiError::with_detail(Code::Version, serde_json::json!({})))
    }

    async fn commit(&self, gun: &Gun, plan: &upload::Plan) -> Result<(), StorageError> {
        let files: Vec<NewFile> = plan
            .writes
            .iter()
            .map(|w| NewFile {
                role: w.role.clone(),
                version: w.version,
                data: w.bytes.clone(),
            })
            .collect();
        let r = self.storage.commit(gun, &files).await;
        let ts = plan.writes.iter().find(|w| w.role.as_str() == "timestamp");
        let entry = match (&r, ts) {
            (Ok(()), Some(w)) => Metadata::<Timestamp>::parse("timestamp", w.bytes.clone())
                .ok()
                .map(|m| CachedTimestamp {
                    expires: m.signed().expires,
                    file: StoredFile {
                        data: w.bytes.clone(),
                        version: w.version,
                        sha256: tuf::hash::sha256_hex(&w.bytes),
                        created_at: self.clock.now().unix_secs(),
                    },
                }),
            _ => None,
        };
        if r.is_ok() {
            self.timestamps.published(gun, entry);
        }
        r
    }

    /// The current timestamp, renewed first when it expires within
    /// [`REFRESH_BEFORE_SECS`] and the server holds the key.
    pub async fn timestamp(&self, gun: &Gun) -> Result<StoredFile, ApiError> {
        let now = self.clock.now();
        if let Some(c) = self.timestamps.get(gun) {
            if now.secs_until(&c.expires) > REFRESH_BEFORE_SECS {
                return Ok(c.file);
            }
        }
        let epoch = self.timestamps.epoch();
        let file = self
            .storage
            .current(gun, &RoleName::timestamp())
            .await
            .map_err(storage_err(Code::Unknown))?
            .ok_or_else(ApiError::not_found)?;
        let ts: Metadata<Timestamp> = parse_stored("timestamp", &file)?;
        if now.secs_until(&ts.signed().expires) > REFRESH_BEFORE_SECS {
            self.timestamps.offer(
                gun,
                epoch,
                CachedTimestamp {
                    expires: ts.signed().expires,
                    file: file.clone(),
                },
            );
            return Ok(file);
        }
        self.renew(gun).await?;
        self.storage
            .current(gun, &RoleName::timestamp())
            .await
            .map_err(storage_err(Code::Unknown))?
            .ok_or_else(ApiError::not_found)
    }

    /// Re-sign an expiring timestamp (and an expiring server-held snapshot).
    async fn renew(&self, gun: &Gun) -> Result<(), ApiError> {
        let _guard = self.locks.lock(gun).await;
        for _ in 0..5 {
            let root: Option<Metadata<Root>> = self.current_parsed(gun, &RoleName::root()).await?;
            let snap: Option<Metadata<Snapshot>> =
                self.current_parsed(gun, &RoleName::snapshot()).await?;
            let ts: Option<Metadata<Timestamp>> =
                self.current_parsed(gun, &RoleName::timestamp()).await?;
            let (Some(root), Some(snap), Some(ts)) = (root, snap, ts) else {
                return Err(ApiError::not_found());
            };
            let held = self
                .keys
                .held(gun)
                .await
                .map_err(|e| ApiError::internal(Code::Unknown, e))?;
            let plan = match upload::refresh(
                root.signed(),
                &snap,
                &ts,
                &held,
                self.clock.now(),
                &self.limits,
                REFRESH_BEFORE_SECS,
            ) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => {
                    // Serve what is stored; clients will report the expiry themselves.
                    tracing::warn!(%gun, "cannot renew the timestamp: {e}");
                    return Ok(());
                }
            };
            match self.commit(gun, &plan).await {
                Ok(()) => return Ok(()),
                Err(StorageError::Version { .. }) => continue,
                Err(e) => return Err(ApiError::internal(Code::Unknown, e)),
            }
        }
        Ok(())
    }

    /// `GET <role>.json`.
    pub async fn current(&self, gun: &Gun, role: &RoleName) -> Result<StoredFile, ApiError> {
        match role.as_str() {
            "timestamp" => self.timestamp(gun).await,
            "snapshot" => {
                // The snapshot the current timestamp names.
                let ts_file = self.timestamp(gun).await?;
                let ts: Metadata<Timestamp> = parse_stored("timestamp", &ts_file)?;
                let sha = ts
                    .signed()
                    .snapshot_meta()
                    .and_then(|m| m.hashes.sha256())
                    .map(hex::encode)
                    .ok_or_else(|| {
                        ApiError::internal(Code::Unknown, "timestamp without snapshot hash")
                    })?;
                self.by_checksum(gun, role, &sha).await
            }
            _ => self
                .storage
                .current(gun, role)
                .await
                .map_err(storage_err(Code::Unknown))?
                .ok_or_else(ApiError::not_found),
        }
    }

    pub async fn by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha256: &str,
    ) -> Result<StoredFile, ApiError> {
        self.storage
            .by_checksum(gun, role, sha256)
            .await
            .map_err(storage_err(Code::Unknown))?
            .ok_or_else(ApiError::not_found)
    }

    pub async fn by_version(
        &self,
        gun: &Gun,
        role: &RoleName,
        version: u64,
    ) -> Result<StoredFile, ApiError> {
        self.storage
            .by_version(gun, role, version)
            .await
            .map_err(storage_err(Code::Unknown))?
            .ok_or_else(ApiError::not_found)
    }

    /// `GET <role>.key` (`rotate = false`) and `POST <role>.key` (`rotate = true`).
    pub async fn key(
        &self,
        gun: &Gun,
        role: &RoleName,
        rotate: bool,
    ) -> Result<tuf::PublicKey, ApiError> {
        let root: Option<Metadata<Root>> = self.current_parsed(gun, &RoleName::root()).await?;
        let root = root.as_ref().map(|m| m.signed());
        let r = if rotate {
            self.keys.pending(gun, role.as_str(), root).await
        } else {
            self.keys.current_or_pending(gun, role.as_str(), root).await
        };
        r.map_err(|e| ApiError::internal(Code::Unknown, e))
    }

    /// `DELETE /v2/<gun>/_trust/tuf/`.
    pub async fn delete(&self, gun: &Gun) -> Result<(), ApiError> {
        let _guard = self.locks.lock(gun).await;
        let ids: Vec<String> = self
            .storage
            .keys_for(gun)
            .await
            .map_err(storage_err(Code::Unknown))?
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        self.storage
            .delete_repository(gun)
            .await
            .map_err(storage_err(Code::Unknown))?;
        self.keys.forget(&ids);
        self.timestamps.published(gun, None);
        Ok(())
    }
}
