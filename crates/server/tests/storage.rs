//! The storage suites: the same tests of the trust storage and of the registry metadata,
//! run unchanged on every backend (SQLite in a temporary directory; PostgreSQL in a fresh
//! database on the machine's server, dropped afterwards).
//!
//! Two handles opened on one database stand for two servers sharing it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use notarium_server::db::{self, Database, Stores};
use notarium_server::oci::meta::{NewManifest, UploadRecord, UploadSlot};
use notarium_server::storage::{Commit, CommitStatus, KeyRecord, NewFile, StorageError};
use notarium_testkit::postgres::TestDb;
use tuf::{DateTime, FixedClock, Gun, RoleName};

const T0: i64 = 1_800_000_000;

/// A database of one backend, and a way to open more handles on it.
struct Backend {
    db: Database,
    clock: Arc<FixedClock>,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<TestDb>,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            db: Database::Sqlite(dir.path().to_path_buf()),
            clock: Arc::new(FixedClock::new(DateTime::from_unix_secs(T0))),
            _dir: Some(dir),
            _pg: None,
        }
    }

    fn postgres() -> Backend {
        let pg = TestDb::create();
        Backend {
            db: Database::parse(&pg.url()).unwrap(),
            clock: Arc::new(FixedClock::new(DateTime::from_unix_secs(T0))),
            _dir: None,
            _pg: Some(pg),
        }
    }

    async fn open(&self) -> Stores {
        db::open(&self.db, self.clock.clone()).await.unwrap()
    }
}

fn gun(s: &str) -> Gun {
    Gun::new(s).unwrap()
}

fn role(s: &str) -> RoleName {
    RoleName::new(s).unwrap()
}

fn file(r: &str, version: u64, data: &str) -> NewFile {
    NewFile {
        role: role(r),
        version,
        data: Arc::from(data.as_bytes()),
    }
}

fn commit(g: &str, base: Option<u64>, files: Vec<NewFile>) -> Commit {
    Commit {
        gun: gun(g),
        files,
        base,
        after: None,
        status: CommitStatus::new(),
    }
}

/// A repository's first update and three more, each on the timestamp before it.
async fn publish(s: &Stores, g: &str, n: u64) {
    for v in 1..=n {
        let mut files = vec![file("timestamp", v, &format!("{g} ts {v}"))];
        if v == 1 {
            files.insert(0, file("root", 1, &format!("{g} root")));
        }
        s.trust
            .submit(commit(g, (v > 1).then_some(v - 1), files))
            .await
            .unwrap();
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::sqlite()).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::postgres()).await })*
        }
    };
}

suite!(
    versions_only_grow_and_a_refused_commit_writes_nothing,
    a_commit_validated_against_a_replaced_timestamp_is_stale,
    two_servers_racing_on_one_repository_land_one_update_per_base,
    a_commit_after_a_failed_one_is_skipped,
    files_by_version_and_checksum_with_the_clocks_time,
    the_current_files_of_several_roles_in_one_read,
    every_repository_in_pages,
    the_changefeed_pages_both_ways_and_records_deletions,
    changefeed_ids_follow_commit_order_across_servers,
    server_keys_pending_keys_and_reclaim,
    settings_keep_the_first_value,
    registry_manifests_tags_and_links,
    upload_sessions_move_by_compare_and_set_within_limits,
    migrations_run_once_when_servers_start_together,
);

async fn versions_only_grow_and_a_refused_commit_writes_nothing(b: Backend) {
    let s = b.open().await;
    let g = gun("example.com/app");
    publish(&s, "example.com/app", 2).await;
    assert_eq!(s.trust.head(&g).await.unwrap(), Some(2));
    // targets v1, then v1 again (not newer) together with a newer timestamp: refused whole.
    s.trust
        .submit(commit(
            "example.com/app",
            Some(2),
            vec![file("targets", 1, "t1"), file("timestamp", 3, "ts3")],
        ))
        .await
        .unwrap();
    let e = s
        .trust
        .submit(commit(
            "example.com/app",
            Some(3),
            vec![file("targets", 1, "t1 again"), file("timestamp", 4, "ts4")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StorageError::Version { role, version: 1 } if role == "targets"),
        "{e:?}"
    );
    let ts = s
        .trust
        .current(&g, &RoleName::timestamp())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ts.version, &ts.data[..]), (3, &b"ts3"[..]));
    assert_eq!(s.trust.head(&g).await.unwrap(), Some(3));
    let t = s
        .trust
        .current(&g, &role("targets"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&t.data[..], b"t1");
    // An older version than the newest stored one is refused too (no going back).
    let e = s
        .trust
        .submit(commit(
            "example.com/app",
            Some(3),
            vec![file("timestamp", 2, "old")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Version { .. }), "{e:?}");
    // A version beyond what the database can hold is a version error, not a crash.
    let e = s
        .trust
        .submit(commit(
            "example.com/app",
            Some(3),
            vec![
                file("targets", u64::MAX, "huge"),
                file("timestamp", 4, "ts4"),
            ],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Version { .. }), "{e:?}");
    assert_eq!(s.trust.head(&g).await.unwrap(), Some(3));
}

async fn a_commit_validated_against_a_replaced_timestamp_is_stale(b: Backend) {
    let s = b.open().await;
    let g = gun("example.com/stale");
    // A first update when the repository already has one.
    publish(&s, "example.com/stale", 1).await;
    let e = s
        .trust
        .submit(commit(
            "example.com/stale",
            None,
            vec![file("root", 2, "other root"), file("timestamp", 2, "x")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Stale), "{e:?}");
    // Validated against timestamp 5, which never existed.
    let e = s
        .trust
        .submit(commit(
            "example.com/stale",
            Some(5),
            vec![file("timestamp", 6, "x")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Stale), "{e:?}");
    assert!(s
        .trust
        .by_version(&g, &RoleName::root(), 2)
        .await
        .unwrap()
        .is_none());
    // After a deletion, only a first update (base: none) lands.
    assert!(s.trust.delete_repository(&g).await.unwrap());
    assert_eq!(s.trust.head(&g).await.unwrap(), None);
    let e = s
        .trust
        .submit(commit(
            "example.com/stale",
            Some(1),
            vec![file("timestamp", 2, "x")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Stale), "{e:?}");
    publish(&s, "example.com/stale", 1).await;
    assert_eq!(s.trust.head(&g).await.unwrap(), Some(1));
}

async fn two_servers_racing_on_one_repository_land_one_update_per_base(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    publish(&a, "example.com/race", 1).await;
    // 20 rounds: both servers commit on the same base; exactly one lands each time.
    for round in 1..=20u64 {
        let one = a.trust.submit(commit(
            "example.com/race",
            Some(round),
            vec![
                file("targets", round, "from a"),
                file("timestamp", round + 1, "a"),
            ],
        ));
        let two = c.trust.submit(commit(
            "example.com/race",
            Some(round),
            vec![
                file("targets", round, "from c"),
                file("timestamp", round + 1, "c"),
            ],
        ));
        let (r1, r2) = tokio::join!(one, two);
        let landed = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
        assert_eq!(landed, 1, "round {round}: {r1:?} {r2:?}");
        for r in [r1, r2] {
            if let Err(e) = r {
                assert!(
                    matches!(e, StorageError::Stale | StorageError::Version { .. }),
                    "{e:?}"
                );
            }
        }
    }
    let g = gun("example.com/race");
    // Both see the same chain: every version once, the head the last.
    for s in [&a, &c] {
        assert_eq!(s.trust.head(&g).await.unwrap(), Some(21));
        for v in 1..=20 {
            assert!(s
                .trust
                .by_version(&g, &role("targets"), v)
                .await
                .unwrap()
                .is_some());
        }
        let feed = s.trust.changes(Some(&g), 0, 100).await.unwrap();
        let versions: Vec<u64> = feed.iter().map(|c| c.version).collect();
        assert_eq!(versions, (1..=21).collect::<Vec<_>>());
    }
}

async fn a_commit_after_a_failed_one_is_skipped(b: Backend) {
    let s = b.open().await;
    publish(&s, "example.com/chain", 1).await;
    let mut first = commit(
        "example.com/chain",
        Some(7),
        vec![file("timestamp", 8, "refused: wrong base")],
    );
    let status = first.status.clone();
    let mut second = commit(
        "example.com/chain",
        Some(8),
        vec![file("timestamp", 9, "x")],
    );
    second.after = Some(status.clone());
    first.after = None;
    let f1 = s.trust.submit(first);
    let f2 = s.trust.submit(second);
    assert!(matches!(f1.await, Err(StorageError::Stale)));
    assert!(matches!(f2.await, Err(StorageError::Skipped)));
    assert!(!status.is_done());
    assert_eq!(
        s.trust.head(&gun("example.com/chain")).await.unwrap(),
        Some(1)
    );
}

async fn files_by_version_and_checksum_with_the_clocks_time(b: Backend) {
    let s = b.open().await;
    let g = gun("example.com/files");
    publish(&s, "example.com/files", 3).await;
    let v2 = s
        .trust
        .by_version(&g, &RoleName::timestamp(), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v2.data[..], b"example.com/files ts 2");
    assert_eq!(v2.sha256, tuf::hash::sha256_hex(b"example.com/files ts 2"));
    assert_eq!(v2.created_at, T0, "the time comes from the injected clock");
    let same = s
        .trust
        .by_checksum(&g, &RoleName::timestamp(), &v2.sha256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.version, 2);
    assert!(s
        .trust
        .by_checksum(&g, &RoleName::timestamp(), &"0".repeat(64))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .trust
        .by_version(&g, &RoleName::timestamp(), u64::MAX)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .trust
        .current(&gun("example.com/none"), &RoleName::root())
        .await
        .unwrap()
        .is_none());
}

async fn the_current_files_of_several_roles_in_one_read(b: Backend) {
    let s = b.open().await;
    let g = gun("example.com/many");
    publish(&s, "example.com/many", 3).await;
    s.trust
        .submit(commit(
            "example.com/many",
            Some(3),
            vec![
                file("targets/releases", 1, "rel1"),
                file("targets", 1, "t1"),
                file("timestamp", 4, "ts4"),
            ],
        ))
        .await
        .unwrap();
    s.trust
        .submit(commit(
            "example.com/many",
            Some(4),
            vec![
                file("targets/releases", 2, "rel2"),
                file("timestamp", 5, "ts5"),
            ],
        ))
        .await
        .unwrap();
    let asked = [
        role("timestamp"),
        role("snapshot"),
        role("targets/releases"),
        role("root"),
        role("targets"),
    ];
    let got: Vec<(String, u64, Vec<u8>)> = s
        .trust
        .current_many(&g, &asked)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, f)| (r.to_string(), f.version, f.data.to_vec()))
        .collect();
    // The newest of each, in the order asked; the role with nothing stored left out.
    assert_eq!(
        got,
        vec![
            ("timestamp".into(), 5, b"ts5".to_vec()),
            ("targets/releases".into(), 2, b"rel2".to_vec()),
            ("root".into(), 1, b"example.com/many root".to_vec()),
            ("targets".into(), 1, b"t1".to_vec()),
        ]
    );
    assert!(s
        .trust
        .current_many(&gun("example.com/none"), &asked)
        .await
        .unwrap()
        .is_empty());
}

async fn every_repository_in_pages(b: Backend) {
    let s = b.open().await;
    let names = [
        "example.com/c",
        "example.com/a",
        "example.com/b/x",
        "example.com/b",
    ];
    for n in names {
        publish(&s, n, 2).await;
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.trust.repositories(&after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.as_str().to_owned();
        seen.extend(page.iter().map(|g| g.as_str().to_owned()));
    }
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "each once, in order");
    s.trust
        .delete_repository(&gun("example.com/b"))
        .await
        .unwrap();
    let all = s.trust.repositories("", 100).await.unwrap();
    assert!(
        !all.iter().any(|g| g.as_str() == "example.com/b"),
        "{all:?}"
    );
}

async fn the_changefeed_pages_both_ways_and_records_deletions(b: Backend) {
    let s = b.open().await;
    publish(&s, "example.com/a", 3).await;
    b.clock.advance_secs(60);
    publish(&s, "example.com/b", 2).await;
    assert!(s
        .trust
        .delete_repository(&gun("example.com/a"))
        .await
        .unwrap());
    // Deleting what does not exist records nothing.
    assert!(!s
        .trust
        .delete_repository(&gun("example.com/zzz"))
        .await
        .unwrap());
    let all = s.trust.changes(None, 0, 100).await.unwrap();
    let shown: Vec<(String, u64, String)> = all
        .iter()
        .map(|c| (c.gun.clone(), c.version, c.category.clone()))
        .collect();
    let want = |g: &str, v: u64, c: &str| (g.to_owned(), v, c.to_owned());
    assert_eq!(
        shown,
        vec![
            want("example.com/a", 1, "update"),
            want("example.com/a", 2, "update"),
            want("example.com/a", 3, "update"),
            want("example.com/b", 1, "update"),
            want("example.com/b", 2, "update"),
            want("example.com/a", 0, "deletion"),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[3].created_at, T0 + 60);
    // Forward from an id, backward from the latest, backward from an id; oldest first.
    let after = s.trust.changes(None, all[1].id, 2).await.unwrap();
    assert_eq!(after, all[2..4].to_vec());
    let latest = s.trust.changes(None, -1, 2).await.unwrap();
    assert_eq!(latest, all[4..6].to_vec());
    let before = s.trust.changes(None, all[3].id, -2).await.unwrap();
    assert_eq!(before, all[1..3].to_vec());
    let only_b = s
        .trust
        .changes(Some(&gun("example.com/b")), 0, 100)
        .await
        .unwrap();
    assert_eq!(only_b, all[3..5].to_vec());
}

async fn changefeed_ids_follow_commit_order_across_servers(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    // Two servers, 8 repositories each, 5 updates each, all at once.
    let mut tasks = Vec::new();
    for (i, s) in [a, c].into_iter().enumerate() {
        let s = Arc::new(s);
        for r in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                publish(&s, &format!("example.com/s{i}/r{r}"), 5).await;
            }));
        }
    }
    // A reader paging forward while they write never sees an id below one it saw.
    let reader = b.open().await;
    let mut seen = 0i64;
    let mut got = Vec::new();
    loop {
        let done = tasks.iter().all(|t| t.is_finished());
        let page = reader.trust.changes(None, seen, 7).await.unwrap();
        for ch in &page {
            assert!(ch.id > seen, "id {} after {seen}", ch.id);
            seen = ch.id;
            got.push((ch.gun.clone(), ch.version));
        }
        if done && page.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(got.len(), 2 * 8 * 5, "every record read exactly once");
    // Per repository, versions in order.
    for i in 0..2 {
        for r in 0..8 {
            let g = format!("example.com/s{i}/r{r}");
            let v: Vec<u64> = got.iter().filter(|(x, _)| *x == g).map(|x| x.1).collect();
            assert_eq!(v, vec![1, 2, 3, 4, 5], "{g}");
        }
    }
}

fn key(id: &str, g: &str, role: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        key_id: id.into(),
        gun: g.into(),
        role: role.into(),
        algorithm: "ed25519".into(),
        sealed: vec![1, 2, 3],
        created_at,
    }
}

async fn server_keys_pending_keys_and_reclaim(b: Backend) {
    let (s, other) = (b.open().await, b.open().await);
    let used = gun("example.com/used");
    let unused = gun("example.com/unused");
    s.trust
        .insert_key(&key("k1", used.as_str(), "timestamp", T0 - 10))
        .await
        .unwrap();
    s.trust
        .insert_key(&key("k2", used.as_str(), "snapshot", T0 - 5))
        .await
        .unwrap();
    s.trust
        .insert_key(&key("k3", unused.as_str(), "timestamp", T0 - 10))
        .await
        .unwrap();
    let e = other
        .trust
        .insert_key(&key("k1", used.as_str(), "timestamp", T0))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e:?}");
    assert_eq!(
        other.trust.key("k2").await.unwrap().unwrap().role,
        "snapshot"
    );
    let ids: Vec<String> = other
        .trust
        .keys_for(&used)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(ids, ["k1", "k2"]);
    // Pending keys: compare-and-set, one winner when two servers race.
    assert!(s
        .trust
        .set_pending_key(&used, "timestamp", None, "k1")
        .await
        .unwrap());
    assert!(!other
        .trust
        .set_pending_key(&used, "timestamp", None, "kx")
        .await
        .unwrap());
    assert!(!other
        .trust
        .set_pending_key(&used, "timestamp", Some("kx"), "ky")
        .await
        .unwrap());
    assert!(other
        .trust
        .set_pending_key(&used, "timestamp", Some("k1"), "k2")
        .await
        .unwrap());
    assert_eq!(
        s.trust
            .pending_key(&used, "timestamp")
            .await
            .unwrap()
            .as_deref(),
        Some("k2")
    );
    // Reclaim: only keys of repositories that never got metadata, and only old ones.
    publish(&s, used.as_str(), 1).await;
    assert!(s
        .trust
        .unused_key_guns(T0 - 20, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.trust.unused_key_guns(T0, 10).await.unwrap(),
        vec![unused.clone()]
    );
    assert!(s.trust.delete_unused_keys(&used).await.unwrap().is_empty());
    assert_eq!(s.trust.delete_unused_keys(&unused).await.unwrap(), ["k3"]);
    assert!(s.trust.key("k3").await.unwrap().is_none());
    assert!(s.trust.key("k1").await.unwrap().is_some());
    s.trust.delete_key("k1").await.unwrap();
    assert!(other.trust.key("k1").await.unwrap().is_none());
}

async fn settings_keep_the_first_value(b: Backend) {
    let (s, other) = (b.open().await, b.open().await);
    assert!(s.trust.setting("master").await.unwrap().is_none());
    assert_eq!(
        s.trust.init_setting("master", b"one").await.unwrap(),
        b"one"
    );
    assert_eq!(
        other.trust.init_setting("master", b"two").await.unwrap(),
        b"one"
    );
    assert_eq!(
        other.trust.setting("master").await.unwrap().unwrap(),
        b"one"
    );
    s.trust.ping().await.unwrap();
}

fn manifest(repo: &str, digest: &str, tag: Option<&str>, subject: Option<&str>) -> NewManifest {
    NewManifest {
        repo: repo.into(),
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: subject.map(|_| "application/example".into()),
        subject: subject.map(Into::into),
        annotations: None,
        content: format!("manifest {digest}").into_bytes(),
        refs: vec!["sha256:layer".into(), "sha256:config".into()],
        tag: tag.map(Into::into),
    }
}

async fn registry_manifests_tags_and_links(b: Backend) {
    let (s, other) = (b.open().await, b.open().await);
    let m = &s.registry;
    assert_eq!(m.tags("team/app", 10, None).await.unwrap(), None);
    m.link_blob("team/app", "sha256:layer").await.unwrap();
    m.link_blob("team/app", "sha256:layer").await.unwrap();
    assert!(other
        .registry
        .blob_linked("team/app", "sha256:layer")
        .await
        .unwrap());
    assert!(!other
        .registry
        .blob_linked("team/other", "sha256:layer")
        .await
        .unwrap());
    assert_eq!(m.tags("team/app", 10, None).await.unwrap(), Some(vec![]));
    for (d, t) in [
        ("sha256:m1", "v1"),
        ("sha256:m2", "b"),
        ("sha256:m3", "a"),
        ("sha256:m4", "B"),
    ] {
        m.put_manifest(manifest("team/app", d, Some(t), None))
            .await
            .unwrap();
    }
    // Byte order: upper case first.
    let o = &other.registry;
    assert_eq!(
        o.tags("team/app", 10, None).await.unwrap().unwrap(),
        ["B", "a", "b", "v1"]
    );
    assert_eq!(
        o.tags("team/app", 2, Some("a")).await.unwrap().unwrap(),
        ["b", "v1"]
    );
    assert_eq!(
        o.tag("team/app", "v1").await.unwrap().as_deref(),
        Some("sha256:m1")
    );
    let got = o
        .get_manifest("team/app", "sha256:m1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.content, b"manifest sha256:m1");
    // Re-tag v1 and store the same manifest again: one row, the tag moved.
    m.put_manifest(manifest("team/app", "sha256:m2", Some("v1"), None))
        .await
        .unwrap();
    assert_eq!(
        o.tag("team/app", "v1").await.unwrap().as_deref(),
        Some("sha256:m2")
    );
    // Referrers of m1.
    m.put_manifest(manifest("team/app", "sha256:sig", None, Some("sha256:m1")))
        .await
        .unwrap();
    let refs = o.referrers("team/app", "sha256:m1").await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].size, "manifest sha256:sig".len() as u64);
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/example")
    );
    // Catalog in byte order, paged.
    m.link_blob("Team/Upper", "sha256:x").await.unwrap();
    assert_eq!(
        o.catalog(10, None).await.unwrap(),
        ["Team/Upper", "team/app"]
    );
    assert_eq!(
        o.catalog(10, Some("Team/Upper")).await.unwrap(),
        ["team/app"]
    );
    assert!(o.referenced().await.unwrap().contains("sha256:config"));
    // Deleting a manifest takes its tags; deleting a tag leaves the manifest.
    assert!(m.delete_manifest("team/app", "sha256:m2").await.unwrap());
    assert_eq!(o.tag("team/app", "b").await.unwrap(), None);
    assert_eq!(o.tag("team/app", "v1").await.unwrap(), None);
    assert!(m.delete_tag("team/app", "a").await.unwrap());
    assert!(!m.delete_tag("team/app", "a").await.unwrap());
    assert!(o.manifest_exists("team/app", "sha256:m3").await.unwrap());
    assert!(!o.manifest_exists("team/app", "sha256:m2").await.unwrap());
    assert!(m.unlink_blob("team/app", "sha256:layer").await.unwrap());
    m.drop_blob("sha256:x").await.unwrap();
    assert!(!o.blob_linked("Team/Upper", "sha256:x").await.unwrap());
}

async fn migrations_run_once_when_servers_start_together(b: Backend) {
    // Four servers starting at once on a new database: one migrates, all work.
    let opened =
        futures_util::future::join_all((0..4).map(|_| db::open(&b.db, b.clock.clone()))).await;
    let stores: Vec<Stores> = opened.into_iter().map(|r| r.unwrap()).collect();
    publish(&stores[0], "example.com/m", 1).await;
    assert_eq!(
        stores[3].trust.head(&gun("example.com/m")).await.unwrap(),
        Some(1)
    );
    // And again on the migrated database.
    let again = b.open().await;
    assert_eq!(
        again.trust.head(&gun("example.com/m")).await.unwrap(),
        Some(1)
    );
}

async fn upload_sessions_move_by_compare_and_set_within_limits(b: Backend) {
    let (a, other) = (b.open().await, b.open().await);
    let rec = |id: &str, repo: &str| UploadRecord {
        id: id.into(),
        repo: repo.into(),
        size: 0,
        state: "{}".into(),
        touched_ms: T0 * 1000,
    };
    let (ra, rb) = (a.registry.clone(), other.registry.clone());
    assert_eq!(
        ra.create_upload(&rec("u1", "x/a"), 3, 2).await.unwrap(),
        UploadSlot::Created
    );
    assert_eq!(
        rb.create_upload(&rec("u2", "x/a"), 3, 2).await.unwrap(),
        UploadSlot::Created
    );
    // The second server sees the first's sessions in the counts.
    assert_eq!(
        rb.create_upload(&rec("u3", "x/a"), 3, 2).await.unwrap(),
        UploadSlot::RepositoryFull(2)
    );
    assert_eq!(
        ra.create_upload(&rec("u3", "x/b"), 3, 2).await.unwrap(),
        UploadSlot::Created
    );
    assert_eq!(
        ra.create_upload(&rec("u4", "x/c"), 3, 2).await.unwrap(),
        UploadSlot::RegistryFull(3)
    );
    assert!(rb.get_upload("u4").await.unwrap().is_none());
    // Compare-and-set on the size: of two moves from 0, one lands.
    b.clock.advance_secs(10);
    assert!(ra
        .update_upload("u1", 0, 100, "{\"tail\":100}")
        .await
        .unwrap());
    assert!(!rb
        .update_upload("u1", 0, 50, "{\"tail\":50}")
        .await
        .unwrap());
    let got = rb.get_upload("u1").await.unwrap().unwrap();
    assert_eq!((got.size, got.state.as_str()), (100, "{\"tail\":100}"));
    assert_eq!(
        got.touched_ms,
        (T0 + 10) * 1000,
        "touched at the clock's time"
    );
    // Untouched sessions are found by age; a touch keeps one young.
    rb.touch_upload("u2").await.unwrap();
    let old: Vec<String> = ra
        .uploads_touched_before((T0 + 5) * 1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(old, vec!["u3".to_owned()]);
    assert!(ra.delete_upload("u3").await.unwrap());
    assert!(!rb.delete_upload("u3").await.unwrap());
    let ids = rb.upload_ids().await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains("u1") && ids.contains("u2"));
}
