//! A malicious trust server for client tests: HTTPS (a CA the client is told to trust),
//! serving exactly the files a test puts in it; and a repository whose every key the test
//! holds, so it can sign anything: expired, rolled back, mixed, oversized, under-threshold.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::http::{respond, serve, Served};
use std::sync::{Arc, Mutex};

use keys::{Algorithm, PrivateKey};
use tuf::edit::{self, TopLevelKeys};
use tuf::metadata::{FileMeta, Metadata};
use tuf::sign::SigningKey;
use tuf::{DateTime, Gun, RoleName, Root, Snapshot, TargetName, Targets, Timestamp};

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Serves `/v2/<gun>/_trust/tuf/<file>` from a map the test controls.
pub struct EvilServer {
    pub addr: SocketAddr,
    pub url: String,
    pub ca: PathBuf,
    files: Files,
    gun: String,
    served: Served,
}

impl EvilServer {
    pub fn start(gun: &str) -> Self {
        let files: Files = Arc::new(Mutex::new(BTreeMap::new()));
        let f2 = files.clone();
        let prefix = format!("/v2/{gun}/_trust/tuf/");
        let served = serve(
            true,
            Arc::new(move |req, _| {
                let path = req.uri.path();
                if path == "/v2/" {
                    respond(200, &[], "{}")
                } else if let Some(file) = path.strip_prefix(&prefix) {
                    match f2.lock().unwrap().get(file) {
                        Some(b) => respond(200, &[], b.clone()),
                        None => respond(404, &[], r#"{"errors":[{"code":"METADATA_NOT_FOUND"}]}"#),
                    }
                } else {
                    respond(404, &[], "")
                }
            }),
        );
        EvilServer {
            addr: served.addr,
            url: served.url.clone(),
            ca: served.ca.clone().unwrap(),
            files,
            gun: gun.to_owned(),
            served,
        }
    }

    /// Serve exactly these files (replacing all).
    pub fn serve(&self, files: BTreeMap<String, Vec<u8>>) {
        *self.files.lock().unwrap() = files;
    }

    pub fn set(&self, file: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(file.to_owned(), bytes);
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    pub fn install_ca_for_docker(&self, docker_config: &std::path::Path) {
        self.served.install_ca_for_docker(docker_config);
    }
}

/// Versions and expiries of one state of the repository.
#[derive(Clone, Debug)]
pub struct Spec {
    pub targets_version: u64,
    pub releases_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    pub targets_expires: DateTime,
    pub releases_expires: DateTime,
    pub snapshot_expires: DateTime,
    pub timestamp_expires: DateTime,
    /// Tag → digest seed, signed into targets/releases.
    pub tags: Vec<(String, String)>,
}

impl Spec {
    pub fn new(now: DateTime) -> Self {
        Spec {
            targets_version: 1,
            releases_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            targets_expires: now.plus_days(1000),
            releases_expires: now.plus_days(1000),
            snapshot_expires: now.plus_days(1000),
            timestamp_expires: now.plus_days(14),
            tags: vec![("v1".into(), "one".into())],
        }
    }

    /// Every version one higher (the next legitimate state).
    pub fn next(&self) -> Self {
        let mut s = self.clone();
        s.targets_version += 1;
        s.releases_version += 1;
        s.snapshot_version += 1;
        s.timestamp_version += 1;
        s
    }
}

/// A repository whose keys are all here.
pub struct EvilRepo {
    pub gun: Gun,
    pub root_key: PrivateKey,
    pub root_cert: tuf::PublicKey,
    pub targets_key: PrivateKey,
    pub snapshot_key: PrivateKey,
    pub timestamp_key: PrivateKey,
    pub releases_key: PrivateKey,
    /// Root versions, oldest first.
    pub roots: Vec<Metadata<Root>>,
}

pub fn digest_of(seed: &str) -> [u8; 32] {
    tuf::hash::sha256(seed.as_bytes())
}

impl EvilRepo {
    pub fn new(gun: &str, now: DateTime) -> Self {
        let gun = Gun::new(gun).unwrap();
        let root_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let root_cert = keys::cert::root_certificate(&root_key, &gun, now, 3650).unwrap();
        let targets_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let snapshot_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let timestamp_key = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let releases_key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let body = edit::new_root(
            &TopLevelKeys {
                root: vec![root_cert.clone()],
                targets: vec![targets_key.public().clone()],
                snapshot: vec![snapshot_key.public().clone()],
                timestamp: vec![timestamp_key.public().clone()],
            },
            now,
        );
        let root =
            Metadata::sign("root", body, &[SigningKey::listed(&root_cert, &root_key)]).unwrap();
        EvilRepo {
            gun,
            root_key,
            root_cert,
            targets_key,
            snapshot_key,
            timestamp_key,
            releases_key,
            roots: vec![root],
        }
    }

    pub fn root(&self) -> &Metadata<Root> {
        self.roots.last().unwrap()
    }

    /// Add a root version: `change` applied, signed by the given keys (listed, private).
    pub fn push_root(
        &mut self,
        change: impl FnOnce(&mut Root),
        signers: &[(&tuf::PublicKey, &PrivateKey)],
        now: DateTime,
    ) {
        let mut body = self.root().signed().clone();
        change(&mut body);
        body.version += 1;
        body.expires = now.plus_days(3650);
        let keys: Vec<SigningKey<'_>> = signers
            .iter()
            .map(|(l, k)| SigningKey::listed(l, *k))
            .collect();
        self.roots
            .push(Metadata::sign("root", body, &keys).unwrap());
    }

    pub fn targets_body(&self, spec: &Spec) -> Targets {
        let mut t = Targets::new(spec.targets_expires, spec.targets_version);
        edit::add_delegation(
            &mut t,
            &RoleName::new("targets/releases").unwrap(),
            &[self.releases_key.public().clone()],
            1,
            &["".to_owned()],
        );
        t
    }

    pub fn releases_body(&self, spec: &Spec) -> Targets {
        let mut r = Targets::new(spec.releases_expires, spec.releases_version);
        for (tag, seed) in &spec.tags {
            edit::add_target(
                &mut r,
                TargetName::new(tag).unwrap(),
                edit::docker_target(digest_of(seed), 528),
            )
            .unwrap();
        }
        r
    }

    /// All files of a consistent state, as a server would serve them.
    pub fn files(&self, spec: &Spec) -> BTreeMap<String, Vec<u8>> {
        let targets = Metadata::sign(
            "targets",
            self.targets_body(spec),
            &[SigningKey::plain(&self.targets_key)],
        )
        .unwrap();
        let releases = Metadata::sign(
            "targets/releases",
            self.releases_body(spec),
            &[SigningKey::plain(&self.releases_key)],
        )
        .unwrap();
        self.assemble(spec, targets.raw().to_vec(), releases.raw().to_vec())
    }

    /// Snapshot and timestamp over given targets files.
    pub fn assemble(
        &self,
        spec: &Spec,
        targets: Vec<u8>,
        releases: Vec<u8>,
    ) -> BTreeMap<String, Vec<u8>> {
        let root = self.root().raw().to_vec();
        let mut snap = Snapshot::new(spec.snapshot_expires, spec.snapshot_version);
        snap.meta
            .insert(RoleName::root(), FileMeta::for_metadata(&root));
        snap.meta
            .insert(RoleName::targets(), FileMeta::for_metadata(&targets));
        snap.meta.insert(
            RoleName::new("targets/releases").unwrap(),
            FileMeta::for_metadata(&releases),
        );
        let snap =
            Metadata::sign("snapshot", snap, &[SigningKey::plain(&self.snapshot_key)]).unwrap();
        let ts = Timestamp::new(
            spec.timestamp_expires,
            spec.timestamp_version,
            FileMeta::for_metadata(snap.raw()),
        );
        let ts =
            Metadata::sign("timestamp", ts, &[SigningKey::plain(&self.timestamp_key)]).unwrap();
        let mut f = BTreeMap::new();
        let sha = |b: &[u8]| tuf::hash::sha256_hex(b);
        f.insert("root.json".into(), root.clone());
        for r in &self.roots {
            f.insert(
                format!("{}.root.json", r.signed().version),
                r.raw().to_vec(),
            );
            f.insert(format!("root.{}.json", sha(r.raw())), r.raw().to_vec());
        }
        f.insert("timestamp.json".into(), ts.raw().to_vec());
        f.insert(
            format!("snapshot.{}.json", sha(snap.raw())),
            snap.raw().to_vec(),
        );
        f.insert("snapshot.json".into(), snap.raw().to_vec());
        f.insert(format!("targets.{}.json", sha(&targets)), targets.clone());
        f.insert("targets.json".into(), targets);
        f.insert(
            format!("targets/releases.{}.json", sha(&releases)),
            releases.clone(),
        );
        f.insert("targets/releases.json".into(), releases);
        f
    }

    pub fn sign_timestamp(&self, ts: Timestamp, key: &PrivateKey) -> Vec<u8> {
        Metadata::sign("timestamp", ts, &[SigningKey::plain(key)])
            .unwrap()
            .raw()
            .to_vec()
    }
}
