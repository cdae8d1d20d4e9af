//! `notarium trust key rotate REPO ROLE` for every top-level role: root, targets, snapshot
//! (to a local key and back to the server) and timestamp. After each rotation the signed
//! tags still verify, the docker CLI (with its cache from before the rotation, and a new
//! user without one) still reads the repository, and signing goes on.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, Distribution, Pushed};
use notarium_testkit::TestServer;

fn notarium(d: &Docker, args: &[&str]) -> Run {
    let r = d.run_program(Path::new(env!("CARGO_BIN_EXE_notarium")), args, "");
    assert_eq!(
        r.code, 0,
        "notarium {args:?} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

/// Root and repository key IDs as `docker trust inspect` shows them, and the signed tags.
fn docker_view(d: &Docker, repo: &str) -> (String, String, Vec<(String, String)>) {
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["trust", "inspect", repo]).stdout).unwrap();
    let admin = &json[0]["AdministrativeKeys"];
    let key = |name: &str| {
        admin
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["Name"] == name)
            .unwrap()["Keys"][0]["ID"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let tags = json[0]["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["SignedTag"].as_str().unwrap().to_owned(),
                t["Digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (key("Root"), key("Repository"), tags)
}

/// The key ID a root role lists, from the server's current root.json.
fn root_role_key(server: &TestServer, gun: &str, role: &str) -> String {
    let root = current_root(server, gun);
    let (_, keys) = root.signed().role_keys(role).unwrap();
    assert_eq!(keys.len(), 1);
    keys[0].id().to_string()
}

fn current_root(server: &TestServer, gun: &str) -> tuf::Metadata<tuf::Root> {
    let a = server.endpoint.get_file(gun, "root.json");
    assert_eq!(a.status, 200, "{}", a.text());
    tuf::Metadata::<tuf::Root>::parse("root", a.body).unwrap()
}

fn root_version(server: &TestServer, gun: &str) -> u64 {
    current_root(server, gun).signed().version
}

fn verify(d: &Docker, repo: &str, tag: &str, image: &Pushed) {
    let r = notarium(d, &["trust", "verify", &format!("{repo}:{tag}")]);
    assert_eq!(r.stdout.trim(), image.digest, "verify {tag}");
}

#[test]
fn every_top_level_key_rotates_and_docker_keeps_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let user = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let u = Docker::new(&d, &server.url);
        server.install_ca_for_docker(&u.config);
        u
    };
    let alice = user("alice");
    let repo = format!("{}/rotate/app", registry.addr);
    let gun = repo.as_str();
    let images: Vec<Pushed> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| push_image(&registry.url(), "rotate/app", t, t))
        .collect();

    notarium(&alice, &["trust", "key", "generate", "alice", "--dir", "."]);
    notarium(
        &alice,
        &["trust", "signer", "add", "--key", "alice.pub", "alice", gun],
    );
    notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]);
    // docker reads it once, so its cache holds the first root.
    let (root0, targets0, tags) = docker_view(&alice, gun);
    assert_eq!(tags, vec![("v1".to_owned(), images[0].hex().to_owned())]);
    assert_eq!(root_version(&server, gun), 1);

    // Root: a new root key, the new root signed by the old and the new one.
    let r = notarium(
        &alice,
        &["trust", "key", "rotate", "--new-key", gun, "root"],
    );
    assert_eq!(
        r.stdout,
        format!("Successfully rotated root key for repository {gun}\n")
    );
    assert_eq!(root_version(&server, gun), 2);
    let (root1, targets1, tags1) = docker_view(&alice, gun);
    assert_ne!(root1, root0, "docker shows the new root key");
    assert_eq!(targets1, targets0);
    assert_eq!(tags1, tags);
    verify(&alice, gun, "v1", &images[0]);
    // The new key file: docker's format, role root, owner-only.
    let root_files: Vec<_> = std::fs::read_dir(alice.private_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            keys::file::inspect(&std::fs::read(p).unwrap())
                .unwrap()
                .role
                .as_deref()
                == Some("root")
        })
        .collect();
    assert_eq!(root_files.len(), 2, "old and new root keys are both kept");
    for p in &root_files {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }

    // Targets: a new repository key; targets.json is re-signed with it.
    notarium(&alice, &["trust", "key", "rotate", gun, "targets"]);
    let (root2, targets2, tags2) = docker_view(&alice, gun);
    assert_eq!(root2, root1);
    assert_ne!(targets2, targets1, "docker shows the new repository key");
    assert_eq!(tags2, tags);
    // Adding a signer now needs (and uses) the new repository key.
    let bob = user("bob");
    notarium(&bob, &["trust", "key", "generate", "bob", "--dir", "."]);
    let bob_pub = tmp.path().join("bob/bob.pub");
    notarium(
        &alice,
        &[
            "trust",
            "signer",
            "add",
            "--key",
            bob_pub.to_str().unwrap(),
            "bob",
            gun,
        ],
    );

    // Snapshot to a local key: the client signs snapshot from now on.
    let server_snapshot = root_role_key(&server, gun, "snapshot");
    notarium(&alice, &["trust", "key", "rotate", gun, "snapshot"]);
    let local_snapshot = root_role_key(&server, gun, "snapshot");
    assert_ne!(local_snapshot, server_snapshot);
    let held = keys::store::KeyStore::new(alice.private_dir())
        .list()
        .unwrap();
    assert!(
        held.iter().any(|k| k.id.to_string() == local_snapshot),
        "the snapshot key is in alice's trust store"
    );
    notarium(&alice, &["trust", "sign", &format!("{repo}:v2")]);
    verify(&alice, gun, "v2", &images[1]);
    let (_, _, tags3) = docker_view(&alice, gun);
    assert_eq!(tags3.len(), 2);
    // bob has no snapshot key: his signature cannot be published until it is back.
    let r = bob.run_program(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        &["trust", "sign", &format!("{repo}:v2")],
        "",
    );
    assert_ne!(r.code, 0, "bob signed without the snapshot key");
    assert!(
        r.stderr
            .contains("server does not hold current snapshot key"),
        "{}",
        r.stderr
    );

    // Snapshot back to the server.
    let r = notarium(
        &alice,
        &["trust", "key", "rotate", gun, "snapshot", "--server"],
    );
    assert_eq!(
        r.stdout,
        format!("Successfully rotated snapshot key for repository {gun} (held by the server)\n")
    );
    let back = root_role_key(&server, gun, "snapshot");
    assert_ne!(back, local_snapshot);
    let k = server.endpoint.server_key(gun, "snapshot");
    assert_eq!(
        k.id().to_string(),
        back,
        "the server holds the new snapshot key"
    );
    // bob co-signs v2 with docker's daemonless path; notarium signs v3.
    bob.ok(&["trust", "sign", &format!("{repo}:v2")]);
    notarium(&alice, &["trust", "sign", &format!("{repo}:v3")]);

    // Timestamp: the server makes a new key; the new root lists it.
    let old_ts = root_role_key(&server, gun, "timestamp");
    notarium(&alice, &["trust", "key", "rotate", gun, "timestamp"]);
    let new_ts = root_role_key(&server, gun, "timestamp");
    assert_ne!(new_ts, old_ts);
    let k = server.endpoint.server_key(gun, "timestamp");
    assert_eq!(k.id().to_string(), new_ts);
    assert_eq!(root_version(&server, gun), 6);

    // Everything still verifies, for alice (cache from before every rotation), for docker,
    // and for a new docker user trusting the current root on first use.
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        verify(&alice, gun, tag, &images[i]);
    }
    let (_, _, tags_alice) = docker_view(&alice, gun);
    let carol = user("carol");
    let (_, _, tags_carol) = docker_view(&carol, gun);
    assert_eq!(tags_alice, tags_carol);
    let want: Vec<(String, String)> = ["v1", "v2", "v3"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), images[i].hex().to_owned()))
        .collect();
    assert_eq!(tags_alice, want);
    let json: serde_json::Value =
        serde_json::from_str(&carol.ok(&["trust", "inspect", gun]).stdout).unwrap();
    let v2 = &json[0]["SignedTags"][1];
    assert_eq!(v2["Signers"], serde_json::json!(["alice", "bob"]));

    // Rotations that make no sense are refused with a reason.
    let r = alice.run_program(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        &["trust", "key", "rotate", gun, "targets", "--server"],
        "",
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot be held by the server"),
        "{}",
        r.stderr
    );
    let r = alice.run_program(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        &["trust", "key", "rotate", gun, "targets/releases"],
        "",
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("choose root, targets, snapshot or timestamp"),
        "{}",
        r.stderr
    );
}

/// Three root renewals in a row (a new certificate for the same root key each time, the
/// way out of an expiring root): clients that cached root v1 or v3, a new client, and
/// the docker CLI (with the v1 cache and without one) all read the repository and its
/// tags, and signing goes on.
#[test]
fn three_root_renewals_are_walked_by_every_client() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let user = |name: &str| server.user(tmp.path(), name);
    let alice = user("alice");
    let repo = format!("{}/renew/app", registry.addr);
    let gun = repo.as_str();
    let v1 = push_image(&registry.url(), "renew/app", "v1", "v1");
    let v2 = push_image(&registry.url(), "renew/app", "v2", "v2");
    alice.sign_as(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        "alice",
        gun,
        "v1",
    );
    // Caches of root v1: the docker CLI's and another notarium user's.
    let docker_v1 = user("docker-v1");
    let (root_v1, _, tags) = docker_view(&docker_v1, gun);
    assert_eq!(tags, vec![("v1".to_owned(), v1.hex().to_owned())]);
    let bob = user("bob");
    verify(&bob, gun, "v1", &v1);
    let canonical = |id: &str| -> String {
        let root = current_root(&server, gun);
        let key = root
            .signed()
            .keys
            .get(&tuf::KeyId::new(id).unwrap())
            .unwrap()
            .clone();
        key.canonical_id().unwrap().to_string()
    };
    let root_key_v1 = canonical(&root_v1);
    let mut carol = None;
    for n in 2..=4 {
        let r = notarium(&alice, &["trust", "key", "rotate", gun, "root"]);
        assert!(
            r.stdout.contains("renewed the root certificate"),
            "{}",
            r.stdout
        );
        assert_eq!(root_version(&server, gun), n);
        if n == 3 {
            // Carol caches root v3 on the way.
            let c = user("carol");
            verify(&c, gun, "v1", &v1);
            carol = Some(c);
        }
    }
    let carol = carol.unwrap();
    // Every renewal certified the same key.
    let (root_v4, _, _) = docker_view(&alice, gun);
    assert_ne!(root_v4, root_v1, "a new certificate each time");
    assert_eq!(canonical(&root_v4), root_key_v1, "the same root key");
    // Signing goes on after the renewals; every client reads both tags.
    notarium(&alice, &["trust", "sign", &format!("{repo}:v2")]);
    let dave = user("dave");
    for c in [&bob, &carol, &alice, &dave] {
        verify(c, gun, "v1", &v1);
        verify(c, gun, "v2", &v2);
    }
    for d in [&docker_v1, &user("docker-new")] {
        let (root, _, tags) = docker_view(d, gun);
        assert_eq!(root, root_v4);
        assert_eq!(
            tags,
            vec![
                ("v1".to_owned(), v1.hex().to_owned()),
                ("v2".to_owned(), v2.hex().to_owned())
            ]
        );
    }
    // Every client now holds root v4.
    for c in [&bob, &carol, &dave] {
        let cached =
            std::fs::read(c.config.join(format!("trust/tuf/{gun}/metadata/root.json"))).unwrap();
        let cached = tuf::Metadata::<tuf::Root>::parse("root", cached).unwrap();
        assert_eq!(cached.signed().version, 4);
    }
}

/// Every key and signature of the repository's role files: (role file, key types,
/// signature methods).
fn algorithms(
    server: &TestServer,
    gun: &str,
    files: &[&str],
) -> Vec<(String, Vec<String>, Vec<String>)> {
    files
        .iter()
        .map(|f| {
            let a = server.endpoint.get_file(gun, f);
            assert_eq!(a.status, 200, "{f}: {}", a.text());
            let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            let mut keys: Vec<String> = Vec::new();
            for place in [&v["signed"]["keys"], &v["signed"]["delegations"]["keys"]] {
                if let Some(m) = place.as_object() {
                    keys.extend(
                        m.values()
                            .map(|k| k["keytype"].as_str().unwrap().to_owned()),
                    );
                }
            }
            let sigs = v["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["method"].as_str().unwrap().to_owned())
                .collect();
            (f.to_string(), keys, sigs)
        })
        .collect()
}

/// Only what the admission controllers in use accept (Connaisseur's Notary v1 schema:
/// `ecdsa`/`ecdsa-x509` keys, `ecdsa` signatures).
fn assert_ecdsa_only(found: &[(String, Vec<String>, Vec<String>)]) {
    for (file, keys, sigs) in found {
        assert!(!sigs.is_empty(), "{file}: unsigned");
        for k in keys {
            assert!(k == "ecdsa" || k == "ecdsa-x509", "{file}: a {k} key");
        }
        for s in sigs {
            assert_eq!(s, "ecdsa", "{file}: a {s} signature");
        }
    }
}

const ROLE_FILES: [&str; 6] = [
    "root.json",
    "targets.json",
    "targets/releases.json",
    "targets/alice.json",
    "snapshot.json",
    "timestamp.json",
];

#[test]
fn a_default_repository_is_ecdsa_throughout_and_an_ed25519_one_moves_to_ecdsa() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Distribution::start();
    let notarium_bin = Path::new(env!("CARGO_BIN_EXE_notarium"));

    // Default settings, the repository made by the docker CLI (its keys) and signed by
    // notarium: the server's snapshot and timestamp keys are ECDSA too.
    let server = TestServer::start();
    let alice = server.user(tmp.path(), "alice");
    let repo = format!("{}/ecdsa/default", registry.addr);
    let image = push_image(&registry.url(), "ecdsa/default", "v1", "v1");
    alice.ok(&["trust", "key", "generate", "alice", "--dir", "."]);
    alice.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        "alice.pub",
        "alice",
        &repo,
    ]);
    notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]);
    let found = algorithms(&server, &repo, &ROLE_FILES);
    assert_ecdsa_only(&found);
    assert_eq!(found[0].1.len(), 4, "root lists its four keys: {found:?}");
    verify(&alice, &repo, "v1", &image);

    // A server configured for ed25519 (notarium's old default): then rotated.
    let old = TestServer::start_with(notarium_testkit::server::Options {
        configure: Box::new(|c| c.key_algorithm = keys::Algorithm::Ed25519),
        ..Default::default()
    });
    let bob = old.user(tmp.path(), "bob");
    let repo = format!("{}/ecdsa/moved", registry.addr);
    let image = push_image(&registry.url(), "ecdsa/moved", "v1", "v1");
    bob.sign_as(notarium_bin, "alice", &repo, "v1");
    let before = algorithms(&old, &repo, &["timestamp.json", "snapshot.json"]);
    assert_eq!(before[0].2, ["eddsa"], "{before:?}");
    assert_eq!(before[1].2, ["eddsa"], "{before:?}");
    let (root_id, _, tags) = docker_view(&bob, &repo);
    // notary 0.7 (Debian's) reads it too, and keeps its cache across the rotation.
    let notary_cache = tmp.path().join("notary-cache");
    let notary_list = |dir: &Path| {
        let o = std::process::Command::new("notary")
            .args(["-s", &old.url, "-d"])
            .arg(dir)
            .arg("--tlscacert")
            .arg(old.ca.as_ref().unwrap())
            .args(["list", &repo])
            .output()
            .expect("notary (Debian package notary) runs");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "notary list: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("v1 ") && l.contains(image.hex())),
            "{out}"
        );
    };
    notary_list(&notary_cache);

    let r = notarium(
        &bob,
        &[
            "trust",
            "key",
            "rotate",
            &repo,
            "timestamp",
            "--key-algorithm",
            "ecdsa",
        ],
    );
    assert!(r.stdout.contains("timestamp"), "{}", r.stdout);
    notarium(
        &bob,
        &[
            "trust",
            "key",
            "rotate",
            &repo,
            "snapshot",
            "--server",
            "--key-algorithm",
            "ecdsa",
        ],
    );
    assert_ecdsa_only(&algorithms(&old, &repo, &ROLE_FILES));
    // The docker CLI (its cache from the ed25519 days, and a new user) reads on.
    let (root_b, _, tags_b) = docker_view(&bob, &repo);
    assert_eq!((root_b, tags_b), (root_id.clone(), tags.clone()));
    notary_list(&notary_cache);
    notary_list(&tmp.path().join("notary-fresh"));
    let carol = old.user(tmp.path(), "carol");
    let (root_c, _, tags_c) = docker_view(&carol, &repo);
    assert_eq!((root_c, tags_c), (root_id, tags));
    verify(&carol, &repo, "v1", &image);
    // A local key cannot be given an algorithm this way.
    let r = bob.run_program(
        notarium_bin,
        &[
            "trust",
            "key",
            "rotate",
            &repo,
            "targets",
            "--key-algorithm",
            "ed25519",
        ],
        "",
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("a key the server holds"), "{}", r.stderr);
}
