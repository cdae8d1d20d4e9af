//! Many clients updating one repository at once: no 5xx ever; every acknowledged update
//! is in the final version chain, byte for byte; versions strictly increase; of two
//! uploads of the same role and version exactly one wins, the other gets 400 VERSION.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};

use notarium_testkit::repo::signed_targets as signed;
use notarium_testkit::{TestRepo, TestServer};
use tuf::metadata::Metadata;
use tuf::{RoleName, Snapshot, Timestamp};

const GUN: &str = "registry.example.com/busy/repo";
const WRITERS: usize = 8;
const UPDATES_EACH: u64 = 12;
const CONTENDERS: usize = 4;
const ROUNDS: u64 = 6;

/// (role, version) → bytes of every upload the server acknowledged.
type Acked = Arc<Mutex<BTreeMap<(String, u64), Vec<u8>>>>;

#[test]
fn concurrent_updates_to_one_repository() {
    let s = Arc::new(TestServer::start());
    let mut repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    for w in 0..WRITERS {
        repo.add_delegation(&format!("w{w}"));
    }
    let targets = repo.add_delegation("shared");
    assert_eq!(s.post_parts(GUN, &[("targets", &targets)]).status, 200);
    let now = repo.now;
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));

    let mut threads = Vec::new();
    // Writers that each own a delegation: none of their updates conflict, all must land.
    for w in 0..WRITERS {
        let role = format!("targets/w{w}");
        let key = repo
            .delegation_keys
            .remove(&RoleName::new(&role).unwrap())
            .unwrap();
        let (s, acked, statuses) = (s.clone(), acked.clone(), statuses.clone());
        threads.push(std::thread::spawn(move || {
            for v in 1..=UPDATES_EACH {
                let bytes = signed(&role, v, &format!("w{w}-{v}"), &key, now);
                let a = s.post_parts(GUN, &[(&role, &bytes)]);
                *statuses.lock().unwrap().entry(a.status).or_default() += 1;
                assert_eq!(a.status, 200, "{role} v{v}: {}", a.text());
                acked.lock().unwrap().insert((role.clone(), v), bytes);
            }
        }));
    }
    // Contenders racing on the same role and version: exactly one wins each round.
    let shared_key = Arc::new(
        repo.delegation_keys
            .remove(&RoleName::new("targets/shared").unwrap())
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let winners = Arc::new(Mutex::new(BTreeMap::<u64, usize>::new()));
    for c in 0..CONTENDERS {
        let (s, acked, statuses, key, barrier, winners) = (
            s.clone(),
            acked.clone(),
            statuses.clone(),
            shared_key.clone(),
            barrier.clone(),
            winners.clone(),
        );
        threads.push(std::thread::spawn(move || {
            for v in 1..=ROUNDS {
                let bytes = signed("targets/shared", v, &format!("c{c}-{v}"), &key, now);
                barrier.wait();
                let a = s.post_parts(GUN, &[("targets/shared", &bytes)]);
                *statuses.lock().unwrap().entry(a.status).or_default() += 1;
                match a.status {
                    200 => {
                        *winners.lock().unwrap().entry(v).or_default() += 1;
                        acked
                            .lock()
                            .unwrap()
                            .insert(("targets/shared".into(), v), bytes);
                    }
                    400 => assert_eq!(a.code(), "VERSION", "{}", a.text()),
                    other => panic!("contender got {other}: {}", a.text()),
                }
                barrier.wait();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }

    let statuses = statuses.lock().unwrap().clone();
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 400),
        "statuses: {statuses:?}"
    );
    let winners = winners.lock().unwrap().clone();
    assert_eq!(
        winners,
        (1..=ROUNDS).map(|v| (v, 1)).collect::<BTreeMap<_, _>>(),
        "one winner per round"
    );

    // Every acknowledged upload is in the chain, byte for byte, under its version.
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        WRITERS * UPDATES_EACH as usize + ROUNDS as usize
    );
    for ((role, v), bytes) in &acked {
        let a = s.get_file(GUN, &format!("{v}.{role}.json"));
        assert_eq!(a.status, 200, "{v}.{role}.json");
        assert_eq!(&a.body, bytes, "{v}.{role}.json is what was acknowledged");
    }

    // The final snapshot names the last version of every role; the timestamp that snapshot.
    let snap =
        Metadata::<Snapshot>::parse("snapshot", s.get_file(GUN, "snapshot.json").body).unwrap();
    for w in 0..WRITERS {
        let role = format!("targets/w{w}");
        snap.signed().meta[role.as_str()]
            .check(&acked[&(role.clone(), UPDATES_EACH)])
            .unwrap();
    }
    snap.signed().meta["targets/shared"]
        .check(&acked[&("targets/shared".to_owned(), ROUNDS)])
        .unwrap();
    let ts =
        Metadata::<Timestamp>::parse("timestamp", s.get_file(GUN, "timestamp.json").body).unwrap();
    ts.signed()
        .snapshot_meta()
        .unwrap()
        .check(snap.raw())
        .unwrap();

    // Snapshot and timestamp versions went up by one per accepted update, no gaps, no reuse.
    let accepted = acked.len() as u64 + 2; // + the initial publish, + the targets update adding the delegations
    assert_eq!(snap.signed().version, accepted);
    assert_eq!(ts.signed().version, accepted);
    for v in 1..=accepted {
        assert_eq!(
            s.get_file(GUN, &format!("{v}.timestamp.json")).status,
            200,
            "timestamp v{v}"
        );
        assert_eq!(
            s.get_file(GUN, &format!("{v}.snapshot.json")).status,
            200,
            "snapshot v{v}"
        );
    }
    assert_eq!(
        s.get_file(GUN, &format!("{}.timestamp.json", accepted + 1))
            .status,
        404
    );
    // One changefeed record per timestamp version, in order.
    let feed = s
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
