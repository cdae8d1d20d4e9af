//! Threshold signing: a 2-of-3 signer. One signature is refused by the server (a direct
//! `trust sign`) and by the client (`--publish` of a file with one); the change signed in
//! steps by two of the three (`--stage`, `--add-signature`) is accepted, and the docker CLI
//! and `trust verify` list the tag.

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

#[test]
fn two_of_three_signatures_release_a_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let user = |name: &str| server.user(tmp.path(), name);
    let repo = format!("{}/threshold/app", registry.addr);
    let image = push_image(&registry.url(), "threshold/app", "v1", "v1");
    let admin = user("admin");
    let signers: Vec<Docker> = ["ann", "ben", "cat"].iter().map(|n| user(n)).collect();
    let mut key_args = Vec::new();
    for (s, n) in signers.iter().zip(["ann", "ben", "cat"]) {
        ok(s, &["trust", "key", "generate", n, "--dir", "."]);
        let public = s.cwd.join(format!("{n}.pub"));
        key_args.push("--key".to_owned());
        key_args.push(public.display().to_string());
    }
    let mut args = vec!["trust", "signer", "add", "--threshold", "2"];
    args.extend(key_args.iter().map(String::as_str));
    args.extend(["releasers", repo.as_str()]);
    ok(&admin, &args);
    // A threshold past the keys would lock the role: refused.
    let mut too_many = args.clone();
    too_many[4] = "4";
    let r = notarium(&admin, &too_many);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("threshold 4 is more than the 3 keys"),
        "{}",
        r.stderr
    );

    let (ann, ben, cat) = (&signers[0], &signers[1], &signers[2]);
    let tag = format!("{repo}:v1");
    // One signature, uploaded directly: the server refuses it; nothing is released.
    let r = notarium(ann, &["trust", "sign", &tag]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    let r = notarium(cat, &["trust", "verify", &tag]);
    assert_ne!(r.code, 0, "{}", r.stdout);

    // In steps: ann stages with her signature (1 of 2) ...
    let file = tmp.path().join("v1.staged.json");
    let file_arg = file.display().to_string();
    let r = ok(ann, &["trust", "sign", "--stage", &file_arg, &tag]);
    assert!(
        r.stdout.contains("targets/releases: 1 of 2 signatures"),
        "{}",
        r.stdout
    );
    // ... which the client will not publish yet ...
    let r = notarium(cat, &["trust", "sign", "--publish", &file_arg]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("1 of 2 signatures"), "{}", r.stderr);
    // ... ann signing again adds nothing ...
    assert_ne!(
        notarium(ann, &["trust", "sign", "--add-signature", &file_arg]).code,
        0
    );
    // ... ben adds his (2 of 2), and any of them publishes.
    let r = ok(ben, &["trust", "sign", "--add-signature", &file_arg]);
    assert!(
        r.stdout.contains("targets/releases: 2 of 2 signatures"),
        "{}",
        r.stdout
    );
    let r = ok(cat, &["trust", "sign", "--publish", &file_arg]);
    assert!(
        r.stdout.contains(&format!("Successfully signed {repo}:v1")),
        "{}",
        r.stdout
    );

    // Every client lists the tag: notarium, and the docker CLI.
    for d in [ann, cat, &admin, &user("reader")] {
        let r = ok(d, &["trust", "verify", &tag]);
        assert_eq!(r.stdout.trim(), image.digest);
    }
    let docker = user("docker");
    let r = docker.ok(&["trust", "inspect", &repo]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let tags = v[0]["SignedTags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "{}", r.stdout);
    assert_eq!(tags[0]["SignedTag"], "v1");
    assert_eq!(tags[0]["Digest"], image.hex());
    // The staged file cannot be published twice (its versions are taken now).
    let r = notarium(cat, &["trust", "sign", "--publish", &file_arg]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("stage it again"), "{}", r.stderr);
}
