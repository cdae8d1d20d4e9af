//! Two `notarium server` processes on one PostgreSQL database; one is killed with SIGKILL
//! in the middle of a stream of signed updates to both, and started again. No acknowledged
//! update is lost, none is half-written (the final snapshot and timestamp name every
//! role's last version, versions have no gaps), and the other server answered every
//! request it got.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notarium_testkit::postgres::TestDb;
use notarium_testkit::repo::signed_targets;
use notarium_testkit::server::{multipart, Endpoint};
use notarium_testkit::TestRepo;
use tuf::metadata::Metadata;
use tuf::{RoleName, Snapshot, Timestamp};

const GUN: &str = "registry.example.com/killed/repo";
const WRITERS: usize = 4;
const UPDATES_EACH: u64 = 40;

struct Proc {
    child: Child,
    endpoint: Endpoint,
}

fn start(data: &Path, database: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args([
            "server",
            "--addr",
            "127.0.0.1:0",
            "--database",
            database,
            "--data-dir",
        ])
        .arg(data)
        .env("NOTARIUM_KEY_PASSPHRASE", "shared passphrase")
        .env("NOTARIUM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "notarium server ready at https://127.0.0.1:PORT (CA certificate: PATH)"
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    let ca = line
        .split("(CA certificate: ")
        .nth(1)
        .map(|s| PathBuf::from(s.trim().trim_end_matches(')')))
        .unwrap();
    Proc {
        child,
        endpoint: Endpoint::new(url, Some(ca)),
    }
}

#[test]
fn a_server_killed_mid_load_loses_nothing_and_the_other_keeps_answering() {
    let db = TestDb::create();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = start(&dir_a, &db.url());
    let b = start(&dir_b, &db.url());
    let mut repo = TestRepo::new(&a.endpoint, GUN);
    repo.publish_init(&a.endpoint);
    let mut targets = Vec::new();
    for w in 0..WRITERS {
        targets = repo.add_delegation(&format!("w{w}"));
    }
    assert_eq!(
        b.endpoint.post_parts(GUN, &[("targets", &targets)]).status,
        200
    );
    let now = repo.now;

    // Server 0's endpoint changes when it is restarted; `None` while it is down.
    let endpoints = Arc::new(Mutex::new([
        Some(a.endpoint.clone()),
        Some(b.endpoint.clone()),
    ]));
    let b_failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked = Arc::new(Mutex::new(BTreeMap::<(String, u64), Vec<u8>>::new()));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let role = format!("targets/w{w}");
        let key = repo
            .delegation_keys
            .remove(&RoleName::new(&role).unwrap())
            .unwrap();
        let (endpoints, b_failures, acked) = (endpoints.clone(), b_failures.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut turn = w;
            for v in 1..=UPDATES_EACH {
                let bytes = signed_targets(&role, v, &format!("w{w}-{v}"), &key, now);
                // Until this version is in: a request whose answer was lost (its server
                // was killed) is sent again, to either server; 400 VERSION then means the
                // first one landed (the same bytes).
                let mut sent_before = false;
                loop {
                    turn += 1;
                    let i = turn % 2;
                    let Some(ep) = endpoints.lock().unwrap()[i].clone() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (content_type, body) = multipart(&[(&role, &bytes)]);
                    let sent = ep
                        .client()
                        .post(format!("{}/v2/{GUN}/_trust/tuf/", ep.url))
                        .header("content-type", content_type)
                        .body(body)
                        .send();
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked
                                .lock()
                                .unwrap()
                                .insert((role.clone(), v), bytes.clone());
                            break;
                        }
                        Ok(r) if r.status() == 400 && sent_before => {
                            let got = ep.get_file(GUN, &format!("{v}.{role}.json"));
                            assert_eq!(got.body, bytes, "{role} v{v} landed as sent");
                            acked
                                .lock()
                                .unwrap()
                                .insert((role.clone(), v), bytes.clone());
                            break;
                        }
                        Ok(r) => {
                            let s = r.status();
                            panic!(
                                "{role} v{v} on server {i}: {s} {}",
                                r.text().unwrap_or_default()
                            )
                        }
                        Err(e) => {
                            if i == 1 {
                                b_failures.lock().unwrap().push(format!("{role} v{v}: {e}"));
                            }
                            sent_before = true;
                        }
                    }
                }
            }
        }));
    }
    // Kill server 0 in the middle of the load, start it again on its data directory.
    std::thread::sleep(Duration::from_millis(700));
    let mut a = a;
    endpoints.lock().unwrap()[0] = None;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let in_flight = acked.lock().unwrap().len();
    assert!(
        in_flight < WRITERS * UPDATES_EACH as usize,
        "the kill came after the load"
    );
    std::thread::sleep(Duration::from_millis(300));
    let a2 = start(&dir_a, &db.url());
    endpoints.lock().unwrap()[0] = Some(a2.endpoint.clone());
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        b_failures.lock().unwrap().is_empty(),
        "{:?}",
        b_failures.lock().unwrap()
    );

    // Nothing lost, nothing half-written, both servers agree.
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITERS * UPDATES_EACH as usize);
    for ep in [&a2.endpoint, &b.endpoint] {
        for ((role, v), bytes) in &acked {
            assert_eq!(&ep.get_file(GUN, &format!("{v}.{role}.json")).body, bytes);
        }
        let snap = Metadata::<Snapshot>::parse("snapshot", ep.get_file(GUN, "snapshot.json").body)
            .unwrap();
        for w in 0..WRITERS {
            let role = format!("targets/w{w}");
            snap.signed().meta[role.as_str()]
                .check(&acked[&(role.clone(), UPDATES_EACH)])
                .unwrap();
        }
        let ts = Metadata::<Timestamp>::parse("timestamp", ep.get_file(GUN, "timestamp.json").body)
            .unwrap();
        ts.signed()
            .snapshot_meta()
            .unwrap()
            .check(snap.raw())
            .unwrap();
        let accepted = ts.signed().version;
        assert_eq!(snap.signed().version, accepted);
        for v in 1..=accepted {
            assert_eq!(
                ep.get_file(GUN, &format!("{v}.timestamp.json")).status,
                200,
                "timestamp v{v}"
            );
        }
        assert_eq!(
            ep.get_file(GUN, &format!("{}.timestamp.json", accepted + 1))
                .status,
            404
        );
    }
    let (mut a2, mut b) = (a2, b);
    for p in [&mut a2.child, &mut b.child] {
        let _ = p.kill();
        let _ = p.wait();
    }
}
