//! Validation of an uploaded update on the server (`notary-protocol.md` §1.5.2), as a pure
//! function: the repository's stored state + the uploaded files + the keys the server holds
//! → the files to write in one transaction, or the reason the upload is refused.
//!
//! On top of the reference pipeline (root version rule and rotation signatures, parents
//! before children, thresholds, expiry, snapshot hashes, server-made snapshot and
//! timestamp), it applies the fixes the audits asked for:
//!
//! * every uploaded file must be exactly what Notary would write for its content (no
//!   unsigned or unknown fields, no whitespace): TUF-01-001;
//! * versions are 64-bit, strictly increasing, and may not jump by more than
//!   [`Limits::max_version_jump`] (fast-forward, TUF-01-002, CS-DRNT15-3);
//! * a delegation may only sign targets inside its delegated paths;
//! * the algorithm of every signature comes from the trusted key (see [`crate::key`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Error;
use crate::key::KeyId;
use crate::metadata::{FileMeta, Metadata, Role, Root, Snapshot, Targets, Timestamp};
use crate::names::{Gun, RoleName};
use crate::sign::{Sign, SigningKey};
use crate::time::DateTime;
use crate::verify::{self, Checks, RoleKeys, RootChecks, Verified};

/// The server's defaults for what it signs (Notary's: snapshot 3 years, timestamp 14 days).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub snapshot_expiry_days: i64,
    pub timestamp_expiry_days: i64,
    /// Largest allowed step between the stored and the uploaded version of a role.
    pub max_version_jump: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            snapshot_expiry_days: 3 * 365,
            timestamp_expiry_days: 14,
            max_version_jump: 1000,
        }
    }
}

/// The stored state an upload is checked against: current root, snapshot, timestamp, and
/// the current version of every uploaded targets role and of all their ancestors.
///
/// It also remembers what it has verified (the root, and targets roles against their
/// delegators), so a server keeping it between updates does not verify the same
/// signatures again; a change to a role forgets what was verified under it.
#[derive(Default, Clone)]
pub struct Stored {
    root: Option<Verified<Root>>,
    pub targets: BTreeMap<RoleName, Arc<Metadata<Targets>>>,
    pub snapshot: Option<Arc<Metadata<Snapshot>>>,
    pub timestamp: Option<Arc<Metadata<Timestamp>>>,
    verified: BTreeMap<RoleName, LoadedTargets>,
}

impl Stored {
    /// A repository's stored state. The stored root is verified here (expired allowed: it
    /// is the trusted state, whatever its age).
    pub fn new(
        gun: &Gun,
        root: Option<Metadata<Root>>,
        snapshot: Option<Metadata<Snapshot>>,
        timestamp: Option<Metadata<Timestamp>>,
        now: DateTime,
    ) -> Result<Stored, UploadError> {
        let root = match root {
            Some(r) => Some(
                verify::verify_root(
                    r,
                    gun,
                    None,
                    RootChecks {
                        checks: Checks {
                            now,
                            allow_expired: true,
                        },
                        allow_expired_certs: true,
                        pinning: None,
                    },
                )
                .map_err(|e| bad_root(format!("stored root does not verify: {e}")))?,
            ),
            None => None,
        };
        Ok(Stored {
            root,
            targets: BTreeMap::new(),
            snapshot: snapshot.map(Arc::new),
            timestamp: timestamp.map(Arc::new),
            verified: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> Option<&Verified<Root>> {
        self.root.as_ref()
    }

    /// Forget verification results that depend on `role` (all of them for root).
    fn forget_under(&mut self, role: &RoleName) {
        if role.as_str() == "root" {
            self.verified.clear();
            return;
        }
        let prefix = format!("{role}/");
        self.verified
            .retain(|r, _| !r.as_str().starts_with(&prefix));
    }

    /// The roles whose stored versions [`validate`] needs for an upload of `roles`.
    pub fn roles_needed(uploaded: &[RoleName]) -> Vec<RoleName> {
        let mut out: Vec<RoleName> = vec![
            RoleName::root(),
            RoleName::snapshot(),
            RoleName::timestamp(),
        ];
        for r in uploaded.iter().filter(|r| r.is_targets_like()) {
            let mut cur = Some(r.clone());
            while let Some(c) = cur {
                if !out.contains(&c) {
                    out.push(c.clone());
                }
                cur = c.parent();
            }
        }
        out
    }
}

/// Private keys the server holds for this repository, by key ID.
pub type HeldKeys = BTreeMap<KeyId, Arc<dyn Sign>>;

/// A file to store.
#[derive(Debug, Clone)]
pub struct Write {
    pub role: RoleName,
    pub version: u64,
    pub bytes: Arc<[u8]>,
}

/// The outcome of a valid upload: every file to write, in one transaction, and the
/// repository's state once they are written.
#[derive(Clone)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub next: Stored,
}

/// Why an upload is refused, with the wire code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// 400 `INVALID_ROLE`.
    #[error("invalid role {0:?}")]
    InvalidRole(String),
    /// 400 `MALFORMED_JSON`.
    #[error("{0}")]
    MalformedJson(String),
    /// 400 `VERSION`: the version is not newer than what is stored.
    #[error("{role}: version {uploaded} is not newer than the stored version {stored}")]
    Version {
        role: String,
        uploaded: u64,
        stored: u64,
    },
    /// 400 `INVALID_UPDATE`, with the reference's typed detail.
    #[error("{0}")]
    Invalid(Invalid),
}

/// Notary's validation error kinds (`tuf/validation/errors.go`): the docker CLI decodes
/// them from the error `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Validation(String),
    BadHierarchy { missing: String, msg: String },
    BadRoot(String),
    BadTargets(String),
    BadSnapshot(String),
}

impl Invalid {
    pub fn name(&self) -> &'static str {
        match self {
            Invalid::Validation(_) => "ErrValidation",
            Invalid::BadHierarchy { .. } => "ErrBadHierarchy",
            Invalid::BadRoot(_) => "ErrBadRoot",
            Invalid::BadTargets(_) => "ErrBadTargets",
            Invalid::BadSnapshot(_) => "ErrBadSnapshot",
        }
    }

    pub fn msg(&self) -> &str {
        match self {
            Invalid::Validation(m)
            | Invalid::BadRoot(m)
            | Invalid::BadTargets(m)
            | Invalid::BadSnapshot(m)
            | Invalid::BadHierarchy { msg: m, .. } => m,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.msg())
    }
}

fn bad_root(e: impl std::fmt::Display) -> UploadError {
    UploadError::Invalid(Invalid::BadRoot(e.to_string()))
}
fn bad_targets(e: impl std::fmt::Display) -> UploadError {
    UploadError::Invalid(Invalid::BadTargets(e.to_string()))
}
fn bad_snapshot(e: impl std::fmt::Display) -> UploadError {
    UploadError::Invalid(Invalid::BadSnapshot(e.to_string()))
}

/// Parse the parts of an upload: the role named by each part (its filename, `.json`
/// stripped), its bytes. `timestamp` parts are ignored; a later part for the same role
/// replaces an earlier one.
pub fn parse_parts(parts: Vec<(String, Vec<u8>)>) -> Result<Parsed, UploadError> {
    let mut p = Parsed::default();
    for (name, bytes) in parts {
        let name = name.strip_suffix(".json").unwrap_or(&name);
        let role = RoleName::new(name).map_err(|_| UploadError::InvalidRole(name.to_owned()))?;
        let malformed = |e: Error| UploadError::MalformedJson(e.to_string());
        match role.as_str() {
            "timestamp" => {}
            "root" => p.root = Some(Metadata::parse("root", bytes).map_err(malformed)?),
            "snapshot" => p.snapshot = Some(Metadata::parse("snapshot", bytes).map_err(malformed)?),
            _ => {
                let m: Metadata<Targets> =
                    Metadata::parse(role.as_str(), bytes).map_err(malformed)?;
                // Every entry read now: a bad one is malformed JSON, as a whole-file
                // parse would find it.
                m.signed().targets.check_all().map_err(|msg| {
                    malformed(Error::Json {
                        role: role.to_string(),
                        msg: format!("in \"signed\": {msg}"),
                    })
                })?;
                p.targets.insert(role, m);
            }
        }
    }
    Ok(p)
}

/// An upload, parsed.
#[derive(Default, Clone)]
pub struct Parsed {
    pub root: Option<Metadata<Root>>,
    pub targets: BTreeMap<RoleName, Metadata<Targets>>,
    pub snapshot: Option<Metadata<Snapshot>>,
}

impl Parsed {
    pub fn roles(&self) -> Vec<RoleName> {
        let mut v: Vec<RoleName> = self.targets.keys().cloned().collect();
        if self.root.is_some() {
            v.push(RoleName::root());
        }
        if self.snapshot.is_some() {
            v.push(RoleName::snapshot());
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_none() && self.targets.is_empty() && self.snapshot.is_none()
    }
}

fn check_normalized<T: Role>(
    role: &str,
    m: &Metadata<T>,
    err: fn(String) -> UploadError,
) -> Result<(), UploadError> {
    if !m.is_normalized() {
        return Err(err(format!(
            "{role} is not in canonical form (whitespace, unknown or unsigned fields, or non-normalized values)"
        )));
    }
    Ok(())
}

fn check_version(
    role: &str,
    uploaded: u64,
    stored: Option<u64>,
    limits: &Limits,
) -> Result<(), UploadError> {
    let stored_v = stored.unwrap_or(0);
    if uploaded <= stored_v {
        return Err(UploadError::Version {
            role: role.to_owned(),
            uploaded,
            stored: stored_v,
        });
    }
    if uploaded - stored_v > limits.max_version_jump {
        let msg = format!(
            "{role}: version {uploaded} jumps more than {} past the stored version {stored_v} (fast-forward refused)",
            limits.max_version_jump
        );
        return Err(if role == "snapshot" {
            bad_snapshot(msg)
        } else {
            bad_targets(msg)
        });
    }
    Ok(())
}

/// A targets role verified against its delegator, with its effective paths.
#[derive(Clone)]
struct LoadedTargets {
    meta: Verified<Targets>,
    /// Effective path restriction of this role (None = unrestricted, i.e. `targets`).
    paths: Option<Vec<String>>,
}

/// Check an upload against the stored state and produce what to write.
pub fn validate(
    gun: &Gun,
    stored: &Stored,
    upload: Parsed,
    held: &HeldKeys,
    now: DateTime,
    limits: &Limits,
) -> Result<Plan, UploadError> {
    let mut writes = Vec::new();
    let strict = Checks::at(now);
    let lenient = Checks {
        now,
        allow_expired: true,
    };
    let mut next = stored.clone();

    // 1–2. Root: the stored one (trusted, expired allowed) and, when uploaded, the new one.
    let stored_root = stored.root.clone();
    let root: Verified<Root> = match upload.root {
        Some(new) => {
            let cur = stored_root
                .as_ref()
                .map(|r| r.signed().version)
                .unwrap_or(1);
            let v = new.signed().version;
            if v != cur && v != cur + 1 {
                return Err(bad_root(format!(
                    "Root modifications must increment the version. Current {cur}, new {v}"
                )));
            }
            if let Some(s) = &stored_root {
                if v <= s.signed().version {
                    return Err(UploadError::Version {
                        role: "root".into(),
                        uploaded: v,
                        stored: s.signed().version,
                    });
                }
            }
            check_normalized("root", &new, bad_root)?;
            let verified = verify::verify_root(
                new,
                gun,
                stored_root.as_ref(),
                RootChecks {
                    checks: strict,
                    allow_expired_certs: false,
                    pinning: None,
                },
            )
            .map_err(bad_root)?;
            writes.push(Write {
                role: RoleName::root(),
                version: v,
                bytes: verified.raw_shared(),
            });
            next.root = Some(verified.clone());
            next.forget_under(&RoleName::root());
            verified
        }
        None => stored_root.ok_or_else(|| {
            UploadError::Invalid(Invalid::Validation(
                "no pre-existing root and no root provided in update.".into(),
            ))
        })?,
    };

    // 3. Targets and delegations, parents before children. `loaded` starts with what was
    // verified before (under the current root and parents).
    let mut loaded: BTreeMap<RoleName, LoadedTargets> = next.verified.clone();
    // The roles this update touches: uploaded ones and their ancestors.
    let mut involved: Vec<RoleName> = Vec::new();
    let mut uploaded: Vec<(RoleName, Metadata<Targets>)> = upload.targets.into_iter().collect();
    uploaded.sort_by(|a, b| a.0.depth().cmp(&b.0.depth()).then_with(|| a.0.cmp(&b.0)));
    for (role, meta) in uploaded {
        check_normalized(role.as_str(), &meta, bad_targets)?;
        // Ancestors not in this upload come from storage (signatures checked, expiry not).
        let mut chain = Vec::new();
        let mut cur = role.parent();
        while let Some(c) = cur {
            cur = c.parent();
            chain.push(c);
        }
        for anc in chain.into_iter().rev() {
            if !involved.contains(&anc) {
                involved.push(anc.clone());
            }
            if loaded.contains_key(&anc) {
                continue;
            }
            let Some(stored_meta) = stored.targets.get(&anc) else {
                return Err(bad_targets(format!(
                    "{role}: its parent role {anc} does not exist"
                )));
            };
            let lt = load_targets(&root, &loaded, &anc, stored_meta.clone(), lenient)
                .map_err(|e| bad_targets(format!("stored {anc} does not verify: {e}")))?;
            loaded.insert(anc, lt);
        }
        let lt =
            load_targets(&root, &loaded, &role, Arc::new(meta), strict).map_err(bad_targets)?;
        check_version(
            role.as_str(),
            lt.meta.signed().version,
            stored.targets.get(&role).map(|m| m.signed().version),
            limits,
        )?;
        // Every target is read and checked here (clients may read only the one they
        // look up); a delegation's must lie within its delegated paths.
        let mut outside = None;
        lt.meta
            .signed()
            .targets
            .visit(|name, _| match &lt.paths {
                Some(paths) if !crate::metadata::paths_allow(paths, &name) => {
                    outside = Some(name.into_owned());
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            })
            .map_err(|e| bad_targets(format!("{role}: {e}")))?;
        if let Some(t) = outside {
            return Err(bad_targets(format!(
                "{role} signs target {t:?}, outside the paths delegated to it"
            )));
        }
        writes.push(Write {
            role: role.clone(),
            version: lt.meta.signed().version,
            bytes: lt.meta.raw_shared(),
        });
        next.targets.insert(role.clone(), lt.meta.shared().clone());
        // Its children were verified under the old version of it.
        let prefix = format!("{role}/");
        loaded.retain(|r, _| !r.as_str().starts_with(&prefix));
        if !involved.contains(&role) {
            involved.push(role.clone());
        }
        loaded.insert(role, lt);
    }
    next.verified = loaded.clone();

    // 4. Snapshot: uploaded (and then it must describe everything loaded), or made here.
    let snapshot_bytes: Arc<[u8]> = match upload.snapshot {
        Some(snap) => {
            check_normalized("snapshot", &snap, bad_snapshot)?;
            let keys = RoleKeys::from_root(root.signed(), "snapshot")
                .ok_or_else(|| bad_snapshot("root has no snapshot role"))?;
            let snap =
                verify::verify(snap, &RoleName::snapshot(), keys, strict).map_err(bad_snapshot)?;
            check_version(
                "snapshot",
                snap.signed().version,
                stored.snapshot.as_ref().map(|s| s.signed().version),
                limits,
            )?;
            let mut described: Vec<(&str, &[u8])> = vec![("root", root.raw())];
            described.extend(
                involved
                    .iter()
                    .filter_map(|r| loaded.get(r).map(|lt| (r.as_str(), lt.meta.raw()))),
            );
            for (r, bytes) in described {
                let m = snap
                    .signed()
                    .meta
                    .get(r)
                    .ok_or_else(|| bad_snapshot(format!("snapshot has no entry for {r}")))?;
                m.check(bytes)
                    .map_err(|e| bad_snapshot(format!("snapshot entry for {r}: {e}")))?;
            }
            writes.push(Write {
                role: RoleName::snapshot(),
                version: snap.signed().version,
                bytes: snap.raw_shared(),
            });
            next.snapshot = Some(snap.shared().clone());
            snap.raw_shared()
        }
        None => {
            if stored.snapshot.is_none() && !involved.iter().any(|r| r.as_str() == "targets") {
                return Err(UploadError::Invalid(Invalid::BadHierarchy {
                    missing: "targets".into(),
                    msg: "the first update of a repository must include targets".into(),
                }));
            }
            let mut entries: Vec<(RoleName, &[u8])> = vec![(RoleName::root(), root.raw())];
            entries.extend(
                involved
                    .iter()
                    .filter_map(|r| loaded.get(r).map(|lt| (r.clone(), lt.meta.raw()))),
            );
            let snap = make_snapshot(
                root.signed(),
                stored.snapshot.as_deref(),
                &entries,
                held,
                now,
                limits,
            )?;
            writes.push(Write {
                role: RoleName::snapshot(),
                version: snap.signed().version,
                bytes: snap.raw_shared(),
            });
            let bytes = snap.raw_shared();
            next.snapshot = Some(Arc::new(snap));
            bytes
        }
    };

    // 5. Timestamp: always made here.
    let ts = make_timestamp(
        root.signed(),
        stored.timestamp.as_deref(),
        &snapshot_bytes,
        held,
        now,
        limits,
    )?;
    writes.push(Write {
        role: RoleName::timestamp(),
        version: ts.signed().version,
        bytes: ts.raw_shared(),
    });
    next.timestamp = Some(Arc::new(ts));
    Ok(Plan { writes, next })
}

/// Verify a targets role against the keys its delegator gives it.
fn load_targets(
    root: &Verified<Root>,
    loaded: &BTreeMap<RoleName, LoadedTargets>,
    role: &RoleName,
    meta: Arc<Metadata<Targets>>,
    checks: Checks,
) -> Result<LoadedTargets, String> {
    if role.as_str() == "targets" {
        let keys =
            RoleKeys::from_root(root.signed(), "targets").ok_or("root has no targets role")?;
        let v = verify::verify(meta, role, keys, checks).map_err(|e| e.to_string())?;
        return Ok(LoadedTargets {
            meta: v,
            paths: None,
        });
    }
    let parent_name = role.parent().ok_or("not a targets role")?;
    let parent = loaded
        .get(&parent_name)
        .ok_or_else(|| format!("parent role {parent_name} is not available"))?;
    let d = parent
        .meta
        .signed()
        .delegations
        .role(role.as_str())
        .ok_or_else(|| format!("{role} is not delegated by {parent_name}"))?;
    let keys = RoleKeys {
        keys: &parent.meta.signed().delegations.keys,
        keyids: &d.keyids,
        threshold: d.threshold,
    };
    let paths = d.effective_paths(parent.paths.as_deref());
    let v = verify::verify(meta, role, keys, checks).map_err(|e| e.to_string())?;
    Ok(LoadedTargets {
        meta: v,
        paths: Some(paths),
    })
}

/// Signers for a top-level role among the keys the server holds (up to its threshold).
fn held_signers<'a>(root: &Root, role: &str, held: &'a HeldKeys) -> Option<Vec<SigningKey<'a>>> {
    let r = root.roles.get(role)?;
    let signers: Vec<SigningKey<'a>> = r
        .keyids
        .iter()
        .filter_map(|id| held.get(id).map(|k| SigningKey::plain(k.as_ref())))
        .take(r.threshold as usize)
        .collect();
    (signers.len() as u64 >= r.threshold && !signers.is_empty()).then_some(signers)
}

/// The next snapshot: the previous one's meta with `entries` (role, exact bytes) replaced.
pub fn make_snapshot(
    root: &Root,
    previous: Option<&Metadata<Snapshot>>,
    entries: &[(RoleName, &[u8])],
    held: &HeldKeys,
    now: DateTime,
    limits: &Limits,
) -> Result<Metadata<Snapshot>, UploadError> {
    let signers = held_signers(root, "snapshot", held).ok_or_else(|| {
        UploadError::Invalid(Invalid::BadHierarchy {
            missing: "snapshot".into(),
            msg: "no snapshot was included in update and server does not hold current snapshot key for repository".into(),
        })
    })?;
    let mut snap = Snapshot::new(
        now.to_utc().plus_days(limits.snapshot_expiry_days),
        previous.map(|p| p.signed().version + 1).unwrap_or(1),
    );
    if let Some(p) = previous {
        snap.meta = p.signed().meta.clone();
    }
    for (role, bytes) in entries {
        snap.meta
            .insert(role.clone(), FileMeta::for_metadata(bytes));
    }
    Metadata::sign("snapshot", snap, &signers)
        .map_err(|e| UploadError::Invalid(Invalid::Validation(e.to_string())))
}

/// The next timestamp, over `snapshot` (its exact bytes).
pub fn make_timestamp(
    root: &Root,
    previous: Option<&Metadata<Timestamp>>,
    snapshot: &[u8],
    held: &HeldKeys,
    now: DateTime,
    limits: &Limits,
) -> Result<Metadata<Timestamp>, UploadError> {
    let signers = held_signers(root, "timestamp", held)
        .ok_or_else(|| bad_root("no  timestamp keys exist on the server"))?;
    let ts = Timestamp::new(
        now.to_utc().plus_days(limits.timestamp_expiry_days),
        previous.map(|p| p.signed().version + 1).unwrap_or(1),
        FileMeta::for_metadata(snapshot),
    );
    Metadata::sign("timestamp", ts, &signers)
        .map_err(|e| UploadError::Invalid(Invalid::Validation(e.to_string())))
}

/// What a read of `timestamp.json` must write first, when the stored timestamp (or the
/// server-held snapshot it names) has expired or will within `refresh_before_secs`.
/// Returns `None` when the stored files are fine to serve.
pub fn refresh(
    stored: &Stored,
    held: &HeldKeys,
    now: DateTime,
    limits: &Limits,
    refresh_before_secs: i64,
) -> Result<Option<Plan>, UploadError> {
    let (Some(root), Some(snapshot), Some(timestamp)) =
        (&stored.root, &stored.snapshot, &stored.timestamp)
    else {
        return Ok(None);
    };
    let root = root.signed();
    let mut next = stored.clone();
    let soon = now.plus_secs(refresh_before_secs);
    let snap_stale = snapshot.signed().expires <= soon;
    let ts_stale = timestamp.signed().expires <= soon
        || timestamp
            .signed()
            .snapshot_meta()
            .is_none_or(|m| m.check(snapshot.raw()).is_err());
    if !snap_stale && !ts_stale {
        return Ok(None);
    }
    let mut writes = Vec::new();
    let mut snap_bytes = snapshot.raw_shared();
    if snap_stale {
        if let Some(signers) = held_signers(root, "snapshot", held) {
            let mut s = snapshot.signed().clone();
            s.version += 1;
            s.expires = now.to_utc().plus_days(limits.snapshot_expiry_days);
            let m = Metadata::sign("snapshot", s, &signers)
                .map_err(|e| UploadError::Invalid(Invalid::Validation(e.to_string())))?;
            snap_bytes = m.raw_shared();
            writes.push(Write {
                role: RoleName::snapshot(),
                version: m.signed().version,
                bytes: m.raw_shared(),
            });
            next.snapshot = Some(Arc::new(m));
        }
        // A client-held snapshot cannot be renewed here; the timestamp is still renewed so
        // clients see a clear "snapshot expired" rather than a server error.
    }
    let ts = make_timestamp(root, Some(timestamp), &snap_bytes, held, now, limits)?;
    writes.push(Write {
        role: RoleName::timestamp(),
        version: ts.signed().version,
        bytes: ts.raw_shared(),
    });
    next.timestamp = Some(Arc::new(ts));
    Ok(Some(Plan { writes, next }))
}
