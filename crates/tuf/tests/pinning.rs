//! Root pinning by CA: a root certificate issued under a pinned CA (directly, or through
//! an intermediate in the key's own chain) is pinned; one under another CA, a self-signed
//! one, or a chain whose links do not verify is not.

#![allow(clippy::unwrap_used)]

use notarium_tuf::verify::Pinning;
use notarium_tuf::{KeyType, PublicKey};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn issued(cn: &str, by: &Ca, is_ca: bool) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    Ca {
        cert: p.signed_by(&key, &by.cert, &by.key).unwrap(),
        key,
    }
}

/// A root key as root.json carries it: the PEM chain, leaf first.
fn root_key(chain: &[&Ca]) -> PublicKey {
    let pem: String = chain.iter().map(|c| c.cert.pem()).collect();
    PublicKey::new(KeyType::EcdsaX509, pem.into_bytes())
}

fn pinned_to(cas: &[&Ca]) -> Pinning {
    Pinning {
        ca_certs: cas.iter().map(|c| c.cert.der().to_vec()).collect(),
        ..Default::default()
    }
}

#[test]
fn a_root_certificate_under_a_pinned_ca_is_pinned() {
    let corp = ca("corp root CA");
    let leaf = issued("registry.example.com/corp/app", &corp, false);
    assert!(pinned_to(&[&corp]).allows(&root_key(&[&leaf])));
    // Through an intermediate carried in the key's chain.
    let mid = issued("corp intermediate", &corp, true);
    let leaf2 = issued("registry.example.com/corp/app", &mid, false);
    assert!(pinned_to(&[&corp]).allows(&root_key(&[&leaf2, &mid])));
}

#[test]
fn another_ca_a_self_signed_root_or_a_broken_chain_is_not() {
    let corp = ca("corp root CA");
    let evil = ca("corp root CA"); // same name, another key
    let leaf = issued("registry.example.com/corp/app", &evil, false);
    assert!(!pinned_to(&[&corp]).allows(&root_key(&[&leaf])));
    // A self-signed leaf with the CA's name is not the CA.
    let fake = ca("registry.example.com/corp/app");
    assert!(!pinned_to(&[&corp]).allows(&root_key(&[&fake])));
    // An intermediate that the leaf does not chain to does not help.
    let mid = issued("corp intermediate", &corp, true);
    let stray = issued("registry.example.com/corp/app", &evil, false);
    assert!(!pinned_to(&[&corp]).allows(&root_key(&[&stray, &mid])));
    // A leaf certificate is never a CA, even when pinned as one.
    let leaf_ca = issued("registry.example.com/corp/other", &corp, false);
    let under_leaf = issued("registry.example.com/corp/app", &leaf_ca, false);
    assert!(!pinned_to(&[&leaf_ca]).allows(&root_key(&[&under_leaf])));
    // No CA and no key IDs: nothing is pinned.
    assert!(!Pinning::default().allows(&root_key(&[&leaf])));
}
