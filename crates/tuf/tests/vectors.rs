//! Golden vectors from the reference Notary 0.7 client/server and the docker 28 CLI
//! (`tests/fixtures/`, copied from `shared/vectors/`): every key ID recomputes, every
//! signature verifies, one flipped byte breaks it, every file re-serializes byte for byte,
//! snapshot/timestamp meta matches the files, and the root chain verifies.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use notarium_tuf::key::KeyId;
use notarium_tuf::metadata::Role;
use notarium_tuf::verify::{self, Checks, RoleKeys, RootChecks};
use notarium_tuf::{
    DateTime, Gun, Metadata, PublicKey, RoleName, Root, Snapshot, Targets, Timestamp, Verified,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The vectors were made on 2026-11-25; their timestamps expire 14 days later, targets
/// and snapshots in 2029, roots in 2036. Checks run at a fixed time inside all of that.
fn now() -> DateTime {
    DateTime::parse("2026-11-26T00:00:00Z").unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse<T: Role>(p: &Path) -> Metadata<T> {
    Metadata::<T>::parse(&p.display().to_string(), read(p))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parse + serialize must give back the exact bytes.
fn assert_round_trip<T: Role>(p: &Path) {
    let m = parse::<T>(p);
    assert!(
        m.is_normalized(),
        "{} does not re-serialize byte for byte",
        p.display()
    );
    // And through the typed body alone: canonical(typed) wrapped in the envelope.
    let rebuilt = notarium_tuf::metadata::envelope(
        &notarium_tuf::canonical::Canonical::to_canonical(m.signed()),
        m.signatures(),
    );
    assert_eq!(rebuilt, m.raw(), "{}", p.display());
}

/// A whole repository state directory: root, targets (+ delegations), snapshot, timestamp.
struct State {
    dir: PathBuf,
    gun: Gun,
}

impl State {
    fn new(dir: PathBuf, gun: &str) -> Self {
        State {
            dir,
            gun: Gun::new(gun).unwrap(),
        }
    }

    fn delegation_files(&self) -> Vec<(RoleName, PathBuf)> {
        let mut out = Vec::new();
        let d = self.dir.join("targets");
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd {
                let p = e.unwrap().path();
                let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
                out.push((RoleName::new(&format!("targets/{name}")).unwrap(), p));
            }
        }
        out.sort();
        out
    }

    /// Full TUF verification of every file in the state, plus byte exactness.
    fn verify(&self) -> Verified<Root> {
        let root_path = self.dir.join("root.json");
        assert_round_trip::<Root>(&root_path);
        let root = verify::verify_root(
            parse::<Root>(&root_path),
            &self.gun,
            None,
            RootChecks {
                checks: Checks::at(now()),
                allow_expired_certs: false,
                pinning: None,
            },
        )
        .unwrap();

        let ts_path = self.dir.join("timestamp.json");
        assert_round_trip::<Timestamp>(&ts_path);
        let ts = verify::verify(
            parse::<Timestamp>(&ts_path),
            &RoleName::timestamp(),
            RoleKeys::from_root(root.signed(), "timestamp").unwrap(),
            Checks::at(now()),
        )
        .unwrap();

        let snap_path = self.dir.join("snapshot.json");
        assert_round_trip::<Snapshot>(&snap_path);
        let snap_bytes = read(&snap_path);
        ts.signed()
            .snapshot_meta()
            .unwrap()
            .check(&snap_bytes)
            .expect("timestamp meta matches snapshot.json");
        let snap = verify::verify(
            parse::<Snapshot>(&snap_path),
            &RoleName::snapshot(),
            RoleKeys::from_root(root.signed(), "snapshot").unwrap(),
            Checks::at(now()),
        )
        .unwrap();
        snap.signed().meta["root"]
            .check(&read(&root_path))
            .expect("snapshot meta matches root.json");

        let targets_path = self.dir.join("targets.json");
        assert_round_trip::<Targets>(&targets_path);
        snap.signed().meta["targets"]
            .check(&read(&targets_path))
            .expect("snapshot meta matches targets.json");
        let targets = verify::verify(
            parse::<Targets>(&targets_path),
            &RoleName::targets(),
            RoleKeys::from_root(root.signed(), "targets").unwrap(),
            Checks::at(now()),
        )
        .unwrap();

        let delegations = self.delegation_files();
        for (role, path) in &delegations {
            assert_round_trip::<Targets>(path);
            snap.signed().meta[role]
                .check(&read(path))
                .expect("snapshot meta matches delegation file");
            let parent = role.parent().unwrap();
            assert_eq!(
                parent.as_str(),
                "targets",
                "vectors only delegate from targets"
            );
            let d = targets.signed().delegations.role(role.as_str()).unwrap();
            verify::verify(
                parse::<Targets>(path),
                role,
                RoleKeys {
                    keys: &targets.signed().delegations.keys,
                    keyids: &d.keyids,
                    threshold: d.threshold,
                },
                Checks::at(now()),
            )
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        }
        // Every file the snapshot names is here.
        assert_eq!(snap.signed().meta.len(), 2 + delegations.len());
        root
    }

    /// Every signature in every file verifies with the key its keyid names, and stops
    /// verifying when one byte of the signed body or of the signature changes.
    fn check_every_signature(&self) {
        let mut keys: BTreeMap<KeyId, PublicKey> = BTreeMap::new();
        let root = parse::<Root>(&self.dir.join("root.json"));
        keys.extend(root.signed().keys.clone());
        let targets = parse::<Targets>(&self.dir.join("targets.json"));
        keys.extend(targets.signed().delegations.keys.clone());
        let mut files: Vec<PathBuf> = ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .map(|r| self.dir.join(format!("{r}.json")))
            .collect();
        files.extend(self.delegation_files().into_iter().map(|(_, p)| p));
        let mut checked = 0;
        for f in files {
            let raw = read(&f);
            let m = generic(&raw);
            assert!(!m.signatures.is_empty(), "{} unsigned", f.display());
            for s in &m.signatures {
                let key = keys
                    .get(&s.keyid)
                    .unwrap_or_else(|| panic!("{}: no key {}", f.display(), s.keyid));
                assert_eq!(key.id(), &s.keyid);
                key.verify(&s.method, &m.canonical, &s.sig)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                // One flipped bit in the signature.
                let mut bad = s.sig.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0x01;
                assert!(key.verify(&s.method, &m.canonical, &bad).is_err());
                // One flipped byte in the signed body.
                let mut body = m.canonical.clone();
                let i = body.len() / 3;
                body[i] = body[i].wrapping_add(1);
                assert!(key.verify(&s.method, &body, &s.sig).is_err());
                // The algorithm comes from the key: another method never verifies.
                for m2 in ["ecdsa", "eddsa", "rsapss", "rsapkcs1v15"] {
                    let m2 = notarium_tuf::SignatureMethod::parse(m2);
                    if m2 != s.method {
                        assert!(key.verify(&m2, &m.canonical, &s.sig).is_err());
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 4);
    }
}

/// Any role file parsed generically (its type does not matter for signature checks).
struct Generic {
    canonical: Vec<u8>,
    signatures: Vec<notarium_tuf::Signature>,
}

fn generic(raw: &[u8]) -> Generic {
    let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
    let signed = serde_json::to_vec(&v["signed"]).unwrap();
    let canonical = notarium_tuf::canonical::canonicalize(&signed).unwrap();
    let signatures = serde_json::from_value(v["signatures"].clone()).unwrap();
    Generic {
        canonical,
        signatures,
    }
}

fn notary_dir(state: &str) -> PathBuf {
    fixtures()
        .join("notary-0.7/example.com/vectors/app")
        .join(state)
}

const NOTARY_GUN: &str = "example.com/vectors/app";
const DOCKER_GUN: &str = "registry.example.com/vectors/docker-app";

#[test]
fn notary_v1_state_verifies() {
    let s = State::new(notary_dir("v1"), NOTARY_GUN);
    let root = s.verify();
    s.check_every_signature();
    assert_eq!(root.signed().version, 1);
    let t = parse::<Targets>(&notary_dir("v1/targets.json"));
    let map = t.signed().targets.to_map().unwrap();
    let names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["v1", "weird<tag>&\"q\"", "ünïcode-☃"]);
    // Read without a map, one entry and all of them, the same.
    let unicode = t.signed().targets.get("ünïcode-☃").unwrap().unwrap();
    assert_eq!(&unicode, &map["ünïcode-☃"]);
    let mut visited = Vec::new();
    t.signed()
        .targets
        .visit(|n, _| {
            visited.push(n.into_owned());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(visited, names);
    let custom = unicode.custom.as_ref().unwrap();
    assert_eq!(
        custom.to_string(),
        r#"{"a":[true,null,"x"],"neg":-7,"num":12345678901,"u":"ün☃"}"#
    );
    // The envelope holds the HTML-escaped form, the signed bytes the raw one.
    let raw = String::from_utf8(read(&notary_dir("v1/targets.json"))).unwrap();
    assert!(raw.contains(r#""weird\u003ctag\u003e\u0026\"q\"""#));
    assert!(String::from_utf8_lossy(t.canonical().unwrap()).contains(r#""weird<tag>&\"q\"""#));
}

#[test]
fn notary_v2_state_with_x509_delegations_verifies() {
    let s = State::new(notary_dir("v2"), NOTARY_GUN);
    s.verify();
    s.check_every_signature();
    let t = parse::<Targets>(&notary_dir("v2/targets.json"));
    let types: Vec<&str> = t
        .signed()
        .delegations
        .keys
        .values()
        .map(|k| k.keytype().as_str())
        .collect();
    assert!(
        types.contains(&"ecdsa-x509") && types.contains(&"rsa-x509"),
        "{types:?}"
    );
    let alice = parse::<Targets>(&notary_dir("v2/targets/alice.json"));
    assert_eq!(alice.signatures()[0].method.as_str(), "rsapss");
}

#[test]
fn notary_v3_state_after_key_rotations_verifies() {
    let s = State::new(notary_dir("v3"), NOTARY_GUN);
    s.verify();
    s.check_every_signature();
    assert_eq!(
        read(&notary_dir("v3/snapshot.json")),
        read(&notary_dir("v3/snapshot.by-checksum.json"))
    );
}

#[test]
fn notary_client_cache_verifies() {
    let s = State::new(
        fixtures().join("notary-0.7/client-tuf-cache/example.com/vectors/app/metadata"),
        NOTARY_GUN,
    );
    s.verify();
    s.check_every_signature();
}

#[test]
fn docker_state_verifies() {
    let s = State::new(fixtures().join("docker-28").join(DOCKER_GUN), DOCKER_GUN);
    let root = s.verify();
    s.check_every_signature();
    // Docker's repository: server-held snapshot and timestamp keys (ed25519 with the local
    // signing service), an ECDSA targets key, an x509 root.
    let keytype = |role: &str| {
        let (_, keys) = root.signed().role_keys(role).unwrap();
        keys[0].keytype().as_str().to_owned()
    };
    assert_eq!(keytype("root"), "ecdsa-x509");
    assert_eq!(keytype("targets"), "ecdsa");
    assert_eq!(keytype("snapshot"), "ed25519");
    assert_eq!(keytype("timestamp"), "ed25519");
    let releases = parse::<Targets>(
        &fixtures()
            .join("docker-28")
            .join(DOCKER_GUN)
            .join("targets/releases.json"),
    );
    assert_eq!(
        releases.signatures().len(),
        2,
        "alice and bob co-signed releases"
    );
}

#[test]
fn root_chain_1_to_2_to_3_verifies() {
    let gun = Gun::new(NOTARY_GUN).unwrap();
    let opts = RootChecks {
        checks: Checks::at(now()),
        allow_expired_certs: false,
        pinning: None,
    };
    let r1 = verify::verify_root(parse(&notary_dir("v3/1.root.json")), &gun, None, opts).unwrap();
    let r2 =
        verify::verify_root(parse(&notary_dir("v3/2.root.json")), &gun, Some(&r1), opts).unwrap();
    let r3 =
        verify::verify_root(parse(&notary_dir("v3/root.json")), &gun, Some(&r2), opts).unwrap();
    assert_eq!(
        (
            r1.signed().version,
            r2.signed().version,
            r3.signed().version
        ),
        (1, 2, 3)
    );
    // Version 3 carries signatures by the old and the new root key.
    assert_eq!(r3.signatures().len(), 2);
    // v1 and v2 are the same bytes as the first two states served.
    assert_eq!(
        read(&notary_dir("v3/1.root.json")),
        read(&notary_dir("v1/root.json"))
    );
}

#[test]
fn root_rotation_needs_the_previous_roots_signature() {
    let gun = Gun::new(NOTARY_GUN).unwrap();
    let opts = RootChecks {
        checks: Checks::at(now()),
        allow_expired_certs: false,
        pinning: None,
    };
    let r1 = verify::verify_root(parse(&notary_dir("v3/1.root.json")), &gun, None, opts).unwrap();
    // Strip the old key's signature from v3: it is then signed by the new root key only.
    let v3 = parse::<Root>(&notary_dir("v3/root.json"));
    let old_id = &r1.signed().roles["root"].keyids[0];
    let sigs: Vec<_> = v3
        .signatures()
        .iter()
        .filter(|s| &s.keyid != old_id)
        .cloned()
        .collect();
    let stripped = notarium_tuf::metadata::envelope(v3.canonical().unwrap(), &sigs);
    let v3_new_only = Metadata::<Root>::parse("root", stripped).unwrap();
    // Alone (trust on first use) it is fine…
    verify::verify_root(v3_new_only.clone(), &gun, None, opts).unwrap();
    // …but not as a successor of v1: the rotation was not authorized by the old key.
    let err = verify::verify_root(v3_new_only, &gun, Some(&r1), opts).unwrap_err();
    assert!(err.to_string().contains("previous root"), "{err}");
}

#[test]
fn root_for_another_gun_is_refused() {
    let gun = Gun::new("example.com/vectors/other").unwrap();
    let err = verify::verify_root(
        parse(&notary_dir("v1/root.json")),
        &gun,
        None,
        RootChecks {
            checks: Checks::at(now()),
            allow_expired_certs: false,
            pinning: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn root_pinning() {
    let gun = Gun::new(NOTARY_GUN).unwrap();
    let root = parse::<Root>(&notary_dir("v1/root.json"));
    let pinned = root.signed().roles["root"].keyids.clone();
    let ok = verify::Pinning {
        root_key_ids: pinned,
        ..Default::default()
    };
    let wrong = verify::Pinning {
        root_key_ids: vec![KeyId::new(&"0".repeat(64)).unwrap()],
        ..Default::default()
    };
    let opts = |p| RootChecks {
        checks: Checks::at(now()),
        allow_expired_certs: false,
        pinning: Some(p),
    };
    verify::verify_root(root.clone(), &gun, None, opts(&ok)).unwrap();
    // The plain key inside the certificate pins it too (it survives a certificate
    // renewal for the same key, which changes the certificate key's ID).
    let cert_key = &root.signed().keys[&root.signed().roles["root"].keyids[0]];
    let canonical = verify::Pinning {
        root_key_ids: vec![cert_key.canonical_id().unwrap()],
        ..Default::default()
    };
    assert_ne!(&canonical.root_key_ids[0], cert_key.id());
    verify::verify_root(root.clone(), &gun, None, opts(&canonical)).unwrap();
    let err = verify::verify_root(root, &gun, None, opts(&wrong)).unwrap_err();
    assert!(err.to_string().contains("pinned"), "{err}");
}

#[test]
fn key_ids_recompute() {
    for dir in [
        notary_dir("v3"),
        fixtures().join("docker-28").join(DOCKER_GUN),
    ] {
        let root = parse::<Root>(&dir.join("root.json"));
        for (id, key) in &root.signed().keys {
            assert_eq!(id, key.id());
        }
        let t = parse::<Targets>(&dir.join("targets.json"));
        for (id, key) in &t.signed().delegations.keys {
            assert_eq!(id, key.id());
        }
    }
    // The root certificate's ID and the canonical ID that names the private key file.
    let root = parse::<Root>(
        &fixtures()
            .join("docker-28")
            .join(DOCKER_GUN)
            .join("root.json"),
    );
    let (_, keys) = root.signed().role_keys("root").unwrap();
    assert_eq!(
        keys[0].id().as_str(),
        "8e240e1f6fc9aa870506b3b529baad3f82665b17a3ccb48aa98377f91d686ca8"
    );
    assert_eq!(
        keys[0].canonical_id().unwrap().as_str(),
        "9eed722264452fd56ef7eacfcc705a66ccf64562a9e0ea439592c84c053e6681"
    );
    assert!(fixtures()
        .join("docker-28/docker-private-keys/9eed722264452fd56ef7eacfcc705a66ccf64562a9e0ea439592c84c053e6681.key")
        .exists());
}

#[test]
fn key_endpoint_answers_parse_to_the_root_keys() {
    let root = parse::<Root>(&notary_dir("v3/root.json"));
    let raw = read(&fixtures().join("notary-0.7/example.com/vectors/app/timestamp.key.json"));
    let key: PublicKey = serde_json::from_slice(&raw).unwrap();
    assert_eq!(&root.signed().roles["timestamp"].keyids[0], key.id());
    assert_eq!(
        notarium_tuf::key::key_endpoint_json(&key).as_bytes(),
        raw.as_slice()
    );
}

#[test]
fn a_flipped_byte_in_a_file_fails_verification() {
    let gun = Gun::new(DOCKER_GUN).unwrap();
    let dir = fixtures().join("docker-28").join(DOCKER_GUN);
    let root = verify::verify_root(
        parse(&dir.join("root.json")),
        &gun,
        None,
        RootChecks {
            checks: Checks::at(now()),
            allow_expired_certs: false,
            pinning: None,
        },
    )
    .unwrap();
    let raw = read(&dir.join("targets.json"));
    // Change one digit of the version inside "signed".
    let text = String::from_utf8(raw).unwrap();
    let tampered = text.replacen("\"version\":", "\"version\":1", 1);
    let m = Metadata::<Targets>::parse("targets", tampered.into_bytes()).unwrap();
    let err = verify::verify(
        m,
        &RoleName::targets(),
        RoleKeys::from_root(root.signed(), "targets").unwrap(),
        Checks::at(now()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            notarium_tuf::Error::Threshold {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// Every metadata file in the fixtures, whatever its name (`1.root.json`,
/// `snapshot.by-checksum.json`, cache copies), parses by its `_type` and re-serializes to
/// the same bytes.
#[test]
fn every_metadata_file_round_trips() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&fixtures(), &mut files);
    let mut n = 0;
    for p in files {
        let raw = read(&p);
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let Some(t) = v["signed"]["_type"].as_str() else {
            continue;
        };
        match t {
            "Root" => assert_round_trip::<Root>(&p),
            "Targets" => assert_round_trip::<Targets>(&p),
            "Snapshot" => assert_round_trip::<Snapshot>(&p),
            "Timestamp" => assert_round_trip::<Timestamp>(&p),
            other => panic!("{}: _type {other}", p.display()),
        }
        n += 1;
    }
    // `find tests/fixtures -name "*.json" | xargs grep -l _type | wc -l`
    assert_eq!(n, 32, "metadata files in tests/fixtures");
}
