//! Every TUF attack on the client, at the tuf crate level: an in-memory trust server that
//! serves what the attacker chose, an in-memory cache, and the time passed in. Each test
//! is named after its attack; each asserts that the honest state is read, the attacker's
//! refused, and the cache (the trusted state) left as it was by a refusal.
//! (`tests/trust_attacks.rs` runs the same attacks against the `notarium` binary over
//! HTTPS.)

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use notarium_testkit::evil::{digest_of, EvilRepo, Spec};
use notarium_testkit::memory::{lookup, MemoryCache, MemoryRemote};
use notarium_tuf::sign::SigningKey;
use notarium_tuf::{edit, DateTime, Metadata, Timestamp};

const GUN: &str = "registry.example.com/attacks/app";

fn now() -> DateTime {
    DateTime::from_unix_secs(1_800_000_000)
}

type Files = BTreeMap<String, Vec<u8>>;

/// A client that trusts version 2 of the repository (every role at version 2).
struct Victim {
    repo: EvilRepo,
    cache: MemoryCache,
    s2: Spec,
}

impl Victim {
    fn new() -> Self {
        let repo = EvilRepo::new(GUN, now());
        let mut cache = MemoryCache::default();
        let s1 = Spec::new(now());
        read(&repo.files(&s1), &mut cache).unwrap();
        let s2 = s1.next();
        assert_eq!(
            read(&repo.files(&s2), &mut cache).unwrap(),
            digest_of("one")
        );
        Victim { repo, cache, s2 }
    }

    /// The client reads `files`: refused with every one of `words` in the error, and
    /// nothing it trusts changed.
    fn refused(&mut self, files: Files, words: &[&str]) {
        let before = self.cache.clone();
        let e = read(&files, &mut self.cache).unwrap_err();
        for w in words {
            assert!(e.contains(w), "{w:?} not in: {e}");
        }
        assert_eq!(self.cache, before, "a refused read changed the cache");
    }

    /// The owner gives the timestamp role a new key (root signed by its key).
    fn rotate_timestamp_key(&mut self) {
        let new_ts = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
        let (cert, key) = (self.repo.root_cert.clone(), same_key(&self.repo.root_key));
        let new_pub = new_ts.public().clone();
        self.repo.push_root(
            |r| edit::set_root_role(r, "timestamp", &[new_pub], 1),
            &[(&cert, &key)],
            now(),
        );
        self.repo.timestamp_key = new_ts;
    }

    fn accepted(&mut self, files: Files) -> [u8; 32] {
        read(&files, &mut self.cache).unwrap()
    }
}

fn read(files: &Files, cache: &mut MemoryCache) -> Result<[u8; 32], String> {
    lookup(GUN, &mut MemoryRemote(files.clone()), cache, now(), "v1")
}

/// The name a file is served under by its hash (`snapshot.<sha256>.json`, …).
fn hashed_name(files: &Files, role: &str) -> String {
    files
        .keys()
        .find(|k| k.starts_with(&format!("{role}.")) && k.len() > role.len() + 60)
        .unwrap()
        .clone()
}

fn same_key(k: &keys::PrivateKey) -> keys::PrivateKey {
    keys::PrivateKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap()
}

#[test]
fn rollback_attack_is_refused() {
    let mut v = Victim::new();
    // The whole repository as it was at version 1 (validly signed, unexpired).
    v.refused(
        v.repo.files(&Spec::new(now())),
        &["timestamp", "lower than the trusted version 2", "rollback"],
    );
    for (role, set) in [
        (
            "snapshot",
            (|s: &mut Spec| s.snapshot_version = 1) as fn(&mut Spec),
        ),
        ("targets", |s| s.targets_version = 1),
        ("targets/releases", |s| s.releases_version = 1),
    ] {
        // Fresh everything above it, one old role under it.
        let mut s = v.s2.next();
        set(&mut s);
        v.refused(v.repo.files(&s), &[role, "rollback"]);
    }
    assert_eq!(v.accepted(v.repo.files(&v.s2.next())), digest_of("one"));
}

#[test]
fn freeze_attack_is_refused() {
    let mut v = Victim::new();
    let past = now().plus_secs(-60);
    for (role, set) in [
        (
            "timestamp",
            (|s: &mut Spec, t| s.timestamp_expires = t) as fn(&mut Spec, DateTime),
        ),
        ("snapshot", |s, t| s.snapshot_expires = t),
        ("targets", |s, t| s.targets_expires = t),
        ("targets/releases", |s, t| s.releases_expires = t),
    ] {
        let mut s = v.s2.next();
        set(&mut s, past);
        v.refused(v.repo.files(&s), &[role, "expired"]);
    }
    assert_eq!(v.accepted(v.repo.files(&v.s2.next())), digest_of("one"));
}

#[test]
fn mix_and_match_attack_is_refused() {
    let mut v = Victim::new();
    let s3 = v.s2.next();
    let real = v.repo.files(&s3);
    let mut evil_spec = s3.clone();
    evil_spec.tags = vec![("v1".into(), "evil".into())];
    let evil = v.repo.files(&evil_spec);
    // Each file the timestamp or snapshot names by hash, swapped for another validly
    // signed file of the same role and version.
    for (role, plain) in [
        ("snapshot", "snapshot.json"),
        ("targets/releases", "targets/releases.json"),
    ] {
        let mut mixed = real.clone();
        mixed.insert(hashed_name(&real, role), evil[plain].clone());
        mixed.insert(plain.into(), evil[plain].clone());
        v.refused(mixed, &[role, "mix-and-match"]);
    }
    assert_eq!(v.accepted(real), digest_of("one"));
}

#[test]
fn endless_data_attack_is_refused() {
    let mut v = Victim::new();
    // A timestamp past the client's 1 MiB bound: reading stops there.
    let mut files = v.repo.files(&v.s2.next());
    files.insert("timestamp.json".into(), vec![b' '; 2 << 20]);
    v.refused(files, &["timestamp", "1048576", "endless data"]);
    // A snapshot longer than the timestamp says it is.
    let mut files = v.repo.files(&v.s2.next());
    let name = hashed_name(&files, "snapshot");
    files.get_mut(&name).unwrap().extend([b' '; 4096]);
    v.refused(files, &["snapshot", "endless data"]);
}

#[test]
fn threshold_attack_is_refused() {
    let mut v = Victim::new();
    // Root raises the targets threshold to 2 (a second targets key): the files signed by
    // the first key alone are no longer enough.
    let extra = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let (cert, key) = (v.repo.root_cert.clone(), same_key(&v.repo.root_key));
    let both = [v.repo.targets_key.public().clone(), extra.public().clone()];
    v.repo.push_root(
        |r| edit::set_root_role(r, "targets", &both, 2),
        &[(&cert, &key)],
        now(),
    );
    let s3 = v.s2.next();
    v.refused(v.repo.files(&s3), &["targets", "threshold is 2"]);
    // The same key twice is one key.
    let files = v.repo.files(&s3);
    let body = v.repo.targets_body(&s3);
    let twice = Metadata::sign(
        "targets",
        body.clone(),
        &[
            SigningKey::plain(&v.repo.targets_key),
            SigningKey::plain(&v.repo.targets_key),
        ],
    )
    .unwrap();
    let rel = files["targets/releases.json"].clone();
    v.refused(
        v.repo.assemble(&s3, twice.raw().to_vec(), rel.clone()),
        &["targets", "threshold is 2"],
    );
    // Both keys: accepted.
    let signed = Metadata::sign(
        "targets",
        body,
        &[
            SigningKey::plain(&v.repo.targets_key),
            SigningKey::plain(&extra),
        ],
    )
    .unwrap();
    let d = v.accepted(v.repo.assemble(&s3, signed.raw().to_vec(), rel));
    assert_eq!(d, digest_of("one"));
}

#[test]
fn key_compromise_is_contained() {
    let mut v = Victim::new();
    let s3 = v.s2.next();
    // The online timestamp key, stolen, signs targets: not a targets key.
    let forged = Metadata::sign(
        "targets",
        v.repo.targets_body(&s3),
        &[SigningKey::plain(&v.repo.timestamp_key)],
    )
    .unwrap();
    let rel = v.repo.files(&s3)["targets/releases.json"].clone();
    v.refused(
        v.repo.assemble(&s3, forged.raw().to_vec(), rel),
        &["targets", "threshold is 1"],
    );
    // A key no role lists signs the timestamp.
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let mut files = v.repo.files(&s3);
    let ts = Metadata::<Timestamp>::parse("timestamp", files["timestamp.json"].clone()).unwrap();
    files.insert(
        "timestamp.json".into(),
        v.repo.sign_timestamp(ts.into_signed(), &stranger),
    );
    v.refused(files, &["timestamp", "0 distinct key(s)"]);
    // The owner replaces the compromised timestamp key: the client follows the new root,
    // and the old key's timestamps are refused from then on.
    let old_ts = same_key(&v.repo.timestamp_key);
    v.rotate_timestamp_key();
    assert_eq!(v.accepted(v.repo.files(&s3)), digest_of("one"));
    let s4 = s3.next();
    let mut files = v.repo.files(&s4);
    let ts = Metadata::<Timestamp>::parse("timestamp", files["timestamp.json"].clone()).unwrap();
    files.insert(
        "timestamp.json".into(),
        v.repo.sign_timestamp(ts.into_signed(), &old_ts),
    );
    v.refused(files, &["timestamp", "0 distinct key(s)"]);
}

#[test]
fn fast_forward_attack_is_recovered_by_rotating_the_key() {
    let mut v = Victim::new();
    // A stolen timestamp key pushes the timestamp version far ahead; the signature is
    // valid, so the client follows…
    let mut ff = v.s2.next();
    ff.timestamp_version = 1_000_000;
    v.accepted(v.repo.files(&ff));
    // …and the owner's next timestamps look like rollbacks…
    let mut s3 = v.s2.next();
    s3.timestamp_version = 4;
    v.refused(v.repo.files(&s3), &["timestamp", "rollback"]);
    // …until root replaces the timestamp key: the floor goes with the old key.
    v.rotate_timestamp_key();
    assert_eq!(v.accepted(v.repo.files(&s3)), digest_of("one"));
}

#[test]
fn an_unauthorized_root_is_refused() {
    let mut v = Victim::new();
    // The attacker's root for the same repository, signed only by the attacker's key.
    let gun = notarium_tuf::Gun::new(GUN).unwrap();
    let evil = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let evil_cert = keys::cert::root_certificate(&evil, &gun, now(), 3650).unwrap();
    let ec = evil_cert.clone();
    v.repo.push_root(
        move |r| edit::set_root_role(r, "root", &[ec], 1),
        &[(&evil_cert, &evil)],
        now(),
    );
    v.refused(
        v.repo.files(&v.s2.next()),
        &["root", "previous root", "not authorized"],
    );
}
