//! Every validation rule and attack the trust server must refuse: each test asserts the
//! HTTP status, the error code (and validation kind) the docker CLI would see, and that the
//! repository's stored state did not change.

#![allow(clippy::unwrap_used)]

use notarium_testkit::repo::digest;
use notarium_testkit::server::Answer;
use notarium_testkit::{TestRepo, TestServer};
use tuf::edit;
use tuf::metadata::Metadata;
use tuf::sign::SigningKey;
use tuf::{RoleName, Targets};

const GUN: &str = "registry.example.com/attack/repo";

/// Everything a client can read about a repository: current files and the changefeed.
fn state(s: &TestServer, gun: &str) -> Vec<(String, u16, Vec<u8>)> {
    let mut out = Vec::new();
    for f in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "targets/releases.json",
        "targets/alice.json",
        "1.root.json",
        "2.root.json",
    ] {
        let a = s.get_file(gun, f);
        out.push((f.to_owned(), a.status, a.body));
    }
    let feed = s.get(&format!("/v2/{gun}/_trust/changefeed?records=1000"));
    out.push(("changefeed".into(), feed.status, feed.body));
    out
}

/// A published repository with delegations `releases` and `alice`, and one signed tag.
fn setup() -> (TestServer, TestRepo) {
    let s = TestServer::start();
    let mut repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    repo.add_delegation("releases");
    let targets = repo.add_delegation("alice");
    let rel = repo.sign_target("targets/releases", "v1", digest("v1"), 100);
    let a = s.post_parts(GUN, &[("targets", &targets), ("targets/releases", &rel)]);
    assert_eq!(a.status, 200, "{}", a.text());
    (s, repo)
}

fn assert_refused(
    s: &TestServer,
    a: &Answer,
    before: &[(String, u16, Vec<u8>)],
    status: u16,
    code: &str,
    detail: Option<&str>,
) {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.code(), code, "{}", a.text());
    if let Some(d) = detail {
        assert_eq!(a.detail_name(), d, "{}", a.text());
    }
    assert!(
        a.body.ends_with(b"}\n"),
        "error envelope ends with a newline"
    );
    assert_eq!(
        state(s, GUN),
        before,
        "stored state changed after a refused update"
    );
}

fn next_release(repo: &TestRepo, change: impl FnOnce(&mut Targets)) -> Targets {
    let mut t = repo.delegations[&RoleName::new("targets/releases").unwrap()]
        .signed()
        .clone();
    change(&mut t);
    t
}

fn sign_with(role: &str, body: Targets, key: &keys::PrivateKey) -> Vec<u8> {
    Metadata::sign(role, body, &[SigningKey::plain(key)])
        .unwrap()
        .raw()
        .to_vec()
}

#[test]
fn valid_updates_are_accepted() {
    let (s, mut repo) = setup();
    let before = state(&s, GUN);
    let rel = repo.sign_target("targets/releases", "v2", digest("v2"), 200);
    let a = s.post_parts(GUN, &[("targets/releases", &rel)]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(state(&s, GUN), before);
    // The server signed a new snapshot listing the new delegation file, and a timestamp.
    let snap: serde_json::Value = s.get_file(GUN, "snapshot.json").json();
    let meta = &snap["signed"]["meta"]["targets/releases"];
    assert_eq!(meta["length"].as_u64().unwrap() as usize, rel.len());
    // The file is served by name, by checksum and by version, byte for byte.
    assert_eq!(s.get_file(GUN, "targets/releases.json").body, rel);
    let sha = tuf::hash::sha256_hex(&rel);
    assert_eq!(
        s.get_file(GUN, &format!("targets/releases.{sha}.json"))
            .body,
        rel
    );
    assert_eq!(
        s.get_file(
            GUN,
            &format!("targets/releases.{}.json", sha.to_uppercase())
        )
        .body,
        rel
    );
    assert_eq!(s.get_file(GUN, "2.targets/releases.json").body, rel);
}

#[test]
fn forged_signature_is_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    let body = next_release(&repo, |t| {
        t.version += 1;
        edit::add_target(
            t,
            tuf::TargetName::new("evil").unwrap(),
            edit::docker_target(digest("evil"), 1),
        )
        .unwrap();
    });
    let impostor = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let forged = sign_with("targets/releases", body.clone(), &impostor);
    let a = s.post_parts(GUN, &[("targets/releases", &forged)]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );

    // A genuine signature with its keyid relabelled to the delegated key: still invalid.
    let m = Metadata::<Targets>::parse("targets/releases", forged).unwrap();
    let mut sigs = m.signatures().to_vec();
    sigs[0].keyid = repo
        .targets
        .signed()
        .delegations
        .role("targets/releases")
        .unwrap()
        .keyids[0]
        .clone();
    let relabelled = tuf::metadata::envelope(m.canonical().unwrap(), &sigs);
    let a = s.post_parts(GUN, &[("targets/releases", &relabelled)]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );

    // One flipped bit in a real signature.
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    let good = Metadata::sign("targets/releases", body, &[SigningKey::plain(key)]).unwrap();
    let mut sigs = good.signatures().to_vec();
    sigs[0].sig[10] ^= 1;
    let a = s.post_parts(
        GUN,
        &[(
            "targets/releases",
            &tuf::metadata::envelope(good.canonical().unwrap(), &sigs),
        )],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
}

#[test]
fn rollback_and_replay_are_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    // Replaying the stored version.
    let current = repo.delegations[&RoleName::new("targets/releases").unwrap()]
        .raw()
        .to_vec();
    let a = s.post_parts(GUN, &[("targets/releases", &current)]);
    assert_refused(&s, &a, &before, 400, "VERSION", None);
    // A properly signed older version.
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    let body = next_release(&repo, |t| t.version = 0);
    let a = s.post_parts(
        GUN,
        &[(
            "targets/releases",
            &sign_with("targets/releases", body, key),
        )],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    // Replaying the first root.
    let a = s.post_parts(GUN, &[("root", repo.root.raw())]);
    assert_refused(&s, &a, &before, 400, "VERSION", None);
}

#[test]
fn version_overflow_and_fast_forward_are_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    for v in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX, 1_000_000] {
        let body = next_release(&repo, |t| t.version = v);
        let a = s.post_parts(
            GUN,
            &[(
                "targets/releases",
                &sign_with("targets/releases", body, key),
            )],
        );
        assert_refused(
            &s,
            &a,
            &before,
            400,
            "INVALID_UPDATE",
            Some("ErrBadTargets"),
        );
    }
    // A version that does not fit 64 bits is not even JSON we accept.
    let text = String::from_utf8(
        repo.delegations[&RoleName::new("targets/releases").unwrap()]
            .raw()
            .to_vec(),
    )
    .unwrap();
    let huge = text.replacen("\"version\":1", "\"version\":99999999999999999999999", 1);
    let a = s.post_parts(GUN, &[("targets/releases", huge.as_bytes())]);
    assert_refused(&s, &a, &before, 400, "MALFORMED_JSON", None);
}

#[test]
fn unsigned_and_unknown_fields_are_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    let good = sign_with(
        "targets/releases",
        next_release(&repo, |t| t.version += 1),
        key,
    );
    let text = String::from_utf8(good.clone()).unwrap();
    // TUF-01-001: an unsigned top-level field next to "signed" and "signatures".
    let extra = format!("{},\"extra\":\"x\"}}", &text[..text.len() - 1]);
    let a = s.post_parts(GUN, &[("targets/releases", extra.as_bytes())]);
    assert_refused(&s, &a, &before, 400, "MALFORMED_JSON", None);
    // Whitespace after the JSON value.
    let a = s.post_parts(GUN, &[("targets/releases", format!("{text}\n").as_bytes())]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    // A signed but unknown field: the signature is fine, the file is not what Notary writes.
    let m = Metadata::<Targets>::parse("x", good).unwrap();
    let canon = String::from_utf8(m.canonical().unwrap().to_vec()).unwrap();
    let with_field = canon.replacen("\"version\":", "\"zzz\":1,\"version\":", 1);
    let with_field = tuf::canonical::canonicalize(with_field.as_bytes()).unwrap();
    let sig = tuf::sign::Sign::sign(key, &with_field).unwrap();
    let sigs = vec![tuf::Signature {
        keyid: key.id().clone(),
        method: tuf::SignatureMethod::Ecdsa,
        sig,
    }];
    let a = s.post_parts(
        GUN,
        &[(
            "targets/releases",
            &tuf::metadata::envelope(&with_field, &sigs),
        )],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    // A float anywhere.
    let floaty = text.replacen("\"length\":100", "\"length\":100.5", 1);
    let a = s.post_parts(GUN, &[("targets/releases", floaty.as_bytes())]);
    assert_refused(&s, &a, &before, 400, "MALFORMED_JSON", None);
}

#[test]
fn hostile_repository_names_are_refused() {
    let (s, _repo) = setup();
    let before = state(&s, GUN);
    for gun in [
        "../../../../tmp/x",
        "a//b",
        "a/./b",
        "a/../b",
        "a/b%00c",
        "a/b%0Ac",
        "a/_trust/b",
        "a/B%C3%A4d",
        "-a/b",
        "a/b%2F..%2F..%2Fc",
    ] {
        let (ct, body) = notarium_testkit::server::multipart(&[("root", b"{}")]);
        let a = s.raw_path_request("POST", &format!("/v2/{gun}/_trust/tuf/"), Some((&ct, body)));
        assert_eq!(a.status, 400, "{gun}: {}", a.text());
        assert_eq!(a.code(), "INVALID_GUN", "{gun}");
        let g = s.raw_path_request("GET", &format!("/v2/{gun}/_trust/tuf/root.json"), None);
        assert_eq!(g.status, 404, "{gun}");
        let d = s.raw_path_request("DELETE", &format!("/v2/{gun}/_trust/tuf/"), None);
        assert_eq!(d.status, 400, "{gun}");
    }
    let long = format!("h/{}", "a".repeat(300));
    assert_eq!(
        s.post_parts(&long, &[("root", b"{}")]).code(),
        "INVALID_GUN"
    );
    assert_eq!(state(&s, GUN), before);
    // Nothing escaped the data directory.
    assert!(!std::path::Path::new("/tmp/x").exists());
}

#[test]
fn oversized_bodies_are_refused() {
    let s = TestServer::start_with(notarium_testkit::server::Options {
        configure: Box::new(|c| c.max_upload_bytes = 64 * 1024),
        ..Default::default()
    });
    let repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    let before = state(&s, GUN);
    let big = vec![b'x'; 200 * 1024];
    let a = s.post_parts(GUN, &[("targets", &big)]);
    assert_refused(&s, &a, &before, 413, "MALFORMED_UPLOAD", None);
    // Also when the client does not announce the length (chunked).
    let (ct, body) = notarium_testkit::server::multipart(&[("targets", &big)]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let pem = std::fs::read(s.ca.as_ref().unwrap()).unwrap();
        let c = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        c.post(format!("{}/v2/{GUN}/_trust/tuf/", s.url))
            .header("Content-Type", ct)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 413);
    assert_eq!(state(&s, GUN), before);
}

#[test]
fn wrong_role_in_a_part_is_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    let rel = repo.delegations[&RoleName::new("targets/releases").unwrap()]
        .raw()
        .to_vec();
    // A root file under the targets name: wrong _type.
    let a = s.post_parts(GUN, &[("targets", repo.root.raw())]);
    assert_refused(&s, &a, &before, 400, "MALFORMED_JSON", None);
    // Names that are not roles.
    for name in [
        "releases",
        "targets/../root",
        "Targets",
        "targets/",
        "targets//x",
        "foo",
    ] {
        let a = s.post_parts(GUN, &[(name, &rel)]);
        assert_refused(&s, &a, &before, 400, "INVALID_ROLE", None);
    }
    // A delegation file uploaded under another delegation's name: signed by the wrong key.
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    let body = next_release(&repo, |t| t.version = 2);
    let a = s.post_parts(
        GUN,
        &[("targets/alice", &sign_with("targets/alice", body, key))],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    // A delegation nobody delegated.
    let a = s.post_parts(GUN, &[("targets/mallory", &rel)]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    // No filename at all.
    let body =
        b"--b\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\n{}\r\n--b--\r\n".to_vec();
    let a = s.post_raw(GUN, "multipart/form-data; boundary=b", body);
    assert_refused(&s, &a, &before, 400, "NO_FILENAME", None);
    // Not multipart.
    let a = s.post_raw(GUN, "application/json", rel.clone());
    assert_refused(&s, &a, &before, 400, "MALFORMED_UPLOAD", None);
    // Truncated multipart.
    let (ct, body) = notarium_testkit::server::multipart(&[("targets/releases", &rel)]);
    let a = s.post_raw(GUN, &ct, body[..body.len() / 2].to_vec());
    assert_refused(&s, &a, &before, 400, "MALFORMED_UPLOAD", None);
    // Not JSON.
    let a = s.post_parts(GUN, &[("targets/releases", b"\x00\x01not json")]);
    assert_refused(&s, &a, &before, 400, "MALFORMED_JSON", None);
}

#[test]
fn delegations_may_only_sign_their_paths() {
    let (s, mut repo) = setup();
    let role = RoleName::new("targets/scoped").unwrap();
    let key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let public = key.public().clone();
    let targets = repo
        .edit_targets(|t| edit::add_delegation(t, &role, &[public], 1, &["team-a/".to_owned()]));
    assert_eq!(s.post_parts(GUN, &[("targets", &targets)]).status, 200);
    let before = state(&s, GUN);
    let mut body = Targets::new(repo.now.plus_days(30), 1);
    edit::add_target(
        &mut body,
        tuf::TargetName::new("team-b/app").unwrap(),
        edit::docker_target(digest("x"), 1),
    )
    .unwrap();
    let a = s.post_parts(
        GUN,
        &[("targets/scoped", &sign_with("targets/scoped", body, &key))],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    let mut body = Targets::new(repo.now.plus_days(30), 1);
    edit::add_target(
        &mut body,
        tuf::TargetName::new("team-a/app").unwrap(),
        edit::docker_target(digest("x"), 1),
    )
    .unwrap();
    assert_eq!(
        s.post_parts(
            GUN,
            &[("targets/scoped", &sign_with("targets/scoped", body, &key))]
        )
        .status,
        200
    );
}

#[test]
fn threshold_counts_distinct_keys() {
    let (s, mut repo) = setup();
    let role = RoleName::new("targets/two").unwrap();
    let k1 = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let k2 = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let (p1, p2) = (k1.public().clone(), k2.public().clone());
    let targets =
        repo.edit_targets(|t| edit::add_delegation(t, &role, &[p1, p2], 2, &["".to_owned()]));
    assert_eq!(s.post_parts(GUN, &[("targets", &targets)]).status, 200);
    let before = state(&s, GUN);
    let body = Targets::new(repo.now.plus_days(30), 1);
    // One key, signing twice, is still one key.
    let once = Metadata::sign(
        "targets/two",
        body.clone(),
        &[SigningKey::plain(&k1), SigningKey::plain(&k1)],
    )
    .unwrap();
    assert_eq!(once.signatures().len(), 2);
    let a = s.post_parts(GUN, &[("targets/two", once.raw())]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    assert!(a.text().contains("threshold is 2"), "{}", a.text());
    let both = Metadata::sign(
        "targets/two",
        body,
        &[SigningKey::plain(&k1), SigningKey::plain(&k2)],
    )
    .unwrap();
    assert_eq!(
        s.post_parts(GUN, &[("targets/two", both.raw())]).status,
        200
    );
}

#[test]
fn expired_metadata_is_refused() {
    let (s, repo) = setup();
    let before = state(&s, GUN);
    let key = &repo.delegation_keys[&RoleName::new("targets/releases").unwrap()];
    let body = next_release(&repo, |t| {
        t.version += 1;
        t.expires = repo.now.plus_secs(-60);
    });
    let a = s.post_parts(
        GUN,
        &[(
            "targets/releases",
            &sign_with("targets/releases", body, key),
        )],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    assert!(a.text().contains("expired"), "{}", a.text());
}

#[test]
fn root_rules() {
    let (s, mut repo) = setup();
    let before = state(&s, GUN);
    // Skipping a version.
    let mut r = repo.root.signed().clone();
    r.version = 3;
    let skip = Metadata::sign(
        "root",
        r,
        &[SigningKey::listed(&repo.root_cert, &repo.root_key)],
    )
    .unwrap();
    let a = s.post_parts(GUN, &[("root", skip.raw())]);
    assert_refused(&s, &a, &before, 400, "INVALID_UPDATE", Some("ErrBadRoot"));
    assert!(
        a.text().contains("must increment the version"),
        "{}",
        a.text()
    );

    // A rotation to a new root key not signed by the old one (key compromise of nothing).
    let gun = tuf::Gun::new(GUN).unwrap();
    let new_key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let new_cert = keys::cert::root_certificate(&new_key, &gun, repo.now, 3650).unwrap();
    let mut r = repo.root.signed().clone();
    r.version = 2;
    edit::set_root_role(&mut r, "root", std::slice::from_ref(&new_cert), 1);
    let only_new = Metadata::sign(
        "root",
        r.clone(),
        &[SigningKey::listed(&new_cert, &new_key)],
    )
    .unwrap();
    let a = s.post_parts(GUN, &[("root", only_new.raw())]);
    assert_refused(&s, &a, &before, 400, "INVALID_UPDATE", Some("ErrBadRoot"));
    assert!(a.text().contains("previous root"), "{}", a.text());

    // A root certificate for another repository.
    let other = tuf::Gun::new("registry.example.com/other/repo").unwrap();
    let wrong_cert = keys::cert::root_certificate(&new_key, &other, repo.now, 3650).unwrap();
    let mut r2 = repo.root.signed().clone();
    r2.version = 2;
    edit::set_root_role(&mut r2, "root", std::slice::from_ref(&wrong_cert), 1);
    let wrong = Metadata::sign(
        "root",
        r2,
        &[
            SigningKey::listed(&wrong_cert, &new_key),
            SigningKey::listed(&repo.root_cert, &repo.root_key),
        ],
    )
    .unwrap();
    let a = s.post_parts(GUN, &[("root", wrong.raw())]);
    assert_refused(&s, &a, &before, 400, "INVALID_UPDATE", Some("ErrBadRoot"));

    // Properly signed by old and new: accepted, and the chain is served by version.
    let both = Metadata::sign(
        "root",
        r,
        &[
            SigningKey::listed(&new_cert, &new_key),
            SigningKey::listed(&repo.root_cert, &repo.root_key),
        ],
    )
    .unwrap();
    let a = s.post_parts(GUN, &[("root", both.raw())]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(s.get_file(GUN, "1.root.json").body, repo.root.raw());
    assert_eq!(s.get_file(GUN, "2.root.json").body, both.raw());
    repo.root = both;
}

#[test]
fn new_repository_needs_a_root_and_a_valid_first_update() {
    let s = TestServer::start();
    let repo = TestRepo::new(&s, GUN);
    let before = state(&s, GUN);
    let a = s.post_parts(GUN, &[("targets", repo.targets.raw())]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrValidation"),
    );
    let a = s.post_parts(GUN, &[("root", repo.root.raw())]);
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadHierarchy"),
    );
    // A root whose timestamp key the server does not hold.
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ed25519).unwrap();
    let alien = TestRepo::with_keys(
        GUN,
        vec![s.server_key(GUN, "snapshot")],
        vec![stranger.public().clone()],
    );
    let parts = alien.init_parts();
    let a = s.post_parts(GUN, &[(parts[0].0, &parts[0].1), (parts[1].0, &parts[1].1)]);
    assert_refused(&s, &a, &before, 400, "INVALID_UPDATE", Some("ErrBadRoot"));
    assert!(
        a.text().contains("no  timestamp keys exist on the server"),
        "{}",
        a.text()
    );
    // Empty uploads and timestamp-only uploads change nothing and succeed.
    let a = s.post_raw(
        GUN,
        "multipart/form-data; boundary=b",
        b"--b--\r\n".to_vec(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let a = s.post_parts(GUN, &[("timestamp", b"{}")]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(state(&s, GUN), before);
}

#[test]
fn client_snapshot_must_match_what_it_describes() {
    let s = TestServer::start();
    // A repository with a client-held snapshot key (`notary init` style).
    let snap_key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let repo = TestRepo::with_keys(
        GUN,
        vec![snap_key.public().clone()],
        vec![s.server_key(GUN, "timestamp")],
    );
    let mut snap = tuf::Snapshot::new(repo.now.plus_days(30), 1);
    snap.meta.insert(
        RoleName::root(),
        tuf::FileMeta::for_metadata(repo.root.raw()),
    );
    snap.meta.insert(
        RoleName::targets(),
        tuf::FileMeta::for_metadata(b"not the targets file"),
    );
    let bad = Metadata::sign("snapshot", snap.clone(), &[SigningKey::plain(&snap_key)]).unwrap();
    let before = state(&s, GUN);
    let a = s.post_parts(
        GUN,
        &[
            ("root", repo.root.raw()),
            ("targets", repo.targets.raw()),
            ("snapshot", bad.raw()),
        ],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadSnapshot"),
    );
    snap.meta.insert(
        RoleName::targets(),
        tuf::FileMeta::for_metadata(repo.targets.raw()),
    );
    let good = Metadata::sign("snapshot", snap, &[SigningKey::plain(&snap_key)]).unwrap();
    let a = s.post_parts(
        GUN,
        &[
            ("root", repo.root.raw()),
            ("targets", repo.targets.raw()),
            ("snapshot", good.raw()),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(s.get_file(GUN, "snapshot.json").body, good.raw());
}

#[test]
fn revoked_delegation_cannot_authorize_children() {
    // targets/team (key A) delegates targets/team/x (key X). Then targets rotates
    // targets/team to key B: the stored targets/team, signed by A, must no longer vouch for
    // targets/team/x, even though the server verified it before the rotation.
    let (s, mut repo) = setup();
    let team = RoleName::new("targets/team").unwrap();
    let x = RoleName::new("targets/team/x").unwrap();
    let key_a = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let key_b = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let key_x = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let (pa, pb, px) = (
        key_a.public().clone(),
        key_b.public().clone(),
        key_x.public().clone(),
    );
    let targets = repo.edit_targets(|t| {
        edit::add_delegation(t, &team, std::slice::from_ref(&pa), 1, &["".to_owned()])
    });
    let mut team_body = Targets::new(repo.now.plus_days(30), 1);
    edit::add_delegation(&mut team_body, &x, &[px], 1, &["".to_owned()]);
    let team_v1 = sign_with("targets/team", team_body, &key_a);
    let mut x_body = Targets::new(repo.now.plus_days(30), 1);
    edit::add_target(
        &mut x_body,
        tuf::TargetName::new("app").unwrap(),
        edit::docker_target(digest("a"), 1),
    )
    .unwrap();
    let x_v1 = sign_with("targets/team/x", x_body.clone(), &key_x);
    let a = s.post_parts(
        GUN,
        &[
            ("targets", &targets),
            ("targets/team", &team_v1),
            ("targets/team/x", &x_v1),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // Children of targets/team keep working while A is trusted.
    x_body.version = 2;
    assert_eq!(
        s.post_parts(
            GUN,
            &[(
                "targets/team/x",
                &sign_with("targets/team/x", x_body.clone(), &key_x)
            )]
        )
        .status,
        200
    );

    // Rotate targets/team from A to B.
    let targets = repo.edit_targets(|t| {
        edit::remove_delegation(t, &team);
        edit::add_delegation(t, &team, &[pb], 1, &["".to_owned()]);
    });
    assert_eq!(s.post_parts(GUN, &[("targets", &targets)]).status, 200);
    let before = state(&s, GUN);
    x_body.version = 3;
    let a = s.post_parts(
        GUN,
        &[(
            "targets/team/x",
            &sign_with("targets/team/x", x_body, &key_x),
        )],
    );
    assert_refused(
        &s,
        &a,
        &before,
        400,
        "INVALID_UPDATE",
        Some("ErrBadTargets"),
    );
    assert!(a.text().contains("targets/team"), "{}", a.text());
}
