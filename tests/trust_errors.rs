//! The common mistakes give one clear line each: wrong passphrase, missing key, unknown
//! repository, server down, TLS failure, no such tag (and bad input).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::TestServer;

fn run(d: &Docker, server: &str, args: &[&str]) -> Run {
    let mut c = d.command_of(Path::new(env!("CARGO_BIN_EXE_notarium")), args);
    let o = c
        .env("DOCKER_CONTENT_TRUST_SERVER", server)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Fails with exactly one line on stderr that contains every word (besides the notice of
/// a first use without a root pin, which is not about the error).
fn fails(o: Run, words: &[&str]) -> String {
    assert_ne!(o.code, 0, "succeeded: {}", o.stdout);
    let e = o
        .stderr
        .lines()
        .filter(|l| !l.contains("trusting the root"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(e.lines().count(), 1, "one line, got: {e}");
    for w in words {
        assert!(e.contains(w), "{e:?} should contain {w:?}");
    }
    e
}

const GUN: &str = "registry.example.com/errors/app";

#[test]
fn common_mistakes_are_one_clear_line() {
    let s = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Docker::new(&tmp.path().join("alice"), &s.url);
    alice.cwd = tmp.path().to_path_buf();
    s.install_ca_for_docker(&alice.config);
    let url = s.url.clone();
    assert_eq!(
        run(
            &alice,
            &url,
            &["trust", "key", "generate", "alice", "--dir", "."]
        )
        .code,
        0
    );

    // Unknown repository.
    fails(
        run(&alice, &url, &["trust", "verify", &format!("{GUN}:v1")]),
        &[
            "remote trust data does not exist for registry.example.com/errors/app",
            "does not have trust data",
        ],
    );
    // Inspect keeps docker's wording, with the reason after it.
    fails(
        run(&alice, &url, &["trust", "inspect", GUN]),
        &[
            &format!("no signatures or cannot access {GUN}"),
            "does not have trust data",
        ],
    );

    let o = run(
        &alice,
        &url,
        &["trust", "signer", "add", "--key", "alice.pub", "alice", GUN],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);

    // No such tag.
    let e = fails(
        run(&alice, &url, &["trust", "verify", &format!("{GUN}:nope")]),
        &["No valid trust data for nope"],
    );
    assert_eq!(e, "No valid trust data for nope");

    // Wrong passphrase (from the environment: tried twice, then a clear error).
    let mut wrong = Docker::new(&tmp.path().join("alice"), &s.url);
    wrong.cwd = tmp.path().to_path_buf();
    wrong.repo_passphrase = "not-the-passphrase".into();
    fails(
        run(
            &wrong,
            &url,
            &["trust", "signer", "add", "--key", "alice.pub", "bob", GUN],
        ),
        &["could not decrypt the repository key", "wrong passphrase"],
    );

    // Missing key: a user without the repository key.
    let mut bob = Docker::new(&tmp.path().join("bob"), &s.url);
    bob.cwd = tmp.path().to_path_buf();
    s.install_ca_for_docker(&bob.config);
    let e = fails(
        run(
            &bob,
            &url,
            &["trust", "signer", "add", "--key", "alice.pub", "bob", GUN],
        ),
        &["could not find necessary signing keys, at least one of these keys must be available:"],
    );
    assert!(!e.contains("failed to add signer"), "{e}");

    // Server down.
    let closed = format!("https://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    fails(
        run(&alice, &closed, &["trust", "verify", &format!("{GUN}:v1")]),
        &["cannot connect to https://127.0.0.1:", "connection refused"],
    );

    // TLS failure: a user who never installed the server's CA.
    let carol = Docker::new(&tmp.path().join("carol"), &s.url);
    fails(
        run(&carol, &url, &["trust", "verify", &format!("{GUN}:v1")]),
        &[
            "TLS failure talking to",
            "certificate signed by unknown authority",
        ],
    );

    // Bad input.
    fails(
        run(
            &alice,
            "http://127.0.0.1:1",
            &["trust", "verify", &format!("{GUN}:v1")],
        ),
        &["valid https URL required for trust server, got http://127.0.0.1:1"],
    );
    fails(
        run(&alice, &url, &["trust", "sign", GUN]),
        &[&format!("no tag specified for {GUN}")],
    );
    fails(
        run(
            &alice,
            &url,
            &[
                "trust",
                "revoke",
                &format!("{GUN}@sha256:{}", "a".repeat(64)),
            ],
        ),
        &["cannot use a digest reference for IMAGE:TAG"],
    );
    fails(
        run(&alice, &url, &["trust", "verify", "Bad/Name"]),
        &["invalid reference format"],
    );
    fails(
        run(&alice, &url, &["trust", "key", "generate", "Bad"]),
        &["key name \"Bad\" must start with lowercase alphanumeric characters"],
    );
    fails(
        run(
            &alice,
            &url,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                "alice.pub",
                "releases",
                GUN,
            ],
        ),
        &["releases is a reserved keyword"],
    );
    fails(
        run(
            &alice,
            &url,
            &["trust", "key", "generate", "alice", "--dir", "."],
        ),
        &["public key file already exists"],
    );
}
