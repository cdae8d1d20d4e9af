//! Four years on, under Debian's `faketime` (it moves the clock of the Rust binaries, the
//! server's and the client's): a repository nobody touched since it was created has
//! expired everywhere but its root (targets and snapshot after three years, the
//! timestamp after fourteen days, the server's 825-day TLS certificate). The server
//! renews its certificate and what it holds; a reader refuses the expired repository
//! (freeze) and `trust status` says so; the owner renews it (`trust renew`, loading the
//! expired roles it holds keys for); then the reader, and a new client, read the tag.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::server::Options;
use notarium_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_notarium");
const AHEAD: &str = "+1500d";

/// `notarium ARGS` as `user`, four years ahead.
fn later(user: &Docker, args: &[&str]) -> Run {
    let mut all = vec!["-f", AHEAD, BIN];
    all.extend_from_slice(args);
    user.run_program(Path::new("faketime"), &all, "")
}

/// The faked server: `faketime` runs it as a child of its own, so the whole process group
/// is stopped.
struct Faked(Child);

impl Drop for Faked {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// The server binary on `data`, four years ahead; its URL.
fn server_later(data: &Path) -> (Faked, String) {
    let mut child = Command::new("faketime")
        .args([
            "-f",
            AHEAD,
            BIN,
            "server",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("NOTARIUM_KEY_PASSPHRASE", "test-passphrase")
        .env("NOTARIUM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("faketime (Debian package faketime) runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("no ready line: {line:?}"))
        .to_owned();
    (Faked(child), url)
}

/// Point `user` at the trust server at `url` (its CA is the data directory's).
fn use_server(user: &mut Docker, url: &str, data: &Path) {
    let addr = url.trim_start_matches("https://");
    let dir = user.config.join("tls").join(addr);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(data.join("tls/ca.crt"), dir.join("ca.crt")).unwrap();
    user.server = url.to_owned();
}

#[test]
fn four_years_on_an_expired_repository_is_refused_renewed_by_its_owner_and_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let registry = Distribution::start();
    let repo = format!("{}/years/app", registry.addr);
    let image = push_image(&registry.url(), "years/app", "v1", "v1");
    let (mut alice, mut bob) = {
        let server = TestServer::start_with(Options {
            data_dir: Some(data.clone()),
            ..Default::default()
        });
        let alice = server.user(tmp.path(), "alice");
        alice.sign_as(Path::new(BIN), "alice", &repo, "v1");
        let bob = server.user(tmp.path(), "bob");
        let r = bob.run_program(
            Path::new(BIN),
            &["trust", "verify", &format!("{repo}:v1")],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        (alice, bob)
    };
    let cert_before = std::fs::read(data.join("tls/server.crt")).unwrap();

    // Four years on: the server starts with a renewed certificate (the old one expired
    // two years ago; a client four years ahead would refuse it).
    let (_server, url) = server_later(&data);
    assert_ne!(
        std::fs::read(data.join("tls/server.crt")).unwrap(),
        cert_before,
        "the expired TLS certificate was not renewed"
    );
    use_server(&mut alice, &url, &data);
    use_server(&mut bob, &url, &data);

    // The reader refuses the expired repository, and status says why (exit 2).
    let r = later(&bob, &["trust", "verify", &format!("{repo}:v1")]);
    assert_ne!(r.code, 0, "an expired repository was trusted: {}", r.stdout);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    let r = later(&bob, &["trust", "status", &repo]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("expired"), "{}", r.stdout);

    // The owner renews: the expired roles it holds keys for are named and signed again.
    let r = later(&alice, &["trust", "renew", &repo]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for line in [
        "Renewed root",
        "Renewed targets of",
        "Renewed targets/alice",
        "Renewed targets/releases",
        "Successfully renewed",
    ] {
        assert!(r.stdout.contains(line), "{line}: {}", r.stdout);
    }
    for role in ["targets", "targets/releases"] {
        assert!(
            r.stderr.contains(&format!("{role}: expired")),
            "{role} not named: {}",
            r.stderr
        );
    }

    // The reader (its cache from four years ago) and a new client read the tag again;
    // status is clean.
    for user in [&bob, &{
        let mut carol = Docker::new(&tmp.path().join("carol"), &url);
        use_server(&mut carol, &url, &data);
        carol
    }] {
        let r = later(user, &["trust", "verify", &format!("{repo}:v1")]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(&image.digest), "{}", r.stdout);
    }
    let r = later(&bob, &["trust", "status", &repo]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
