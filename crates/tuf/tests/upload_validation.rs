//! The trust server's validation of an upload, at the tuf crate level: the stored state,
//! the uploaded files and the keys the server holds go in, the files to write (or the
//! reason the upload is refused) come out, at a time passed in. No HTTP, no storage; each
//! test is named after the attack or the lifecycle step it checks. (The same rules are
//! checked over HTTP in `crates/server/tests/attacks.rs`.)

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use notarium_testkit::evil::{EvilRepo, Spec};
use notarium_tuf::sign::{Sign, SigningKey};
use notarium_tuf::upload::{self, HeldKeys, Limits, Plan, Stored};
use notarium_tuf::{edit, DateTime, Gun, Metadata, RoleName, Targets};

const GUN: &str = "registry.example.com/uploads/app";

fn day(d: i64) -> DateTime {
    DateTime::from_unix_secs(1_800_000_000).plus_days(d)
}

fn same_key(k: &keys::PrivateKey) -> keys::PrivateKey {
    keys::PrivateKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap()
}

/// A trust server's view of one repository: what it stores and the keys it holds
/// (snapshot and timestamp, as a default Notary server).
struct Server {
    gun: Gun,
    stored: Stored,
    held: HeldKeys,
}

impl Server {
    /// A server holding `repo`'s snapshot and timestamp keys, the repository created
    /// (root, targets, targets/releases at version 1) at `day(0)`.
    fn new(repo: &EvilRepo) -> Self {
        let gun = Gun::new(GUN).unwrap();
        let mut held = HeldKeys::new();
        for k in [&repo.snapshot_key, &repo.timestamp_key] {
            held.insert(k.id().clone(), Arc::new(same_key(k)) as Arc<dyn Sign>);
        }
        let stored = Stored::new(&gun, None, None, None, day(0)).unwrap();
        let mut s = Server { gun, stored, held };
        let spec = Spec::new(day(0));
        let first = vec![
            ("root.json".into(), repo.root().raw().to_vec()),
            ("targets.json".into(), targets(repo, &spec)),
            ("targets/releases.json".into(), releases(repo, &spec)),
        ];
        let plan = s.upload(first, day(0)).unwrap();
        let roles: Vec<&str> = plan.writes.iter().map(|w| w.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "root",
                "targets",
                "targets/releases",
                "snapshot",
                "timestamp"
            ]
        );
        s
    }

    /// Validate an upload at `now`; a valid one becomes the stored state.
    fn upload(&mut self, parts: Vec<(String, Vec<u8>)>, now: DateTime) -> Result<Plan, String> {
        let parsed = upload::parse_parts(parts).map_err(|e| e.to_string())?;
        let plan = upload::validate(
            &self.gun,
            &self.stored,
            parsed,
            &self.held,
            now,
            &Limits::default(),
        )
        .map_err(|e| e.to_string())?;
        self.stored = plan.next.clone();
        Ok(plan)
    }

    /// An upload that must be refused with every one of `words` in the reason (the stored
    /// state stays as it was: `validate` only reads it).
    fn refused(&mut self, parts: Vec<(String, Vec<u8>)>, now: DateTime, words: &[&str]) {
        let e = self
            .upload(parts, now)
            .err()
            .expect("the upload was accepted");
        for w in words {
            assert!(e.contains(w), "{w:?} not in: {e}");
        }
    }
}

fn sign(role: &str, body: Targets, keys: &[&keys::PrivateKey]) -> Vec<u8> {
    let signers: Vec<SigningKey<'_>> = keys.iter().map(|k| SigningKey::plain(*k)).collect();
    Metadata::sign(role, body, &signers).unwrap().raw().to_vec()
}

fn targets(repo: &EvilRepo, spec: &Spec) -> Vec<u8> {
    sign("targets", repo.targets_body(spec), &[&repo.targets_key])
}

fn releases(repo: &EvilRepo, spec: &Spec) -> Vec<u8> {
    sign(
        "targets/releases",
        repo.releases_body(spec),
        &[&repo.releases_key],
    )
}

fn part(role: &str, bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    vec![(format!("{role}.json"), bytes)]
}

/// Release version `v`, tag v1 → `seed`, expiring in 1000 days from `now`.
fn release(v: u64, seed: &str, now: DateTime) -> Spec {
    let mut s = Spec::new(now);
    s.releases_version = v;
    s.tags = vec![("v1".into(), seed.into())];
    s
}

#[test]
fn a_signed_update_is_accepted_and_the_server_signs_snapshot_and_timestamp() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let plan = server
        .upload(
            part(
                "targets/releases",
                releases(&repo, &release(2, "two", day(1))),
            ),
            day(1),
        )
        .unwrap();
    let written: Vec<(&str, u64)> = plan
        .writes
        .iter()
        .map(|w| (w.role.as_str(), w.version))
        .collect();
    assert_eq!(
        written,
        [("targets/releases", 2), ("snapshot", 2), ("timestamp", 2)]
    );
    let ts = server.stored.timestamp.as_ref().unwrap().signed();
    assert_eq!(ts.expires, day(1).to_utc().plus_days(14));
}

#[test]
fn rollback_and_replay_are_refused() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    server
        .upload(
            part(
                "targets/releases",
                releases(&repo, &release(2, "two", day(1))),
            ),
            day(1),
        )
        .unwrap();
    // Version 1 again (validly signed): a replay of the past.
    server.refused(
        part(
            "targets/releases",
            releases(&repo, &release(1, "one", day(1))),
        ),
        day(1),
        &[
            "targets/releases",
            "version 1 is not newer than the stored version 2",
        ],
    );
    // The same version with other content.
    server.refused(
        part(
            "targets/releases",
            releases(&repo, &release(2, "evil", day(1))),
        ),
        day(1),
        &["version 2 is not newer"],
    );
}

#[test]
fn fast_forward_is_refused() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    server.refused(
        part(
            "targets/releases",
            releases(&repo, &release(1002, "two", day(1))),
        ),
        day(1),
        &["targets/releases", "jumps more than 1000", "fast-forward"],
    );
    // At the bound: accepted.
    server
        .upload(
            part(
                "targets/releases",
                releases(&repo, &release(1001, "two", day(1))),
            ),
            day(1),
        )
        .unwrap();
}

#[test]
fn a_key_the_role_does_not_list_is_refused() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let body = repo.releases_body(&release(2, "evil", day(1)));
    server.refused(
        part(
            "targets/releases",
            sign("targets/releases", body, &[&stranger]),
        ),
        day(1),
        &["targets/releases", "threshold is 1"],
    );
    // Key compromise: the server's own timestamp key cannot sign targets.
    let spec = Spec::new(day(1)).next();
    let body = repo.targets_body(&spec);
    server.refused(
        part("targets", sign("targets", body, &[&repo.timestamp_key])),
        day(1),
        &["targets", "threshold is 1"],
    );
}

#[test]
fn a_delegation_below_its_threshold_is_refused() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    // targets/releases becomes 2-of-3.
    let signers: Vec<keys::PrivateKey> = (0..3)
        .map(|_| keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap())
        .collect();
    let mut t = Targets::new(day(1).plus_days(1000), 2);
    let publics: Vec<_> = signers.iter().map(|k| k.public().clone()).collect();
    edit::add_delegation(
        &mut t,
        &RoleName::new("targets/releases").unwrap(),
        &publics,
        2,
        &["".to_owned()],
    );
    server
        .upload(
            part("targets", sign("targets", t, &[&repo.targets_key])),
            day(1),
        )
        .unwrap();
    let body = repo.releases_body(&release(2, "two", day(1)));
    // One signature, or one key twice: below the threshold.
    for keys in [vec![&signers[0]], vec![&signers[1], &signers[1]]] {
        server.refused(
            part(
                "targets/releases",
                sign("targets/releases", body.clone(), &keys),
            ),
            day(1),
            &["targets/releases", "threshold is 2"],
        );
    }
    // Two of the three: accepted.
    server
        .upload(
            part(
                "targets/releases",
                sign("targets/releases", body, &[&signers[0], &signers[2]]),
            ),
            day(1),
        )
        .unwrap();
}

#[test]
fn a_delegation_may_sign_only_its_paths() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let mut t = Targets::new(day(1).plus_days(1000), 2);
    edit::add_delegation(
        &mut t,
        &RoleName::new("targets/releases").unwrap(),
        &[repo.releases_key.public().clone()],
        1,
        &["stable-".to_owned()],
    );
    server
        .upload(
            part("targets", sign("targets", t, &[&repo.targets_key])),
            day(1),
        )
        .unwrap();
    server.refused(
        part(
            "targets/releases",
            releases(&repo, &release(2, "two", day(1))),
        ),
        day(1),
        &["targets/releases", "v1"],
    );
}

#[test]
fn expired_uploads_are_refused() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let mut spec = release(2, "two", day(0));
    spec.releases_expires = day(5);
    server.refused(
        part("targets/releases", releases(&repo, &spec)),
        day(6),
        &["targets/releases", "expired"],
    );
}

#[test]
fn a_root_rotation_needs_the_previous_root_key() {
    let mut repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let gun = Gun::new(GUN).unwrap();
    let new_key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let new_cert = keys::cert::root_certificate(&new_key, &gun, day(1), 3650).unwrap();
    let c = new_cert.clone();
    // Signed by the new key alone: refused.
    let mut evil = EvilRepo::new(GUN, day(0));
    evil.roots = repo.roots.clone();
    evil.push_root(
        |r| edit::set_root_role(r, "root", std::slice::from_ref(&c), 1),
        &[(&new_cert, &new_key)],
        day(1),
    );
    server.refused(
        part("root", evil.root().raw().to_vec()),
        day(1),
        &["ErrBadRoot"],
    );
    // Signed by the old and the new key: accepted, and the old key no longer signs.
    let (old_cert, old_key) = (repo.root_cert.clone(), same_key(&repo.root_key));
    let c = new_cert.clone();
    repo.push_root(
        |r| edit::set_root_role(r, "root", std::slice::from_ref(&c), 1),
        &[(&old_cert, &old_key), (&new_cert, &new_key)],
        day(1),
    );
    server
        .upload(part("root", repo.root().raw().to_vec()), day(1))
        .unwrap();
    let c = old_cert.clone();
    repo.push_root(
        |r| edit::set_root_role(r, "root", std::slice::from_ref(&c), 1),
        &[(&old_cert, &old_key)],
        day(1),
    );
    server.refused(
        part("root", repo.root().raw().to_vec()),
        day(1),
        &["ErrBadRoot"],
    );
}

/// The server never serves an expired timestamp while it holds the key: `refresh` renews
/// one about to expire (and an expired one) with a higher version; without the key there
/// is nothing it can do, and it says so.
#[test]
fn an_expiring_timestamp_is_renewed_by_the_server_that_holds_its_key() {
    let repo = EvilRepo::new(GUN, day(0));
    let mut server = Server::new(&repo);
    let limits = Limits::default();
    // Fresh: nothing to do.
    assert!(
        upload::refresh(&server.stored, &server.held, day(1), &limits, 3600)
            .unwrap()
            .is_none()
    );
    for at in [day(14).plus_secs(-600), day(40)] {
        let plan = upload::refresh(&server.stored, &server.held, at, &limits, 3600)
            .unwrap()
            .expect("an expiring timestamp is renewed");
        let before = server.stored.timestamp.as_ref().unwrap().signed().version;
        server.stored = plan.next;
        let ts = server.stored.timestamp.as_ref().unwrap().signed();
        assert_eq!(ts.version, before + 1);
        assert!(ts.expires > at.plus_days(13));
    }
    server.held.clear();
    let e = upload::refresh(&server.stored, &server.held, day(60), &limits, 3600)
        .err()
        .expect("renewed without the key");
    assert!(e.to_string().contains("timestamp"), "{e}");
}
