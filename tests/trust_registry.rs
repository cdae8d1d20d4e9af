//! `notarium trust sign` asks the registry what a tag is, with docker's credentials: a
//! registry that wants a Bearer token (config.json `auths`, then a credential helper),
//! wrong credentials, a registry over HTTPS with its CA in docker's TLS directory, and an
//! image index (multi-arch) in the CNCF distribution registry.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use base64::Engine as _;
use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, push_index, Distribution, TokenRegistry};
use notarium_testkit::TestServer;

fn notarium(d: &Docker, args: &[&str]) -> Run {
    d.run_program(Path::new(env!("CARGO_BIN_EXE_notarium")), args, "")
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(
        r.code, 0,
        "{what} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(seed: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", hex::encode(tuf::hash::sha256(seed.as_bytes()))),
                   "size": seed.len()},
        "layers": []
    })
    .to_string()
    .into_bytes()
}

fn signers(d: &Docker, repo: &str) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["trust", "inspect", repo]).stdout).unwrap();
    json[0]["SignedTags"].clone()
}

#[test]
fn bearer_token_flow_with_config_json_and_credential_helper() {
    let server = TestServer::start();
    let registry = TokenRegistry::start(&[("alice", "alice-secret"), ("helper", "helper-secret")]);
    let host = registry.host();
    let tmp = tempfile::tempdir().unwrap();
    let alice = Docker::new(tmp.path(), &server.url);
    server.install_ca_for_docker(&alice.config);
    // The registry's CA, where docker looks for it.
    registry.served.install_ca_for_docker(&alice.config);
    let v1 = registry.put("team/app", "v1", MANIFEST_TYPE, &manifest("one"));
    let repo = format!("{host}/team/app");

    // No credentials: the registry's refusal, on one line.
    let r = notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("authentication required")
            && r.stderr.contains(&format!("docker login {host}")),
        "{}",
        r.stderr
    );

    // Wrong password in config.json: refused by the token endpoint, on one line.
    let auth =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let config = alice.config.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {host.clone(): {"auth": auth("alice", "wrong")}}}).to_string(),
    )
    .unwrap();
    let r = notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(&host), "names the registry: {}", r.stderr);
    assert!(registry.seen().tokens.is_empty());
    // Nothing was published.
    assert_eq!(
        server.endpoint.get_file(&repo, "root.json").status,
        404,
        "a failed sign created the repository"
    );

    // The right password: a token for pull on that repository, then the manifest.
    std::fs::write(
        &config,
        serde_json::json!({"auths": {host.clone(): {"auth": auth("alice", "alice-secret")}}})
            .to_string(),
    )
    .unwrap();
    let r = ok(
        notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]),
        "sign with config.json credentials",
    );
    // A new repository gets a signer named after the registry user, as docker does.
    assert!(r.stdout.contains("Created signer: alice"), "{}", r.stdout);
    let seen = registry.seen();
    assert_eq!(
        seen.tokens,
        vec![("alice".to_owned(), "repository:team/app:pull".to_owned())]
    );
    assert!(
        seen.requests
            .iter()
            .any(|(_, p, a)| p == "/v2/team/app/manifests/v1" && a == "Bearer"),
        "{:?}",
        seen.requests
    );
    let r = ok(
        notarium(&alice, &["trust", "verify", &format!("{repo}:v1")]),
        "verify",
    );
    assert_eq!(r.stdout.trim(), v1.digest);
    let tags = signers(&alice, &repo);
    assert_eq!(tags[0]["Digest"], v1.hex());
    assert_eq!(tags[0]["Signers"], serde_json::json!(["alice"]));

    // A credential helper named in `credHelpers` (it wins over `auths`).
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"helper\",\"Secret\":\"helper-secret\"}' \"$server\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        &config,
        serde_json::json!({
            "auths": {host.clone(): {"auth": auth("alice", "wrong")}},
            "credHelpers": {host.clone(): "fake"}
        })
        .to_string(),
    )
    .unwrap();
    let other = registry.put("team/other", "v1", MANIFEST_TYPE, &manifest("two"));
    let other_repo = format!("{host}/team/other");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut c = alice.command_of(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        &["trust", "sign", &format!("{other_repo}:v1")],
    );
    let o = c.env("PATH", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "sign with a credential helper: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("Created signer: helper"), "{stdout}");
    assert_eq!(
        registry.seen().tokens.last().unwrap(),
        &("helper".to_owned(), "repository:team/other:pull".to_owned())
    );
    let tags = signers(&alice, &other_repo);
    assert_eq!(tags[0]["Digest"], other.hex());
    assert_eq!(tags[0]["Signers"], serde_json::json!(["helper"]));
}

#[test]
fn an_image_index_is_signed_by_its_own_digest() {
    let server = TestServer::start();
    let registry = Distribution::start();
    let tmp = tempfile::tempdir().unwrap();
    let alice = Docker::new(tmp.path(), &server.url);
    server.install_ca_for_docker(&alice.config);
    let base = registry.url();
    let amd = push_image(&base, "multi/app", "amd64", "amd");
    let arm = push_image(&base, "multi/app", "arm64", "arm");
    let index = push_index(
        &base,
        "multi/app",
        "v1",
        &[("amd64", &amd), ("arm64", &arm)],
    );
    let repo = format!("{}/multi/app", registry.addr);

    ok(
        notarium(&alice, &["trust", "key", "generate", "alice", "--dir", "."]),
        "key generate",
    );
    ok(
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
    ok(
        notarium(&alice, &["trust", "sign", &format!("{repo}:v1")]),
        "sign the index",
    );
    // The tag stands for the index itself (its digest and size), not one platform's image.
    let r = ok(
        notarium(&alice, &["trust", "verify", &format!("{repo}:v1")]),
        "verify",
    );
    assert_eq!(r.stdout.trim(), index.digest);
    let tags = signers(&alice, &repo);
    assert_eq!(tags[0]["Digest"], index.hex());
    let targets = server.endpoint.get_file(&repo, "targets/releases.json");
    let json: serde_json::Value = serde_json::from_slice(&targets.body).unwrap();
    assert_eq!(json["signed"]["targets"]["v1"]["length"], index.size);
}

#[test]
fn system_certificates_still_count_when_the_tls_directory_has_another_ca() {
    let server = TestServer::start();
    let registry = TokenRegistry::start(&[("alice", "alice-secret")]);
    let host = registry.host();
    let tmp = tempfile::tempdir().unwrap();
    let alice = Docker::new(tmp.path(), &server.url);
    server.install_ca_for_docker(&alice.config);
    // The registry's TLS directory holds a CA that did not sign its certificate…
    let dir = alice.config.join("tls").join(&host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(server.endpoint.ca.as_ref().unwrap(), dir.join("ca.crt")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:alice-secret");
    std::fs::write(
        alice.config.join("config.json"),
        serde_json::json!({"auths": {host.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let v1 = registry.put("team/app", "v1", MANIFEST_TYPE, &manifest("one"));
    let image = format!("{host}/team/app:v1");
    let sign = |system_ca: &Path| {
        let mut c = alice.command_of(
            Path::new(env!("CARGO_BIN_EXE_notarium")),
            &["trust", "sign", &image],
        );
        c.env("SSL_CERT_FILE", system_ca).env_remove("SSL_CERT_DIR");
        c.output().unwrap()
    };
    // …and the system's certificates do not include the registry's CA: refused.
    let o = sign(server.endpoint.ca.as_ref().unwrap());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("certificate"), "{err}");
    // The system's certificates include it: accepted, as docker's pool of both would.
    let o = sign(registry.served.ca.as_ref().unwrap());
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r = ok(notarium(&alice, &["trust", "verify", &image]), "verify");
    assert_eq!(r.stdout.trim(), v1.digest);
}
