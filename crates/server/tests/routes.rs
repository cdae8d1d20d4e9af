//! Every route of the Notary v1 API beyond uploads: statuses, headers and bodies as the
//! reference sends them; key endpoints; deletion; the changefeed's paging; lazy renewal of
//! timestamps on read (with an injected clock).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use notarium_testkit::server::Options;
use notarium_testkit::{TestRepo, TestServer};
use tuf::metadata::Metadata;
use tuf::{FixedClock, PublicKey, RoleName, Snapshot, Timestamp};

const GUN: &str = "registry.example.com/routes/repo";

fn header(s: &TestServer, path: &str, name: &str) -> Option<String> {
    let r = s.client().get(format!("{}{path}", s.url)).send().unwrap();
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[test]
fn base_health_metrics_and_not_found() {
    let s = TestServer::start();
    let a = s.get("/v2/");
    assert_eq!((a.status, a.text().as_str()), (200, "{}"));
    assert_eq!(
        header(&s, "/v2/", "Docker-Distribution-Api-Version").as_deref(),
        Some("registry/2.0")
    );
    let a = s.get("/_notary_server/health");
    assert_eq!((a.status, a.text().as_str()), (200, "{}"));
    // A missing repository: the reference's body, byte for byte.
    let want = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/notary-0.7/error-metadata-not-found.json"
    ))
    .unwrap();
    let a = s.get_file(GUN, "root.json");
    assert_eq!(a.status, 404);
    assert_eq!(a.body, want);
    assert_eq!(
        header(
            &s,
            &format!("/v2/{GUN}/_trust/tuf/root.json"),
            "content-type"
        )
        .as_deref(),
        Some("application/json; charset=utf-8")
    );
    // Anything else: 404 without detail.
    for path in [
        "/nope",
        "/v2/a/b/_trust/tuf/root.txt",
        "/v2/a/b/_trust/nothing",
    ] {
        let a = s.get(path);
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(
            a.text(),
            "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\"}]}\n"
        );
    }
    // Other methods on metadata paths fall through to 404, like the reference's router.
    let r = s
        .client()
        .put(s.trust_url(GUN, "root.json"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = s
        .client()
        .head(s.trust_url(GUN, "root.json"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    s.get_file(GUN, "root.json");
    let m = s.get("/metrics").text();
    assert!(
        m.contains("notary_server_http_requests_total{operation=\"GetRole\",code=\"200\"}"),
        "{m}"
    );
    assert!(
        m.contains("notary_server_http_requests_total{operation=\"UpdateTUF\",code=\"200\"} 1"),
        "{m}"
    );
    assert!(m.contains("process_resident_memory_bytes"), "{m}");
}

#[test]
fn health_names_a_blob_store_that_does_not_answer() {
    // An S3 endpoint nothing listens on: the server starts, health says what fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = TestServer::start_with(Options {
        configure: Box::new(move |c| {
            c.blobs = Some(
                notarium_server::oci::blobs::BlobLocation::parse("s3://nowhere/blobs").unwrap(),
            );
            c.s3 = Some(notarium_server::config::S3File {
                endpoint: Some(format!("http://127.0.0.1:{port}")),
                region: Some("garage".into()),
                access_key_id: Some("GKnobody".into()),
                secret_access_key: Some("not-a-secret".into()),
                unsigned_payload: None,
                max_copy_bytes: None,
            });
        }),
        ..Default::default()
    });
    let a = s.get("/healthz");
    assert_eq!(a.status, 503, "{}", a.text());
    let why = a.json()["Blob store operational"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.starts_with("s3://nowhere/blobs at http://127.0.0.1:"),
        "{why}"
    );
    assert!(!a.text().contains("not-a-secret"), "{}", a.text());
    // Trust data does not need the blob store: it is still served.
    assert_eq!(s.get("/v2/").status, 200);
}

#[test]
fn cache_headers_and_last_modified() {
    let s = TestServer::start();
    TestRepo::new(&s, GUN).publish_init(&s);
    let cur = format!("/v2/{GUN}/_trust/tuf/targets.json");
    assert_eq!(
        header(&s, &cur, "cache-control").as_deref(),
        Some("public, max-age=300, s-maxage=300, must-revalidate")
    );
    let lm = header(&s, &cur, "last-modified").unwrap();
    assert!(lm.ends_with(" UTC") && lm.len() == 29, "{lm}");
    let body = s.get(&cur).body;
    let by_hash = format!(
        "/v2/{GUN}/_trust/tuf/targets.{}.json",
        tuf::hash::sha256_hex(&body)
    );
    assert_eq!(
        header(&s, &by_hash, "cache-control").as_deref(),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    assert_eq!(
        header(
            &s,
            &format!("/v2/{GUN}/_trust/tuf/1.root.json"),
            "cache-control"
        )
        .as_deref(),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    // Caching disabled by configuration.
    let s = TestServer::start_with(Options {
        configure: Box::new(|c| {
            c.cache_current_secs = 0;
            c.cache_consistent_secs = 0;
        }),
        ..Default::default()
    });
    TestRepo::new(&s, GUN).publish_init(&s);
    let cur = format!("/v2/{GUN}/_trust/tuf/root.json");
    assert_eq!(
        header(&s, &cur, "cache-control").as_deref(),
        Some("max-age=0, no-cache, no-store")
    );
    assert_eq!(header(&s, &cur, "pragma").as_deref(), Some("no-cache"));
}

/// `POST timestamp.key?algorithm=…`.
fn rotate_to(s: &TestServer, algorithm: &str) -> (String, PublicKey) {
    let url = format!(
        "{}?algorithm={algorithm}",
        s.trust_url(GUN, "timestamp.key")
    );
    let r = s.client().post(url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    (text.clone(), serde_json::from_str(&text).unwrap())
}

fn key_of(s: &TestServer, method: &str, role: &str) -> (String, PublicKey) {
    let url = s.trust_url(GUN, &format!("{role}.key"));
    let r = match method {
        "GET" => s.client().get(url).send().unwrap(),
        _ => s.client().post(url).send().unwrap(),
    };
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    (text.clone(), serde_json::from_str(&text).unwrap())
}

#[test]
fn key_endpoints_and_remote_rotation() {
    let s = TestServer::start();
    let (json, ts1) = key_of(&s, "GET", "timestamp");
    // The reference's shape: keytype, then keyval with public before private.
    assert!(
        json.starts_with("{\"keytype\":\"ecdsa\",\"keyval\":{\"public\":\""),
        "{json}"
    );
    assert!(json.ends_with("\",\"private\":null}}"), "{json}");
    // The same key until a root uses it, whether asked by GET or POST.
    assert_eq!(key_of(&s, "GET", "timestamp").1.id(), ts1.id());
    assert_eq!(key_of(&s, "POST", "timestamp").1.id(), ts1.id());
    let snap1 = key_of(&s, "GET", "snapshot").1;
    assert_ne!(snap1.id(), ts1.id());

    let mut repo = TestRepo::with_keys(GUN, vec![snap1.clone()], vec![ts1.clone()]);
    repo.publish_init(&s);
    assert_eq!(key_of(&s, "GET", "timestamp").1.id(), ts1.id());
    // Rotation: POST makes a new key (the same one until it is published)…
    let ts2 = key_of(&s, "POST", "timestamp").1;
    assert_ne!(ts2.id(), ts1.id());
    assert_eq!(key_of(&s, "POST", "timestamp").1.id(), ts2.id());
    // …GET keeps answering the key root names…
    assert_eq!(key_of(&s, "GET", "timestamp").1.id(), ts1.id());
    // …and publishing a root that names it moves the server to it.
    let root =
        repo.edit_root(|r| tuf::edit::set_root_role(r, "timestamp", std::slice::from_ref(&ts2), 1));
    let a = s.post_parts(GUN, &[("root", &root)]);
    assert_eq!(a.status, 200, "{}", a.text());
    let ts =
        Metadata::<Timestamp>::parse("timestamp", s.get_file(GUN, "timestamp.json").body).unwrap();
    assert_eq!(ts.signatures()[0].keyid, *ts2.id());
    ts2.verify(
        &ts.signatures()[0].method,
        ts.canonical().unwrap(),
        &ts.signatures()[0].sig,
    )
    .unwrap();
    assert_eq!(key_of(&s, "GET", "timestamp").1.id(), ts2.id());
    let ts3 = key_of(&s, "POST", "timestamp").1;
    assert!(ts3.id() != ts1.id() && ts3.id() != ts2.id());
    // A rotation may name the algorithm (notarium's `?algorithm=`): the pending ECDSA key
    // is replaced by an ed25519 one, kept while the same algorithm is asked for.
    let (json, ed) = rotate_to(&s, "ed25519");
    assert!(json.starts_with("{\"keytype\":\"ed25519\""), "{json}");
    assert_ne!(ed.id(), ts3.id());
    assert_eq!(key_of(&s, "POST", "timestamp").1.id(), ed.id());
    assert_eq!(rotate_to(&s, "ed25519").1.id(), ed.id());
    let (json, ec) = rotate_to(&s, "ecdsa");
    assert!(json.starts_with("{\"keytype\":\"ecdsa\""), "{json}");
    assert_ne!(ec.id(), ed.id());
    // Another algorithm: 400, and the pending key unchanged.
    let before = key_of(&s, "POST", "timestamp").1;
    let r = s
        .client()
        .post(format!(
            "{}?algorithm=rsa",
            s.trust_url(GUN, "timestamp.key")
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("INVALID_PARAMETERS"));
    assert_eq!(key_of(&s, "POST", "timestamp").1.id(), before.id());
}

#[test]
fn delete_removes_data_and_keys() {
    let s = TestServer::start();
    let repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    let ts_key = s.server_key(GUN, "timestamp");
    let r = s
        .client()
        .delete(format!("{}/v2/{GUN}/_trust/tuf/", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for f in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "1.root.json",
    ] {
        assert_eq!(s.get_file(GUN, f).status, 404, "{f}");
    }
    // The server's keys went with it (the reference leaves them behind).
    assert_ne!(s.server_key(GUN, "timestamp").id(), ts_key.id());
    let feed = s
        .get(&format!("/v2/{GUN}/_trust/changefeed?records=10"))
        .json();
    let last = feed["records"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Category"], "deletion");
    assert_eq!(last["Version"], 0);
    assert_eq!(last["SHA256"], "");
    // Deleting nothing is fine and records nothing.
    let r = s
        .client()
        .delete(format!("{}/v2/{GUN}/_trust/tuf/", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        s.get(&format!("/v2/{GUN}/_trust/changefeed?records=10"))
            .json()["count"],
        feed["count"]
    );
    // The repository can be created again.
    TestRepo::new(&s, GUN).publish_init(&s);
    assert_eq!(s.get_file(GUN, "root.json").status, 200);
}

#[test]
fn changefeed_paging() {
    let s = TestServer::start();
    let other = "registry.example.com/routes/other";
    let mut repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    TestRepo::new(&s, other).publish_init(&s);
    for _ in 0..4 {
        let t = repo.edit_targets(|_| {});
        assert_eq!(s.post_parts(GUN, &[("targets", &t)]).status, 200);
    }
    let feed = |q: &str| s.get(&format!("/v2/{GUN}/_trust/changefeed?{q}"));
    let all = feed("records=100").json();
    assert_eq!(all["count"], 5);
    let recs = all["records"].as_array().unwrap();
    let ids: Vec<i64> = recs
        .iter()
        .map(|r| r["ID"].as_str().unwrap().parse().unwrap())
        .collect();
    let versions: Vec<u64> = recs
        .iter()
        .map(|r| r["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let first = &recs[0];
    assert_eq!(first["GUN"], GUN);
    assert_eq!(first["Category"], "update");
    let ts1 = s.get_file(GUN, "1.timestamp.json").body;
    assert_eq!(
        first["SHA256"].as_str().unwrap(),
        tuf::hash::sha256_hex(&ts1)
    );
    tuf::DateTime::parse(first["CreatedAt"].as_str().unwrap()).unwrap();
    // Field names and order as Go writes them.
    let text = feed("records=1").text();
    assert!(
        text.starts_with("{\"count\":1,\"records\":[{\"ID\":\""),
        "{text}"
    );
    let order = [
        "\"ID\"",
        "\"CreatedAt\"",
        "\"GUN\"",
        "\"Version\"",
        "\"SHA256\"",
        "\"Category\"",
    ];
    let pos: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");

    let vers = |q: &str| -> Vec<u64> {
        feed(q).json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Version"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(vers("records=2"), [1, 2]);
    assert_eq!(vers(&format!("records=2&change_id={}", ids[1])), [3, 4]);
    assert_eq!(vers("records=-2"), [4, 5]);
    assert_eq!(vers("records=2&change_id=-1"), [4, 5]);
    assert_eq!(vers(&format!("records=-2&change_id={}", ids[3])), [2, 3]);
    assert_eq!(vers("records=0"), [1, 2, 3, 4, 5]);
    assert_eq!(
        vers(&format!("records=10&change_id={}", ids[4])),
        Vec::<u64>::new()
    );
    // The global feed has both repositories.
    let g = s.get("/v2/_trust/changefeed?records=100").json();
    assert_eq!(g["count"], 6);
    // Bad parameters.
    for q in [
        "",
        "records=abc",
        "records=1&change_id=abc",
        "records=99999999999",
        "records=1&change_id=99999999999",
    ] {
        let a = feed(q);
        assert_eq!(a.status, 400, "{q}");
        assert_eq!(a.code(), "INVALID_PARAMETERS", "{q}");
    }
    assert_eq!(
        s.get("/v2/registry.example.com/nothing/here/_trust/changefeed?records=5")
            .json()["records"],
        serde_json::json!([])
    );
}

#[test]
fn gun_prefixes_limit_what_can_be_published() {
    let s = TestServer::start_with(Options {
        configure: Box::new(|c| c.gun_prefixes = vec!["registry.example.com/allowed/".into()]),
        ..Default::default()
    });
    // Outside the prefixes, as the reference: an update is 400, every other route 404 (no
    // server key is made either).
    let a = s.get_file(GUN, "timestamp.key");
    assert_eq!((a.status, a.code().as_str()), (404, "METADATA_NOT_FOUND"));
    let allowed = "registry.example.com/allowed/x";
    let keys = |role| vec![s.server_key(allowed, role)];
    let repo = TestRepo::with_keys(GUN, keys("snapshot"), keys("timestamp"));
    let parts = repo.init_parts();
    let a = s.post_parts(GUN, &[(parts[0].0, &parts[0].1), (parts[1].0, &parts[1].1)]);
    assert_eq!((a.status, a.code().as_str()), (400, "INVALID_GUN"));
    TestRepo::new(&s, allowed).publish_init(&s);
}

#[test]
fn timestamps_and_server_snapshots_are_renewed_when_read() {
    let start = tuf::Clock::now(&tuf::SystemClock);
    let clock = Arc::new(FixedClock::new(start));
    let s = TestServer::start_with(Options {
        clock: clock.clone(),
        ..Default::default()
    });
    let repo = TestRepo::new(&s, GUN);
    repo.publish_init(&s);
    let ts = |s: &TestServer| {
        Metadata::<Timestamp>::parse("t", s.get_file(GUN, "timestamp.json").body).unwrap()
    };
    let snap = |s: &TestServer| {
        Metadata::<Snapshot>::parse("s", s.get_file(GUN, "snapshot.json").body).unwrap()
    };
    let t1 = ts(&s);
    assert_eq!(t1.signed().version, 1);
    // Ten days on: still fresh, served unchanged.
    clock.advance_secs(10 * 86_400);
    assert_eq!(ts(&s).raw(), t1.raw());
    // Twelve days on (two left of fourteen): renewed on read, once.
    clock.advance_secs(2 * 86_400);
    let t2 = ts(&s);
    assert_eq!(t2.signed().version, 2);
    assert!(t2.signed().expires > t1.signed().expires);
    assert_eq!(ts(&s).raw(), t2.raw());
    assert_eq!(snap(&s).signed().version, 1);
    let feed = s
        .get(&format!("/v2/{GUN}/_trust/changefeed?records=10"))
        .json();
    assert_eq!(feed["count"], 2);
    // Long after everything expired: the server-held snapshot is renewed too, and the
    // timestamp names the new one.
    clock.advance_secs(4 * 365 * 86_400);
    let t3 = ts(&s);
    let s3 = snap(&s);
    assert_eq!((t3.signed().version, s3.signed().version), (3, 2));
    assert!(s3.signed().expires > clock_now(&clock));
    t3.signed()
        .snapshot_meta()
        .unwrap()
        .check(s3.raw())
        .unwrap();
    // The snapshot still names the same root and targets.
    assert_eq!(
        s3.signed().meta[&RoleName::targets()],
        snap(&s).signed().meta[&RoleName::targets()]
    );
}

/// The server renews an expiring timestamp by itself, without a read of it: a mirror or
/// cache in front of it never holds an expired one. Seen through the changefeed (which
/// is not a timestamp read): a new timestamp version appears once the clock is inside
/// the three-day window, and not before.
#[test]
fn the_server_renews_expiring_timestamps_without_a_read() {
    let clock = Arc::new(FixedClock::new(tuf::Clock::now(&tuf::SystemClock)));
    let s = TestServer::start_with(Options {
        clock: clock.clone(),
        configure: Box::new(|c| c.timestamp_refresh_every = std::time::Duration::from_millis(100)),
        ..Default::default()
    });
    let gun_b = "registry.example.com/routes/other";
    for gun in [GUN, gun_b] {
        TestRepo::new(&s, gun).publish_init(&s);
    }
    let versions = |gun: &str| -> Vec<u64> {
        s.get(&format!("/v2/{gun}/_trust/changefeed?records=100"))
            .json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Version"].as_u64().unwrap())
            .collect()
    };
    let wait_for = |gun: &str, want: &[u64]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while versions(gun) != want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(versions(gun), want, "{gun}");
    };
    // Ten days on (four left of fourteen): nothing to renew.
    clock.advance_secs(10 * 86_400);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(versions(GUN), [1]);
    // Twelve days on: both repositories get a new timestamp, once each.
    clock.advance_secs(2 * 86_400);
    wait_for(GUN, &[1, 2]);
    wait_for(gun_b, &[1, 2]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(versions(GUN), [1, 2], "renewed once, not on every pass");
    let ts = Metadata::<Timestamp>::parse("t", s.get_file(GUN, "timestamp.json").body).unwrap();
    assert_eq!(ts.signed().version, 2);
    assert!(clock_now(&clock).secs_until(&ts.signed().expires) > 13 * 86_400);
}

/// `/healthz` names the served TLS certificate when it is inside the renewal window
/// (still 200) and once it has expired (503, every client that checks it is locked out).
#[test]
fn health_shows_a_tls_certificate_near_or_past_its_end() {
    let clock = Arc::new(FixedClock::new(tuf::Clock::now(&tuf::SystemClock)));
    let s = TestServer::start_with(Options {
        clock: clock.clone(),
        ..Default::default()
    });
    let a = s.get("/healthz");
    assert_eq!((a.status, a.text().as_str()), (200, "{}"));
    // The generated certificate lives 825 days: 810 days on, 15 are left.
    clock.advance_secs(810 * 86_400);
    let a = s.get("/healthz");
    assert_eq!(a.status, 200, "{}", a.text());
    let note = a.json()["TLS certificate"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(note.starts_with("expires in 1"), "{}", a.text());
    clock.advance_secs(20 * 86_400);
    let a = s.get("/healthz");
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.json()["TLS certificate"], "expired");
}

fn clock_now(c: &FixedClock) -> tuf::DateTime {
    tuf::Clock::now(c)
}
