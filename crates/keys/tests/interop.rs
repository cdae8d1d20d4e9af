//! Interoperability with the real tools on this machine: keys the docker CLI generates
//! decrypt in notarium; keys notarium writes have docker's exact layout and decrypt with
//! `openssl pkcs8`; keys OpenSSL writes (including OpenSSL 3's HMAC-SHA256 PRF) load.
//! A missing `docker` or `openssl` binary fails these tests; it does not skip them.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use notarium_keys::{cert, file, Algorithm, PrivateKey};

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the test needs this tool installed)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn keys_generated_by_docker_decrypt_in_notarium() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker-config");
    let out = run(Command::new("docker")
        .args(["trust", "key", "generate", "alice", "--dir"])
        .arg(tmp.path())
        .env("DOCKER_CONFIG", &cfg)
        .env(
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
            "alice-passphrase",
        ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Successfully generated and loaded private key"),
        "{stdout}"
    );

    let private_dir = cfg.join("trust/private");
    let files: Vec<_> = std::fs::read_dir(&private_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read(&files[0]).unwrap();
    let kf = file::read(&text, Some("alice-passphrase")).unwrap();
    assert_eq!(kf.role.as_deref(), Some("alice"));
    assert_eq!(kf.gun, None);
    assert_eq!(
        kf.key.id().as_str(),
        files[0].file_stem().unwrap().to_str().unwrap()
    );
    // The .pub docker wrote is the same key.
    let pub_text = std::fs::read(tmp.path().join("alice.pub")).unwrap();
    let public = cert::read_public_key(&pub_text, tuf::DateTime::from_unix_secs(0)).unwrap();
    assert_eq!(public.id(), kf.key.id());
    // And it signs what the public key verifies.
    use tuf::sign::Sign;
    let sig = kf.key.sign(b"message").unwrap();
    public.verify(&kf.key.method(), b"message", &sig).unwrap();
}

/// The DER structure of an encrypted key file with the random parts (salt, IV,
/// ciphertext) blanked: notarium's and docker's must be identical.
fn layout(text: &[u8]) -> Vec<u8> {
    let p = pem::parse(text).unwrap();
    let mut d = p.contents().to_vec();
    // Offsets fixed by the structure: salt at 35..43, IV at 62..78, ciphertext from 81.
    for (i, b) in d.iter_mut().enumerate() {
        if (35..43).contains(&i) || (62..78).contains(&i) || i >= 81 {
            *b = 0;
        }
    }
    d
}

#[test]
fn notarium_key_files_have_dockers_layout_and_open_with_openssl() {
    let docker_file = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/docker-28/docker-private-keys/204276eb449a126877a3a4c9abf67015b9c819117bf67ca1af90cd517c09d89b.key"),
    )
    .unwrap();
    let key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
    let ours = file::write(&key, "alice", None, Some("a-passphrase")).unwrap();
    assert_eq!(
        layout(ours.as_bytes()),
        layout(&docker_file),
        "same PBES2 parameters, sizes and order as docker"
    );
    assert_eq!(
        ours.lines().next(),
        Some("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    assert_eq!(ours.lines().nth(1), Some("role: alice"));

    // OpenSSL's PEM reader refuses every header but Proc-Type, for docker's files as for
    // ours; with the `role:` line removed it decrypts the same PKCS#8 bytes.
    let tmp = tempfile::tempdir().unwrap();
    let with_headers = tmp.path().join("with-headers.key");
    std::fs::write(&with_headers, &docker_file).unwrap();
    let refused = Command::new("openssl")
        .args(["pkcs8", "-in"])
        .arg(&with_headers)
        .args(["-passin", "pass:docker-repo-pass", "-nocrypt", "-topk8"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "OpenSSL now reads PEM headers; simplify this test"
    );
    let path = tmp.path().join("k.key");
    let stripped: String = ours
        .lines()
        .filter(|l| !l.contains(": ") && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, stripped).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(Command::new("openssl")
        .args(["pkcs8", "-in"])
        .arg(&path)
        .args([
            "-passin",
            "pass:a-passphrase",
            "-nocrypt",
            "-topk8",
            "-outform",
            "DER",
        ]));
    // OpenSSL decrypts it and re-encodes it as a standard PKCS#8 of the same key.
    let reloaded = PrivateKey::from_pkcs8_der(&out.stdout).unwrap();
    assert_eq!(reloaded.id(), key.id());
    // A wrong passphrase fails in OpenSSL too.
    let bad = Command::new("openssl")
        .args(["pkcs8", "-in"])
        .arg(&path)
        .args(["-passin", "pass:wrong", "-nocrypt", "-topk8"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn keys_written_by_openssl_load() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |n: &str| d.join(n).to_str().unwrap().to_owned();
    run(Command::new("openssl").args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &p("ec.pem"),
    ]));
    run(Command::new("openssl").args(["genrsa", "-traditional", "-out", &p("rsa.pem"), "2048"]));
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &p("ec.pem"),
        "-out",
        &p("ec-pkcs8.pem"),
    ]));
    // OpenSSL 3's default: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC.
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        &p("ec.pem"),
        "-out",
        &p("ec-enc256.pem"),
        "-passout",
        "pass:openssl-pass",
    ]));
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-v2prf",
        "hmacWithSHA1",
        "-in",
        &p("rsa.pem"),
        "-out",
        &p("rsa-enc1.pem"),
        "-passout",
        "pass:openssl-pass",
    ]));
    let read = |n: &str, pass: Option<&str>| {
        file::read(&std::fs::read(d.join(n)).unwrap(), pass).unwrap_or_else(|e| panic!("{n}: {e}"))
    };
    let ec = read("ec.pem", None);
    assert_eq!(
        file::inspect(&std::fs::read(d.join("ec.pem")).unwrap())
            .unwrap()
            .pem_type,
        "EC PRIVATE KEY"
    );
    assert_eq!(read("ec-pkcs8.pem", None).key.id(), ec.key.id());
    assert_eq!(
        read("ec-enc256.pem", Some("openssl-pass")).key.id(),
        ec.key.id()
    );
    let rsa = read("rsa.pem", None);
    assert_eq!(rsa.key.algorithm_name(), "rsa");
    assert_eq!(
        read("rsa-enc1.pem", Some("openssl-pass")).key.id(),
        rsa.key.id()
    );
    assert!(matches!(
        file::read(
            &std::fs::read(d.join("ec-enc256.pem")).unwrap(),
            Some("nope")
        ),
        Err(notarium_keys::KeyError::WrongPassphrase)
    ));
    // The RSA key re-encrypted by notarium keeps notary's inner layout and signs rsapss.
    use tuf::sign::Sign;
    let again = file::write(&rsa.key, "targets/alice", None, Some("x-passphrase")).unwrap();
    let back = file::read(again.as_bytes(), Some("x-passphrase")).unwrap();
    assert_eq!(back.key.id(), rsa.key.id());
    let sig = back.key.sign(b"m").unwrap();
    back.key
        .public()
        .verify(&tuf::SignatureMethod::RsaPss, b"m", &sig)
        .unwrap();
}
