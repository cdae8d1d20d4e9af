//! Root pinning (`<config>/notarium.toml`): a pinned client verifies the root on first use
//! instead of trusting it, refuses a repository whose root carries none of the pinned
//! keys (on first use, and after a root rotation to a key outside the pin), an unpinned
//! client says once that it trusts on first use, and `disable_tofu` refuses the unpinned.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::TestServer;

fn notarium(d: &Docker, args: &[&str]) -> Run {
    d.run_program(Path::new(env!("CARGO_BIN_EXE_notarium")), args, "")
}

fn ok(d: &Docker, args: &[&str]) -> Run {
    let r = notarium(d, args);
    assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    r
}

/// The root key IDs `trust inspect` lists under AdministrativeKeys.
fn root_keys(d: &Docker, repo: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["trust", "inspect", repo]).stdout).unwrap();
    v[0]["AdministrativeKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["Name"] == "Root")
        .unwrap()["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["ID"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pinned_roots_are_verified_and_unpinned_ones_said_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let user = |name: &str, pins: &str| {
        let d = server.user(tmp.path(), name);
        if !pins.is_empty() {
            std::fs::write(d.config.join("notarium.toml"), pins).unwrap();
        }
        d
    };
    let repo = format!("{}/pinned/app", registry.addr);
    let image = push_image(&registry.url(), "pinned/app", "v1", "v1");
    let alice = user("alice", "");
    let r = alice.sign_as(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        "alice",
        &repo,
        "v1",
    );
    assert!(
        !r.stderr.contains("first use"),
        "the creator's own root is no first use: {}",
        r.stderr
    );
    let root = root_keys(&alice, &repo);
    assert_eq!(root.len(), 1);
    let verify = |d: &Docker| notarium(d, &["trust", "verify", &format!("{repo}:v1")]);
    let pin = |prefix: &str, key: &str| {
        format!("[[pin]]\nprefix = \"{prefix}\"\nroot_keys = [\"{key}\"]\n")
    };

    // Unpinned: trusted on first use, and said so once.
    let bob = user("bob", "");
    let r = verify(&bob);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), image.digest);
    assert_eq!(
        r.stderr.matches("trusting the root").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("on first use"), "{}", r.stderr);
    let r = verify(&bob);
    assert!(
        !r.stderr.contains("first use"),
        "only the first time: {}",
        r.stderr
    );

    // Pinned to the repository's root key (by its registry host): verified, not trusted.
    let carol = user("carol", &pin(&registry.addr, &root[0]));
    let r = verify(&carol);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), image.digest);
    assert!(!r.stderr.contains("first use"), "{}", r.stderr);

    // Pinned to another key: the served root is refused on first use, nothing cached.
    let other = "ab".repeat(32);
    let dave = user(
        "dave",
        &format!("{}{}", pin(&registry.addr, &root[0]), pin(&repo, &other)),
    );
    let r = verify(&dave);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("none of the root keys pinned"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&repo),
        "the most specific pin: {}",
        r.stderr
    );
    assert!(!dave
        .config
        .join(format!("trust/tuf/{repo}/metadata/root.json"))
        .exists());

    // disable_tofu: a repository without a pin is refused; a pinned one is read.
    let erin = user("erin", "disable_tofu = true\n");
    let r = verify(&erin);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("disable_tofu"), "{}", r.stderr);
    let frank = user(
        "frank",
        &format!("disable_tofu = true\n{}", pin(&repo, &root[0])),
    );
    assert_eq!(verify(&frank).code, 0);

    // The root certificate renewed for the same key: the pinned client reads on (the key
    // it pinned, under a new certificate), and so does a new client pinned the same way.
    let r = ok(&alice, &["trust", "key", "rotate", &repo, "root"]);
    assert!(
        r.stdout.contains("renewed the root certificate"),
        "{}",
        r.stdout
    );
    let renewed = root_keys(&alice, &repo);
    assert_ne!(renewed, root, "a new certificate, a new key ID");
    let r = verify(&carol);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), image.digest);

    // The root rotated to a new key: the client pinned to the old one refuses it (even
    // with the old root cached); a pin of the new key reads it.
    ok(
        &alice,
        &["trust", "key", "rotate", "--new-key", &repo, "root"],
    );
    let new_root = root_keys(&alice, &repo);
    assert_ne!(new_root, renewed);
    let r = verify(&carol);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("pinned"), "{}", r.stderr);
    let gina = user("gina", &pin(&repo, &new_root[0]));
    let r = verify(&gina);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), image.digest);
    // The unpinned client walks the rotation as before.
    assert_eq!(verify(&bob).code, 0);
}

/// `[trust_servers]` in `notarium.toml` names each registry's trust server, so
/// `DOCKER_CONTENT_TRUST_SERVER` is not the only, global choice; when set, it still wins.
#[test]
fn each_registry_has_its_trust_server_from_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let alice = server.user(tmp.path(), "alice");
    let repo = format!("{}/mapped/app", registry.addr);
    let image = push_image(&registry.url(), "mapped/app", "v1", "v1");
    alice.sign_as(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        "alice",
        &repo,
        "v1",
    );
    std::fs::write(
        alice.config.join("notarium.toml"),
        format!(
            "[trust_servers]\n\"{}\" = \"{}\"\n",
            registry.addr, server.url
        ),
    )
    .unwrap();
    let verify = |trust_server: Option<&str>| {
        let mut c = alice.command_of(
            Path::new(env!("CARGO_BIN_EXE_notarium")),
            &["trust", "verify", &format!("{repo}:v1")],
        );
        match trust_server {
            Some(s) => c.env("DOCKER_CONTENT_TRUST_SERVER", s),
            None => c.env_remove("DOCKER_CONTENT_TRUST_SERVER"),
        };
        let o = c.stdin(std::process::Stdio::null()).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Without the variable, the registry's entry: the tag verifies.
    let (code, out, err) = verify(None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), image.digest);
    // With the variable (pointing elsewhere), the variable wins.
    let (code, _, err) = verify(Some("https://127.0.0.1:9"));
    assert_ne!(code, 0);
    assert!(err.contains("127.0.0.1:9"), "{err}");
}
