//! TUF attacks against the client: a malicious trust server serves rollback, frozen,
//! mixed, oversized, under-threshold and wrong-key metadata; `notarium trust verify` must
//! refuse each with an error naming the role and the rule, and leave its cache (the
//! trusted state) exactly as it was.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use notarium_testkit::evil::{EvilRepo, EvilServer, Spec};
use tuf::{Clock, DateTime, RoleName};

const GUN: &str = "registry.example.com/evil/app";

struct Victim {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    server: EvilServer,
    repo: EvilRepo,
    now: DateTime,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Victim {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("docker-config");
        std::fs::create_dir_all(&config).unwrap();
        let server = EvilServer::start(GUN);
        server.install_ca_for_docker(&config);
        let now = tuf::SystemClock.now();
        Victim {
            _tmp: tmp,
            config,
            server,
            repo: EvilRepo::new(GUN, now),
            now,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        let o = Command::new(env!("CARGO_BIN_EXE_notarium"))
            .args(args)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.server.url)
            .output()
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn verify(&self) -> Out {
        self.run(&["trust", "verify", &format!("{GUN}:v1")])
    }

    fn verify_ok(&self) -> String {
        let o = self.verify();
        assert_eq!(o.code, 0, "verify failed: {}", o.stderr);
        o.stdout.trim().to_owned()
    }

    fn cache_dir(&self) -> PathBuf {
        self.config.join("trust/tuf").join(GUN).join("metadata")
    }

    /// Every cached file, path → bytes.
    fn cache(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.insert(
                        p.strip_prefix(base).unwrap().display().to_string(),
                        std::fs::read(&p).unwrap(),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.cache_dir(), &self.cache_dir(), &mut out);
        out
    }

    /// Trust state 1, then state 2: the client's floor is version 2 of everything.
    fn trusting_state_two(&self) -> Spec {
        let s1 = Spec::new(self.now);
        self.server.serve(self.repo.files(&s1));
        self.verify_ok();
        let s2 = s1.next();
        self.server.serve(self.repo.files(&s2));
        self.verify_ok();
        s2
    }

    /// Serve `files`; verification must fail naming `words`, and change nothing cached.
    fn refused(&self, files: BTreeMap<String, Vec<u8>>, words: &[&str]) -> String {
        let before = self.cache();
        self.server.serve(files);
        let o = self.verify();
        assert_ne!(o.code, 0, "the attack was accepted: {}", o.stdout);
        let err = o.stderr.trim().to_owned();
        for w in words {
            assert!(err.contains(w), "error {err:?} should contain {w:?}");
        }
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let after = self.cache();
        let changed: Vec<&String> = after
            .keys()
            .chain(before.keys())
            .filter(|k| after.get(*k) != before.get(*k))
            .collect();
        assert!(
            changed.is_empty(),
            "the cache changed after a refused update: {changed:?}"
        );
        err
    }
}

fn digest(seed: &str) -> String {
    format!("sha256:{}", hex::encode(tuf::hash::sha256(seed.as_bytes())))
}

#[test]
fn first_use_and_updates_work() {
    let v = Victim::new();
    let s1 = Spec::new(v.now);
    v.server.serve(v.repo.files(&s1));
    assert_eq!(v.verify_ok(), digest("one"));
    let mut s2 = s1.next();
    s2.tags = vec![("v1".into(), "two".into())];
    v.server.serve(v.repo.files(&s2));
    assert_eq!(v.verify_ok(), digest("two"));
    let cache = v.cache();
    let names: Vec<&str> = cache.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "targets/releases.json",
            "timestamp.json"
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(v.cache_dir().join("root.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let o = v.run(&["trust", "verify", &format!("{GUN}:nope")]);
    assert_ne!(o.code, 0);
    assert_eq!(o.stderr.trim(), "No valid trust data for nope");
}

#[test]
fn rollback_attack_is_refused() {
    let v = Victim::new();
    let s2 = v.trusting_state_two();
    // The whole repository as it was at version 1 (validly signed, not expired).
    v.refused(
        v.repo.files(&Spec::new(v.now)),
        &[
            "timestamp",
            "version 1 is lower than the trusted version 2",
            "rollback",
        ],
    );
    // A fresh timestamp over an old snapshot.
    let mut s = s2.next();
    s.snapshot_version = 1;
    v.refused(v.repo.files(&s), &["snapshot", "rollback"]);
    // Fresh timestamp and snapshot over old targets.
    let mut s = s2.next();
    s.targets_version = 1;
    v.refused(v.repo.files(&s), &["targets", "rollback"]);
    // An old delegation.
    let mut s = s2.next();
    s.releases_version = 1;
    v.refused(v.repo.files(&s), &["targets/releases", "rollback"]);
    // And the good state still works afterwards.
    v.server.serve(v.repo.files(&s2.next()));
    v.verify_ok();
}

#[test]
fn freeze_attack_is_refused() {
    let v = Victim::new();
    let s2 = v.trusting_state_two();
    let past = v.now.plus_secs(-60);
    for (role, set) in [
        (
            "timestamp",
            (|s: &mut Spec, t| s.timestamp_expires = t) as fn(&mut Spec, DateTime),
        ),
        ("snapshot", |s, t| s.snapshot_expires = t),
        ("targets", |s, t| s.targets_expires = t),
    ] {
        let mut s = s2.next();
        set(&mut s, past);
        v.refused(v.repo.files(&s), &[role, "expired"]);
    }
    // An expired delegation is not trusted either (the tag it signed is not valid data).
    let mut s = s2.next();
    s.releases_expires = past;
    let before = v.cache();
    v.server.serve(v.repo.files(&s));
    let o = v.verify();
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("No valid trust data for v1"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("targets/releases") && o.stderr.contains("expired"),
        "{}",
        o.stderr
    );
    assert_eq!(
        v.cache().get("targets/releases.json"),
        before.get("targets/releases.json")
    );
}

#[test]
fn mix_and_match_attack_is_refused() {
    let v = Victim::new();
    let s2 = v.trusting_state_two();
    let s3 = s2.next();
    let real = v.repo.files(&s3);
    let mut other_spec = s3.clone();
    other_spec.tags = vec![("v1".into(), "evil".into())];
    let other = v.repo.files(&other_spec);
    // The timestamp names one snapshot; another (validly signed) is served in its place.
    let mut mixed = real.clone();
    let snap_name = real
        .keys()
        .find(|k| k.starts_with("snapshot.") && k.len() > 20)
        .unwrap()
        .clone();
    mixed.insert(snap_name, other["snapshot.json"].clone());
    v.refused(
        mixed,
        &[
            "snapshot",
            "does not match its recorded meta",
            "mix-and-match",
        ],
    );
    // The snapshot names one release file; another is served under its name.
    let mut mixed = real.clone();
    let rel_name = real
        .keys()
        .find(|k| k.starts_with("targets/releases.") && k.len() > 30)
        .unwrap()
        .clone();
    mixed.insert(rel_name, other["targets/releases.json"].clone());
    let before = v.cache();
    v.server.serve(mixed);
    let o = v.verify();
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("mix-and-match"), "{}", o.stderr);
    assert_eq!(
        v.cache().get("targets/releases.json"),
        before.get("targets/releases.json")
    );
}

#[test]
fn endless_data_attack_is_refused() {
    let v = Victim::new();
    let s2 = v.trusting_state_two();
    let mut files = v.repo.files(&s2.next());
    files.insert("timestamp.json".into(), vec![b' '; 2 << 20]);
    v.refused(files, &["timestamp", "1048576", "endless data"]);
    // A snapshot longer than the timestamp says.
    let mut files = v.repo.files(&s2.next());
    let snap_name = files
        .keys()
        .find(|k| k.starts_with("snapshot.") && k.len() > 20)
        .unwrap()
        .clone();
    let mut big = files[&snap_name].clone();
    big.extend(std::iter::repeat_n(b' ', 4096));
    files.insert(snap_name, big);
    v.refused(files, &["snapshot", "endless data"]);
}

#[test]
fn wrong_key_and_under_threshold_are_refused() {
    let mut v = Victim::new();
    let s2 = v.trusting_state_two();
    // A timestamp signed by a key root does not list.
    let mut files = v.repo.files(&s2.next());
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let ts = tuf::Metadata::<tuf::Timestamp>::parse("timestamp", files["timestamp.json"].clone())
        .unwrap();
    files.insert(
        "timestamp.json".into(),
        v.repo.sign_timestamp(ts.into_signed(), &stranger),
    );
    v.refused(
        files,
        &[
            "timestamp",
            "valid signatures from 0 distinct key(s), threshold is 1",
        ],
    );
    // Key compromise: the online timestamp key signing targets.
    let s3 = s2.next();
    let good = v.repo.files(&s3);
    let forged_targets = tuf::Metadata::sign(
        "targets",
        v.repo.targets_body(&s3),
        &[tuf::sign::SigningKey::plain(&v.repo.timestamp_key)],
    )
    .unwrap();
    let releases = good["targets/releases.json"].clone();
    v.refused(
        v.repo
            .assemble(&s3, forged_targets.raw().to_vec(), releases),
        &["targets", "threshold is 1"],
    );
    // Root raises the targets threshold to 2; one signature is then not enough.
    let extra = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let (cert, key) = (
        v.repo.root_cert.clone(),
        keys::PrivateKey::from_pkcs8_der(&v.repo.root_key.to_pkcs8_der()).unwrap(),
    );
    let targets_pub = v.repo.targets_key.public().clone();
    v.repo.push_root(
        |r| tuf::edit::set_root_role(r, "targets", &[targets_pub, extra.public().clone()], 2),
        &[(&cert, &key)],
        v.now,
    );
    v.refused(v.repo.files(&s3.next()), &["targets", "threshold is 2"]);
}

#[test]
fn unauthorized_root_is_refused() {
    let mut v = Victim::new();
    let s2 = v.trusting_state_two();
    // An attacker's root for the same GUN, signed only by the attacker's root key, with
    // the attacker's timestamp key.
    let gun = tuf::Gun::new(GUN).unwrap();
    let evil_root = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let evil_cert = keys::cert::root_certificate(&evil_root, &gun, v.now, 3650).unwrap();
    let evil_ts = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let evil_ts_pub = evil_ts.public().clone();
    let ec = evil_cert.clone();
    v.repo.push_root(
        move |r| {
            tuf::edit::set_root_role(r, "root", &[ec], 1);
            tuf::edit::set_root_role(r, "timestamp", &[evil_ts_pub], 1);
        },
        &[(&evil_cert, &evil_root)],
        v.now,
    );
    v.repo.timestamp_key = evil_ts;
    v.refused(
        v.repo.files(&s2.next()),
        &["root", "previous root", "not authorized"],
    );
}

#[test]
fn root_rotation_chain_and_fast_forward_recovery() {
    let mut v = Victim::new();
    let s2 = v.trusting_state_two();
    // Fast-forward: a stolen timestamp key pushes the timestamp version very high; the
    // client follows (the signature is valid)…
    let mut ff = s2.next();
    ff.timestamp_version = 1_000_000;
    v.server.serve(v.repo.files(&ff));
    v.verify_ok();
    // …so legitimate timestamps are refused as rollbacks until the key is rotated.
    let mut s3 = s2.next();
    s3.timestamp_version = 4;
    v.refused(v.repo.files(&s3), &["timestamp", "rollback"]);
    // The owner rotates root twice (a new root key each time) and the timestamp key; the
    // client walks 1 → 2 → 3 and drops the fast-forwarded floor with the old key.
    let gun = tuf::Gun::new(GUN).unwrap();
    let mut prev = (
        v.repo.root_cert.clone(),
        keys::PrivateKey::from_pkcs8_der(&v.repo.root_key.to_pkcs8_der()).unwrap(),
    );
    for _ in 0..2 {
        let k = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
        let c = keys::cert::root_certificate(&k, &gun, v.now, 3650).unwrap();
        let c2 = c.clone();
        v.repo.push_root(
            move |r| tuf::edit::set_root_role(r, "root", &[c2], 1),
            &[(&prev.0, &prev.1), (&c, &k)],
            v.now,
        );
        prev = (c, k);
    }
    let new_ts = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let pub_ts = new_ts.public().clone();
    v.repo.push_root(
        move |r| tuf::edit::set_root_role(r, "timestamp", &[pub_ts], 1),
        &[(&prev.0, &prev.1)],
        v.now,
    );
    v.repo.timestamp_key = new_ts;
    // A missing link in the chain is an error…
    let mut files = v.repo.files(&s3);
    files.remove("2.root.json");
    v.refused(files, &["root", "version 2 of the root chain is missing"]);
    // …the whole chain is followed.
    v.server.serve(v.repo.files(&s3));
    v.verify_ok();
    let root = tuf::Metadata::<tuf::Root>::parse("root", v.cache()["root.json"].clone()).unwrap();
    assert_eq!(root.signed().version, 4);
    let ts =
        tuf::Metadata::<tuf::Timestamp>::parse("t", v.cache()["timestamp.json"].clone()).unwrap();
    assert_eq!(ts.signed().version, 4);
    let _ = RoleName::root();
}
