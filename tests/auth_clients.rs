//! Real clients against an auth-enabled notarium server (builtin mode: a pull-only user, a
//! push user, an admin; anonymous pulls of `public/**`): the docker CLI's trust commands
//! after `docker login`, `notarium login` with `notarium trust` and trusted `notarium
//! push`/`pull`, skopeo with `--creds`, podman after `podman login`, and a CNCF
//! distribution registry that takes notarium's tokens.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use notarium_testkit::auth::{AuthServer, Who};
use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::oci::{self, Image};
use notarium_testkit::registry::Distribution;

const NOT_AUTHORIZED: &str =
    "you are not authorized to perform this operation: server returned 401.";

fn vector(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker-28")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// The vectors' repository, to be replaced by ours.
const VECTOR_GUN: &str = "registry.example.com/vectors/docker-app";

fn notarium(d: &Docker, args: &[&str], stdin: &str) -> Run {
    d.run_program(Path::new(env!("CARGO_BIN_EXE_notarium")), args, stdin)
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(
        r.code, 0,
        "{what}:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

fn fails(r: Run, what: &str) -> Run {
    assert_ne!(
        r.code, 0,
        "{what} should fail:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

/// A docker user in `dir/<name>`, with the server's CA installed.
fn user(srv: &AuthServer, dir: &Path, name: &str) -> Docker {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut u = Docker::new(&d, &srv.url);
    u.cwd = dir.to_path_buf();
    srv.install_ca_for_docker(&u.config);
    u
}

fn docker_login(u: &Docker, host: &str, who: Who) -> Run {
    let (name, pw) = who.credentials().unwrap();
    ok(
        u.run_with_stdin(
            &["login", "-u", name, "--password-stdin", host],
            &format!("{pw}\n"),
        ),
        "docker login",
    )
}

/// Give `to` the keys in `from`'s trust store (the repository's and the signers').
fn copy_keys(from: &Docker, to: &Docker) {
    let src = from.private_dir();
    let dst = to.private_dir();
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
}

/// Push an image as the admin, so that tags exist to sign.
fn seed_image(srv: &AuthServer, name: &str, tag: &str, seed: &str) -> Image {
    let admin = srv.as_user(Who::Admin, &[&format!("repository:{name}:*")]);
    let image = Image::new(seed, "amd64", 0);
    oci::push(&admin.client(), &admin.url, name, tag, &image);
    image
}

#[test]
fn docker_trust_commands_with_token_auth() {
    let srv = AuthServer::start();
    let host = srv.host();
    let gun = format!("{host}/team/app");
    let public = format!("{host}/public/app");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let alice = user(&srv, dir, "alice");
    let bob = user(&srv, dir, "bob");
    let reader = user(&srv, dir, "reader");
    let anon = user(&srv, dir, "anon");
    let image = seed_image(&srv, "team/app", "v1", "docker-auth");
    seed_image(&srv, "public/app", "v1", "docker-auth-public");

    ok(
        alice.run(&["trust", "key", "generate", "alice", "--dir", "keys"]),
        "key generate",
    );
    ok(
        bob.run(&["trust", "key", "generate", "bob", "--dir", "keys"]),
        "key generate",
    );
    // Without a login nothing can be written.
    let r = fails(
        alice.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/alice.pub",
            "alice",
            &gun,
        ]),
        "signer add without login",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);

    // The push user: signer add (initializing the repository), a second signer, a
    // release signed by notarium, bob's co-sign with docker, inspect, revoke, remove.
    let r = docker_login(&alice, &host, Who::Pusher);
    assert!(r.stdout.contains("Login Succeeded"), "{}", r.stdout);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.config.join("config.json")).unwrap()).unwrap();
    assert!(
        config["auths"][&host]["identitytoken"].is_string(),
        "docker keeps the refresh token as its identity token: {config}"
    );
    docker_login(&bob, &host, Who::Pusher);
    let r = ok(
        alice.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/alice.pub",
            "alice",
            &gun,
        ]),
        "signer add",
    );
    assert_eq!(
        r.stdout,
        vector("signer-add.stdout").replace(VECTOR_GUN, &gun)
    );
    let r = ok(
        alice.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/bob.pub",
            "bob",
            &gun,
        ]),
        "signer add bob",
    );
    assert_eq!(
        r.stdout,
        vector("signer-add-bob.stdout").replace(VECTOR_GUN, &gun)
    );
    ok(
        notarium(&alice, &["trust", "sign", &format!("{gun}:v1")], ""),
        "notarium trust sign",
    );
    let r = ok(
        bob.run(&["trust", "sign", &format!("{gun}:v1")]),
        "docker trust sign (co-sign)",
    );
    assert_eq!(
        r.stdout,
        vector("sign-cosign-bob.stdout")
            .replace(VECTOR_GUN, &gun)
            .replace(
                "3d2e482b82608d153a374df3357c0291589a61cc194ec4a9ca2381073a17f58e",
                image.digest.hex()
            )
    );

    // The pull-only user reads; writing fails with docker's own message, even holding
    // every key of the repository.
    docker_login(&reader, &host, Who::Reader);
    let r = ok(
        reader.run(&["trust", "inspect", "--pretty", &gun]),
        "inspect as reader",
    );
    assert!(
        r.stdout.contains("v1") && r.stdout.contains("alice, bob"),
        "{}",
        r.stdout
    );
    copy_keys(&alice, &reader);
    ok(
        reader.run(&["trust", "key", "generate", "carol", "--dir", "keys"]),
        "key generate",
    );
    let before = notarium_testkit::auth::Snapshot::take(&srv.data_dir);
    let r = fails(
        reader.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/carol.pub",
            "carol",
            &gun,
        ]),
        "signer add as reader",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);
    let r = fails(
        reader.run(&["trust", "revoke", &format!("{gun}:v1")]),
        "revoke as reader",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);
    assert_eq!(
        notarium_testkit::auth::Snapshot::take(&srv.data_dir),
        before
    );

    // No login: an anonymous-pull repository reads, nothing else does.
    ok(
        alice.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/alice.pub",
            "alice",
            &public,
        ]),
        "signer add on public/",
    );
    let r = ok(
        anon.run(&["trust", "inspect", &public]),
        "anonymous inspect of public/",
    );
    assert!(r.stdout.contains("\"Name\": \"alice\""), "{}", r.stdout);
    let r = fails(
        anon.run(&["trust", "inspect", &gun]),
        "anonymous inspect of team/",
    );
    assert!(
        r.stderr
            .contains(&format!("no signatures or cannot access {gun}")),
        "{}",
        r.stderr
    );
    copy_keys(&alice, &anon);
    let r = fails(
        anon.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/carol.pub",
            "carol",
            &public,
        ]),
        "anonymous signer add",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);

    // Back to the push user: revoke, then remove the last signer of releases.
    let r = ok(
        alice.run(&["trust", "revoke", &format!("{gun}:v1")]),
        "revoke",
    );
    assert_eq!(
        r.stdout,
        format!("Successfully deleted signature for {gun}:v1\n")
    );
    let r = alice.run_with_stdin(&["trust", "signer", "remove", "alice", &gun], "y\n");
    ok(r, "signer remove");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(reader.run(&["trust", "inspect", &gun]), "inspect").stdout)
            .unwrap();
    let signers: Vec<&str> = inspect[0]["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(signers, ["bob"]);
    // After docker logout, alice is anonymous again.
    ok(alice.run(&["logout", &host]), "docker logout");
    let r = fails(
        alice.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            "keys/alice.pub",
            "alice",
            &gun,
        ]),
        "signer add after logout",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);
}

fn layout(dir: &Path, seed: &str) -> (PathBuf, Image) {
    let image = Image::new(seed, "amd64", 0);
    let p = oci::write_layout(&dir.join(seed), &image, "v1");
    (p, image)
}

#[test]
fn notarium_login_trust_and_trusted_push_pull() {
    let srv = AuthServer::start();
    let host = srv.host();
    let repo = format!("{host}/team/app");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let alice = user(&srv, dir, "alice");
    let reader = user(&srv, dir, "reader");
    let anon = user(&srv, dir, "anon");
    let (src, image) = layout(dir, "notarium-auth");
    let dest = |d: &str| dir.join(d).display().to_string();

    // A wrong password is refused and stores nothing; the right one is stored as docker
    // stores it.
    let r = fails(
        notarium(
            &alice,
            &["login", "-u", "pusher", "--password-stdin", &host],
            "wrong\n",
        ),
        "login with a wrong password",
    );
    assert!(r.stderr.contains("login failed"), "{}", r.stderr);
    assert!(!alice.config.join("config.json").exists());
    let r = ok(
        notarium(
            &alice,
            &["login", "-u", "pusher", "--password-stdin", &host],
            "pusher-password\n",
        ),
        "notarium login",
    );
    assert_eq!(r.stdout, "Login Succeeded\n");
    assert!(
        r.stderr
            .contains("WARNING! Your credentials are stored unencrypted"),
        "{}",
        r.stderr
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.config.join("config.json")).unwrap()).unwrap();
    assert!(
        config["auths"][&host]["identitytoken"].is_string(),
        "{config}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(alice.config.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Trusted push as the push user: uploaded and signed.
    let r = ok(
        notarium(
            &alice,
            &[
                "push",
                "--trust",
                src.to_str().unwrap(),
                &format!("{repo}:v1"),
            ],
            "",
        ),
        "trusted push",
    );
    assert!(r.stdout.contains(&image.digest.to_string()), "{}", r.stdout);
    let r = ok(
        notarium(&alice, &["trust", "verify", &format!("{repo}:v1")], ""),
        "verify",
    );
    assert!(r.stdout.contains(image.digest.hex()), "{}", r.stdout);

    // The pull-only user pulls what is signed; cannot push or sign.
    ok(
        notarium(
            &reader,
            &["login", "-u", "reader", "--password-stdin", &host],
            "reader-password\n",
        ),
        "login as reader",
    );
    ok(
        notarium(
            &reader,
            &["pull", "--trust", &format!("{repo}:v1"), &dest("pulled")],
            "",
        ),
        "trusted pull as reader",
    );
    assert!(dir.join("pulled/index.json").exists());
    let r = fails(
        notarium(
            &reader,
            &["push", src.to_str().unwrap(), &format!("{repo}:v2")],
            "",
        ),
        "push as reader",
    );
    assert!(
        r.stderr.contains("403") || r.stderr.contains("denied"),
        "{}",
        r.stderr
    );
    copy_keys(&alice, &reader);
    seed_image(&srv, "team/app", "v2", "notarium-auth-v2");
    let r = fails(
        notarium(&reader, &["trust", "sign", &format!("{repo}:v2")], ""),
        "sign as reader",
    );
    assert!(r.stderr.contains("reader is not allowed"), "{}", r.stderr);
    let r = ok(
        notarium(&reader, &["trust", "inspect", &repo], ""),
        "inspect as reader",
    );
    assert!(r.stdout.contains("\"SignedTags\""), "{}", r.stdout);
    ok(
        notarium(&reader, &["trust", "key", "generate", "carol"], ""),
        "key generate",
    );
    let r = fails(
        notarium(
            &reader,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                "carol.pub",
                "carol",
                &repo,
            ],
            "",
        ),
        "signer add as reader",
    );
    assert!(
        r.stderr.contains(&format!(
            "reader is not allowed repository:{repo}:pull,push (HTTP 401, insufficient scope)"
        )),
        "{}",
        r.stderr
    );

    // Anonymous: public/ pulls, team/ does not.
    let (psrc, _) = layout(dir, "notarium-auth-public");
    ok(
        notarium(
            &alice,
            &[
                "push",
                "--trust",
                psrc.to_str().unwrap(),
                &format!("{host}/public/app:v1"),
            ],
            "",
        ),
        "trusted push to public/",
    );
    ok(
        notarium(
            &anon,
            &[
                "pull",
                "--trust",
                &format!("{host}/public/app:v1"),
                &dest("anon-public"),
            ],
            "",
        ),
        "anonymous trusted pull of public/",
    );
    fails(
        notarium(
            &anon,
            &["pull", "--trust", &format!("{repo}:v1"), &dest("anon-team")],
            "",
        ),
        "anonymous pull of team/",
    );
    fails(
        notarium(
            &anon,
            &[
                "push",
                src.to_str().unwrap(),
                &format!("{host}/public/app:v2"),
            ],
            "",
        ),
        "anonymous push",
    );

    // Logout removes the credentials; the reader is anonymous again.
    let r = ok(notarium(&reader, &["logout", &host], ""), "logout");
    assert_eq!(r.stdout, format!("Removing login credentials for {host}\n"));
    let r = ok(notarium(&reader, &["logout", &host], ""), "logout again");
    assert_eq!(r.stdout, format!("Not logged in to {host}\n"));
    fails(
        notarium(
            &reader,
            &[
                "pull",
                "--trust",
                &format!("{repo}:v1"),
                &dest("after-logout"),
            ],
            "",
        ),
        "pull after logout",
    );
}

fn run(cmd: &mut Command) -> Run {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A directory with the server's CA as `ca.crt`, as skopeo and podman read `--cert-dir`.
fn cert_dir(srv: &AuthServer, dir: &Path) -> PathBuf {
    let d = dir.join("certs");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(srv.ca.as_ref().unwrap(), d.join("ca.crt")).unwrap();
    d
}

#[test]
fn skopeo_with_and_without_credentials() {
    let srv = AuthServer::start();
    let host = srv.host();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = cert_dir(&srv, dir);
    let (src, image) = layout(dir, "skopeo-auth");
    let oci_src = format!("oci:{}:v1", src.display());
    let to = |tag: &str| format!("docker://{host}/team/app:{tag}");
    let skopeo = |args: &[&str]| {
        run(Command::new("skopeo")
            .args(args)
            .env("HOME", dir)
            .env("REGISTRY_AUTH_FILE", dir.join("no-auth.json")))
    };
    let cd = certs.to_str().unwrap();
    let before = notarium_testkit::auth::Snapshot::take(&srv.data_dir);
    let r = fails(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            cd,
            &oci_src,
            &to("v1"),
        ]),
        "skopeo without credentials",
    );
    assert!(
        r.stderr.contains("denied") || r.stderr.contains("unauthorized"),
        "{}",
        r.stderr
    );
    let r = fails(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            cd,
            "--dest-creds",
            "reader:reader-password",
            &oci_src,
            &to("v1"),
        ]),
        "skopeo as the pull-only user",
    );
    assert!(r.stderr.contains("denied"), "{}", r.stderr);
    fails(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            cd,
            "--dest-creds",
            "pusher:wrong",
            &oci_src,
            &to("v1"),
        ]),
        "skopeo with a wrong password",
    );
    assert_eq!(
        notarium_testkit::auth::Snapshot::take(&srv.data_dir),
        before,
        "refused pushes stored nothing"
    );
    ok(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            cd,
            "--dest-creds",
            "pusher:pusher-password",
            &oci_src,
            &to("v1"),
        ]),
        "skopeo as the push user",
    );
    let r = ok(
        skopeo(&[
            "inspect",
            "--cert-dir",
            cd,
            "--creds",
            "reader:reader-password",
            &to("v1"),
        ]),
        "skopeo inspect as reader",
    );
    assert!(r.stdout.contains(&image.digest.to_string()), "{}", r.stdout);
    fails(
        skopeo(&["inspect", "--cert-dir", cd, &to("v1")]),
        "anonymous inspect of team/",
    );
    let out = dir.join("copied");
    ok(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            cd,
            "--src-creds",
            "reader:reader-password",
            &to("v1"),
            &format!("oci:{}:v1", out.display()),
        ]),
        "skopeo copy out as reader",
    );
    assert!(out.join("blobs/sha256").join(image.digest.hex()).exists());
}

#[test]
fn podman_login_push_and_pull() {
    let srv = AuthServer::start();
    let host = srv.host();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = cert_dir(&srv, dir);
    let cd = certs.to_str().unwrap();
    seed_image(&srv, "team/app", "v1", "podman-auth");
    let auth = dir.join("auth.json");
    let podman = |args: &[&str], stdin: &str| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args)
            .env("HOME", dir)
            .env("REGISTRY_AUTH_FILE", &auth)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c
            .spawn()
            .expect("podman (Debian package podman) is needed by this test");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let image = |tag: &str| format!("{host}/team/app:{tag}");
    fails(
        podman(&["pull", "--cert-dir", cd, &image("v1")], ""),
        "anonymous podman pull of team/",
    );
    fails(
        podman(
            &[
                "login",
                "--cert-dir",
                cd,
                "-u",
                "pusher",
                "--password-stdin",
                &host,
            ],
            "wrong\n",
        ),
        "podman login with a wrong password",
    );
    let r = ok(
        podman(
            &[
                "login",
                "--cert-dir",
                cd,
                "-u",
                "pusher",
                "--password-stdin",
                &host,
            ],
            "pusher-password\n",
        ),
        "podman login",
    );
    assert!(r.stdout.contains("Login Succeeded"), "{}", r.stdout);
    ok(
        podman(&["pull", "--cert-dir", cd, &image("v1")], ""),
        "podman pull",
    );
    ok(
        podman(&["tag", &image("v1"), &image("v2")], ""),
        "podman tag",
    );
    ok(
        podman(&["push", "--cert-dir", cd, &image("v2")], ""),
        "podman push",
    );
    let reader = srv.as_user(Who::Reader, &["repository:team/app:pull"]);
    let r = reader.get("/v2/team/app/tags/list");
    assert!(r.text().contains("\"v2\""), "{}", r.text());
    // As the pull-only user, the push is refused.
    ok(
        podman(
            &[
                "login",
                "--cert-dir",
                cd,
                "-u",
                "reader",
                "--password-stdin",
                &host,
            ],
            "reader-password\n",
        ),
        "podman login as reader",
    );
    ok(
        podman(&["tag", &image("v1"), &image("v3")], ""),
        "podman tag",
    );
    let r = fails(
        podman(&["push", "--cert-dir", cd, &image("v3")], ""),
        "podman push as reader",
    );
    assert!(r.stderr.contains("denied"), "{}", r.stderr);
    ok(podman(&["logout", &host], ""), "podman logout");
}

#[test]
fn a_cncf_registry_takes_notariums_tokens() {
    let srv = AuthServer::start();
    let realm = format!("{}/auth/token", srv.url);
    let bundle = srv.data_dir.join("auth/token.crt");
    let reg = Distribution::start_with_token_auth(&realm, "cncf-registry", "notarium", &bundle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (src, image) = layout(dir, "cncf-auth");
    let oci_src = format!("oci:{}:v1", src.display());
    let to = format!("docker://{}/team/app:v1", reg.addr);
    let skopeo = |args: &[&str]| {
        run(Command::new("skopeo")
            .args(args)
            .env("HOME", dir)
            .env("REGISTRY_AUTH_FILE", dir.join("no-auth.json")))
    };
    // The realm is notarium's HTTPS endpoint; the registry itself is plain HTTP.
    let r = fails(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &oci_src,
            &to,
        ]),
        "without credentials",
    );
    assert!(
        r.stderr.contains("denied") || r.stderr.contains("unauthorized"),
        "{}",
        r.stderr
    );
    fails(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "reader:reader-password",
            &oci_src,
            &to,
        ]),
        "as the pull-only user",
    );
    ok(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "pusher:pusher-password",
            &oci_src,
            &to,
        ]),
        "as the push user",
    );
    let r = ok(
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "reader:reader-password",
            &to,
        ]),
        "inspect as reader",
    );
    assert!(r.stdout.contains(&image.digest.to_string()), "{}", r.stdout);
    let out = dir.join("out");
    ok(
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            "reader:reader-password",
            &to,
            &format!("oci:{}:v1", out.display()),
        ]),
        "pull as reader",
    );
    fails(
        skopeo(&["inspect", "--tls-verify=false", &to]),
        "anonymous inspect",
    );

    // distribution also finds the key by its libtrust ID alone (no x5c): notarium's `kid`
    // is the one distribution computes from the certificate.
    use server::auth::jwt;
    let key = keys::file::read(
        &std::fs::read(srv.data_dir.join("auth/token.key")).unwrap(),
        Some("test-passphrase"),
    )
    .unwrap()
    .key;
    let cert = server::auth::certs::Cert::read_pem_bundle(&std::fs::read(&bundle).unwrap())
        .unwrap()
        .remove(0);
    let mut header = jwt::header_for(&cert, "JWT");
    header.x5c = None;
    let now = tuf::Clock::now(&tuf::SystemClock).unix_secs();
    let claims = jwt::Claims {
        iss: "notarium".into(),
        sub: "reader".into(),
        aud: jwt::Audience::One("cncf-registry".into()),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: jwt::new_jti(),
        access: vec![server::auth::scope::ResourceActions {
            typ: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }],
        pwh: None,
    };
    let t = jwt::sign_with(&key, &header, &claims).unwrap();
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/v2/team/app/tags/list", reg.url()))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "kid-only token: {}",
        r.text().unwrap_or_default()
    );
}

/// A credential store as docker's helpers are: `store`, `get`, `erase` on stdin/stdout,
/// keeping each server's credentials in a file under `$HELPER_STORE`.
const HELPER: &str = r#"#!/bin/sh
d="$HELPER_STORE"; mkdir -p "$d"
name() { echo "$1" | tr '/:' '__'; }
case "$1" in
store) cat > "$d/new"; s=$(sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p' "$d/new"); mv "$d/new" "$d/$(name "$s")" ;;
get) read s; f="$d/$(name "$s")"; if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) read s; f="$d/$(name "$s")"; if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
*) exit 1 ;;
esac
"#;

#[test]
fn login_through_a_credential_store_that_docker_reads_too() {
    let srv = AuthServer::start();
    let host = srv.host();
    let repo = format!("{host}/team/app");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let alice = user(&srv, dir, "alice");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-testfile");
    std::fs::write(&helper, HELPER).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = alice.config.join("config.json");
    std::fs::write(&config, "{\"credsStore\": \"testfile\"}").unwrap();
    let store = dir.join("store");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_helper = |mut c: Command| {
        c.env("PATH", &path).env("HELPER_STORE", &store);
        run(&mut c)
    };
    let nota = |args: &[&str]| {
        let mut c = alice.command_of(Path::new(env!("CARGO_BIN_EXE_notarium")), args);
        c.stdin(std::process::Stdio::null());
        with_helper(c)
    };
    // The password goes in on stdin, as a script would give it.
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "printf 'pusher-password\\n' | \"$0\" login -u pusher --password-stdin \"$1\"",
    ])
    .arg(env!("CARGO_BIN_EXE_notarium"))
    .arg(&host)
    .env("DOCKER_CONFIG", &alice.config);
    let r = ok(with_helper(c), "notarium login into a credential store");
    assert_eq!(r.stdout, "Login Succeeded\n");
    assert!(!r.stderr.contains("unencrypted"), "{}", r.stderr);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(cfg.get("auths").is_none(), "nothing in config.json: {cfg}");
    let stored = std::fs::read_to_string(store.join(host.replace(':', "_"))).unwrap();
    assert!(
        stored.contains("\"Username\":\"<token>\""),
        "an identity token: {stored}"
    );
    assert!(!stored.contains("pusher-password"), "{stored}");

    // notarium and docker both sign in with what the helper holds.
    seed_image(&srv, "team/app", "v1", "helper-auth");
    ok(
        nota(&["trust", "sign", &format!("{repo}:v1")]),
        "sign with stored credentials",
    );
    let r = ok(
        with_helper(alice.command(&["trust", "inspect", "--pretty", &repo])),
        "docker inspect",
    );
    assert!(r.stdout.contains("v1"), "{}", r.stdout);
    ok(
        with_helper(alice.command(&[
            "trust",
            "key",
            "generate",
            "bob",
            "--dir",
            dir.to_str().unwrap(),
        ])),
        "key generate",
    );
    let bob = dir.join("bob.pub");
    ok(
        with_helper(alice.command(&[
            "trust",
            "signer",
            "add",
            "--key",
            bob.to_str().unwrap(),
            "bob",
            &repo,
        ])),
        "docker signer add with the helper's identity token",
    );

    // logout erases it from the store.
    let r = ok(nota(&["logout", &host]), "logout");
    assert_eq!(r.stdout, format!("Removing login credentials for {host}\n"));
    assert!(!store.join(host.replace(':', "_")).exists());
    let r = fails(
        with_helper(alice.command(&[
            "trust",
            "signer",
            "add",
            "--key",
            bob.to_str().unwrap(),
            "carol",
            &repo,
        ])),
        "signer add after logout",
    );
    assert!(r.stderr.contains(NOT_AUTHORIZED), "{}", r.stderr);
}
