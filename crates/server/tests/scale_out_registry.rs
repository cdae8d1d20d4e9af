//! Registry pushes across two servers sharing one PostgreSQL database and one S3 bucket
//! (Garage): every upload starts on one server, gets its chunks through both and is
//! completed on the other; the manifest goes to either. Then both servers serve every
//! manifest and blob byte for byte (ranges too), nothing answered 5xx, and no upload left
//! anything behind in the bucket.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use notarium_testkit::garage::Garage;
use notarium_testkit::oci::Image;
use notarium_testkit::postgres::TestDb;
use notarium_testkit::server::{Endpoint, Options};
use notarium_testkit::TestServer;
use registry::manifest::OCI_MANIFEST;

const PUSHERS: usize = 4;

type Statuses = Arc<Mutex<BTreeMap<u16, usize>>>;

fn server_on(db: &TestDb, blobs: &str) -> TestServer {
    let (url, blobs) = (db.url(), blobs.to_owned());
    TestServer::start_with(Options {
        configure: Box::new(move |c| {
            c.database = Some(notarium_server::db::Database::parse(&url).unwrap());
            c.blobs = Some(notarium_server::oci::blobs::BlobLocation::parse(&blobs).unwrap());
            c.s3 = Some(Garage::shared().s3_settings());
        }),
        ..Default::default()
    })
}

fn send(rb: reqwest::blocking::RequestBuilder, seen: &Statuses) -> reqwest::blocking::Response {
    let r = rb.send().unwrap();
    *seen.lock().unwrap().entry(r.status().as_u16()).or_default() += 1;
    r
}

/// Upload `data` in three requests: started on `a`, the first half through `b`, the rest
/// through `a`, completed on `b`.
fn push_blob_across(a: &Endpoint, b: &Endpoint, name: &str, data: &[u8], seen: &Statuses) {
    let digest = registry::Digest::sha256_of(data);
    let r = send(
        a.client()
            .post(format!("{}/v2/{name}/blobs/uploads/", a.url)),
        seen,
    );
    assert_eq!(r.status().as_u16(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let half = data.len() / 2;
    let r = send(
        b.client()
            .patch(format!("{}{loc}", b.url))
            .header("Content-Range", format!("0-{}", half.max(1) - 1))
            .header("Content-Type", "application/octet-stream")
            .body(data[..half].to_vec()),
        seen,
    );
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
    let r = send(
        a.client()
            .patch(format!("{}{loc}", a.url))
            .header("Content-Type", "application/octet-stream")
            .body(data[half..].to_vec()),
        seen,
    );
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", data.len() - 1)
    );
    let r = send(
        b.client().put(format!("{}{loc}?digest={digest}", b.url)),
        seen,
    );
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
}

#[test]
fn uploads_move_between_servers_on_one_database_and_bucket() {
    let db = TestDb::create();
    let g = Garage::shared();
    let bucket = g.fresh_url();
    let servers = [server_on(&db, &bucket), server_on(&db, &bucket)];
    let eps: Vec<Endpoint> = servers.iter().map(|s| s.endpoint.clone()).collect();
    let seen: Statuses = Arc::default();
    let images: Vec<Image> = (0..PUSHERS)
        // One image has a layer past the 8 MiB part size.
        .map(|i| {
            Image::new(
                &format!("pusher-{i}"),
                "amd64",
                if i == 0 { 11 << 20 } else { 300_000 },
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for (i, image) in images.iter().enumerate() {
            let (a, b) = (&eps[i % 2], &eps[(i + 1) % 2]);
            let seen = seen.clone();
            scope.spawn(move || {
                let name = format!("team/app{i}");
                for blob in image.blobs() {
                    push_blob_across(a, b, &name, &blob.bytes, &seen);
                }
                let r = send(
                    b.client()
                        .put(format!("{}/v2/{name}/manifests/v1", b.url))
                        .header("Content-Type", OCI_MANIFEST)
                        .body(image.manifest.clone()),
                    &seen,
                );
                assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
                // Right after the acknowledgement, the other server serves it.
                let r = send(
                    a.client()
                        .get(format!("{}/v2/{name}/manifests/v1", a.url))
                        .header("Accept", OCI_MANIFEST),
                    &seen,
                );
                assert_eq!(r.status().as_u16(), 200);
                assert_eq!(r.bytes().unwrap().as_ref(), image.manifest.as_slice());
            });
        }
    });
    for (i, image) in images.iter().enumerate() {
        let name = format!("team/app{i}");
        for ep in &eps {
            for blob in image.blobs() {
                let r = send(
                    ep.client()
                        .get(format!("{}/v2/{name}/blobs/{}", ep.url, blob.digest)),
                    &seen,
                );
                assert_eq!(r.status().as_u16(), 200);
                assert!(
                    r.bytes().unwrap().as_ref() == blob.bytes.as_slice(),
                    "{name} {} byte for byte",
                    blob.digest
                );
                let n = blob.bytes.len();
                let (start, end) = (n / 3, (n / 3 + 9).min(n - 1));
                let r = send(
                    ep.client()
                        .get(format!("{}/v2/{name}/blobs/{}", ep.url, blob.digest))
                        .header("Range", format!("bytes={start}-{end}")),
                    &seen,
                );
                assert_eq!(r.status().as_u16(), 206);
                assert_eq!(r.bytes().unwrap().as_ref(), &blob.bytes[start..=end]);
            }
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.keys().all(|s| *s < 500), "no 5xx: {seen:?}");
    assert_eq!(
        g.count_objects(&format!("{bucket}/uploads")),
        0,
        "completed uploads leave nothing behind"
    );
}
