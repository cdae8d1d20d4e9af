//! One repository's trust data: updated from the server through the TUF rules
//! (`tuf::client`), changed, signed and published.

use std::collections::BTreeMap;
use std::sync::Arc;

use keys::PrivateKey;
use registry::client::NetError;
use registry::Reference;
use tuf::client::{Client, ClientError};
use tuf::edit::{self, TopLevelKeys};
use tuf::metadata::{Metadata, Role};
use tuf::sign::SigningKey;
use tuf::{Gun, PublicKey, RoleName, Root, Targets, Verified};

use crate::cache::FileCache;
use crate::client_config::Decision;
use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::remote::{Part, TrustRemote};

/// What to load beyond root, timestamp and snapshot.
pub enum Load<'a> {
    /// `targets` and every delegation reachable from it.
    All,
    /// These roles (and what they need).
    Roles(&'a [&'a str]),
}

/// The verified state of a repository after an update.
pub struct View {
    pub root: Verified<Root>,
    pub snapshot: Option<Verified<tuf::Snapshot>>,
    pub timestamp: Option<Verified<tuf::Timestamp>>,
    /// Loaded targets roles, in breadth-first delegation order.
    pub roles: Vec<(RoleName, Verified<Targets>)>,
    /// Delegations that exist but did not verify (docker logs these as warnings).
    pub warnings: Vec<String>,
    /// Effective delegated paths.
    pub paths: BTreeMap<RoleName, Vec<String>>,
    /// Versions of delegations that exist but did not verify.
    pub invalid: BTreeMap<RoleName, u64>,
}

impl View {
    pub fn role(&self, name: &str) -> Option<&Verified<Targets>> {
        self.roles
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, m)| m)
    }

    /// Whether a delegation's effective paths allow `target` (always for `targets`).
    pub fn allows(&self, role: &RoleName, target: &str) -> bool {
        self.paths
            .get(role)
            .is_none_or(|p| tuf::metadata::paths_allow(p, target))
    }

    /// The keys of a top-level role, as listed in root.
    pub fn root_role_keys(&self, role: &str) -> Vec<PublicKey> {
        self.root
            .signed()
            .role_keys(role)
            .map(|(_, ks)| ks.into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// One target of a loaded role; unreadable targets are an error naming the role.
    pub fn target(&self, role: &str, tag: &str) -> Result<Option<tuf::FileMeta>> {
        match self.role(role) {
            None => Ok(None),
            Some(m) => m
                .signed()
                .targets
                .get(tag)
                .map_err(|msg| unreadable(role, msg)),
        }
    }

    /// Docker's "released" lookup: `targets/releases`, then `targets`.
    pub fn find_released(&self, tag: &str) -> Result<Option<(RoleName, tuf::FileMeta)>> {
        for role in ["targets/releases", "targets"] {
            if let Some(fm) = self.target(role, tag)? {
                let r = RoleName::new(role)?;
                if self.allows(&r, tag) {
                    return Ok(Some((r, fm)));
                }
            }
        }
        Ok(None)
    }
}

/// A role whose targets cannot be read.
pub fn unreadable(role: &str, msg: String) -> TrustError {
    TrustError::from(tuf::Error::Invalid {
        role: role.to_owned(),
        msg,
    })
}

pub struct Repo {
    pub reference: Reference,
    pub gun: Gun,
    pub remote: TrustRemote,
    pub cache: FileCache,
    /// The trust server's `host:port`, for messages.
    pub host: String,
    /// The owner's view for a renewal or rotation: expired roles are loaded (each named
    /// on stderr) so they can be signed again; nothing else is relaxed.
    pub renewing: bool,
}

impl Repo {
    pub fn open(ctx: &Context, reference: &Reference, write: bool) -> Result<Repo> {
        let (remote, cache, host) = ctx.open_trust(reference, write)?;
        Ok(Repo {
            gun: remote.gun.clone(),
            reference: reference.clone(),
            remote,
            cache,
            host,
            renewing: false,
        })
    }

    /// Open a repository that must exist, for writing, with every role loaded.
    pub fn existing(ctx: &Context, reference: &Reference) -> Result<(Repo, View)> {
        Self::existing_as(ctx, reference, false)
    }

    /// As [`Repo::existing`], for the owner about to sign fresh versions (renewal, key
    /// rotation): roles past their expiry are loaded instead of refused, and named.
    pub fn existing_to_renew(ctx: &Context, reference: &Reference) -> Result<(Repo, View)> {
        Self::existing_as(ctx, reference, true)
    }

    fn existing_as(ctx: &Context, reference: &Reference, renewing: bool) -> Result<(Repo, View)> {
        let mut repo = Repo::open(ctx, reference, true)?;
        repo.renewing = renewing;
        let view = repo
            .view(ctx, true, Load::All)?
            .ok_or_else(|| TrustError::NotFound {
                gun: repo.gun.to_string(),
                host: repo.host.clone(),
            })?;
        Ok((repo, view))
    }

    /// Update from the server and load roles. `Ok(None)`: the repository does not exist.
    pub fn view(
        &mut self,
        ctx: &Context,
        fetch_root: bool,
        load: Load<'_>,
    ) -> Result<Option<View>> {
        let host = self.host.clone();
        let pins = ctx
            .client_config
            .as_ref()
            .map_err(|e| TrustError::Usage(e.clone()))?;
        let decision = pins.decide(self.gun.as_str());
        let first_use = !self.cache.path(&RoleName::root()).exists();
        let pinning = match &decision {
            Decision::Pinned { pinning, .. } => Some(pinning.clone()),
            // Nothing can be pinned: any root from the server is refused.
            Decision::Refused => Some(tuf::verify::Pinning::default()),
            Decision::FirstUse => None,
        };
        let mut client = Client::new(
            self.gun.clone(),
            &mut self.remote,
            &mut self.cache,
            ctx.now(),
        )
        .with_pinning(pinning)
        .accepting_expired(self.renewing);
        match client.update(fetch_root) {
            Ok(()) => {}
            Err(ClientError::NotFound { .. }) => return Ok(None),
            Err(e) => {
                let pin_refused = matches!(&e,
                    ClientError::Tuf(tuf::Error::Root { msg, .. }) if msg.contains("pinned"))
                    || matches!(&e, ClientError::BadCache { msg, .. } if msg.contains("pinned"));
                return Err(match (&decision, pin_refused) {
                    (Decision::Refused, true) => TrustError::Usage(format!(
                        "{}: no root pin for this repository in {}, and disable_tofu is set",
                        self.gun,
                        pins.path.display()
                    )),
                    (Decision::Pinned { prefix, .. }, true) => TrustError::Usage(format!(
                        "{}: the root from {host} carries none of the root keys pinned for {prefix} in {} ({e})",
                        self.gun,
                        pins.path.display()
                    )),
                    _ => TrustError::from_client(e, &host),
                });
            }
        }
        if first_use && matches!(decision, Decision::FirstUse) {
            eprintln!(
                "{}: no root pin in {}; trusting the root {host} sent on first use",
                self.gun,
                pins.path.display()
            );
        }
        let roles = match load {
            Load::All => client
                .all_roles()
                .map_err(|e| TrustError::from_client(e, &host))?,
            Load::Roles(names) => {
                let mut out = Vec::new();
                for n in names {
                    let r = RoleName::new(n)?;
                    if let Some(m) = client
                        .role(&r)
                        .map_err(|e| TrustError::from_client(e, &host))?
                    {
                        out.push((r, m));
                    }
                }
                out
            }
        };
        let paths = client.delegated_paths().clone();
        if self.renewing {
            // Named once per run (a renewal loads the repository again after root).
            static NAMED: std::sync::Mutex<std::collections::BTreeSet<String>> =
                std::sync::Mutex::new(std::collections::BTreeSet::new());
            let mut named = NAMED.lock().unwrap_or_else(|e| e.into_inner());
            for w in client.warnings() {
                let line = format!("{}: {w}", self.gun);
                if w.contains("accepted for renewal") && named.insert(line.clone()) {
                    eprintln!("{line}");
                }
            }
        }
        // Everything needed verified: now the cache may move to the new state.
        client
            .commit()
            .map_err(|e| TrustError::from_client(e, &host))?;
        let root = client.root().cloned().ok_or_else(|| TrustError::NotFound {
            gun: self.gun.to_string(),
            host: host.clone(),
        })?;
        let mut invalid = BTreeMap::new();
        for w in client.warnings() {
            if let Some(name) = w.split(':').next().and_then(|n| RoleName::new(n).ok()) {
                if let Some(v) = client.invalid_version(&name) {
                    invalid.insert(name, v);
                }
            }
        }
        Ok(Some(View {
            root,
            snapshot: client.snapshot().cloned(),
            timestamp: client.timestamp().cloned(),
            roles,
            warnings: client.warnings().to_vec(),
            paths,
            invalid,
        }))
    }

    /// Upload signed changes to an existing repository. When the snapshot key is here
    /// (rotated away from the server), a new snapshot over the changed roles is signed
    /// locally and uploaded with them, as notary's client does.
    ///
    /// The view is consumed: what it holds (every role, possibly tens of megabytes) is
    /// released before the upload.
    pub fn publish_update(&self, ctx: &mut Context, view: View, parts: &[Part]) -> Result<()> {
        if parts.iter().any(|(r, _)| r.as_str() == "snapshot") {
            drop(view);
            return self.publish(parts);
        }
        let snapshot = local_snapshot(ctx, &view, parts)?;
        drop(view);
        match snapshot {
            None => self.publish(parts),
            Some(snapshot) => {
                let mut all = parts.to_vec();
                all.push((RoleName::snapshot(), snapshot.into()));
                self.publish(&all)
            }
        }
    }

    /// Upload signed files in one update.
    pub fn publish(&self, parts: &[Part]) -> Result<()> {
        match self.remote.publish(parts) {
            Ok(()) => {
                // A repository this client just created: its root is the one it signed,
                // the trust anchor from now on (not a root to trust on first use later).
                if let Some((_, root)) = parts.iter().find(|(r, _)| r.as_str() == "root") {
                    if !self.cache.path(&RoleName::root()).exists() {
                        let mut cache = self.cache.clone();
                        tuf::client::Local::store(&mut cache, &RoleName::root(), root)
                            .map_err(TrustError::Other)?;
                    }
                }
                Ok(())
            }
            Err(NetError::Status { status, body, .. })
                if (400..500).contains(&status) && status != 401 && status != 403 =>
            {
                Err(TrustError::Refused(body))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The next snapshot over `parts`, signed here when a snapshot key listed in root is in
/// the local key store; `None` when the server holds it.
pub fn local_snapshot(ctx: &mut Context, view: &View, parts: &[Part]) -> Result<Option<Vec<u8>>> {
    let keyring = Keyring::new(&ctx.config);
    let keys = open_keys(ctx, &keyring, &view.root_role_keys("snapshot"))?;
    if keys.is_empty() {
        return Ok(None);
    }
    let Some(current) = &view.snapshot else {
        return Ok(None);
    };
    let mut body = current.signed().clone();
    for (role, bytes) in parts {
        body.meta
            .insert(role.clone(), tuf::FileMeta::for_metadata(bytes));
    }
    let v = body.version;
    let signers: Vec<SigningKey<'_>> = keys.iter().map(|k| SigningKey::plain(k)).collect();
    let m = edit::resign(
        "snapshot",
        body,
        v,
        ctx.now().plus_days(edit::TARGETS_EXPIRY_DAYS),
        &signers,
    )?;
    Ok(Some(m.raw().to_vec()))
}

/// Re-sign a targets-like role after a change (version + 1, a fresh 3-year expiry).
pub fn sign_targets(
    role: &RoleName,
    body: Targets,
    previous_version: u64,
    keys: &[&PrivateKey],
    ctx: &Context,
) -> Result<Arc<[u8]>> {
    let signers: Vec<SigningKey<'_>> = keys.iter().map(|k| SigningKey::plain(*k)).collect();
    let m = edit::resign(
        role.as_str(),
        body,
        previous_version,
        ctx.now().plus_days(edit::TARGETS_EXPIRY_DAYS),
        &signers,
    )?;
    Ok(m.raw_shared())
}

/// The keys among `listed` whose private halves are here, opened.
pub fn open_keys(
    ctx: &mut Context,
    keyring: &Keyring,
    listed: &[PublicKey],
) -> Result<Vec<PrivateKey>> {
    let mut out = Vec::new();
    for k in listed {
        if let Some(p) = keyring.open(&mut ctx.passphrases, k)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The repository (targets) key(s), or docker's error naming the keys that would do.
pub fn targets_keys(ctx: &mut Context, keyring: &Keyring, view: &View) -> Result<Vec<PrivateKey>> {
    let listed = view.root_role_keys("targets");
    let keys = open_keys(ctx, keyring, &listed)?;
    if keys.is_empty() {
        return Err(TrustError::NoSigningKey {
            ids: listed
                .iter()
                .map(|k| k.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(keys)
}

/// A new repository, as `docker trust signer add` initializes one: the first local root
/// key (or a new one) in a certificate for the GUN, a new repository (targets) key, and the
/// server's timestamp and snapshot keys.
pub struct NewRepo {
    pub root: Metadata<Root>,
    pub targets: Targets,
    pub targets_key: PrivateKey,
}

pub fn initialize(ctx: &mut Context, keyring: &Keyring, repo: &Repo) -> Result<NewRepo> {
    let root_key = match keyring.root_key_ids()?.first() {
        Some(id) => keyring.open_id(&mut ctx.passphrases, id)?,
        None => keyring.generate(&mut ctx.passphrases, "root", None)?,
    };
    let targets_key = keyring.generate(&mut ctx.passphrases, "targets", Some(&repo.gun))?;
    let timestamp = repo.remote.server_key("timestamp")?;
    let snapshot = repo.remote.server_key("snapshot")?;
    let now = ctx.now();
    let cert = keys::cert::root_certificate(&root_key, &repo.gun, now, keys::cert::ROOT_CERT_DAYS)?;
    let body = edit::new_root(
        &TopLevelKeys {
            root: vec![cert.clone()],
            targets: vec![targets_key.public().clone()],
            snapshot: vec![snapshot],
            timestamp: vec![timestamp],
        },
        now,
    );
    let root = Metadata::sign("root", body, &[SigningKey::listed(&cert, &root_key)])?;
    Ok(NewRepo {
        root,
        targets: Targets::new(now.plus_days(edit::TARGETS_EXPIRY_DAYS), 0),
        targets_key,
    })
}

/// Like [`current_or_new`], taking the role out of the view: once its new version is
/// signed, the old one (up to a 10 MB file) is freed instead of held to the end.
pub fn take_current_or_new(view: &mut View, role: &RoleName, ctx: &Context) -> (Targets, u64) {
    match view.roles.iter().position(|(n, _)| n == role) {
        Some(i) => {
            let (_, m) = view.roles.remove(i);
            let v = m.signed().version();
            (m.signed().clone(), v)
        }
        None => current_or_new(view, role, ctx),
    }
}

/// The version a role's next signature gets, and its current body (empty when new).
/// A role that no longer verifies starts over empty, from its version.
pub fn current_or_new(view: &View, role: &RoleName, ctx: &Context) -> (Targets, u64) {
    match view.role(role.as_str()) {
        Some(m) => (m.signed().clone(), m.signed().version()),
        None => (
            Targets::new(ctx.now().plus_days(edit::TARGETS_EXPIRY_DAYS), 0),
            view.invalid.get(role).copied().unwrap_or(0),
        ),
    }
}
