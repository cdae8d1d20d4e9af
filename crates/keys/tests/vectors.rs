//! Every private key file written by the reference notary 0.7 client and by docker 28
//! decrypts with its passphrase, and its public half has the ID that names the file.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use notarium_keys::{file, KeyError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Passphrases from the vectors' PASSPHRASES files, by role header.
fn notary_passphrase(role: &str) -> &'static str {
    match role {
        "root" => "rootpass123",
        "targets" => "targetspass123",
        "snapshot" => "snapshotpass123",
        _ => "delegationpass123",
    }
}

fn docker_passphrase(role: &str) -> &'static str {
    match role {
        "root" => "docker-root-pass",
        _ => "docker-repo-pass",
    }
}

fn check_dir(dir: &Path, passphrase: fn(&str) -> &'static str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read(&p).unwrap();
        let info = file::inspect(&text).unwrap();
        assert_eq!(info.pem_type, "ENCRYPTED PRIVATE KEY");
        let role = info.role.clone().expect("role header");
        let kf = file::read(&text, Some(passphrase(&role)))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            kf.key.id().as_str(),
            p.file_stem().unwrap().to_str().unwrap(),
            "{}: the key's ID names its file",
            p.display()
        );
        assert_eq!(kf.role.as_deref(), Some(role.as_str()));
        // A wrong passphrase is a clear error, not a panic and not a garbage key.
        let err = file::read(&text, Some("not-the-passphrase")).unwrap_err();
        assert!(
            matches!(err, KeyError::WrongPassphrase),
            "{}: {err:?}",
            p.display()
        );
        assert_eq!(err.to_string(), "could not decrypt key: wrong passphrase");
        n += 1;
    }
    n
}

#[test]
fn notary_client_keys_decrypt() {
    let n = check_dir(
        &fixtures().join("notary-0.7/client-private-keys"),
        notary_passphrase,
    );
    assert_eq!(n, 6);
}

#[test]
fn docker_keys_decrypt() {
    let n = check_dir(
        &fixtures().join("docker-28/docker-private-keys"),
        docker_passphrase,
    );
    assert_eq!(n, 4);
}

#[test]
fn key_file_headers_are_what_docker_wrote() {
    let dir = fixtures().join("docker-28/docker-private-keys");
    let read =
        |id: &str| file::inspect(&std::fs::read(dir.join(format!("{id}.key"))).unwrap()).unwrap();
    let targets = read("24fd24536fad8a8ded828e231c183d3dd65cfb32b95da73e481bf08172c53b3c");
    assert_eq!(targets.role.as_deref(), Some("targets"));
    assert_eq!(
        targets.gun.as_deref(),
        Some("registry.example.com/vectors/docker-app")
    );
    let root = read("9eed722264452fd56ef7eacfcc705a66ccf64562a9e0ea439592c84c053e6681");
    assert_eq!(
        (root.role.as_deref(), root.gun.as_deref()),
        (Some("root"), None)
    );
    let alice = read("204276eb449a126877a3a4c9abf67015b9c819117bf67ca1af90cd517c09d89b");
    assert_eq!(
        (alice.role.as_deref(), alice.gun.as_deref()),
        (Some("alice"), None)
    );
}

#[test]
fn delegation_keys_match_their_certificates_in_metadata() {
    // notary imported the delegation keys with x509 certificates; the private key file is
    // named by the canonical ID of the certificate's key.
    let certs = [
        (
            "deleg-ec.crt",
            "fd8db79098a801f503b22419fbee4e4e546bd37a3ea8efc901c683e5d57456f4",
        ),
        (
            "deleg-rsa.crt",
            "7bbf2b4ddaa9bebb012c41c9980dfba7aad8d59c5be28d9ef5986d584ba31760",
        ),
    ];
    for (crt, id) in certs {
        let text = std::fs::read(fixtures().join("notary-0.7").join(crt)).unwrap();
        let key = notarium_keys::cert::read_public_key(
            &text,
            tuf::DateTime::parse("2027-01-01T00:00:00Z").unwrap(),
        )
        .unwrap();
        assert!(key.keytype().is_x509());
        assert_eq!(key.canonical_id().unwrap().as_str(), id);
    }
}

#[test]
fn public_key_files_from_docker() {
    for (name, id) in [
        (
            "alice",
            "204276eb449a126877a3a4c9abf67015b9c819117bf67ca1af90cd517c09d89b",
        ),
        (
            "bob",
            "0564ca7898d436f15807ead7997d0a9f5b1fbb66ab7b03246f7fdfb55e2da964",
        ),
    ] {
        let text = std::fs::read(fixtures().join(format!("docker-28/{name}.pub"))).unwrap();
        let key =
            notarium_keys::cert::read_public_key(&text, tuf::DateTime::from_unix_secs(0)).unwrap();
        assert_eq!(key.id().as_str(), id);
        // notarium writes the same file for the same key.
        assert_eq!(
            notarium_keys::cert::public_key_pem(&key, name).as_bytes(),
            text.as_slice()
        );
    }
}
