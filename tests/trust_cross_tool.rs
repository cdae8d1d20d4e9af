//! `notarium trust` and the real docker CLI on the same trust stores and repositories,
//! each direction: keys made by one used by the other, repositories created by one signed
//! into and inspected by the other, with the same inspect output byte for byte; and
//! `notarium trust sign` of a tag in a registry with no daemon anywhere.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::TestServer;

/// `notarium` with the same environment as a [`Docker`] user.
fn notarium(d: &Docker, args: &[&str]) -> Run {
    notarium_stdin(d, args, "")
}

fn notarium_stdin(d: &Docker, args: &[&str], stdin: &str) -> Run {
    d.run_program(Path::new(env!("CARGO_BIN_EXE_notarium")), args, stdin)
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(
        r.code, 0,
        "{what} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: TestServer,
    registry: Distribution,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        World {
            _tmp: tmp,
            dir,
            server: TestServer::start(),
            registry: Distribution::start(),
        }
    }

    /// A user with their own docker configuration (and the server's CA installed).
    fn user(&self, name: &str) -> Docker {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let u = Docker::new(&d, &self.server.url);
        self.server.install_ca_for_docker(&u.config);
        u
    }

    fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.registry.addr)
    }
}

fn inspect_both(d: &Docker, repo: &str) -> (String, String) {
    let docker_json = d.ok(&["trust", "inspect", repo]).stdout;
    let ours = ok(notarium(d, &["trust", "inspect", repo]), "notarium inspect").stdout;
    assert_eq!(ours, docker_json, "inspect JSON differs");
    let docker_pretty = d.ok(&["trust", "inspect", "--pretty", repo]).stdout;
    let ours = ok(
        notarium(d, &["trust", "inspect", "--pretty", repo]),
        "notarium inspect --pretty",
    )
    .stdout;
    assert_eq!(ours, docker_pretty, "inspect --pretty differs");
    (docker_json, docker_pretty)
}

fn pub_key_id(p: &Path) -> String {
    keys::cert::read_public_key(&std::fs::read(p).unwrap(), tuf::DateTime::from_unix_secs(0))
        .unwrap()
        .id()
        .to_string()
}

#[test]
fn notarium_creates_and_signs_docker_inspects_and_cosigns() {
    let w = World::new();
    let repo = w.repo("cross/app");
    let image = push_image(&w.registry.url(), "cross/app", "v1", "one");
    let alice = w.user("alice");
    let bob = w.user("bob");

    // Keys: alice's from notarium, bob's from docker.
    let r = ok(
        notarium(&alice, &["trust", "key", "generate", "alice", "--dir", "."]),
        "key generate",
    );
    assert_eq!(
        r.stdout,
        "Generating key for alice...\nSuccessfully generated and loaded private key. Corresponding public key available: alice.pub\n"
    );
    bob.ok(&["trust", "key", "generate", "bob", "--dir", "."]);

    // A repository created by notarium: docker's output, word for word.
    let r = ok(
        notarium(
            &alice,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                "alice.pub",
                "alice",
                &repo,
            ],
        ),
        "signer add",
    );
    assert_eq!(
        r.stdout,
        format!(
            "Adding signer \"alice\" to {repo}...\nInitializing signed repository for {repo}...\nSuccessfully initialized \"{repo}\"\nSuccessfully added signer: alice to {repo}\n\n"
        )
    );
    let bob_pub = w.dir.join("bob/bob.pub");
    ok(
        notarium(
            &alice,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                bob_pub.to_str().unwrap(),
                "bob",
                &repo,
            ],
        ),
        "signer add bob",
    );

    // notarium signs v1 with no daemon: the registry says what v1 is.
    let r = ok(
        notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]),
        "sign",
    );
    assert_eq!(
        r.stdout,
        format!(
            "Signing and pushing trust metadata for {repo}:v1\nSuccessfully signed {repo}:v1\n"
        )
    );
    let r = ok(
        notarium(&alice, &["trust", "verify", &format!("{repo}:v1")]),
        "verify",
    );
    assert_eq!(r.stdout.trim(), image.digest);

    // docker sees the tag and its digest…
    let json: serde_json::Value =
        serde_json::from_str(&alice.ok(&["trust", "inspect", &repo]).stdout).unwrap();
    assert_eq!(json[0]["SignedTags"][0]["SignedTag"], "v1");
    assert_eq!(json[0]["SignedTags"][0]["Digest"], image.hex());
    assert_eq!(
        json[0]["SignedTags"][0]["Signers"],
        serde_json::json!(["alice"])
    );
    // …and co-signs it through its daemonless path, holding only bob's key.
    let r = bob.ok(&["trust", "sign", &format!("{repo}:v1")]);
    assert_eq!(
        r.stdout,
        format!(
            "Signing and pushing trust metadata for {repo}:v1\nExisting signatures for tag v1 digest {} from:\nalice\nSuccessfully signed {repo}:v1\n",
            image.hex()
        )
    );
    let (json, pretty) = inspect_both(&bob, &repo);
    assert!(json.contains("\"bob\""), "{json}");
    assert!(pretty.contains("alice, bob"), "{pretty}");
    assert!(pretty.contains(&pub_key_id(&bob_pub)[..12]), "{pretty}");

    // notarium co-signs too (a second tag, then the same tag again changes nothing).
    push_image(&w.registry.url(), "cross/app", "v2", "two");
    ok(
        notarium(&bob, &["trust", "sign", &format!("{repo}:v2")]),
        "bob signs v2",
    );
    let (_, pretty) = inspect_both(&alice, &repo);
    assert!(pretty.contains("v2 "), "{pretty}");

    // Revoke with notarium, seen by docker.
    let r = ok(
        notarium(&alice, &["trust", "revoke", &format!("{repo}:v1")]),
        "revoke",
    );
    assert_eq!(
        r.stdout,
        format!("Successfully deleted signature for {repo}:v1\n")
    );
    let (json, _) = inspect_both(&alice, &repo);
    let tags: Vec<String> = serde_json::from_str::<serde_json::Value>(&json).unwrap()[0]
        ["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["SignedTag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, ["v2"]);

    // signer remove really removes (docker 28 does nothing here).
    let r = ok(
        notarium_stdin(&alice, &["trust", "signer", "remove", "bob", &repo], "y\n"),
        "signer remove",
    );
    assert!(
        r.stdout
            .ends_with(&format!("Successfully removed bob from {repo}\n\n")),
        "{}",
        r.stdout
    );
    let (json, _) = inspect_both(&alice, &repo);
    let signers: Vec<String> = serde_json::from_str::<serde_json::Value>(&json).unwrap()[0]
        ["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(signers, ["alice"]);
}

#[test]
fn docker_creates_notarium_signs_both_read() {
    let w = World::new();
    let repo = w.repo("docker/made");
    let image = push_image(&w.registry.url(), "docker/made", "1.0", "docker made");
    let alice = w.user("alice");
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

    // notarium signs the unreleased tag into alice's role and releases, with docker's keys.
    let r = ok(
        notarium(&alice, &["trust", "sign", &format!("{repo}:1.0")]),
        "sign",
    );
    assert!(
        r.stdout
            .ends_with(&format!("Successfully signed {repo}:1.0\n")),
        "{}",
        r.stdout
    );
    let (json, _) = inspect_both(&alice, &repo);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["SignedTags"][0]["Digest"], image.hex());
    assert_eq!(
        v[0]["SignedTags"][0]["Signers"],
        serde_json::json!(["alice"])
    );

    // A signer whose key notarium generated is used by docker straight from the store.
    ok(
        notarium(&alice, &["trust", "key", "generate", "carol", "--dir", "."]),
        "carol key",
    );
    alice.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        "carol.pub",
        "carol",
        &repo,
    ]);
    let r = alice.ok(&["trust", "sign", &format!("{repo}:1.0")]);
    assert!(
        r.stdout.contains("Existing signatures for tag 1.0"),
        "{}",
        r.stdout
    );
    let (json, _) = inspect_both(&alice, &repo);
    assert!(json.contains("\"carol\""), "{json}");

    // A digest signed under a tag (an index or a manifest, by digest).
    let image2 = push_image(&w.registry.url(), "docker/made", "other", "by digest");
    let r = ok(
        notarium(
            &alice,
            &[
                "trust",
                "sign",
                &format!("{repo}@{}", image2.digest),
                "--tag",
                "pinned",
            ],
        ),
        "sign by digest",
    );
    assert!(
        r.stdout
            .ends_with(&format!("Successfully signed {repo}:pinned\n")),
        "{}",
        r.stdout
    );
    assert_eq!(
        ok(
            notarium(&alice, &["trust", "verify", &format!("{repo}:pinned")]),
            "verify"
        )
        .stdout
        .trim(),
        image2.digest
    );
    inspect_both(&alice, &repo);
}

#[test]
fn keys_cross_over_both_ways() {
    let w = World::new();
    let u = w.user("u");
    // A key file docker wrote opens in notarium: notarium signs with it (above), and an
    // unencrypted key notarium cannot be tricked into storing in the clear.
    let tmp = w.dir.join("plain.pem");
    let k = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    std::fs::write(
        &tmp,
        keys::file::write(&k, "loaded", None, None)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = notarium(
        &u,
        &[
            "trust",
            "key",
            "load",
            tmp.to_str().unwrap(),
            "--name",
            "loaded",
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("must not be readable or writable by others"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = ok(
        notarium(
            &u,
            &[
                "trust",
                "key",
                "load",
                tmp.to_str().unwrap(),
                "--name",
                "loaded",
            ],
        ),
        "key load",
    );
    assert_eq!(
        r.stdout,
        format!(
            "Loading key from \"{}\"...\nSuccessfully imported key from {}\n",
            tmp.display(),
            tmp.display()
        )
    );
    let stored = u.private_dir().join(format!("{}.key", k.id()));
    let text = std::fs::read(&stored).unwrap();
    assert!(String::from_utf8_lossy(&text)
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: loaded\n"));
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // An *encrypted* PKCS#8 file really imports (docker 28 prints success and drops it).
    let k2 = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let enc = w.dir.join("enc.pem");
    std::fs::write(
        &enc,
        keys::file::write(&k2, "signer", None, Some("docker-repo-pass"))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(
        notarium(&u, &["trust", "key", "load", enc.to_str().unwrap()]),
        "encrypted key load",
    );
    assert!(u.private_dir().join(format!("{}.key", k2.id())).exists());
    let docker_dir = w.dir.join("d2");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let d2 = Docker::new(&docker_dir, &w.server.url);
    let r = d2.ok(&["trust", "key", "load", enc.to_str().unwrap()]);
    assert!(
        r.stdout.contains("Successfully imported key"),
        "{}",
        r.stdout
    );
    assert!(
        !d2.private_dir().join(format!("{}.key", k2.id())).exists(),
        "docker 28 now imports encrypted keys; update this test"
    );

    // Keys notarium loads are usable by docker: docker signs with one below.
    let repo = w.repo("keys/cross");
    push_image(&w.registry.url(), "keys/cross", "v1", "keys");
    let pub_path = w.dir.join("u/loaded.pub");
    std::fs::write(&pub_path, keys::cert::public_key_pem(k.public(), "loaded")).unwrap();
    ok(
        notarium(
            &u,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                pub_path.to_str().unwrap(),
                "loaded",
                &repo,
            ],
        ),
        "signer add",
    );
    ok(
        notarium(&u, &["trust", "sign", &format!("{repo}:v1")]),
        "sign",
    );
    let r = u.ok(&["trust", "sign", &format!("{repo}:v1")]);
    assert!(r.stdout.contains("Successfully signed"), "{}", r.stdout);
    inspect_both(&u, &repo);
}
