//! Docker Content Trust through a real Docker Engine (Debian's dockerd 20.10 on a private
//! socket) and the docker 28 CLI, against notarium (registry and trust server on one
//! port): `DOCKER_CONTENT_TRUST=1 docker push` signs the pushed digest; a trusted pull
//! gets the signed digest, refuses an unsigned tag, and still gets the signed content
//! after the tag was moved behind trust's back; a signer added with `docker trust signer
//! add` signs with `docker push` and shows in `docker trust inspect`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::engine::Engine;
use notarium_testkit::oci::{write_docker_save, Image};
use notarium_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

/// Run `c` against `engine`.
fn against(mut c: Command, engine: &Engine) -> Run {
    c.env("DOCKER_HOST", &engine.host);
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// docker against the engine, with content trust on or off.
fn docker(user: &Docker, engine: &Engine, trust: bool, args: &[&str]) -> Run {
    let mut c = user.command(args);
    c.env("DOCKER_CONTENT_TRUST", if trust { "1" } else { "0" });
    against(c, engine)
}

fn ok(user: &Docker, engine: &Engine, trust: bool, args: &[&str]) -> Run {
    let r = docker(user, engine, trust, args);
    assert_eq!(r.code, 0, "docker {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Load `image` into the engine as `name` (`docker load` of a `docker save` archive).
fn load(user: &Docker, engine: &Engine, image: &Image, name: &str) {
    let tar = user.cwd.join(format!("{}.tar", image.digest.hex()));
    write_docker_save(&tar, image, name);
    ok(user, engine, false, &["load", "-i", tar.to_str().unwrap()]);
}

/// `DOCKER_CONTENT_TRUST=1 docker push IMAGE`: it must sign.
fn trusted_push(user: &Docker, engine: &Engine, image: &str) -> Run {
    let r = ok(user, engine, true, &["push", image]);
    assert!(
        r.stdout.contains("Signing and pushing trust metadata"),
        "{}",
        r.stdout
    );
    r
}

/// The manifest digest a push reported (`TAG: digest: sha256:… size: N`).
fn pushed_digest(push: &Run) -> String {
    push.stdout
        .lines()
        .find_map(|l| l.split_once(": digest: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in: {}", push.stdout))
        .to_owned()
}

/// The engine's image ID for `name` (its config digest).
fn image_id(user: &Docker, engine: &Engine, name: &str) -> String {
    ok(
        user,
        engine,
        false,
        &["image", "inspect", "--format", "{{.Id}}", name],
    )
    .stdout
    .trim()
    .to_owned()
}

#[test]
fn trusted_push_and_pull_through_a_real_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start();
    let server = TestServer::start();
    let alice = server.user(tmp.path(), "alice");
    let repo = format!("{}/engine/app", server.addr);
    let signed = Image::new("engine-signed", "amd64", 4096);
    let other = Image::new("engine-other", "amd64", 4096);

    // Trusted push: the engine pushes, the CLI signs the digest it reported.
    load(&alice, &engine, &signed, &format!("{repo}:v1"));
    let r = trusted_push(&alice, &engine, &format!("{repo}:v1"));
    // (The engine pushes its own manifest of the image: the digest is the engine's.)
    let v1 = pushed_digest(&r);
    let verified = alice.run_program(
        Path::new(BIN),
        &["trust", "verify", &format!("{repo}:v1")],
        "",
    );
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    assert_eq!(verified.stdout.trim(), v1);

    // An unsigned tag (pushed without trust) is refused by a trusted pull.
    load(&alice, &engine, &other, &format!("{repo}:unsigned"));
    ok(
        &alice,
        &engine,
        false,
        &["push", &format!("{repo}:unsigned")],
    );
    let r = docker(
        &alice,
        &engine,
        true,
        &["pull", &format!("{repo}:unsigned")],
    );
    assert_ne!(r.code, 0, "an unsigned tag was pulled: {}", r.stdout);
    assert!(
        r.stderr.contains("No valid trust data for unsigned")
            || r.stderr.contains("does not have trust data"),
        "{}",
        r.stderr
    );

    // The tag moved behind trust's back: a trusted pull still gets the signed digest.
    ok(
        &alice,
        &engine,
        false,
        &["tag", &format!("{repo}:unsigned"), &format!("{repo}:v1")],
    );
    ok(&alice, &engine, false, &["push", &format!("{repo}:v1")]);
    ok(
        &alice,
        &engine,
        false,
        &[
            "rmi",
            "-f",
            &format!("{repo}:v1"),
            &format!("{repo}:unsigned"),
        ],
    );
    let r = ok(&alice, &engine, true, &["pull", &format!("{repo}:v1")]);
    assert!(
        r.stdout.contains(&format!("{repo}:v1@{v1}")),
        "{}",
        r.stdout
    );
    assert_eq!(
        image_id(&alice, &engine, &format!("{repo}:v1")),
        signed.config.digest.to_string()
    );

    // A delegated signer, added with docker's own command, signs with docker push.
    let bob = server.user(tmp.path(), "bob");
    ok(
        &bob,
        &engine,
        false,
        &["trust", "key", "generate", "bob", "--dir", "."],
    );
    std::fs::copy(bob.cwd.join("bob.pub"), alice.cwd.join("bob.pub")).unwrap();
    ok(
        &alice,
        &engine,
        false,
        &["trust", "signer", "add", "--key", "bob.pub", "bob", &repo],
    );
    let third = Image::new("engine-bob", "amd64", 4096);
    load(&bob, &engine, &third, &format!("{repo}:v2"));
    let r = trusted_push(&bob, &engine, &format!("{repo}:v2"));
    let v2_digest = pushed_digest(&r);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&alice, &engine, false, &["trust", "inspect", &repo]).stdout)
            .unwrap();
    let tags = inspect[0]["SignedTags"].as_array().unwrap();
    let v2 = tags.iter().find(|t| t["SignedTag"] == "v2").unwrap();
    assert_eq!(v2["Digest"], v2_digest.trim_start_matches("sha256:"));
    assert_eq!(v2["Signers"], serde_json::json!(["bob"]));
    let signers: Vec<&str> = inspect[0]["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(signers, ["bob"]);
}

/// `program ARGS` as `user`, against the engine.
fn with_engine(user: &Docker, engine: &Engine, program: &Path, args: &[&str]) -> Run {
    against(user.command_of(program, args), engine)
}

/// The same outcomes without docker's content trust: `notarium trust push/pull` and the
/// docker CLI plugin (`docker-trust trust …`, invoked as docker invokes a plugin) drive
/// the same engine through its API.
#[test]
fn notarium_and_the_plugin_push_and_pull_through_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start();
    let server = TestServer::start();
    let alice = server.user(tmp.path(), "alice");
    let bob = server.user(tmp.path(), "bob");
    let repo = format!("{}/engine/api", server.addr);
    let bin = Path::new(BIN);
    for u in [&alice, &bob] {
        assert_eq!(u.run_program(bin, &["install-docker-plugin"], "").code, 0);
    }
    let plugin = |u: &Docker| u.config.join("cli-plugins/docker-trust");
    let signed = Image::new("api-signed", "amd64", 4096);
    let other = Image::new("api-other", "amd64", 4096);

    // notarium trust push: pushed by the engine, the reported digest signed.
    load(&alice, &engine, &signed, &format!("{repo}:v1"));
    let r = with_engine(
        &alice,
        &engine,
        bin,
        &["trust", "push", &format!("{repo}:v1")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v1 = pushed_digest(&r);
    assert!(
        r.stdout.contains(&format!("Successfully signed {repo}:v1")),
        "{}",
        r.stdout
    );
    let v = alice.run_program(bin, &["trust", "verify", &format!("{repo}:v1")], "");
    assert_eq!(v.stdout.trim(), v1);

    // An unsigned tag is refused by both pulls, and nothing is pulled.
    load(&alice, &engine, &other, &format!("{repo}:unsigned"));
    ok(
        &alice,
        &engine,
        false,
        &["push", &format!("{repo}:unsigned")],
    );
    ok(
        &alice,
        &engine,
        false,
        &["rmi", "-f", &format!("{repo}:unsigned")],
    );
    for program in [bin.to_path_buf(), plugin(&alice)] {
        let r = with_engine(
            &alice,
            &engine,
            &program,
            &["trust", "pull", &format!("{repo}:unsigned")],
        );
        assert_ne!(r.code, 0, "{}", r.stdout);
        assert!(
            r.stderr.contains("No valid trust data for unsigned"),
            "{}",
            r.stderr
        );
    }
    let r = docker(
        &alice,
        &engine,
        false,
        &["image", "inspect", &format!("{repo}:unsigned")],
    );
    assert_ne!(r.code, 0, "the unsigned image was pulled");

    // The tag moved behind trust's back: both pulls still get the signed content.
    ok(
        &alice,
        &engine,
        false,
        &["pull", &format!("{repo}:unsigned")],
    );
    ok(
        &alice,
        &engine,
        false,
        &["tag", &format!("{repo}:unsigned"), &format!("{repo}:v1")],
    );
    ok(&alice, &engine, false, &["push", &format!("{repo}:v1")]);
    for program in [bin.to_path_buf(), plugin(&alice)] {
        ok(
            &alice,
            &engine,
            false,
            &["rmi", "-f", &format!("{repo}:v1")],
        );
        let r = with_engine(
            &alice,
            &engine,
            &program,
            &["trust", "pull", &format!("{repo}:v1")],
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout
                .starts_with(&format!("Pull (1 of 1): {repo}:v1@{v1}\n")),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .ends_with(&format!("Tagging {repo}@{v1} as {repo}:v1\n")),
            "{}",
            r.stdout
        );
        assert_eq!(
            image_id(&alice, &engine, &format!("{repo}:v1")),
            signed.config.digest.to_string()
        );
    }

    // A signer added through the plugin pushes through the plugin; inspect through the
    // plugin reads as docker's own.
    let r = bob.run_program(
        &plugin(&bob),
        &["trust", "key", "generate", "bob", "--dir", "."],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::copy(bob.cwd.join("bob.pub"), alice.cwd.join("bob.pub")).unwrap();
    let r = alice.run_program(
        &plugin(&alice),
        &["trust", "signer", "add", "--key", "bob.pub", "bob", &repo],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let third = Image::new("api-bob", "amd64", 4096);
    load(&bob, &engine, &third, &format!("{repo}:v2"));
    let r = with_engine(
        &bob,
        &engine,
        &plugin(&bob),
        &["trust", "push", &format!("{repo}:v2")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v2 = pushed_digest(&r);
    let pretty = alice.run_program(
        &plugin(&alice),
        &["trust", "inspect", "--pretty", &repo],
        "",
    );
    assert_eq!(pretty.code, 0, "{}", pretty.stderr);
    assert_eq!(
        pretty.stdout,
        alice.ok(&["trust", "inspect", "--pretty", &repo]).stdout
    );
    let hex = v2.trim_start_matches("sha256:");
    assert!(
        pretty
            .stdout
            .lines()
            .any(|l| l.starts_with("v2 ") && l.contains(hex) && l.ends_with("bob")),
        "{}",
        pretty.stdout
    );
}
