//! The unmodified docker CLI (v28, no daemon) against notarium server: every `docker trust`
//! command that needs no daemon, with outputs compared to what docker printed against the
//! reference server (`tests/fixtures/docker-28/`), key IDs substituted.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use notarium_testkit::docker::Docker;
use notarium_testkit::{repo, TestServer};

/// The vectors' repository and tag, so outputs compare byte for byte.
const GUN: &str = "registry.example.com/vectors/docker-app";
const DIGEST: &str = "3d2e482b82608d153a374df3357c0291589a61cc194ec4a9ca2381073a17f58e";

fn vector(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker-28")
        .join(name);
    std::fs::read_to_string(&p).unwrap()
}

/// Key IDs of the vectors, to be replaced by this run's.
const V_ALICE: &str = "204276eb449a126877a3a4c9abf67015b9c819117bf67ca1af90cd517c09d89b";
const V_BOB: &str = "0564ca7898d436f15807ead7997d0a9f5b1fbb66ab7b03246f7fdfb55e2da964";
const V_ROOT: &str = "8e240e1f6fc9aa870506b3b529baad3f82665b17a3ccb48aa98377f91d686ca8";
const V_REPO: &str = "24fd24536fad8a8ded828e231c183d3dd65cfb32b95da73e481bf08172c53b3c";

struct Ids {
    alice: String,
    bob: String,
    root: String,
    repo: String,
}

impl Ids {
    /// The vector text with its IDs (full, and cut to 12 for `--pretty`) replaced by ours.
    fn substitute(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for (v, ours) in [
            (V_ALICE, &self.alice),
            (V_BOB, &self.bob),
            (V_ROOT, &self.root),
            (V_REPO, &self.repo),
        ] {
            t = t.replace(v, ours).replace(&v[..12], &ours[..12]);
        }
        t
    }
}

fn key_id_of_pub(path: &Path) -> String {
    keys::cert::read_public_key(
        &std::fs::read(path).unwrap(),
        tuf::DateTime::from_unix_secs(0),
    )
    .unwrap()
    .id()
    .to_string()
}

/// The IDs `inspect` shows: signer keys, the root certificate's ID, the targets key.
fn ids(s: &TestServer, dir: &Path) -> Ids {
    let root: serde_json::Value = s.get_file(GUN, "root.json").json();
    let roles = &root["signed"]["roles"];
    Ids {
        alice: key_id_of_pub(&dir.join("keys/alice.pub")),
        bob: key_id_of_pub(&dir.join("keys/bob.pub")),
        root: roles["root"]["keyids"][0].as_str().unwrap().to_owned(),
        repo: roles["targets"]["keyids"][0].as_str().unwrap().to_owned(),
    }
}

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: TestServer,
    alice: Docker,
    bob: Docker,
}

/// Steps 1, 2 and 3 of the vectors: keys for alice and bob, both added as signers (the first
/// add initializes the repository), and v1 released by alice.
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let server = TestServer::start();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let alice_dir = dir.join("alice");
    let bob_dir = dir.join("bob");
    std::fs::create_dir_all(&alice_dir).unwrap();
    std::fs::create_dir_all(&bob_dir).unwrap();
    let mut alice = Docker::new(&alice_dir, &server.url);
    let mut bob = Docker::new(&bob_dir, &server.url);
    alice.cwd = dir.clone();
    bob.cwd = dir.clone();
    server.install_ca_for_docker(&alice.config);
    server.install_ca_for_docker(&bob.config);

    // 1. docker trust key generate
    let r = alice.ok(&["trust", "key", "generate", "alice", "--dir", "keys"]);
    assert_eq!(r.stdout, vector("key-generate.stdout"));
    let r = bob.ok(&["trust", "key", "generate", "bob", "--dir", "keys"]);
    assert_eq!(
        r.stdout,
        vector("key-generate.stdout").replace("alice", "bob")
    );

    // 2. docker trust signer add: a new repository, then a second signer.
    let r = alice.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        "keys/alice.pub",
        "alice",
        GUN,
    ]);
    assert_eq!(r.stdout, vector("signer-add.stdout"));
    let r = alice.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        "keys/bob.pub",
        "bob",
        GUN,
    ]);
    assert_eq!(r.stdout, vector("signer-add-bob.stdout"));

    // 3. v1 released by alice into targets/alice and targets/releases (the vectors used the
    // notary client here; docker needs a daemon for a tag that is not yet released).
    let alice_key = keys::file::read(
        &std::fs::read(alice.key_file_for("alice")).unwrap(),
        Some("docker-repo-pass"),
    )
    .unwrap()
    .key;
    let digest: [u8; 32] = hex::decode(DIGEST).unwrap().try_into().unwrap();
    repo::release(
        &server,
        GUN,
        &alice_key,
        &["targets/alice", "targets/releases"],
        "v1",
        digest,
        528,
    );
    World {
        _tmp: tmp,
        dir,
        server,
        alice,
        bob,
    }
}

#[test]
fn docker_trust_commands_against_notarium() {
    let w = world();
    let ids = ids(&w.server, &w.dir);

    // 4. The daemonless co-sign of a released tag, by bob holding only his own key.
    let r = w.bob.ok(&["trust", "sign", &format!("{GUN}:v1")]);
    assert_eq!(r.stdout, vector("sign-cosign-bob.stdout"));

    // 5. docker trust inspect, JSON and --pretty, from a third user's fresh trust store.
    let carol_dir = w.dir.join("carol");
    std::fs::create_dir_all(&carol_dir).unwrap();
    let carol = Docker::new(&carol_dir, &w.server.url);
    w.server.install_ca_for_docker(&carol.config);
    let r = carol.ok(&["trust", "inspect", GUN]);
    assert_eq!(r.stdout, ids.substitute(&vector("inspect.json")));
    let r = carol.ok(&["trust", "inspect", "--pretty", GUN]);
    assert_eq!(r.stdout, ids.substitute(&vector("inspect-pretty.txt")));

    // docker trust revoke: alice removes v1 from the roles she can sign (alice, releases).
    let r = w.alice.ok(&["trust", "revoke", &format!("{GUN}:v1")]);
    assert_eq!(
        r.stdout,
        format!("Successfully deleted signature for {GUN}:v1\n")
    );
    let r = carol.ok(&["trust", "inspect", "--pretty", GUN]);
    assert!(
        r.stdout
            .starts_with(&format!("\nNo signatures for {GUN}\n\n")),
        "{}",
        r.stdout
    );

    // docker trust signer remove: docker 28 only removes the last signer of releases, after
    // a prompt. alice signed releases last (her revoke re-signed it).
    let r = w
        .alice
        .run_with_stdin(&["trust", "signer", "remove", "alice", GUN], "y\n");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "Removing signer \"alice\" from {GUN}...\nThe signer \"alice\" signed the last released version of {GUN}. \
             Removing this signer will make {GUN} unpullable. Are you sure you want to continue? [y/N] \
             Successfully removed alice from {GUN}\n\n"
        )
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&carol.ok(&["trust", "inspect", GUN]).stdout).unwrap();
    let signers: Vec<&str> = inspect[0]["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(signers, ["bob"]);
    // The server's copy agrees: alice's delegation is gone from targets.json.
    let targets: serde_json::Value = w.server.get_file(GUN, "targets.json").json();
    let roles: Vec<&str> = targets["signed"]["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["targets/releases", "targets/bob"]);
}

#[test]
fn tls_is_really_checked() {
    let s = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = Docker::new(tmp.path(), &s.url);
    // No CA installed: the server's certificate is not trusted.
    let r = d.run(&["trust", "inspect", GUN]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("no signatures or cannot access {GUN}")),
        "{}",
        r.stderr
    );
    let r = d.run(&["-D", "trust", "inspect", GUN]);
    assert!(
        r.stderr.contains("certificate signed by unknown authority"),
        "{}",
        r.stderr
    );
    // With the CA, a repository that does not exist is a 404, not a TLS error.
    s.install_ca_for_docker(&d.config);
    let r = d.run(&["-D", "trust", "inspect", GUN]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("unknown authority"), "{}", r.stderr);
}

#[test]
fn server_restart_keeps_everything() {
    let w = world();
    let ids = ids(&w.server, &w.dir);
    let before_ts_key = w.server.get_file(GUN, "timestamp.key").body;
    let before_feed = w
        .server
        .get(&format!("/v2/{GUN}/_trust/changefeed?records=100"))
        .body;
    let before_inspect = w.alice.ok(&["trust", "inspect", GUN]).stdout;
    let files: Vec<Vec<u8>> = [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "targets/releases.json",
    ]
    .iter()
    .map(|f| w.server.get_file(GUN, f).body)
    .collect();
    let World {
        _tmp,
        dir,
        server,
        alice,
        bob,
    } = w;
    let server = server.restart();
    // Same files, same keys, same changefeed.
    for (i, f) in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "targets/releases.json",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(server.get_file(GUN, f).body, files[i], "{f} after restart");
    }
    assert_eq!(server.get_file(GUN, "timestamp.key").body, before_ts_key);
    assert_eq!(
        server
            .get(&format!("/v2/{GUN}/_trust/changefeed?records=100"))
            .body,
        before_feed
    );
    assert_eq!(alice.ok(&["trust", "inspect", GUN]).stdout, before_inspect);
    // The server still signs with the keys it held: the docker CLI keeps working.
    let r = bob.ok(&["trust", "sign", &format!("{GUN}:v1")]);
    assert_eq!(r.stdout, vector("sign-cosign-bob.stdout"));
    let r = alice.ok(&["trust", "inspect", "--pretty", GUN]);
    assert_eq!(r.stdout, ids.substitute(&vector("inspect-pretty.txt")));
    drop((dir, _tmp));
}

#[test]
fn wrong_key_passphrase_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let opts = |passphrase: Option<&str>| notarium_testkit::server::Options {
        data_dir: Some(dir.clone()),
        passphrase: passphrase.map(str::to_owned),
        ..Default::default()
    };
    let s = TestServer::start_with(opts(Some("the-passphrase")));
    // Create a server-held key, so there is something sealed to open.
    let key = s.get_file(GUN, "timestamp.key").body;
    drop(s);
    let err = TestServer::try_start_with(opts(Some("not-the-passphrase")))
        .err()
        .unwrap();
    assert!(err.contains("passphrase does not open"), "{err}");
    let err = TestServer::try_start_with(opts(None)).err().unwrap();
    assert!(err.contains("NOTARIUM_KEY_PASSPHRASE"), "{err}");
    // The right passphrase still opens it, and the key is the same.
    let s = TestServer::start_with(opts(Some("the-passphrase")));
    assert_eq!(s.get_file(GUN, "timestamp.key").body, key);
}
