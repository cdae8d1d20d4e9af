//! Signing with every key type notarium holds (ECDSA P-256, ed25519, imported RSA), verified
//! by the same code that verifies everyone else's signatures; PKCS#1 v1.5 signatures made by
//! OpenSSL verify where Notary accepts them; `custom` target data is canonicalized before
//! signing, so its signatures verify (the reference's do not, issue #1411).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use notarium_keys::{file, Algorithm, PrivateKey};
use tuf::edit;
use tuf::metadata::Metadata;
use tuf::sign::SigningKey;
use tuf::verify::{self, Checks, RoleKeys};
use tuf::{DateTime, FileMeta, Hashes, RoleName, TargetName, Targets};

fn rsa_key(dir: &std::path::Path) -> PrivateKey {
    let p = dir.join("rsa.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&p)
        .arg("2048")
        .output()
        .expect("openssl is needed by this test")
        .status
        .success();
    assert!(ok);
    file::read(&std::fs::read(&p).unwrap(), None).unwrap().key
}

fn now() -> DateTime {
    DateTime::parse("2027-01-01T00:00:00Z").unwrap()
}

#[test]
fn every_key_type_signs_metadata_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = [
        PrivateKey::generate(Algorithm::Ecdsa).unwrap(),
        PrivateKey::generate(Algorithm::Ed25519).unwrap(),
        rsa_key(tmp.path()),
    ];
    for key in &keys {
        let mut t = Targets::new(now().plus_days(30), 1);
        edit::add_target(
            &mut t,
            TargetName::new("v1").unwrap(),
            edit::docker_target([7; 32], 528),
        )
        .unwrap();
        let m = Metadata::sign("targets/x", t, &[SigningKey::plain(key)]).unwrap();
        let again = Metadata::<Targets>::parse("targets/x", m.raw().to_vec()).unwrap();
        assert!(again.is_normalized());
        let ids = vec![key.id().clone()];
        let keymap = [(key.id().clone(), key.public().clone())]
            .into_iter()
            .collect();
        verify::verify(
            again,
            &RoleName::new("targets/x").unwrap(),
            RoleKeys {
                keys: &keymap,
                keyids: &ids,
                threshold: 1,
            },
            Checks::at(now()),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", key.algorithm_name()));
        let method = m.signatures()[0].method.as_str().to_owned();
        assert_eq!(
            method,
            match key.algorithm_name() {
                "ecdsa" => "ecdsa",
                "ed25519" => "eddsa",
                _ => "rsapss",
            }
        );
    }
}

#[test]
fn rsa_pkcs1v15_signatures_from_openssl_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let key = rsa_key(tmp.path());
    let msg = b"{\"_type\":\"Targets\"}";
    std::fs::write(tmp.path().join("msg"), msg).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(tmp.path().join("rsa.pem"))
        .arg(tmp.path().join("msg"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let sig = out.stdout;
    let public = key.public();
    public
        .verify(&tuf::SignatureMethod::RsaPkcs1v15, msg, &sig)
        .unwrap();
    // The same bytes are not a valid PSS signature, and another message fails.
    assert!(public
        .verify(&tuf::SignatureMethod::RsaPss, msg, &sig)
        .is_err());
    assert!(public
        .verify(&tuf::SignatureMethod::RsaPkcs1v15, b"other", &sig)
        .is_err());
}

#[test]
fn custom_data_is_canonicalized_before_signing() {
    // What a user might pass as --custom: unsorted keys, whitespace, characters Go escapes.
    let custom: serde_json::Value =
        serde_json::from_str(r#"{ "z": [1, 2], "a": "<b>&", "m": {"y": true, "x": null} }"#)
            .unwrap();
    let key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
    let mut t = Targets::new(now().plus_days(30), 1);
    t.targets.make_mut().unwrap().insert(
        TargetName::new("file").unwrap(),
        FileMeta {
            custom: Some(custom),
            hashes: Hashes::sha256_only([1; 32]),
            length: 3,
        },
    );
    let m = Metadata::sign("targets", t, &[SigningKey::plain(&key)]).unwrap();
    let text = String::from_utf8(m.raw().to_vec()).unwrap();
    // Sorted, compact, and HTML-escaped in the file as Go writes it.
    assert!(
        text.contains(r#""custom":{"a":"\u003cb\u003e\u0026","m":{"x":null,"y":true},"z":[1,2]}"#),
        "{text}"
    );
    // Verification re-canonicalizes from the file, as the reference does: it verifies.
    let parsed = Metadata::<Targets>::parse("targets", m.raw().to_vec()).unwrap();
    let s = &parsed.signatures()[0];
    key.public()
        .verify(&s.method, parsed.canonical().unwrap(), &s.sig)
        .unwrap();
    assert!(parsed.is_normalized());
    // Floats cannot be signed at all.
    let mut t = Targets::new(now().plus_days(30), 1);
    let float: serde_json::Value = serde_json::from_str(r#"{"ratio": 1.5}"#).unwrap();
    assert!(tuf::canonical::check_value(&float).is_err());
    t.targets.make_mut().unwrap().insert(
        TargetName::new("f").unwrap(),
        FileMeta {
            custom: Some(float),
            hashes: Hashes::sha256_only([1; 32]),
            length: 3,
        },
    );
    let err = Metadata::sign("targets", t, &[SigningKey::plain(&key)]).unwrap_err();
    assert!(err.to_string().contains("floating-point"), "{err}");
}
