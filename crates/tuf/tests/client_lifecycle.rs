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

/// Expired yesterday, renewed by its owner: a reader refuses the expired repository; the
/// owner's view (for renewal only) loads it, naming what expired, but still refuses what
/// is not validly signed or is rolled back; once the owner published fresh versions, the
/// reader reads on.
#[test]
fn an_expired_repository_is_loaded_by_its_owner_to_renew_it_then_read() {
    use notarium_tuf::client::Client;
    use notarium_tuf::Gun;
    let repo = EvilRepo::new(GUN, day(0));
    let mut spec = Spec::new(day(0));
    spec.targets_expires = day(30);
    spec.releases_expires = day(30);
    spec.snapshot_expires = day(30);
    spec.timestamp_expires = day(30);
    let mut server = MemoryRemote(repo.files(&spec));
    let mut reader = MemoryCache::default();
    let mut owner = MemoryCache::default();
    update(&mut server, &mut reader, day(0)).unwrap();
    update(&mut server, &mut owner, day(0)).unwrap();

    let late = day(31);
    let before = reader.clone();
    let e = memory::lookup(GUN, &mut server, &mut reader, late, "v1").unwrap_err();
    assert!(e.contains("expired"), "{e}");
    assert_eq!(reader, before);

    let owner_view = |server: &mut MemoryRemote, owner: &mut MemoryCache| {
        let mut c =
            Client::new(Gun::new(GUN).unwrap(), server, owner, late).accepting_expired(true);
        c.update(false).map_err(|e| e.to_string())?;
        let roles: Vec<String> = c
            .all_roles()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(r, _)| r.to_string())
            .collect();
        c.commit().map_err(|e| e.to_string())?;
        Ok::<_, String>((roles, c.warnings().to_vec()))
    };
    let (roles, warnings) = owner_view(&mut server, &mut owner).unwrap();
    assert_eq!(roles, ["targets", "targets/releases"]);
    for role in ["timestamp", "snapshot", "targets", "targets/releases"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&format!("{role}: expired")) && w.contains("renewal")),
            "{role} not named in {warnings:?}"
        );
    }
    // Expired is accepted; forged and rolled back are not.
    let mut forged = server.clone();
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let ts = notarium_tuf::Metadata::<notarium_tuf::Timestamp>::parse(
        "timestamp",
        forged.0["timestamp.json"].clone(),
    )
    .unwrap();
    forged.0.insert(
        "timestamp.json".into(),
        repo.sign_timestamp(ts.into_signed(), &stranger),
    );
    let e = owner_view(&mut forged, &mut owner).unwrap_err();
    assert!(e.contains("threshold"), "{e}");
    let mut renewed_spec = Spec::new(late).next();
    renewed_spec.timestamp_version = 5;
    update(
        &mut MemoryRemote(repo.files(&renewed_spec)),
        &mut owner,
        late,
    )
    .unwrap();
    let mut old = Spec::new(late);
    old.targets_expires = late.plus_secs(-1);
    let e = owner_view(&mut MemoryRemote(repo.files(&old)), &mut owner).unwrap_err();
    assert!(e.contains("rollback"), "{e}");

    // The owner's renewal published: the reader reads.
    server = MemoryRemote(repo.files(&renewed_spec));
    let d = memory::lookup(GUN, &mut server, &mut reader, late, "v1").unwrap();
    assert_eq!(d, notarium_testkit::evil::digest_of("one"));
}
