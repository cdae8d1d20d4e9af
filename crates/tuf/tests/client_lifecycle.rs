//! The TUF client's lifecycle rules on their own: an in-memory remote, an in-memory cache
//! and the time passed in (no network, no clock). Each test is one step in the life of a
//! repository's keys, and asserts what an honest client does and what it refuses.

#![allow(clippy::unwrap_used)]

use notarium_testkit::evil::{EvilRepo, Spec};
use notarium_testkit::memory::{self, MemoryCache, MemoryRemote};
use notarium_tuf::client::ClientError;
use notarium_tuf::{DateTime, Error};

const GUN: &str = "registry.example.com/lifecycle/app";

fn update(
    remote: &mut MemoryRemote,
    cache: &mut MemoryCache,
    now: DateTime,
) -> Result<u64, ClientError> {
    memory::update(GUN, remote, cache, now)
}

/// The same private key again (it signs under its old and its new certificate).
fn copy(k: &keys::PrivateKey) -> keys::PrivateKey {
    keys::PrivateKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap()
}

fn day(d: i64) -> DateTime {
    DateTime::from_unix_secs(1_800_000_000).plus_days(d)
}

fn expired(e: &ClientError) -> bool {
    match e {
        ClientError::Tuf(Error::Expired { .. }) => true,
        ClientError::Tuf(Error::Root { msg, .. }) => msg.contains("expired"),
        _ => false,
    }
}

/// The root renewed the day after it expired: a client whose cached root expired refuses
/// the expired repository (freeze), then walks to the renewed root (signed by the old,
/// expired certificate and the new one) and reads on.
#[test]
fn a_client_whose_cached_root_expired_updates_through_the_renewed_root() {
    let mut repo = EvilRepo::new(GUN, day(0));
    let mut server = MemoryRemote(repo.files(&Spec::new(day(0))));
    let mut alice = MemoryCache::default();
    assert_eq!(update(&mut server, &mut alice, day(0)).unwrap(), 1);

    // Ten years and a day on: root and its certificate expired yesterday. Every other
    // role is fresh, so only the root is in the way.
    let late = day(3651);
    server = MemoryRemote(repo.files(&Spec::new(late).next()));
    let e = update(&mut server, &mut alice, late).unwrap_err();
    assert!(expired(&e), "{e}");

    // Renewed: a new certificate for the same key, the new root signed under both.
    let new_cert = keys::cert::root_certificate(&repo.root_key, &repo.gun, late, 3650).unwrap();
    let old_cert = repo.root_cert.clone();
    let key = copy(&repo.root_key);
    repo.push_root(
        |r| notarium_tuf::edit::set_root_role(r, "root", std::slice::from_ref(&new_cert), 1),
        &[(&old_cert, &key), (&new_cert, &key)],
        late,
    );
    server = MemoryRemote(repo.files(&Spec::new(late).next()));
    assert_eq!(update(&mut server, &mut alice, late).unwrap(), 2);
    // A new client starts from the renewed root directly.
    assert_eq!(
        update(&mut server, &mut MemoryCache::default(), late).unwrap(),
        2
    );
}

/// Three renewals in a row, and a client that skipped them: it walks v1 → v4, each step
/// signed by its predecessor; a gap in the chain is refused.
#[test]
fn a_client_that_skipped_several_roots_walks_the_chain() {
    let mut repo = EvilRepo::new(GUN, day(0));
    let mut server = MemoryRemote(repo.files(&Spec::new(day(0))));
    let mut bob = MemoryCache::default();
    update(&mut server, &mut bob, day(0)).unwrap();
    let mut certs = vec![repo.root_cert.clone()];
    for n in 1..=3 {
        let now = day(100 * n);
        let cert = keys::cert::root_certificate(&repo.root_key, &repo.gun, now, 3650).unwrap();
        let key = copy(&repo.root_key);
        let prev = certs.last().unwrap().clone();
        repo.push_root(
            |r| notarium_tuf::edit::set_root_role(r, "root", std::slice::from_ref(&cert), 1),
            &[(&prev, &key), (&cert, &key)],
            now,
        );
        certs.push(cert);
    }
    let now = day(301);
    let mut files = repo.files(&Spec::new(now).next());
    // Version 3 missing: the chain is broken, nothing moves.
    let v3 = files.remove("3.root.json").unwrap();
    let mut broken = MemoryRemote(files.clone());
    let e = update(&mut broken, &mut bob, now).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    files.insert("3.root.json".into(), v3);
    server = MemoryRemote(files);
    assert_eq!(update(&mut server, &mut bob, now).unwrap(), 4);
}

/// A timestamp past its expiry is never accepted (freeze), and the renewed one is: the
/// rule the server's own renewal (before expiry, with or without a read) serves.
#[test]
fn an_expired_timestamp_is_refused_and_its_renewal_read() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = MemoryRemote(repo.files(&Spec::new(day(0))));
    let mut carol = MemoryCache::default();
    update(&mut server, &mut carol, day(0)).unwrap();
    // Fifteen days on, the same 14-day timestamp: refused, the cache untouched.
    let before = carol.0.clone();
    let e = update(&mut server, &mut carol, day(15)).unwrap_err();
    assert!(
        matches!(&e, ClientError::Tuf(Error::Expired { role, .. }) if role == "timestamp"),
        "{e}"
    );
    assert_eq!(carol.0, before);
    // Renewed (a higher version, a new expiry): read.
    let mut spec = Spec::new(day(15));
    spec.timestamp_version = 2;
    server = MemoryRemote(repo.files(&spec));
    update(&mut server, &mut carol, day(15)).unwrap();
}
