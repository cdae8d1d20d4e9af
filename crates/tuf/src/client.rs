//! The client's update rules (`notary-protocol.md` §7.2 and the TUF attacks of
//! `security.md` §2), with all I/O behind two traits: [`Remote`] fetches files, [`Local`]
//! is the cache of trusted metadata. Each rule is one check here:
//!
//! * **rollback**: no role's version may go below the cached (trusted) one;
//! * **freeze**: expired metadata is refused (the cached copies too);
//! * **mix-and-match**: snapshot must match the timestamp's hashes and length, every
//!   targets file the snapshot's;
//! * **endless data**: every download is bounded (timestamp 1 MiB, root 1 MiB, others by
//!   the length the parent metadata gives);
//! * **threshold / wrong key**: signatures from enough distinct trusted keys;
//! * **root rotation**: a new root is reached only through every version in between, each
//!   signed by its predecessor's keys; rotated timestamp/snapshot keys reset their version
//!   floor (fast-forward recovery, CS-DRNT15-3);
//! * **fast-forward**: the server refuses absurd version jumps; the client's floor resets
//!   only with a key rotation.
//!
//! Nothing reaches the cache before it is verified.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Error;
use crate::metadata::{FileMeta, Metadata, Role, Root, Snapshot, Targets, Timestamp};
use crate::names::{Gun, RoleName};
use crate::time::DateTime;
use crate::verify::{self, Checks, Pinning, RoleKeys, RootChecks, Verified};

/// Download limits (bytes).
pub const MAX_ROOT: u64 = 1 << 20;
pub const MAX_TIMESTAMP: u64 = 1 << 20;
/// Most root versions walked in one update.
pub const MAX_ROOT_ROTATIONS: u64 = 1024;

/// Why a fetch failed (not a 404, which is `Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError(pub String);

/// Where metadata comes from: the trust server.
pub trait Remote {
    /// Fetch `file` (e.g. `root.json`, `snapshot.<sha256>.json`, `3.root.json`). More
    /// than `limit` bytes must be refused (the implementation stops reading there and
    /// returns [`Fetched::TooLarge`]).
    fn fetch(&mut self, file: &str, limit: u64) -> Result<Fetched, FetchError>;
}

pub enum Fetched {
    Found(Arc<[u8]>),
    NotFound,
    TooLarge,
}

/// The local cache of trusted metadata (`<trust>/tuf/<gun>/metadata/`).
pub trait Local {
    fn load(&self, role: &RoleName) -> Option<Arc<[u8]>>;
    fn store(&mut self, role: &RoleName, bytes: &[u8]) -> Result<(), String>;
    fn remove(&mut self, role: &RoleName);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{gun} does not exist on the trust server (no trust data)")]
    NotFound { gun: String },
    #[error("{role}: the trust server does not have it")]
    Missing { role: String },
    /// A transport failure (the message says which server and why).
    #[error("{0}")]
    Fetch(String),
    #[error("{0}")]
    Tuf(#[from] Error),
    #[error(
        "cached trust data for {gun} is unusable ({msg}); remove {what} to trust the server again"
    )]
    BadCache {
        gun: String,
        what: String,
        msg: String,
    },
}

/// A repository's verified metadata, loaded as it is needed.
pub struct Client<'a, R: Remote, L: Local> {
    gun: Gun,
    remote: &'a mut R,
    local: &'a mut L,
    now: DateTime,
    pinning: Option<Pinning>,
    root: Option<Verified<Root>>,
    timestamp: Option<Verified<Timestamp>>,
    snapshot: Option<Verified<Snapshot>>,
    targets: BTreeMap<RoleName, Option<Verified<Targets>>>,
    /// Effective delegated paths of loaded delegations.
    paths: BTreeMap<RoleName, Vec<String>>,
    /// Delegations that exist but did not verify (kept for their version numbers: a role
    /// is re-signed from there, as Notary's witness does).
    invalid: BTreeMap<RoleName, Arc<Metadata<Targets>>>,
    warnings: Vec<String>,
    root_refreshed: bool,
    /// The owner's view for a renewal: expired roles are accepted (see
    /// [`Client::accepting_expired`]).
    accept_expired: bool,
    /// Verified files waiting for [`Client::commit`] (`None`: remove from the cache). The
    /// cache is the trusted state; it changes only when a whole operation succeeded.
    pending: BTreeMap<RoleName, Option<Arc<[u8]>>>,
}

fn tuf_err(e: Error) -> ClientError {
    ClientError::Tuf(e)
}

fn fetch_err(e: FetchError) -> ClientError {
    ClientError::Fetch(e.0)
}

impl<'a, R: Remote, L: Local> Client<'a, R, L> {
    pub fn new(gun: Gun, remote: &'a mut R, local: &'a mut L, now: DateTime) -> Self {
        Client {
            gun,
            remote,
            local,
            now,
            pinning: None,
            root: None,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
            paths: BTreeMap::new(),
            invalid: BTreeMap::new(),
            warnings: Vec::new(),
            root_refreshed: false,
            accept_expired: false,
            pending: BTreeMap::new(),
        }
    }

    /// The view of an owner about to renew: a role past its expiry is accepted (with a
    /// warning naming it and the date) instead of refused, so that the keys' holder can
    /// sign fresh versions of it. Everything else is checked as always (signatures,
    /// thresholds, the root chain, rollback, hashes, lengths). Never for a read: what an
    /// expired role says is not trusted, only re-signed by the one who signed it.
    pub fn accepting_expired(mut self, yes: bool) -> Self {
        self.accept_expired = yes;
        self
    }

    /// The checks for a role's current version: strict, or expiry noted in a warning
    /// when the owner renews.
    fn current(&mut self, role: &str, expires: DateTime) -> Checks {
        if self.accept_expired {
            if expires <= self.now {
                self.warnings
                    .push(format!("{role}: expired {expires}; accepted for renewal"));
            }
            self.lenient()
        } else {
            self.strict()
        }
    }

    fn keep(&mut self, role: &RoleName, bytes: Arc<[u8]>) {
        self.pending.insert(role.clone(), Some(bytes));
    }

    /// Write every file verified so far to the cache. Call it once the operation that
    /// needed them succeeded; an error before that leaves the cache as it was.
    pub fn commit(&mut self) -> Result<(), ClientError> {
        for (role, bytes) in std::mem::take(&mut self.pending) {
            match bytes {
                Some(b) => self.local.store(&role, &b).map_err(ClientError::Fetch)?,
                None => self.local.remove(&role),
            }
        }
        Ok(())
    }

    /// Trust only roots whose root keys are among these (instead of trusting on first use).
    pub fn with_pinning(mut self, pinning: Option<Pinning>) -> Self {
        self.pinning = pinning;
        self
    }

    pub fn gun(&self) -> &Gun {
        &self.gun
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn strict(&self) -> Checks {
        Checks::at(self.now)
    }

    fn lenient(&self) -> Checks {
        Checks {
            now: self.now,
            allow_expired: true,
        }
    }

    fn fetch(
        &mut self,
        file: &str,
        limit: u64,
        role: &str,
    ) -> Result<Option<Arc<[u8]>>, ClientError> {
        match self.remote.fetch(file, limit).map_err(fetch_err)? {
            Fetched::Found(b) => Ok(Some(b)),
            Fetched::NotFound => Ok(None),
            Fetched::TooLarge => Err(tuf_err(Error::TooLarge {
                role: role.to_owned(),
                size: limit + 1,
                limit,
            })),
        }
    }

    /// The cached copy of a role, parsed; none when it is to be forgotten (keys rotated).
    fn cached<T: Role>(&self, role: &RoleName) -> Option<Metadata<T>> {
        if matches!(self.pending.get(role), Some(None)) {
            return None;
        }
        self.local
            .load(role)
            .and_then(|b| Metadata::parse(role.as_str(), b).ok())
    }

    /// Update to the server's current root, timestamp and snapshot. With `fetch_root`
    /// (writes do this), root is fetched even when one is cached.
    pub fn update(&mut self, fetch_root: bool) -> Result<(), ClientError> {
        self.load_root(fetch_root)?;
        match self.update_timestamp_and_snapshot() {
            Ok(()) => Ok(()),
            // A verification failure may be a root rotation: refresh root once and retry.
            Err(ClientError::Tuf(e))
                if !self.root_refreshed
                    && matches!(e, Error::Threshold { .. } | Error::Unsigned { .. }) =>
            {
                self.refresh_root()?;
                self.update_timestamp_and_snapshot()
            }
            Err(e) => Err(e),
        }
    }

    /// The trusted root (after [`Client::update`]).
    pub fn root(&self) -> Option<&Verified<Root>> {
        self.root.as_ref()
    }

    pub fn timestamp(&self) -> Option<&Verified<Timestamp>> {
        self.timestamp.as_ref()
    }

    pub fn snapshot(&self) -> Option<&Verified<Snapshot>> {
        self.snapshot.as_ref()
    }

    fn load_root(&mut self, fetch: bool) -> Result<(), ClientError> {
        let cached = self.local.load(&RoleName::root());
        if let Some(bytes) = cached {
            let bad = |msg: String| ClientError::BadCache {
                gun: self.gun.to_string(),
                what: "root.json from the cache".into(),
                msg,
            };
            let m = Metadata::<Root>::parse("root", bytes).map_err(|e| bad(e.to_string()))?;
            // The cached root is the trust anchor: its age does not matter here, only that
            // it is a valid root for this repository, and pinned when a pin applies (a pin
            // added after a first use judges the root trusted then).
            let pinning = self.pinning.clone();
            let v = verify::verify_root(
                m,
                &self.gun,
                None,
                RootChecks {
                    checks: self.lenient(),
                    allow_expired_certs: true,
                    pinning: pinning.as_ref(),
                },
            )
            .map_err(|e| bad(e.to_string()))?;
            self.root = Some(v);
        }
        if self.root.is_none() || fetch {
            self.refresh_root()?;
        } else if let Some(v) = self.root.as_ref().map(|r| r.signed().version) {
            // TUF: always look for the next root first, so a rotation (new keys, a higher
            // threshold) is seen before anything is judged by the old root.
            if self
                .fetch(&format!("{}.root.json", v + 1), MAX_ROOT, "root")?
                .is_some()
            {
                self.refresh_root()?;
            }
        }
        // Freeze: an expired root is not trusted for an update.
        let root = self.root.as_ref().ok_or_else(|| ClientError::NotFound {
            gun: self.gun.to_string(),
        })?;
        let expires = root.signed().expires;
        if expires <= self.now && self.accept_expired {
            if !self.warnings.iter().any(|w| w.starts_with("root: expired")) {
                self.warnings
                    .push(format!("root: expired {expires}; accepted for renewal"));
            }
        } else if expires <= self.now {
            return Err(tuf_err(Error::Expired {
                role: "root".into(),
                expires: root.signed().expires,
            }));
        }
        Ok(())
    }

    /// Fetch `root.json`; trust it on first use, or reach it through the version chain.
    fn refresh_root(&mut self) -> Result<(), ClientError> {
        self.root_refreshed = true;
        let Some(bytes) = self.fetch("root.json", MAX_ROOT, "root")? else {
            return Err(ClientError::NotFound {
                gun: self.gun.to_string(),
            });
        };
        let new = Metadata::<Root>::parse("root", bytes).map_err(tuf_err)?;
        let pinning = self.pinning.clone();
        let strict = RootChecks {
            checks: self.current("root", new.signed().expires),
            allow_expired_certs: self.accept_expired,
            pinning: pinning.as_ref(),
        };
        let Some(trusted) = self.root.clone() else {
            let v = verify::verify_root(new, &self.gun, None, strict).map_err(tuf_err)?;
            self.keep(&RoleName::root(), v.raw_shared());
            self.root = Some(v);
            return Ok(());
        };
        let (have, want) = (trusted.signed().version, new.signed().version);
        if want < have {
            return Err(tuf_err(Error::Rollback {
                role: "root".into(),
                found: want,
                trusted: have,
            }));
        }
        if want == have {
            if new.raw() != trusted.raw() {
                return Err(tuf_err(Error::Root {
                    role: "root".into(),
                    msg: format!("the server's root version {want} differs from the trusted one"),
                }));
            }
            return Ok(());
        }
        if want - have > MAX_ROOT_ROTATIONS {
            return Err(tuf_err(Error::Root {
                role: "root".into(),
                msg: format!(
                    "{} root rotations at once (at most {MAX_ROOT_ROTATIONS})",
                    want - have
                ),
            }));
        }
        // Every version in between, each verified against its predecessor (expiry of the
        // intermediates does not matter).
        let mut prev = trusted.clone();
        for v in have + 1..want {
            let Some(b) = self.fetch(&format!("{v}.root.json"), MAX_ROOT, "root")? else {
                return Err(tuf_err(Error::Root {
                    role: "root".into(),
                    msg: format!("version {v} of the root chain is missing on the server"),
                }));
            };
            let m = Metadata::<Root>::parse("root", b).map_err(tuf_err)?;
            if m.signed().version != v {
                return Err(tuf_err(Error::Root {
                    role: "root".into(),
                    msg: format!("{v}.root.json holds version {}", m.signed().version),
                }));
            }
            prev = verify::verify_root(
                m,
                &self.gun,
                Some(&prev),
                RootChecks {
                    checks: self.lenient(),
                    allow_expired_certs: true,
                    pinning: None,
                },
            )
            .map_err(tuf_err)?;
        }
        // The new root is reached through the chain and, when a pin applies, must be
        // pinned too (a rotation to a key outside the pin is refused). A pinned root key
        // stays pinned under a renewed certificate: the plain key inside a pinned
        // certificate of the trusted root is pinned as well.
        let renewed = pinning.clone().map(|mut p| {
            for root in [trusted.signed(), prev.signed()] {
                for id in p.root_key_ids.clone() {
                    if let Some(c) = root.keys.get(&id).and_then(|k| k.canonical_id().ok()) {
                        if !p.root_key_ids.contains(&c) {
                            p.root_key_ids.push(c);
                        }
                    }
                }
            }
            p
        });
        let chained = RootChecks {
            pinning: renewed.as_ref(),
            ..strict
        };
        let v = verify::verify_root(new, &self.gun, Some(&prev), chained).map_err(tuf_err)?;
        // Rotated timestamp or snapshot keys: their old versions no longer bind
        // (fast-forward recovery). Forget the cached ones.
        for role in ["timestamp", "snapshot"] {
            let old = trusted.signed().roles.get(role).map(|r| &r.keyids);
            let new = v.signed().roles.get(role).map(|r| &r.keyids);
            if old != new {
                self.warnings.push(format!("{role} keys rotated"));
                if role == "timestamp" {
                    self.timestamp = None;
                } else {
                    self.snapshot = None;
                }
                self.local
                    .remove(&RoleName::new(role).map_err(Error::Name)?);
            }
        }
        self.keep(&RoleName::root(), v.raw_shared());
        self.root = Some(v);
        // Everything verified under the old root must be verified again.
        self.targets.clear();
        self.paths.clear();
        Ok(())
    }

    fn root_keys(&self, role: &str) -> Result<RoleKeys<'_>, ClientError> {
        let root = self.root.as_ref().ok_or_else(|| ClientError::NotFound {
            gun: self.gun.to_string(),
        })?;
        RoleKeys::from_root(root.signed(), role).ok_or_else(|| {
            tuf_err(Error::Invalid {
                role: "root".into(),
                msg: format!("no {role} role"),
            })
        })
    }

    /// The cached version of a role, verified (expiry allowed): the rollback floor. A role
    /// whose cached copy is to be forgotten (its keys rotated) has none.
    fn cached_floor<T: Role>(&self, role: &RoleName, keys: RoleKeys<'_>) -> Option<u64> {
        let m = self.cached::<T>(role)?;
        verify::verify(m, role, keys, self.lenient())
            .ok()
            .map(|v| v.signed().version())
    }

    fn update_timestamp_and_snapshot(&mut self) -> Result<(), ClientError> {
        // Timestamp: always fetched, bounded.
        let ts_role = RoleName::timestamp();
        let Some(bytes) = self.fetch("timestamp.json", MAX_TIMESTAMP, "timestamp")? else {
            return Err(ClientError::Missing {
                role: "timestamp".into(),
            });
        };
        let m = Metadata::<Timestamp>::parse("timestamp", bytes).map_err(tuf_err)?;
        let keys = self.root_keys("timestamp")?;
        let floor = self.cached_floor::<Timestamp>(&ts_role, keys);
        let checks = self.current("timestamp", m.signed().expires);
        let keys = self.root_keys("timestamp")?;
        let ts = verify::verify(m, &ts_role, keys, checks).map_err(tuf_err)?;
        verify::check_not_rollback_version("timestamp", ts.signed().version, floor)
            .map_err(tuf_err)?;
        let snap_meta = ts.signed().snapshot_meta().cloned().ok_or_else(|| {
            tuf_err(Error::Invalid {
                role: "timestamp".into(),
                msg: "no snapshot entry".into(),
            })
        })?;
        self.keep(&ts_role, ts.raw_shared());
        self.timestamp = Some(ts);

        // Snapshot: the one the timestamp names, from the cache when it still matches.
        let snap_role = RoleName::snapshot();
        let keys = self.root_keys("snapshot")?;
        let floor = self.cached_floor::<Snapshot>(&snap_role, keys);
        let bytes = self.matching_cache_or_fetch(&snap_role, &snap_meta)?;
        let m = Metadata::<Snapshot>::parse("snapshot", bytes).map_err(tuf_err)?;
        let checks = self.current("snapshot", m.signed().expires);
        let keys = self.root_keys("snapshot")?;
        let snap = verify::verify(m, &snap_role, keys, checks).map_err(tuf_err)?;
        verify::check_not_rollback_version("snapshot", snap.signed().version, floor)
            .map_err(tuf_err)?;
        self.keep(&snap_role, snap.raw_shared());
        self.snapshot = Some(snap);
        self.targets.clear();
        self.paths.clear();
        Ok(())
    }

    /// The cached file if it matches `meta` exactly, else a bounded download that must.
    fn matching_cache_or_fetch(
        &mut self,
        role: &RoleName,
        meta: &FileMeta,
    ) -> Result<Arc<[u8]>, ClientError> {
        if let Some(c) = self.local.load(role) {
            if meta.check(&c).is_ok() {
                return Ok(c);
            }
        }
        self.fetch_matching(role, meta)
    }

    /// A bounded download of the file `meta` describes, checked against it.
    fn fetch_matching(
        &mut self,
        role: &RoleName,
        meta: &FileMeta,
    ) -> Result<Arc<[u8]>, ClientError> {
        let sha = meta.hashes.sha256().map(hex::encode).ok_or_else(|| {
            tuf_err(Error::HashMismatch {
                role: role.to_string(),
                msg: "no sha256 to fetch by".into(),
            })
        })?;
        let Some(bytes) = self.fetch(&format!("{role}.{sha}.json"), meta.length, role.as_str())?
        else {
            return Err(ClientError::Missing {
                role: role.to_string(),
            });
        };
        meta.check(&bytes).map_err(|msg| {
            tuf_err(Error::HashMismatch {
                role: role.to_string(),
                msg: format!("the file does not match its recorded meta: {msg}"),
            })
        })?;
        Ok(bytes)
    }

    /// A targets role (`targets` or a delegation), verified through its delegation chain,
    /// or `None` when it does not exist or does not verify (a warning says why; for a
    /// delegation this is what Notary does — for `targets` it is an error).
    pub fn role(&mut self, name: &RoleName) -> Result<Option<Verified<Targets>>, ClientError> {
        if let Some(r) = self.targets.get(name) {
            return Ok(r.clone());
        }
        let r = self.load_role(name);
        match r {
            Ok(v) => {
                self.targets.insert(name.clone(), v.clone());
                Ok(v)
            }
            // A delegation that no longer verifies (a signer removed, not re-signed in
            // time) is left out, as Notary does; an attack on it is an error.
            Err(ClientError::Tuf(
                e @ (Error::Threshold { .. }
                | Error::Expired { .. }
                | Error::Unsigned { .. }
                | Error::KeyIdMismatch { .. }),
            )) if name.is_delegation() => {
                let e = ClientError::Tuf(e);
                self.warnings.push(format!("{name}: {e}"));
                self.targets.insert(name.clone(), None);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn load_role(&mut self, name: &RoleName) -> Result<Option<Verified<Targets>>, ClientError> {
        let snap = self.snapshot.clone().ok_or_else(|| ClientError::Missing {
            role: "snapshot".into(),
        })?;
        let Some(meta) = snap.signed().meta.get(name).cloned() else {
            if name.as_str() == "targets" {
                return Err(ClientError::Missing {
                    role: "targets".into(),
                });
            }
            return Ok(None);
        };
        // Keys and paths from the delegator.
        let (keys, keyids, threshold, paths) = if name.as_str() == "targets" {
            let k = self.root_keys("targets")?;
            (k.keys.clone(), k.keyids.to_vec(), k.threshold, None)
        } else {
            let parent_name = name.parent().ok_or_else(|| ClientError::Missing {
                role: name.to_string(),
            })?;
            let Some(parent) = self.role(&parent_name)? else {
                return Ok(None);
            };
            let Some(d) = parent.signed().delegations.role(name.as_str()) else {
                return Ok(None);
            };
            let eff = d.effective_paths(self.paths.get(&parent_name).map(Vec::as_slice));
            (
                parent.signed().delegations.keys.clone(),
                d.keyids.clone(),
                d.threshold,
                Some(eff),
            )
        };
        let keys_ref = RoleKeys {
            keys: &keys,
            keyids: &keyids,
            threshold,
        };
        // The cached copy, parsed once: it is the current file when the snapshot vouches
        // for its bytes (the common case: nothing changed), else the rollback floor.
        let cached = self.cached::<Targets>(name);
        let current = cached.as_ref().is_some_and(|c| meta.check(c.raw()).is_ok());
        let (m, floor) = if current {
            let m = cached.map(Arc::new).ok_or_else(|| ClientError::Missing {
                role: name.to_string(),
            })?;
            (m, None)
        } else {
            let floor = cached
                .and_then(|m| verify::verify(m, name, keys_ref, self.lenient()).ok())
                .map(|v| v.signed().version());
            let bytes = self.fetch_matching(name, &meta)?;
            let m = Arc::new(Metadata::<Targets>::parse(name.as_str(), bytes).map_err(tuf_err)?);
            (m, floor)
        };
        let checks = self.current(name.as_str(), m.signed().expires);
        let keys_ref = RoleKeys {
            keys: &keys,
            keyids: &keyids,
            threshold,
        };
        let v = match verify::verify(m.clone(), name, keys_ref, checks) {
            Ok(v) => v,
            Err(e) => {
                self.invalid.insert(name.clone(), m);
                return Err(tuf_err(e));
            }
        };
        verify::check_not_rollback_version(name.as_str(), v.signed().version, floor)
            .map_err(tuf_err)?;
        if !current {
            self.keep(name, v.raw_shared());
        }
        if let Some(p) = paths {
            self.paths.insert(name.clone(), p);
        }
        Ok(Some(v))
    }

    /// The version of a delegation that exists but did not verify.
    pub fn invalid_version(&self, role: &RoleName) -> Option<u64> {
        self.invalid.get(role).map(|m| m.signed().version)
    }

    /// Whether a delegation's effective paths allow `target` (always for `targets`).
    pub fn allows(&self, role: &RoleName, target: &str) -> bool {
        self.paths
            .get(role)
            .is_none_or(|p| crate::metadata::paths_allow(p, target))
    }

    /// The effective paths of every delegation loaded so far.
    pub fn delegated_paths(&self) -> &BTreeMap<RoleName, Vec<String>> {
        &self.paths
    }

    /// Docker's lookup of a tag: `targets/releases` first, then `targets`.
    pub fn find_target(&mut self, name: &str) -> Result<Option<(RoleName, FileMeta)>, ClientError> {
        for role in ["targets/releases", "targets"] {
            let r = RoleName::new(role).map_err(Error::Name)?;
            if let Some(m) = self.role(&r)? {
                let found = m.signed().targets.get(name).map_err(|msg| {
                    tuf_err(Error::Invalid {
                        role: r.to_string(),
                        msg,
                    })
                })?;
                if let Some(fm) = found {
                    if self.allows(&r, name) {
                        return Ok(Some((r, fm)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every delegation reachable from `targets` (breadth first, in delegation order),
    /// loaded and verified; those that do not verify are left out with a warning.
    pub fn all_roles(&mut self) -> Result<Vec<(RoleName, Verified<Targets>)>, ClientError> {
        let mut out = Vec::new();
        let mut queue = vec![RoleName::targets()];
        while !queue.is_empty() {
            let name = queue.remove(0);
            if let Some(m) = self.role(&name)? {
                for d in &m.signed().delegations.roles {
                    queue.push(d.name.clone());
                }
                out.push((name, m));
            }
        }
        Ok(out)
    }

    /// The shared metadata a publish starts from (all loaded targets roles).
    pub fn loaded(&self) -> Vec<(RoleName, Arc<Metadata<Targets>>)> {
        self.targets
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.shared().clone())))
            .collect()
    }
}
