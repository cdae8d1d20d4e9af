//! The trust service behind the Notary v1 routes: the update pipeline (parse → load stored
//! state → `tuf::upload::validate` → one transaction), reads with lazy timestamp renewal,
//! key endpoints, deletion, the changefeed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tuf::metadata::Metadata;
use tuf::upload::{self, Limits, Stored};
use tuf::{Clock, Gun, RoleName, Root, Timestamp};

use crate::errors::{ApiError, Code};
use crate::signing::KeyService;
use crate::storage::{Commit, CommitStatus, NewFile, Storage, StorageError, StoredFile};

/// Attempts at an update whose commit found the repository changed (another update of it
/// landed first, on this server or another).
const MAX_ATTEMPTS: u32 = 64;

/// A short random pause before attempt `n` (servers racing on one repository).
async fn backoff(n: u32) {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % 1000;
    let ms = u64::from(n.min(10)) + jitter % (u64::from(n.min(20)) + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

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
    cache: quick_cache::sync::Cache<Gun, CachedTimestamp, TimestampWeight>,
    epoch: AtomicU64,
    publish: std::sync::Mutex<()>,
}

#[derive(Clone)]
pub struct CachedTimestamp {
    pub file: StoredFile,
    pub expires: tuf::DateTime,
}

#[derive(Clone)]
struct TimestampWeight;

impl quick_cache::Weighter<Gun, CachedTimestamp> for TimestampWeight {
    fn weight(&self, k: &Gun, v: &CachedTimestamp) -> u64 {
        (k.as_str().len() + v.file.data.len() + v.file.sha256.len() + 128) as u64
    }
}

impl TimestampCache {
    /// A cache holding at most `bytes` of timestamps.
    pub fn new(bytes: u64) -> Self {
        TimestampCache {
            cache: quick_cache::sync::Cache::with_weighter(
                (bytes / 600).max(16) as usize,
                bytes,
                TimestampWeight,
            ),
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

/// The repository states updates are validated against: the stored state plus every
/// update accepted but maybe not yet durable, and the commit of the last of those.
#[derive(Clone, Default)]
pub struct RepoState {
    pub stored: Stored,
    pub last: Option<Arc<CommitStatus>>,
}

/// Bounded by an estimate of the bytes the states hold.
#[derive(Clone)]
struct StateWeight;

impl quick_cache::Weighter<Gun, RepoState> for StateWeight {
    fn weight(&self, _k: &Gun, v: &RepoState) -> u64 {
        let s = &v.stored;
        let files = s.root().iter().map(|m| m.raw().len()).sum::<usize>()
            + s.snapshot.iter().map(|m| m.raw().len()).sum::<usize>()
            + s.timestamp.iter().map(|m| m.raw().len()).sum::<usize>()
            + s.targets.values().map(|m| m.raw().len()).sum::<usize>();
        // Parsed forms (with their parsed keys) take several times the file bytes.
        files as u64 * 8 + 4096
    }
}

pub struct TrustService {
    pub storage: Arc<dyn Storage>,
    pub keys: KeyService,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub locks: RepoLocks,
    pub timestamps: TimestampCache,
    states: quick_cache::sync::Cache<Gun, RepoState, StateWeight>,
}

fn storage_err(code: Code) -> impl Fn(StorageError) -> ApiError {
    move |e| match e {
        StorageError::Full => ApiError::no_space(),
        e => ApiError::internal(code, e),
    }
}

fn key_err(e: crate::signing::KeyServiceError) -> ApiError {
    match e {
        crate::signing::KeyServiceError::Storage(s) => storage_err(Code::Unknown)(s),
        e => ApiError::internal(Code::Unknown, e),
    }
}

fn parse_stored<T: tuf::metadata::Role>(
    role: &str,
    f: &StoredFile,
) -> Result<Metadata<T>, ApiError> {
    Metadata::parse(role, f.data.clone())
        .map_err(|e| ApiError::internal(Code::Unknown, format!("stored {role}: {e}")))
}

/// A commit in the queue, and the timestamp it writes.
struct Submitted {
    pending: crate::storage::CommitFuture,
    timestamp: Option<Arc<Metadata<Timestamp>>>,
}

/// What to do after a commit attempt.
enum Outcome {
    Done,
    Retry,
}

impl TrustService {
    pub fn new(
        storage: Arc<dyn Storage>,
        keys: KeyService,
        clock: Arc<dyn Clock>,
        limits: Limits,
        state_bytes: u64,
    ) -> Self {
        TrustService {
            storage,
            keys,
            clock,
            limits,
            locks: RepoLocks::new(1024),
            timestamps: TimestampCache::new(4 << 20),
            states: quick_cache::sync::Cache::with_weighter(16_384, state_bytes, StateWeight),
        }
    }

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

    /// The state to validate against (call with the repository's lock held): the cached one,
    /// completed with any of `roles` it lacks, or a fresh one from storage.
    async fn state(&self, gun: &Gun, roles: &[RoleName]) -> Result<RepoState, ApiError> {
        let mut cached = self.states.get(gun);
        if let Some(st) = &cached {
            // Another server may have updated the repository since: one indexed lookup
            // says whether the remembered state is still the stored one (unless this
            // server's own commits are still in flight, when the state is ahead of it).
            if self.storage.shared() && st.last.as_ref().is_none_or(|l| l.is_done()) {
                let head = self
                    .storage
                    .head(gun)
                    .await
                    .map_err(storage_err(Code::Unknown))?;
                if head != st.stored.timestamp.as_ref().map(|t| t.signed().version) {
                    self.states.remove(gun);
                    self.keys.refresh(gun);
                    cached = None;
                }
            }
        }
        // What the state lacks, in one read: everything when it was not cached (or is
        // stale), else the targets roles of this update it has not loaded yet.
        let needed = Stored::roles_needed(roles);
        let missing: Vec<RoleName> = match &cached {
            None => needed,
            Some(st) => needed
                .into_iter()
                .filter(|r| r.is_targets_like() && !st.stored.targets.contains_key(r))
                .collect(),
        };
        let mut files = if missing.is_empty() {
            Vec::new()
        } else {
            self.storage
                .current_many(gun, &missing)
                .await
                .map_err(storage_err(Code::Unknown))?
        };
        let mut take = |role: &RoleName| {
            files
                .iter()
                .position(|(r, _)| r == role)
                .map(|i| files.swap_remove(i).1)
        };
        let mut st = match cached {
            Some(st) => st,
            None => {
                let root = take(&RoleName::root());
                let snapshot = take(&RoleName::snapshot());
                let timestamp = take(&RoleName::timestamp());
                RepoState {
                    stored: Stored::new(
                        gun,
                        root.map(|f| parse_stored("root", &f)).transpose()?,
                        snapshot.map(|f| parse_stored("snapshot", &f)).transpose()?,
                        timestamp
                            .map(|f| parse_stored("timestamp", &f))
                            .transpose()?,
                        self.clock.now(),
                    )?,
                    last: None,
                }
            }
        };
        for role in missing.iter().filter(|r| r.is_targets_like()) {
            if let Some(f) = take(role) {
                let m = parse_stored(role.as_str(), &f)?;
                st.stored.targets.insert(role.clone(), Arc::new(m));
            }
        }
        Ok(st)
    }

    /// Queue a validated plan's commit and make its result the state the next update of
    /// the repository is validated against. Not async: call it with the lock held, so
    /// commits of one repository are queued in the order they were validated.
    fn submit_plan(&self, gun: &Gun, st: RepoState, plan: upload::Plan) -> Submitted {
        let status = CommitStatus::new();
        let commit = Commit {
            gun: gun.clone(),
            files: plan
                .writes
                .iter()
                .map(|w| NewFile {
                    role: w.role.clone(),
                    version: w.version,
                    data: w.bytes.clone(),
                })
                .collect(),
            base: st.stored.timestamp.as_ref().map(|t| t.signed().version),
            after: st.last.clone(),
            status: status.clone(),
        };
        let timestamp = plan.next.timestamp.clone();
        let pending = self.storage.submit(commit);
        self.states.insert(
            gun.clone(),
            RepoState {
                stored: plan.next,
                last: Some(status),
            },
        );
        Submitted { pending, timestamp }
    }

    /// Wait for a submitted commit (lock released).
    async fn finish(
        &self,
        gun: &Gun,
        submitted: Submitted,
        client_roles: &[RoleName],
    ) -> Result<Outcome, ApiError> {
        let ts = submitted.timestamp;
        Ok(match submitted.pending.await {
            Ok(()) => {
                self.timestamps.published(
                    gun,
                    ts.map(|m| CachedTimestamp {
                        expires: m.signed().expires,
                        file: StoredFile {
                            data: m.raw_shared(),
                            version: m.signed().version,
                            sha256: tuf::hash::sha256_hex(m.raw()),
                            created_at: self.clock.now().unix_secs(),
                        },
                    }),
                );
                Outcome::Done
            }
            Err(e) => {
                // The optimistic state includes this update: forget it.
                self.states.remove(gun);
                match e {
                    StorageError::Skipped => Outcome::Retry,
                    StorageError::Stale => {
                        // Another server changed the repository: its keys may be new too.
                        self.keys.refresh(gun);
                        Outcome::Retry
                    }
                    StorageError::Version { role, .. }
                        if !client_roles.iter().any(|r| r.as_str() == role) =>
                    {
                        Outcome::Retry
                    }
                    StorageError::Version { .. } => {
                        return Err(ApiError::with_detail(Code::Version, serde_json::json!({})))
                    }
                    e => return Err(storage_err(Code::Updating)(e)),
                }
            }
        })
    }

    /// `POST /v2/<gun>/_trust/tuf/`.
    pub async fn update(&self, gun: &Gun, parts: Vec<(String, Vec<u8>)>) -> Result<(), ApiError> {
        let upload = upload::parse_parts(parts)?;
        if upload.is_empty() {
            return Ok(());
        }
        let roles = upload.roles();
        let shared = self.storage.shared();
        let mut refreshed = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 && shared {
                backoff(attempt).await;
            }
            let guard = self.locks.lock(gun).await;
            let st = self.state(gun, &roles).await?;
            let held = self.keys.held(gun).await.map_err(key_err)?;
            let plan = match upload::validate(
                gun,
                &st.stored,
                upload.clone(),
                &held,
                self.clock.now(),
                &self.limits,
            ) {
                Ok(plan) => plan,
                // What this server remembers of the repository (its state, its keys) may
                // be older than what another server stored: judge once more on fresh data.
                Err(_) if shared && !refreshed => {
                    refreshed = true;
                    self.states.remove(gun);
                    self.keys.refresh(gun);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let submitted = self.submit_plan(gun, st, plan);
            drop(guard);
            let outcome = self.finish(gun, submitted, &roles).await?;
            if let Outcome::Done = outcome {
                return Ok(());
            }
        }
        Err(ApiError::internal(
            Code::Updating,
            format!("{gun}: update kept conflicting"),
        ))
    }

    /// The current timestamp, renewed first when it expires within
    /// [`REFRESH_BEFORE_SECS`] and the server holds the key.
    pub async fn timestamp(&self, gun: &Gun) -> Result<StoredFile, ApiError> {
        let now = self.clock.now();
        if let Some(c) = self.timestamps.get(gun) {
            // With other servers on the same storage, the cached timestamp is served only
            // if it is still the repository's current one (one indexed lookup).
            if now.secs_until(&c.expires) > REFRESH_BEFORE_SECS
                && (!self.storage.shared()
                    || self
                        .storage
                        .head(gun)
                        .await
                        .map_err(storage_err(Code::Unknown))?
                        == Some(c.file.version))
            {
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
        for _ in 0..8 {
            let guard = self.locks.lock(gun).await;
            let st = self.state(gun, &[]).await?;
            let held = self.keys.held(gun).await.map_err(key_err)?;
            let plan = match upload::refresh(
                &st.stored,
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
            let submitted = self.submit_plan(gun, st, plan);
            drop(guard);
            let outcome = self.finish(gun, submitted, &[]).await?;
            if let Outcome::Done = outcome {
                return Ok(());
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

    /// `GET <role>.key` (`rotate = None`) and `POST <role>.key` (`rotate = Some(algorithm)`:
    /// a new key of that algorithm, the server's default when `None`).
    pub async fn key(
        &self,
        gun: &Gun,
        role: &RoleName,
        rotate: Option<Option<keys::Algorithm>>,
    ) -> Result<tuf::PublicKey, ApiError> {
        let root: Option<Metadata<Root>> = self.current_parsed(gun, &RoleName::root()).await?;
        let root = root.as_ref().map(|m| m.signed());
        let r = if let Some(algorithm) = rotate {
            self.keys.pending(gun, role.as_str(), root, algorithm).await
        } else {
            self.keys.current_or_pending(gun, role.as_str(), root).await
        };
        r.map_err(key_err)
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
        self.keys.forget(gun, &ids);
        self.states.remove(gun);
        self.timestamps.published(gun, None);
        Ok(())
    }

    /// Renew, without waiting for a read, every timestamp (and server-held snapshot)
    /// that expires within [`REFRESH_BEFORE_SECS`]: a mirror or a cache in front of the
    /// server then never holds an expired one either. Returns (repositories looked at,
    /// renewed); a repository that fails is logged and skipped.
    pub async fn refresh_expiring(&self) -> Result<(usize, usize), StorageError> {
        let (mut seen, mut renewed) = (0, 0);
        let mut after = String::new();
        loop {
            let guns = self.storage.repositories(&after, 500).await?;
            let Some(last) = guns.last() else {
                return Ok((seen, renewed));
            };
            after = last.as_str().to_owned();
            for gun in &guns {
                seen += 1;
                let before = self.storage.head(gun).await?;
                match self.timestamp(gun).await {
                    Ok(f) if Some(f.version) != before => renewed += 1,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("renewing the timestamp of {gun}: {e:?}"),
                }
            }
        }
    }

    /// Delete the server keys of repositories that asked for them (`GET <role>.key`) more
    /// than `max_age_secs` ago and never got a first update. How many repositories.
    pub async fn reclaim_unused_keys(&self, max_age_secs: i64) -> Result<usize, StorageError> {
        let before = self.clock.now().unix_secs() - max_age_secs;
        let mut n = 0;
        loop {
            let guns = self.storage.unused_key_guns(before, 500).await?;
            if guns.is_empty() {
                return Ok(n);
            }
            let batch = guns.len();
            for gun in guns {
                // Under the repository's lock: a first update cannot land in between.
                let _guard = self.locks.lock(&gun).await;
                let ids = self.storage.delete_unused_keys(&gun).await?;
                self.keys.forget(&gun, &ids);
                n += usize::from(!ids.is_empty());
            }
            if batch < 500 {
                return Ok(n);
            }
        }
    }
}
