//! Two servers on one PostgreSQL database and one S3 bucket (Garage), each with its own
//! data directory and port: many clients send signed updates to both, alternately, to
//! one repository and to repositories of their own, while others push images whose
//! uploads start on one server and finish on the other. Every acknowledged update is in
//! the version chain, versions strictly increase, conflicts get 400 `VERSION`, nothing
//! answers 5xx, and the other server serves an update or a manifest as soon as one server
//! acknowledged it (its timestamp cache never serves an older timestamp); at the end both
//! serve the same bytes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};

use notarium_testkit::garage::Garage;
use notarium_testkit::oci::{assert_serves, push_image_across, Image};
use notarium_testkit::postgres::TestDb;
use notarium_testkit::repo::signed_targets;
use notarium_testkit::server::Options;
use notarium_testkit::{TestRepo, TestServer};
use tuf::metadata::Metadata;
use tuf::{RoleName, Snapshot, Timestamp};

const GUN: &str = "registry.example.com/shared/repo";
const WRITERS: usize = 6;
const UPDATES_EACH: u64 = 10;
const CONTENDERS: usize = 4;
const ROUNDS: u64 = 5;
const OWN_REPOS: usize = 4;
const PUSHERS: usize = 2;
const IMAGES_EACH: usize = 2;

type Acked = Arc<Mutex<BTreeMap<(String, String, u64), Vec<u8>>>>;
type Statuses = Arc<Mutex<BTreeMap<u16, usize>>>;

fn server_on(db: &TestDb, blobs: &str) -> Arc<TestServer> {
    let (url, blobs) = (db.url(), blobs.to_owned());
    Arc::new(TestServer::start_with(Options {
        configure: Box::new(move |c| {
            c.database = Some(notarium_server::db::Database::parse(&url).unwrap());
            c.blobs = Some(notarium_server::oci::blobs::BlobLocation::parse(&blobs).unwrap());
            c.s3 = Some(Garage::shared().s3_settings());
        }),
        ..Default::default()
    }))
}

/// The version of `role` in the snapshot that `server`'s current timestamp names.
fn served_version(server: &TestServer, gun: &str, role: &str) -> u64 {
    let ts = server.get_file(gun, "timestamp.json");
    assert_eq!(ts.status, 200, "{gun} timestamp.json: {}", ts.text());
    let ts = Metadata::<Timestamp>::parse("timestamp", ts.body).unwrap();
    // The snapshot this timestamp names (the current one may be newer already).
    let sha = hex::encode(
        ts.signed()
            .snapshot_meta()
            .unwrap()
            .hashes
            .sha256()
            .unwrap(),
    );
    let snap = server.get_file(gun, &format!("snapshot.{sha}.json"));
    assert_eq!(snap.status, 200);
    ts.signed()
        .snapshot_meta()
        .unwrap()
        .check(&snap.body)
        .unwrap();
    let snap = Metadata::<Snapshot>::parse("snapshot", snap.body).unwrap();
    let Some(meta) = snap.signed().meta.get(role) else {
        return 0;
    };
    let sha = hex::encode(meta.hashes.sha256().unwrap());
    let file = server.get_file(gun, &format!("{role}.{sha}.json"));
    assert_eq!(file.status, 200, "{role}.{sha}.json");
    Metadata::<tuf::Targets>::parse(role, file.body)
        .unwrap()
        .signed()
        .version
}

#[test]
fn two_servers_on_one_database_agree_and_lose_nothing() {
    let db = TestDb::create();
    let bucket = Garage::shared().fresh_url();
    let servers = [server_on(&db, &bucket), server_on(&db, &bucket)];
    assert_ne!(servers[0].addr, servers[1].addr);
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let statuses: Statuses = Arc::new(Mutex::new(BTreeMap::new()));
    let count = |statuses: &Statuses, s: u16| *statuses.lock().unwrap().entry(s).or_default() += 1;

    // The shared repository, made through server 0 (its keys come from the database, so
    // server 1 signs with the same ones).
    let mut repo = TestRepo::new(&servers[0], GUN);
    repo.publish_init(&servers[0]);
    for w in 0..WRITERS {
        repo.add_delegation(&format!("w{w}"));
    }
    let targets = repo.add_delegation("shared");
    assert_eq!(
        servers[1].post_parts(GUN, &[("targets", &targets)]).status,
        200
    );
    let now = repo.now;

    let mut threads = Vec::new();
    // Writers owning a delegation each, alternating servers: all must land, and the other
    // server serves each one right after it was acknowledged.
    for w in 0..WRITERS {
        let role = format!("targets/w{w}");
        let key = repo
            .delegation_keys
            .remove(&RoleName::new(&role).unwrap())
            .unwrap();
        let (servers, acked, statuses) = (servers.clone(), acked.clone(), statuses.clone());
        threads.push(std::thread::spawn(move || {
            for v in 1..=UPDATES_EACH {
                let (to, other) = (
                    &servers[(v as usize + w) % 2],
                    &servers[(v as usize + w + 1) % 2],
                );
                let bytes = signed_targets(&role, v, &format!("w{w}-{v}"), &key, now);
                let a = to.post_parts(GUN, &[(&role, &bytes)]);
                count(&statuses, a.status);
                assert_eq!(a.status, 200, "{role} v{v}: {}", a.text());
                acked
                    .lock()
                    .unwrap()
                    .insert((GUN.into(), role.clone(), v), bytes.clone());
                assert!(
                    served_version(other, GUN, &role) >= v,
                    "{role} v{v} acknowledged by one server, not served by the other"
                );
                assert_eq!(other.get_file(GUN, &format!("{v}.{role}.json")).body, bytes);
            }
        }));
    }
    // Contenders racing on one role and version through both servers: one wins a round.
    let shared_key = Arc::new(
        repo.delegation_keys
            .remove(&RoleName::new("targets/shared").unwrap())
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let winners = Arc::new(Mutex::new(BTreeMap::<u64, usize>::new()));
    for c in 0..CONTENDERS {
        let (servers, acked, statuses, key, barrier, winners) = (
            servers.clone(),
            acked.clone(),
            statuses.clone(),
            shared_key.clone(),
            barrier.clone(),
            winners.clone(),
        );
        threads.push(std::thread::spawn(move || {
            for v in 1..=ROUNDS {
                let bytes = signed_targets("targets/shared", v, &format!("c{c}-{v}"), &key, now);
                barrier.wait();
                let a = servers[c % 2].post_parts(GUN, &[("targets/shared", &bytes)]);
                count(&statuses, a.status);
                match a.status {
                    200 => {
                        *winners.lock().unwrap().entry(v).or_default() += 1;
                        acked
                            .lock()
                            .unwrap()
                            .insert((GUN.into(), "targets/shared".into(), v), bytes);
                    }
                    400 => assert_eq!(a.code(), "VERSION", "{}", a.text()),
                    other => panic!("contender got {other}: {}", a.text()),
                }
                barrier.wait();
            }
        }));
    }
    // Clients with repositories of their own, made on one server, updated on both.
    for r in 0..OWN_REPOS {
        let (servers, acked, statuses) = (servers.clone(), acked.clone(), statuses.clone());
        threads.push(std::thread::spawn(move || {
            let gun = format!("registry.example.com/own/r{r}");
            let mut own = TestRepo::new(&servers[r % 2], &gun);
            own.publish_init(&servers[(r + 1) % 2]);
            for v in 2..=UPDATES_EACH {
                let bytes = own.edit_targets(|t| {
                    tuf::edit::add_target(
                        t,
                        tuf::TargetName::new(&format!("v{v}")).unwrap(),
                        tuf::edit::docker_target(notarium_testkit::repo::digest(&gun), 1),
                    )
                    .unwrap();
                });
                let a = servers[v as usize % 2].post_parts(&gun, &[("targets", &bytes)]);
                count(&statuses, a.status);
                assert_eq!(a.status, 200, "{gun} targets v{v}: {}", a.text());
                acked
                    .lock()
                    .unwrap()
                    .insert((gun.clone(), "targets".into(), v), bytes);
                assert!(served_version(&servers[(v as usize + 1) % 2], &gun, "targets") >= v);
            }
        }));
    }
    // Registry pushes in the same load: every upload starts on one server and is
    // completed on the other.
    let images: Vec<(String, Image)> = (0..PUSHERS)
        .flat_map(|p| {
            (0..IMAGES_EACH).map(move |n| {
                (
                    format!("load/app{p}-{n}"),
                    Image::new(&format!("load-{p}-{n}"), "amd64", 200_000),
                )
            })
        })
        .collect();
    for p in 0..PUSHERS {
        let (servers, statuses) = (servers.clone(), statuses.clone());
        let mine: Vec<(String, Image)> = images[p * IMAGES_EACH..(p + 1) * IMAGES_EACH].to_vec();
        threads.push(std::thread::spawn(move || {
            for (n, (name, image)) in mine.iter().enumerate() {
                let (a, b) = (&servers[(p + n) % 2], &servers[(p + n + 1) % 2]);
                push_image_across(a, b, name, "v1", image, &|s| count(&statuses, s));
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }

    let statuses = statuses.lock().unwrap().clone();
    assert!(
        statuses.keys().all(|s| matches!(*s, 200 | 201 | 202 | 400)),
        "statuses: {statuses:?}"
    );
    for (name, image) in &images {
        for s in &servers {
            assert_serves(s, name, "v1", image);
        }
    }
    assert_eq!(
        winners.lock().unwrap().clone(),
        (1..=ROUNDS).map(|v| (v, 1)).collect::<BTreeMap<_, _>>(),
        "one winner per round"
    );

    // Every acknowledged upload, from either server, byte for byte.
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        WRITERS * UPDATES_EACH as usize + ROUNDS as usize + OWN_REPOS * (UPDATES_EACH as usize - 1)
    );
    for ((gun, role, v), bytes) in &acked {
        for s in &servers {
            let a = s.get_file(gun, &format!("{v}.{role}.json"));
            assert_eq!(&a.body, bytes, "{gun} {v}.{role}.json from {}", s.addr);
        }
    }
    // Both servers serve the same current files, and the shared repository's snapshot
    // and timestamp versions went up by one per accepted update, no gaps.
    let mut guns = vec![GUN.to_owned()];
    guns.extend((0..OWN_REPOS).map(|r| format!("registry.example.com/own/r{r}")));
    for gun in &guns {
        for file in [
            "root.json",
            "targets.json",
            "snapshot.json",
            "timestamp.json",
        ] {
            let (a, b) = (
                servers[0].get_file(gun, file),
                servers[1].get_file(gun, file),
            );
            assert_eq!((a.status, &a.body), (b.status, &b.body), "{gun} {file}");
        }
    }
    let accepted = (WRITERS * UPDATES_EACH as usize + ROUNDS as usize) as u64 + 2;
    let ts =
        Metadata::<Timestamp>::parse("timestamp", servers[1].get_file(GUN, "timestamp.json").body)
            .unwrap();
    assert_eq!(ts.signed().version, accepted);
    let feed = servers[0]
        .get(&format!("/v2/{GUN}/_trust/changefeed?records=1000"))
        .json();
    let versions: Vec<u64> = feed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=accepted).collect::<Vec<_>>());
}

/// Builtin token auth on servers sharing a database: one token key (made by the first to
/// start, kept sealed in the database), so a token from either is good at the other, and
/// both publish the same certificate; a server on another database refuses it.
#[test]
fn servers_on_one_database_accept_each_others_tokens() {
    use notarium_testkit::auth::{AuthServer, Who};
    let db = TestDb::create();
    let on = |db: &TestDb| {
        let url = db.url();
        AuthServer::start_with(Options {
            configure: Box::new(move |c| {
                c.database = Some(notarium_server::db::Database::parse(&url).unwrap())
            }),
            ..Default::default()
        })
    };
    let (a, b) = (on(&db), on(&db));
    let scope = "repository:team/app:push,pull";
    let start_upload = |s: &AuthServer, token: &str| {
        s.client()
            .post(format!("{}/v2/team/app/blobs/uploads/", s.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let from_a = a.token(Who::Pusher, &[scope]).unwrap();
    let from_b = b.token(Who::Pusher, &[scope]).unwrap();
    assert_eq!(start_upload(&b, &from_a), 202, "a token from A at B");
    assert_eq!(start_upload(&a, &from_b), 202, "a token from B at A");
    let cert = |s: &AuthServer| std::fs::read(s.data_dir.join("auth/token.crt")).unwrap();
    assert_eq!(
        cert(&a),
        cert(&b),
        "one certificate for registries to trust"
    );
    assert!(
        !a.data_dir.join("auth/token.key").exists(),
        "the key is in the database only"
    );
    let other_db = TestDb::create();
    let c = on(&other_db);
    assert_eq!(
        start_upload(&c, &from_a),
        401,
        "another database, another key"
    );
    assert_ne!(cert(&a), cert(&c));
}
