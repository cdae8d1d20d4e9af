//! The blob suite: the same tests of blob storage and uploads, run unchanged on the
//! filesystem and on a real S3-compatible server (Garage, started by the testkit; each
//! test under its own key prefix).
//!
//! "Another server" is a second store on the same data: for the filesystem the same
//! directory opened again (a restart), for S3 a second client on the same bucket prefix
//! and the same session database.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use notarium_server::budget::MemoryBudget;
use notarium_server::oci::blobs::{self, BlobError, BlobLocation, BlobStore, UploadLimits};
use notarium_server::oci::meta::sqlite::SqliteMeta;
use notarium_server::oci::meta::RegistryMeta;
use notarium_testkit::garage::Garage;
use registry::Digest;

struct Backend {
    location: BlobLocation,
    dir: tempfile::TempDir,
}

fn limits() -> UploadLimits {
    UploadLimits {
        max_blob_bytes: 64 << 20,
        max_sessions: 100,
        max_sessions_per_repository: 50,
        expiry: Duration::from_secs(3600),
    }
}

impl Backend {
    fn fs() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            location: BlobLocation::File(dir.path().join("blobs")),
            dir,
        }
    }

    fn s3() -> Backend {
        let g = Garage::shared();
        let BlobLocation::S3(mut loc) = BlobLocation::parse(&g.fresh_url()).unwrap() else {
            unreachable!()
        };
        let s = g.s3_settings();
        loc.endpoint = s.endpoint;
        loc.region = s.region;
        loc.access_key_id = s.access_key_id;
        loc.secret_access_key = s.secret_access_key.map(zeroize::Zeroizing::new);
        Backend {
            location: BlobLocation::S3(loc),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A store (one server's view); every call opens another on the same data.
    async fn open_with(&self, limits: UploadLimits) -> Arc<dyn BlobStore> {
        let meta: Arc<dyn RegistryMeta> = Arc::new(
            SqliteMeta::open(
                &self.dir.path().join("registry.db"),
                Arc::new(tuf::SystemClock),
            )
            .unwrap(),
        );
        let budget = Arc::new(MemoryBudget::new(256 << 20, Duration::from_secs(1)));
        blobs::open(
            &self.location,
            meta,
            limits,
            budget,
            Arc::new(tuf::SystemClock),
        )
        .await
        .unwrap()
    }

    async fn open(&self) -> Arc<dyn BlobStore> {
        self.open_with(limits()).await
    }

    /// What uploads left in the store (files, objects).
    fn leftovers(&self) -> usize {
        match &self.location {
            BlobLocation::File(root) => std::fs::read_dir(root.join("uploads")).unwrap().count(),
            BlobLocation::S3(loc) => Garage::shared()
                .count_objects(&format!("s3://{}/{}/uploads", loc.bucket, loc.prefix)),
        }
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::fs()).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::s3()).await })*
        }
    };
}

suite!(
    a_blob_is_visible_only_after_its_digest_checks,
    chunks_of_any_size_cross_parts_and_read_back_exactly,
    an_upload_begun_on_one_server_is_finished_on_another,
    a_body_that_ends_early_keeps_what_arrived,
    a_blob_past_the_size_limit_stores_nothing,
    session_limits_hold_and_idle_sessions_expire,
    garbage_collection_lists_and_deletes,
);

/// A blob larger than one server-side copy may move (AWS: 5 GiB; here the limit is set
/// to 1 MiB) is copied part by part when its upload completes: the same bytes, and
/// nothing of the upload left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_blob_past_the_copy_limit_is_copied_part_by_part() {
    let mut b = Backend::s3();
    if let BlobLocation::S3(loc) = &mut b.location {
        loc.max_copy_bytes = Some(1 << 20);
    }
    let s = b.open().await;
    // Past two parts, and not a multiple of one.
    let data = content(17 << 20 | 12_345, 3);
    let d = push(&*s, "lib/huge", &data).await;
    assert_eq!(s.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert!(read_all(&*s, &d, 0, data.len() as u64).await == data);
    assert_eq!(b.leftovers(), 0);
    // Below the limit the server-side copy is used, and the bytes are the same too.
    let small = content(500_000, 4);
    let d = push(&*s, "lib/huge", &small).await;
    assert_eq!(read_all(&*s, &d, 0, small.len() as u64).await, small);
}

/// Deterministic bytes that differ at every offset of a part.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn read_all(s: &dyn BlobStore, d: &Digest, start: u64, count: u64) -> Vec<u8> {
    let mut stream = s.read(d, start, count).await.unwrap().unwrap();
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn push(s: &dyn BlobStore, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let up = s.start(repo).await.unwrap();
    let mut up = up.lock().await;
    s.append(&mut up, Body::from(data.to_vec())).await.unwrap();
    s.finish(&mut up, &d).await.unwrap();
    d
}

async fn a_blob_is_visible_only_after_its_digest_checks(b: Backend) {
    let s = b.open().await;
    let data = content(300_000, 1);
    let d = Digest::sha256_of(&data);
    let up = s.start("lib/app").await.unwrap();
    let mut up = up.lock().await;
    assert_eq!(
        s.append(&mut up, Body::from(data.clone())).await.unwrap(),
        300_000
    );
    assert_eq!(
        s.stat(&d).await.unwrap(),
        None,
        "not visible before completion"
    );
    // Completed under another digest: refused, nothing stored, the session gone.
    let wrong = Digest::sha256_of(b"something else");
    let e = s.finish(&mut up, &wrong).await.unwrap_err();
    assert!(matches!(e, BlobError::DigestMismatch { .. }), "{e}");
    assert_eq!(s.stat(&wrong).await.unwrap(), None);
    assert_eq!(s.stat(&d).await.unwrap(), None);
    let id = up.id.clone();
    drop(up);
    assert!(s.session("lib/app", &id).await.unwrap().is_none());
    assert_eq!(b.leftovers(), 0, "a refused upload leaves nothing");

    assert_eq!(push(&*s, "lib/app", &data).await, d);
    assert_eq!(s.stat(&d).await.unwrap(), Some(300_000));
    assert_eq!(read_all(&*s, &d, 0, 300_000).await, data);
    assert_eq!(read_all(&*s, &d, 1000, 5).await, data[1000..1005]);
    assert_eq!(b.leftovers(), 0, "a completed upload leaves nothing behind");
    // A session belongs to its repository.
    let up = s.start("lib/app").await.unwrap();
    let id = up.lock().await.id.clone();
    assert!(s.session("lib/other", &id).await.unwrap().is_none());
    assert!(s.session("lib/app", &id).await.unwrap().is_some());
}

async fn chunks_of_any_size_cross_parts_and_read_back_exactly(b: Backend) {
    let s = b.open().await;
    let mib = 1 << 20;
    // Chunks below, across and past the 8 MiB part size, and a single byte.
    let sizes = [3 * mib, 7 * mib, 9 * mib, 1, 100];
    let data = content(sizes.iter().sum(), 7);
    let d = Digest::sha256_of(&data);
    let up = s.start("lib/big").await.unwrap();
    let mut up = up.lock().await;
    let mut at = 0;
    for n in sizes {
        let size = s
            .append(&mut up, Body::from(data[at..at + n].to_vec()))
            .await
            .unwrap();
        at += n;
        assert_eq!(size, at as u64);
    }
    s.finish(&mut up, &d).await.unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), Some(data.len() as u64));
    let all = read_all(&*s, &d, 0, data.len() as u64).await;
    assert!(all == data, "the blob reads back byte for byte");
    // A range across the first part boundary.
    let (start, count) = (8 * mib - 10, 20);
    assert_eq!(
        read_all(&*s, &d, start as u64, count as u64).await,
        data[start..start + count]
    );
    assert_eq!(b.leftovers(), 0);
}

async fn an_upload_begun_on_one_server_is_finished_on_another(b: Backend) {
    let a = b.open().await;
    let data = content(10 << 20, 3);
    let d = Digest::sha256_of(&data);
    let up = a.start("lib/moved").await.unwrap();
    let id = up.lock().await.id.clone();
    {
        let mut up = up.lock().await;
        a.append(&mut up, Body::from(data[..(5 << 20)].to_vec()))
            .await
            .unwrap();
    }
    drop(a);
    let other = b.open().await;
    let up = other.session("lib/moved", &id).await.unwrap().unwrap();
    let mut up = up.lock().await;
    assert_eq!(
        up.size,
        5 << 20,
        "the other server knows where the upload stands"
    );
    other
        .append(&mut up, Body::from(data[(5 << 20)..].to_vec()))
        .await
        .unwrap();
    other.finish(&mut up, &d).await.unwrap();
    assert_eq!(
        read_all(&*other, &d, 0, data.len() as u64).await.len(),
        data.len()
    );
    assert!(read_all(&*other, &d, 0, data.len() as u64).await == data);
}

async fn a_body_that_ends_early_keeps_what_arrived(b: Backend) {
    let s = b.open().await;
    let data = content(3 << 20, 9);
    let d = Digest::sha256_of(&data);
    let up = s.start("lib/cut").await.unwrap();
    let mut up = up.lock().await;
    let first = Bytes::from(data[..(1 << 20)].to_vec());
    let cut = futures_util::stream::iter(vec![
        Ok(first),
        Err(std::io::Error::other("connection reset")),
    ]);
    let e = s.append(&mut up, Body::from_stream(cut)).await.unwrap_err();
    assert!(matches!(e, BlobError::Body(_)), "{e}");
    assert_eq!(up.size, 1 << 20, "what arrived is kept");
    s.append(&mut up, Body::from(data[(1 << 20)..].to_vec()))
        .await
        .unwrap();
    s.finish(&mut up, &d).await.unwrap();
    assert!(read_all(&*s, &d, 0, data.len() as u64).await == data);
}

async fn a_blob_past_the_size_limit_stores_nothing(b: Backend) {
    let s = b
        .open_with(UploadLimits {
            max_blob_bytes: 1 << 20,
            ..limits()
        })
        .await;
    let up = s.start("lib/huge").await.unwrap();
    let mut up = up.lock().await;
    let e = s
        .append(&mut up, Body::from(content(2 << 20, 0)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BlobError::TooLarge { limit } if limit == 1 << 20),
        "{e}"
    );
    let id = up.id.clone();
    drop(up);
    assert!(s.session("lib/huge", &id).await.unwrap().is_none());
    assert_eq!(b.leftovers(), 0, "nothing of a refused upload is stored");
}

async fn session_limits_hold_and_idle_sessions_expire(b: Backend) {
    let s = b
        .open_with(UploadLimits {
            max_sessions: 2,
            max_sessions_per_repository: 1,
            expiry: Duration::from_secs(1),
            ..limits()
        })
        .await;
    let one = s.start("lib/a").await.unwrap();
    let e = s.start("lib/a").await.err().unwrap();
    assert!(matches!(e, BlobError::TooManySessions(_)), "{e}");
    s.start("lib/b").await.unwrap();
    let e = s.start("lib/c").await.err().unwrap();
    assert!(matches!(e, BlobError::TooManySessions(_)), "{e}");
    {
        let mut one = one.lock().await;
        s.append(&mut one, Body::from(content(1000, 0)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.expire().await, 2);
    assert_eq!(b.leftovers(), 0, "expired sessions leave nothing");
    s.start("lib/c").await.unwrap();
}

async fn garbage_collection_lists_and_deletes(b: Backend) {
    let s = b.open().await;
    let (x, y) = (content(1000, 1), content(2000, 2));
    let (dx, dy) = (push(&*s, "lib/gc", &x).await, push(&*s, "lib/gc", &y).await);
    let mut listed: Vec<(String, u64)> = s
        .list_blobs()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.digest.to_string(), b.size))
        .collect();
    listed.sort();
    let mut want = vec![(dx.to_string(), 1000), (dy.to_string(), 2000)];
    want.sort();
    assert_eq!(listed, want);
    s.delete_blob(&dx).await.unwrap();
    s.delete_blob(&dx).await.unwrap();
    assert_eq!(s.stat(&dx).await.unwrap(), None);
    assert_eq!(s.list_blobs().await.unwrap().len(), 1);
    // An abandoned upload with data: counted by a dry run, removed by a real one.
    let up = s.start("lib/gc").await.unwrap();
    {
        let mut up = up.lock().await;
        s.append(&mut up, Body::from(content(5000, 5)))
            .await
            .unwrap();
    }
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(s.remove_stale_uploads(later, true).await.unwrap(), 1);
    assert!(b.leftovers() > 0);
    assert_eq!(s.remove_stale_uploads(later, false).await.unwrap(), 1);
    assert_eq!(b.leftovers(), 0);
    assert_eq!(
        s.stat(&dy).await.unwrap(),
        Some(2000),
        "referenced data stays"
    );
}
