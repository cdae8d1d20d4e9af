//! Registry pushes across two servers sharing one PostgreSQL database and one S3 bucket
//! (Garage): every upload starts on one server, gets its chunks through both and is
//! completed on the other; the manifest goes to either. Then both servers serve every
//! manifest and blob byte for byte (ranges too), nothing answered 5xx, and no upload left
//! anything behind in the bucket. Payloads go unsigned, as they do to an HTTPS endpoint.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use notarium_testkit::garage::Garage;
use notarium_testkit::oci::{assert_serves, push_image_across, Image};
use notarium_testkit::postgres::TestDb;
use notarium_testkit::server::{Endpoint, Options};
use notarium_testkit::TestServer;

const PUSHERS: usize = 4;

type Statuses = Arc<Mutex<BTreeMap<u16, usize>>>;

fn server_on(db: &TestDb, blobs: &str) -> TestServer {
    let (url, blobs) = (db.url(), blobs.to_owned());
    TestServer::start_with(Options {
        configure: Box::new(move |c| {
            c.database = Some(notarium_server::db::Database::parse(&url).unwrap());
            c.blobs = Some(notarium_server::oci::blobs::BlobLocation::parse(&blobs).unwrap());
            // Unsigned payloads, as over HTTPS (the other S3 tests sign them).
            c.s3 = Some(Garage::shared().s3_settings_unsigned());
        }),
        ..Default::default()
    })
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
                let seen = |status| *seen.lock().unwrap().entry(status).or_default() += 1;
                push_image_across(a, b, &name, "v1", image, &seen);
            });
        }
    });
    for (i, image) in images.iter().enumerate() {
        let name = format!("team/app{i}");
        for ep in &eps {
            assert_serves(ep, &name, "v1", image);
            // Ranges come from the store too.
            for blob in image.blobs() {
                let n = blob.bytes.len();
                let (start, end) = (n / 3, (n / 3 + 9).min(n - 1));
                let r = ep
                    .client()
                    .get(format!("{}/v2/{name}/blobs/{}", ep.url, blob.digest))
                    .header("Range", format!("bytes={start}-{end}"))
                    .send()
                    .unwrap();
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
