//! Editing repository metadata: new roots, delegations, targets, re-signing. Pure: the
//! caller supplies keys, time and what to change; storage and transport are elsewhere.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::key::{KeyId, PublicKey};
use crate::metadata::{DelegationRole, FileMeta, Metadata, Role, Root, RootRole, Targets};
use crate::names::{RoleName, TargetName};
use crate::sign::SigningKey;
use crate::time::DateTime;

/// Notary's expiry defaults for what clients sign.
pub const ROOT_EXPIRY_DAYS: i64 = 3650;
pub const TARGETS_EXPIRY_DAYS: i64 = 3 * 365;

/// The keys of a new repository's four top-level roles (threshold 1 each).
pub struct TopLevelKeys {
    pub root: Vec<PublicKey>,
    pub targets: Vec<PublicKey>,
    pub snapshot: Vec<PublicKey>,
    pub timestamp: Vec<PublicKey>,
}

/// A new root, version 1, as `notary init` / `docker trust signer add` make it.
pub fn new_root(keys: &TopLevelKeys, now: DateTime) -> Root {
    let mut root = Root::new(now.to_utc().plus_days(ROOT_EXPIRY_DAYS), 1);
    for (role, ks) in [
        ("root", &keys.root),
        ("targets", &keys.targets),
        ("snapshot", &keys.snapshot),
        ("timestamp", &keys.timestamp),
    ] {
        set_root_role(&mut root, role, ks, 1);
    }
    root
}

/// Replace the keys of a top-level role in root. Old keys stay in `keys` when another role
/// still uses them or they are root certificates (Notary keeps old root certificates).
pub fn set_root_role(root: &mut Root, role: &str, keys: &[PublicKey], threshold: u64) {
    let old: Vec<KeyId> = root
        .roles
        .get(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    root.roles.insert(
        role.to_owned(),
        RootRole {
            keyids: keys.iter().map(|k| k.id().clone()).collect(),
            threshold,
        },
    );
    for k in keys {
        root.keys.insert(k.id().clone(), k.clone());
    }
    for id in old {
        let used = root.roles.values().any(|r| r.keyids.contains(&id));
        if !used && role != "root" {
            root.keys.remove(&id);
        }
    }
}

/// Add (or extend) a delegation in `parent`: its keys join the role's keys.
pub fn add_delegation(
    parent: &mut Targets,
    name: &RoleName,
    keys: &[PublicKey],
    threshold: u64,
    paths: &[String],
) {
    for k in keys {
        parent.delegations.keys.insert(k.id().clone(), k.clone());
    }
    let ids: Vec<KeyId> = keys.iter().map(|k| k.id().clone()).collect();
    match parent
        .delegations
        .roles
        .iter_mut()
        .find(|r| &r.name == name)
    {
        Some(r) => {
            for id in ids {
                if !r.keyids.contains(&id) {
                    r.keyids.push(id);
                }
            }
            r.keyids_null = false;
            for p in paths {
                if !r.paths.contains(p) {
                    r.paths.push(p.clone());
                }
            }
        }
        None => parent.delegations.roles.push(DelegationRole::new(
            name.clone(),
            ids,
            threshold,
            paths.to_vec(),
        )),
    }
}

/// Remove a delegation entirely; drops keys no other delegation uses.
pub fn remove_delegation(parent: &mut Targets, name: &RoleName) -> bool {
    let before = parent.delegations.roles.len();
    parent.delegations.roles.retain(|r| &r.name != name);
    prune_delegation_keys(parent);
    parent.delegations.roles.len() != before
}

/// Remove keys from a delegation (the role stays, maybe with fewer keys than its threshold).
pub fn remove_delegation_keys(parent: &mut Targets, name: &RoleName, ids: &[KeyId]) -> bool {
    let mut changed = false;
    if let Some(r) = parent
        .delegations
        .roles
        .iter_mut()
        .find(|r| &r.name == name)
    {
        let before = r.keyids.len();
        r.keyids.retain(|k| !ids.contains(k));
        changed = r.keyids.len() != before;
    }
    prune_delegation_keys(parent);
    changed
}

fn prune_delegation_keys(parent: &mut Targets) {
    let used: Vec<KeyId> = parent
        .delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    parent.delegations.keys.retain(|id, _| used.contains(id));
}

/// Add or replace a target. Returns false when the same meta was already there (Notary then
/// does not mark the role changed).
pub fn add_target(t: &mut Targets, name: TargetName, meta: FileMeta) -> Result<bool> {
    t.targets
        .insert(name, meta)
        .map_err(|msg| Error::Targets { msg })
}

/// Remove a target. Returns whether it was there.
pub fn remove_target(t: &mut Targets, name: &str) -> Result<bool> {
    t.targets.remove(name).map_err(|msg| Error::Targets { msg })
}

/// Re-sign a role after a change: version + 1, a fresh expiry.
pub fn resign<T: Role + SetVersion>(
    role: &str,
    mut body: T,
    previous_version: u64,
    expires: DateTime,
    keys: &[SigningKey<'_>],
) -> Result<Metadata<T>> {
    body.set_version(previous_version + 1, expires.to_utc());
    Metadata::sign(role, body, keys)
}

/// Roles whose version and expiry can be set before signing.
pub trait SetVersion {
    fn set_version(&mut self, version: u64, expires: DateTime);
}

macro_rules! set_version {
    ($($t:ty),*) => {$(
        impl SetVersion for $t {
            fn set_version(&mut self, version: u64, expires: DateTime) {
                self.version = version;
                self.expires = expires;
            }
        }
    )*};
}
set_version!(
    Root,
    Targets,
    crate::metadata::Snapshot,
    crate::metadata::Timestamp
);

/// A docker-style target: the manifest's sha256 and size.
pub fn docker_target(digest: [u8; 32], size: u64) -> FileMeta {
    FileMeta {
        custom: None,
        hashes: crate::metadata::Hashes::sha256_only(digest),
        length: size,
    }
}

/// Convenience for tests and tools: a map of role name to delegation.
pub fn delegations_by_name(t: &Targets) -> BTreeMap<&str, &DelegationRole> {
    t.delegations
        .roles
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect()
}
