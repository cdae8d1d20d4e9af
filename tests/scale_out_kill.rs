//! Two `notarium server` processes on one PostgreSQL database and one S3 bucket (Garage);
//! one is killed with SIGKILL in the middle of a load of signed updates (to one shared
//! repository and to repositories of their own) and registry pushes to both, and started
//! again. No acknowledged update is lost, none is half-written
//! (the final snapshot and timestamp name every role's last version, versions have no
//! gaps), an upload cut by the kill goes on on the other server from where the database
//! says it stands, every acknowledged image is served byte for byte by both servers,
//! nothing answered 5xx, and the other server answered every request it got.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notarium_testkit::garage::Garage;
use notarium_testkit::oci::{assert_serves, Image};
use notarium_testkit::postgres::TestDb;
use notarium_testkit::repo::signed_targets;
use notarium_testkit::server::{multipart, Endpoint};
use notarium_testkit::TestRepo;
use registry::manifest::OCI_MANIFEST;
use tuf::metadata::Metadata;
use tuf::{RoleName, Snapshot, Timestamp};

const GUN: &str = "registry.example.com/killed/repo";
const WRITERS: usize = 4;
const UPDATES_EACH: u64 = 40;
/// Writers of repositories of their own (each made on one server).
const OWN_REPOS: usize = 2;
const PUSHERS: usize = 2;
const IMAGES_EACH: usize = 3;
/// Bytes per PATCH: a layer of 9 MiB crosses the 8 MiB part size of the S3 store.
const CHUNK: usize = 1 << 20;

/// Server 0's endpoint changes when it is restarted; `None` while it is down.
type Endpoints = Arc<Mutex<[Option<Endpoint>; 2]>>;
type Log = Arc<Mutex<Vec<String>>>;

struct Proc {
    child: Child,
    endpoint: Endpoint,
}

fn start(data: &Path, database: &str, blobs: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args([
            "server",
            "--addr",
            "127.0.0.1:0",
            "--database",
            database,
            "--blobs",
            blobs,
            "--data-dir",
        ])
        .arg(data)
        .envs(Garage::shared().env())
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

/// The load's view of the two servers.
struct Load {
    endpoints: Endpoints,
    /// Requests server 1 (never killed) did not answer.
    b_failures: Log,
    statuses: Arc<Mutex<BTreeMap<u16, usize>>>,
    /// Server 0 was killed.
    killed: AtomicBool,
    /// Uploads started before the kill and completed after it.
    across_kill: AtomicUsize,
}

impl Load {
    /// Send a request to the servers in turn until one answers: a connection error is the
    /// killed server, and the next try goes to the other one. The answer, the server that
    /// gave it, and whether an earlier try may have landed (its answer lost).
    fn send(
        &self,
        turn: &mut usize,
        what: &str,
        make: impl Fn(&Endpoint) -> reqwest::blocking::RequestBuilder,
    ) -> (Endpoint, reqwest::blocking::Response, bool) {
        let mut tried = false;
        loop {
            *turn += 1;
            let i = *turn % 2;
            let Some(ep) = self.endpoints.lock().unwrap()[i].clone() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            match make(&ep).send() {
                Ok(r) => {
                    *self
                        .statuses
                        .lock()
                        .unwrap()
                        .entry(r.status().as_u16())
                        .or_default() += 1;
                    return (ep, r, tried);
                }
                Err(e) => {
                    if i == 1 {
                        self.b_failures.lock().unwrap().push(format!("{what}: {e}"));
                    }
                    tried = true;
                }
            }
        }
    }

    /// Until version `v` of `role` is in: 400 after a lost answer means the first try
    /// landed (the same bytes are served).
    fn update(&self, turn: &mut usize, gun: &str, role: &str, v: u64, bytes: &[u8]) {
        let what = format!("{gun} {role} v{v}");
        let (content_type, body) = multipart(&[(role, bytes)]);
        let (ep, r, tried) = self.send(turn, &what, |ep| {
            ep.client()
                .post(format!("{}/v2/{gun}/_trust/tuf/", ep.url))
                .header("content-type", content_type.as_str())
                .body(body.clone())
        });
        match r.status().as_u16() {
            200 => {}
            400 if tried => {
                let got = ep.get_file(gun, &format!("{v}.{role}.json"));
                assert_eq!(got.body, bytes, "{what} landed as sent");
            }
            s => panic!("{what} on {}: {s} {}", ep.url, r.text().unwrap_or_default()),
        }
    }

    /// One blob in chunks of [`CHUNK`], each request to the next server. After a lost
    /// answer, the range the other server reports (416 when the chunk had landed) says
    /// where the upload stands.
    fn push_blob(&self, turn: &mut usize, name: &str, data: &[u8]) {
        let digest = registry::Digest::sha256_of(data);
        let before_kill = !self.killed.load(Ordering::SeqCst);
        let (_, r, _) = self.send(turn, "start upload", |ep| {
            ep.client()
                .post(format!("{}/v2/{name}/blobs/uploads/", ep.url))
        });
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let mut at = 0;
        while at < data.len() {
            let end = (at + CHUNK).min(data.len());
            let (ep, r, tried) = self.send(turn, "chunk", |ep| {
                ep.client()
                    .patch(format!("{}{loc}", ep.url))
                    .header("Content-Range", format!("{at}-{}", end - 1))
                    .header("Content-Type", "application/octet-stream")
                    .body(data[at..end].to_vec())
            });
            let status = r.status().as_u16();
            assert!(
                status == 202 || (status == 416 && tried),
                "{name} chunk {at}-{end} on {}: {status} {}",
                ep.url,
                r.text().unwrap_or_default()
            );
            let range = r.headers()["range"].to_str().unwrap().to_owned();
            let last: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
            assert!(last < end, "{name}: the upload has no more than was sent");
            at = last + 1;
        }
        let (ep, r, tried) = self.send(turn, "finish upload", |ep| {
            ep.client().put(format!("{}{loc}?digest={digest}", ep.url))
        });
        match r.status().as_u16() {
            201 => {}
            // The first try completed it.
            404 if tried => {
                let head = ep
                    .client()
                    .head(format!("{}/v2/{name}/blobs/{digest}", ep.url))
                    .send()
                    .unwrap();
                assert_eq!(head.status().as_u16(), 200, "{name} {digest}");
            }
            s => panic!(
                "{name} {digest} on {}: {s} {}",
                ep.url,
                r.text().unwrap_or_default()
            ),
        }
        if before_kill && self.killed.load(Ordering::SeqCst) {
            self.across_kill.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn push_image(&self, turn: &mut usize, name: &str, image: &Image) {
        for blob in image.blobs() {
            self.push_blob(turn, name, &blob.bytes);
        }
        let (ep, r, _) = self.send(turn, "manifest", |ep| {
            ep.client()
                .put(format!("{}/v2/{name}/manifests/v1", ep.url))
                .header("Content-Type", OCI_MANIFEST)
                .body(image.manifest.clone())
        });
        assert_eq!(r.status().as_u16(), 201, "{name} on {}", ep.url);
    }
}

#[test]
fn a_server_killed_mid_load_loses_nothing_and_the_other_keeps_answering() {
    let db = TestDb::create();
    let bucket = Garage::shared().fresh_url();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = start(&dir_a, &db.url(), &bucket);
    let b = start(&dir_b, &db.url(), &bucket);
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

    let load = Arc::new(Load {
        endpoints: Arc::new(Mutex::new([
            Some(a.endpoint.clone()),
            Some(b.endpoint.clone()),
        ])),
        b_failures: Log::default(),
        statuses: Arc::default(),
        killed: AtomicBool::new(false),
        across_kill: AtomicUsize::new(0),
    });
    let acked = Arc::new(Mutex::new(BTreeMap::<(String, u64), Vec<u8>>::new()));
    let pushed = Arc::new(Mutex::new(Vec::<(String, Image)>::new()));
    // Made before the load begins (a 9 MiB layer takes a while in a debug build).
    let images: Vec<Vec<Image>> = (0..PUSHERS)
        .map(|p| {
            (0..IMAGES_EACH)
                .map(|n| {
                    let big = if n == 0 { 9 << 20 } else { 200_000 };
                    Image::new(&format!("pusher{p}-{n}"), "amd64", big)
                })
                .collect()
        })
        .collect();
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let role = format!("targets/w{w}");
        let key = repo
            .delegation_keys
            .remove(&RoleName::new(&role).unwrap())
            .unwrap();
        let (load, acked) = (load.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut turn = w;
            for v in 1..=UPDATES_EACH {
                let bytes = signed_targets(&role, v, &format!("w{w}-{v}"), &key, now);
                load.update(&mut turn, GUN, &role, v, &bytes);
                acked.lock().unwrap().insert((role.clone(), v), bytes);
            }
        }));
    }
    let own_acked = Arc::new(Mutex::new(BTreeMap::<(String, u64), Vec<u8>>::new()));
    for r in 0..OWN_REPOS {
        let gun = format!("registry.example.com/killed/own{r}");
        let made_on = if r == 0 { &a.endpoint } else { &b.endpoint };
        let mut own = TestRepo::new(made_on, &gun);
        own.publish_init(made_on);
        let (load, own_acked) = (load.clone(), own_acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut turn = r;
            for v in 2..=UPDATES_EACH {
                let bytes = own.edit_targets(|t| {
                    tuf::edit::add_target(
                        t,
                        tuf::TargetName::new(&format!("v{v}")).unwrap(),
                        tuf::edit::docker_target(notarium_testkit::repo::digest(&gun), 1),
                    )
                    .unwrap();
                });
                load.update(&mut turn, &gun, "targets", v, &bytes);
                own_acked.lock().unwrap().insert((gun.clone(), v), bytes);
            }
        }));
    }
    for p in 0..PUSHERS {
        let (load, pushed) = (load.clone(), pushed.clone());
        let images = images[p].clone();
        threads.push(std::thread::spawn(move || {
            let mut turn = p;
            for (n, image) in images.into_iter().enumerate() {
                let name = format!("killed/app{p}-{n}");
                load.push_image(&mut turn, &name, &image);
                pushed.lock().unwrap().push((name, image));
            }
        }));
    }
    // Kill server 0 in the middle of the load, start it again on its data directory.
    std::thread::sleep(Duration::from_millis(700));
    let mut a = a;
    load.endpoints.lock().unwrap()[0] = None;
    load.killed.store(true, Ordering::SeqCst);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let in_flight = acked.lock().unwrap().len();
    assert!(
        in_flight < WRITERS * UPDATES_EACH as usize,
        "the kill came after the load"
    );
    assert!(
        pushed.lock().unwrap().len() < PUSHERS * IMAGES_EACH,
        "the kill came after the pushes"
    );
    std::thread::sleep(Duration::from_millis(300));
    let a2 = start(&dir_a, &db.url(), &bucket);
    load.endpoints.lock().unwrap()[0] = Some(a2.endpoint.clone());
    for t in threads {
        t.join().unwrap();
    }
    let b_failures = load.b_failures.lock().unwrap().clone();
    assert!(b_failures.is_empty(), "{b_failures:?}");
    let statuses = load.statuses.lock().unwrap().clone();
    assert!(
        load.across_kill.load(Ordering::SeqCst) > 0,
        "an upload begun before the kill was completed after it"
    );
    assert!(statuses.keys().all(|s| *s < 500), "no 5xx: {statuses:?}");

    // Every acknowledged image, byte for byte from both servers.
    let pushed = pushed.lock().unwrap().clone();
    assert_eq!(pushed.len(), PUSHERS * IMAGES_EACH);
    for ep in [&a2.endpoint, &b.endpoint] {
        for (name, image) in &pushed {
            assert_serves(ep, name, "v1", image);
        }
    }

    // The repositories of their own: every version, from both servers.
    let own_acked = own_acked.lock().unwrap().clone();
    assert_eq!(own_acked.len(), OWN_REPOS * (UPDATES_EACH as usize - 1));
    for ep in [&a2.endpoint, &b.endpoint] {
        for ((gun, v), bytes) in &own_acked {
            assert_eq!(&ep.get_file(gun, &format!("{v}.targets.json")).body, bytes);
        }
        for r in 0..OWN_REPOS {
            let gun = format!("registry.example.com/killed/own{r}");
            let current = ep.get_file(&gun, "targets.json").body;
            assert_eq!(current, own_acked[&(gun, UPDATES_EACH)]);
        }
    }

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
