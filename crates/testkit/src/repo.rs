//! A repository built with notarium's own libraries the way the docker CLI builds one:
//! ECDSA root key in a certificate (CN = GUN), ECDSA targets key, server-held snapshot and
//! timestamp keys, delegations with ECDSA keys.

use std::collections::BTreeMap;

use keys::{Algorithm, PrivateKey};
use tuf::edit::{self, TopLevelKeys};
use tuf::sign::SigningKey;
use tuf::{DateTime, Gun, Metadata, PublicKey, RoleName, Root, TargetName, Targets};

use crate::server::Endpoint as TestServer;

pub struct TestRepo {
    pub gun: Gun,
    pub root_key: PrivateKey,
    pub root_cert: PublicKey,
    pub targets_key: PrivateKey,
    pub root: Metadata<Root>,
    pub targets: Metadata<Targets>,
    pub delegations: BTreeMap<RoleName, Metadata<Targets>>,
    pub delegation_keys: BTreeMap<RoleName, PrivateKey>,
    pub now: DateTime,
}

pub fn now() -> DateTime {
    use tuf::Clock;
    tuf::SystemClock.now()
}

impl TestRepo {
    /// A new repository whose snapshot and timestamp keys are the server's.
    pub fn new(server: &TestServer, gun: &str) -> Self {
        let ts = server.server_key(gun, "timestamp");
        let snap = server.server_key(gun, "snapshot");
        Self::with_keys(gun, vec![snap], vec![ts])
    }

    pub fn with_keys(gun: &str, snapshot: Vec<PublicKey>, timestamp: Vec<PublicKey>) -> Self {
        let gun = Gun::new(gun).unwrap();
        let now = now();
        let root_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let root_cert = keys::cert::root_certificate(&root_key, &gun, now, 3650).unwrap();
        let targets_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let root_body = edit::new_root(
            &TopLevelKeys {
                root: vec![root_cert.clone()],
                targets: vec![targets_key.public().clone()],
                snapshot,
                timestamp,
            },
            now,
        );
        let root = Metadata::sign(
            "root",
            root_body,
            &[SigningKey::listed(&root_cert, &root_key)],
        )
        .unwrap();
        let targets = Metadata::sign(
            "targets",
            Targets::new(now.plus_days(1095), 1),
            &[SigningKey::plain(&targets_key)],
        )
        .unwrap();
        TestRepo {
            gun,
            root_key,
            root_cert,
            targets_key,
            root,
            targets,
            delegations: BTreeMap::new(),
            delegation_keys: BTreeMap::new(),
            now,
        }
    }

    /// The parts of the first publish: root and targets.
    pub fn init_parts(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("root", self.root.raw().to_vec()),
            ("targets", self.targets.raw().to_vec()),
        ]
    }

    /// Re-sign targets after `change` (version + 1).
    pub fn edit_targets(&mut self, change: impl FnOnce(&mut Targets)) -> Vec<u8> {
        let mut body = self.targets.signed().clone();
        change(&mut body);
        let v = body.version;
        self.targets = edit::resign(
            "targets",
            body,
            v,
            self.now.plus_days(1095),
            &[SigningKey::plain(&self.targets_key)],
        )
        .unwrap();
        self.targets.raw().to_vec()
    }

    /// Delegate `targets/<name>` (all paths) to a new key; returns the new targets bytes.
    pub fn add_delegation(&mut self, name: &str) -> Vec<u8> {
        let role = RoleName::new(&format!("targets/{name}")).unwrap();
        let key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let public = key.public().clone();
        self.delegation_keys.insert(role.clone(), key);
        self.edit_targets(|t| edit::add_delegation(t, &role, &[public], 1, &["".to_owned()]))
    }

    /// Sign `tag` into a delegation (creating its metadata at version 1); returns its bytes.
    pub fn sign_target(&mut self, role: &str, tag: &str, digest: [u8; 32], size: u64) -> Vec<u8> {
        let role = RoleName::new(role).unwrap();
        let key = self.delegation_keys.get(&role).expect("delegation key");
        let (body, prev) = match self.delegations.get(&role) {
            Some(m) => (m.signed().clone(), m.signed().version),
            None => (Targets::new(self.now, 0), 0),
        };
        let mut body = body;
        edit::add_target(
            &mut body,
            TargetName::new(tag).unwrap(),
            edit::docker_target(digest, size),
        )
        .unwrap();
        let m = edit::resign(
            role.as_str(),
            body,
            prev,
            self.now.plus_days(1095),
            &[SigningKey::plain(key)],
        )
        .unwrap();
        let bytes = m.raw().to_vec();
        self.delegations.insert(role, m);
        bytes
    }

    /// Publish the first version of the repository.
    pub fn publish_init(&self, server: &TestServer) {
        let parts = self.init_parts();
        let refs: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let a = server.post_parts(self.gun.as_str(), &refs);
        assert_eq!(a.status, 200, "initial publish: {}", a.text());
    }

    /// Re-sign root with `change` applied (version + 1), signed by the current root key.
    pub fn edit_root(&mut self, change: impl FnOnce(&mut Root)) -> Vec<u8> {
        let mut body = self.root.signed().clone();
        change(&mut body);
        let v = body.version;
        self.root = edit::resign(
            "root",
            body,
            v,
            self.now.plus_days(3650),
            &[SigningKey::listed(&self.root_cert, &self.root_key)],
        )
        .unwrap();
        self.root.raw().to_vec()
    }
}

/// A delegated (or targets) role's file at `version` with one target, `tag`, signed by
/// `key`: what a delegate uploads.
pub fn signed_targets(
    role: &str,
    version: u64,
    tag: &str,
    key: &PrivateKey,
    now: DateTime,
) -> Vec<u8> {
    let mut t = Targets::new(now.plus_days(30), version);
    edit::add_target(
        &mut t,
        TargetName::new(tag).unwrap(),
        edit::docker_target(digest(tag), 10),
    )
    .unwrap();
    Metadata::sign(role, t, &[SigningKey::plain(key)])
        .unwrap()
        .raw()
        .to_vec()
}

/// A sha256 digest for test targets.
pub fn digest(s: &str) -> [u8; 32] {
    tuf::hash::sha256(s.as_bytes())
}

/// Publish `tag` into each of `roles` with `key`, as a delegate's notary client does: each
/// role's current file from the server (or a new one), the target added, version + 1, one
/// POST with all parts.
pub fn release(
    server: &TestServer,
    gun: &str,
    key: &PrivateKey,
    roles: &[&str],
    tag: &str,
    digest: [u8; 32],
    len: u64,
) {
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for role in roles {
        let a = server.get_file(gun, &format!("{role}.json"));
        let (body, prev) = match a.status {
            200 => {
                let m = Metadata::<Targets>::parse(role, a.body).unwrap();
                let v = m.signed().version;
                (m.into_signed(), v)
            }
            404 => (Targets::new(now(), 0), 0),
            s => panic!("GET {role}: {s}"),
        };
        let mut body = body;
        edit::add_target(
            &mut body,
            TargetName::new(tag).unwrap(),
            edit::docker_target(digest, len),
        )
        .unwrap();
        let m = edit::resign(
            role,
            body,
            prev,
            now().plus_days(1095),
            &[SigningKey::plain(key)],
        )
        .unwrap();
        parts.push((role.to_string(), m.raw().to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = parts
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let a = server.post_parts(gun, &refs);
    assert_eq!(a.status, 200, "release {tag}: {}", a.text());
}
