//! The registry API against the real server in-process: uploads (monolithic, chunked,
//! resumed across a restart), ranges, manifests and what they must reference, tags and the
//! catalog with pagination, referrers, deletes, garbage collection, and bad input: each
//! refused with the spec's error, nothing stored.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::oci::{self, Image, Index};
use notarium_testkit::TestServer;
use registry::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry::Digest;
use reqwest::blocking::{Client, Response};

struct Api {
    c: Client,
    base: String,
}

impl Api {
    fn new(s: &TestServer) -> Api {
        Api {
            c: s.endpoint.client(),
            base: s.url.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn get(&self, path: &str) -> Response {
        self.c.get(self.url(path)).send().unwrap()
    }

    fn head(&self, path: &str) -> Response {
        self.c.head(self.url(path)).send().unwrap()
    }

    fn start(&self, name: &str) -> String {
        let r = self
            .c
            .post(self.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(r.headers()["docker-upload-uuid"].to_str().unwrap().len() == 32);
        r.headers()["location"].to_str().unwrap().to_owned()
    }

    fn patch(&self, loc: &str, data: &[u8], start: Option<u64>) -> Response {
        let mut rb = self
            .c
            .patch(self.url(loc))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec());
        if let Some(s) = start {
            rb = rb.header(
                "content-range",
                format!("{s}-{}", s + data.len() as u64 - 1),
            );
        }
        rb.send().unwrap()
    }

    fn put_upload(&self, loc: &str, digest: &str, data: &[u8]) -> Response {
        let sep = if loc.contains('?') { '&' } else { '?' };
        self.c
            .put(self.url(&format!("{loc}{sep}digest={digest}")))
            .body(data.to_vec())
            .send()
            .unwrap()
    }

    fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
        self.c
            .put(self.url(&format!("/v2/{name}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .unwrap()
    }
}

fn code(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().unwrap_or_default();
    (
        status,
        v["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Every file under the registry's data (to show nothing was stored).
fn stored(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("registry/blobs")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn uploads_monolithic_chunked_and_ranges() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let base = api.get("/v2/");
    assert_eq!(base.status(), 200);
    assert_eq!(
        base.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // Chunked: two PATCHes with Content-Range, a status check between, then PUT.
    let data = oci::noise("chunks", 200_000);
    let d = Digest::sha256_of(&data);
    let loc = api.start("team/app");
    let r = api.patch(&loc, &data[..70_000], Some(0));
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-69999");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = api.get(&loc);
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-69999");
    // A chunk that does not start where the upload stands.
    assert_eq!(code(api.patch(&loc, &data[100..200], Some(100))).0, 416);
    let r = api.patch(&loc, &data[70_000..], Some(70_000));
    assert_eq!(r.status(), 202);
    let r = api.put_upload(&loc, &d.to_string(), b"");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    // The upload is gone once complete.
    assert_eq!(code(api.get(&loc)), (404, "BLOB_UPLOAD_UNKNOWN".into()));

    let blob = format!("/v2/team/app/blobs/{d}");
    let r = api.head(&blob);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "200000");
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    assert_eq!(api.get(&blob).bytes().unwrap().as_ref(), data.as_slice());
    let r = api
        .c
        .get(api.url(&blob))
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/200000");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[1000..2000]);
    let r = api
        .c
        .get(api.url(&blob))
        .header("range", "bytes=300000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);

    // Monolithic: POST ?digest= with the blob.
    let small = b"monolithic".to_vec();
    let ds = Digest::sha256_of(&small);
    let r = api
        .c
        .post(api.url(&format!("/v2/team/app/blobs/uploads/?digest={ds}")))
        .body(small.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        api.get(&format!("/v2/team/app/blobs/{ds}"))
            .bytes()
            .unwrap()
            .as_ref(),
        small.as_slice()
    );
    // A blob is visible only in the repositories it was uploaded or mounted into.
    assert_eq!(code(api.head(&format!("/v2/other/app/blobs/{ds}"))).0, 404);
    let r = api
        .c
        .post(api.url(&format!(
            "/v2/other/app/blobs/uploads/?mount={ds}&from=team/app"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(api.head(&format!("/v2/other/app/blobs/{ds}")).status(), 200);
    // Mounting what the source repository does not have starts an upload instead.
    let r = api
        .c
        .post(api.url(&format!(
            "/v2/third/app/blobs/uploads/?mount={ds}&from=nope/app"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // Delete the blob from one repository: the other still has it.
    let r = api
        .c
        .delete(api.url(&format!("/v2/other/app/blobs/{ds}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(code(api.head(&format!("/v2/other/app/blobs/{ds}"))).0, 404);
    assert_eq!(api.head(&format!("/v2/team/app/blobs/{ds}")).status(), 200);
}

#[test]
fn wrong_digest_and_truncated_uploads_store_nothing() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let before = stored(&s.data_dir);
    let data = oci::noise("wrong", 50_000);
    let wrong = Digest::sha256_of(b"something else");

    // Wrong digest in the final PUT.
    let loc = api.start("team/app");
    api.patch(&loc, &data, None);
    assert_eq!(
        code(api.put_upload(&loc, &wrong.to_string(), b"")),
        (400, "DIGEST_INVALID".into())
    );
    assert_eq!(code(api.get(&loc)), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    assert_eq!(
        code(api.head(&format!("/v2/team/app/blobs/{wrong}"))).0,
        404
    );

    // Truncated: half the data, completed as the whole.
    let full = Digest::sha256_of(&data);
    let loc = api.start("team/app");
    api.patch(&loc, &data[..25_000], None);
    assert_eq!(
        code(api.put_upload(&loc, &full.to_string(), b"")),
        (400, "DIGEST_INVALID".into())
    );
    assert_eq!(code(api.head(&format!("/v2/team/app/blobs/{full}"))).0, 404);

    // Monolithic with the wrong digest; a malformed digest.
    let r = api
        .c
        .post(api.url(&format!("/v2/team/app/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(code(r), (400, "DIGEST_INVALID".into()));
    let r = api
        .c
        .post(api.url("/v2/team/app/blobs/uploads/?digest=sha256:../../etc/passwd"))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(code(r), (400, "DIGEST_INVALID".into()));
    let loc = api.start("team/app");
    assert_eq!(
        code(api.c.put(api.url(&loc)).send().unwrap()),
        (400, "DIGEST_INVALID".into())
    );

    // Unknown upload IDs, and another repository's upload.
    let loc = api.start("team/app");
    for path in [
        "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef".to_owned(),
        "/v2/team/app/blobs/uploads/not-an-id".to_owned(),
        loc.replace("/team/app/", "/other/app/"),
    ] {
        assert_eq!(
            code(api.patch(&path, b"x", None)),
            (404, "BLOB_UPLOAD_UNKNOWN".into()),
            "{path}"
        );
    }
    assert_eq!(stored(&s.data_dir), before, "a refused upload left a blob");
}

#[test]
fn manifests_must_reference_what_the_repository_has() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let image = Image::new("refs", "amd64", 1000);
    // No blobs yet.
    let r = api.put_manifest("team/app", "v1", OCI_MANIFEST, &image.manifest);
    assert_eq!(code(r), (400, "MANIFEST_BLOB_UNKNOWN".into()));
    // Blobs in another repository do not count.
    oci::push(&api.c, &api.base, "other/app", "v1", &image);
    let r = api.put_manifest("team/app", "v1", OCI_MANIFEST, &image.manifest);
    assert_eq!(code(r), (400, "MANIFEST_BLOB_UNKNOWN".into()));
    assert_eq!(
        code(api.get("/v2/team/app/manifests/v1")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    // An index needs its manifests in the repository.
    let index = Index::new("idx", &["amd64", "arm64"]);
    let r = api.put_manifest("team/app", "multi", OCI_INDEX, &index.manifest);
    assert_eq!(code(r), (400, "MANIFEST_BLOB_UNKNOWN".into()));
    // Invalid manifests, a type that disagrees, a digest that does not match, too big.
    for (body, ct) in [
        (b"not json".to_vec(), OCI_MANIFEST),
        (br#"{"schemaVersion":1}"#.to_vec(), OCI_MANIFEST),
        (image.manifest.clone(), OCI_INDEX),
    ] {
        assert_eq!(
            code(api.put_manifest("other/app", "bad", ct, &body)),
            (400, "MANIFEST_INVALID".into())
        );
    }
    let wrong = Digest::sha256_of(b"x");
    assert_eq!(
        code(api.put_manifest(
            "other/app",
            &wrong.to_string(),
            OCI_MANIFEST,
            &image.manifest
        )),
        (400, "DIGEST_INVALID".into())
    );
    let mut huge = image.manifest.clone();
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(
        format!(",\"annotations\":{{\"x\":\"{}\"}}}}", "a".repeat(5 << 20)).as_bytes(),
    );
    assert_eq!(
        code(api.put_manifest("other/app", "huge", OCI_MANIFEST, &huge)),
        (413, "SIZE_INVALID".into())
    );
    assert_eq!(code(api.get("/v2/other/app/manifests/bad")).0, 404);

    // Stored by tag: readable by tag and digest, with its type and digest.
    let r = api.get("/v2/other/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    assert_eq!(
        r.headers()["docker-content-digest"],
        image.digest.to_string().as_str()
    );
    assert_eq!(r.bytes().unwrap().as_ref(), image.manifest.as_slice());
    let r = api.head(&format!("/v2/other/app/manifests/{}", image.digest));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        image.manifest.len().to_string().as_str()
    );
    // An index over manifests that are there.
    oci::push_index(&api.c, &api.base, "other/app", "multi", &index);
    let r = api.get("/v2/other/app/manifests/multi");
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
}

#[test]
fn hostile_names_are_refused() {
    let s = TestServer::start();
    let before = stored(&s.data_dir);
    for path in [
        "/v2/../../etc/blobs/uploads/",
        "/v2/a/../b/blobs/uploads/",
        "/v2/%2e%2e/%2e%2e/x/blobs/uploads/",
        "/v2/UPPER/blobs/uploads/",
        "/v2/a//b/blobs/uploads/",
        "/v2/-a/blobs/uploads/",
        "/v2/a%00b/blobs/uploads/",
    ] {
        let a = s.endpoint.raw_path_request("POST", path, None);
        assert!(
            a.status == 400 && a.code() == "NAME_INVALID",
            "{path}: {} {}",
            a.status,
            a.text()
        );
    }
    let long = format!("/v2/{}/manifests/v1", "a".repeat(300));
    let a = s.endpoint.raw_path_request("GET", &long, None);
    assert_eq!((a.status, a.code()), (400, "NAME_INVALID".to_owned()));
    assert_eq!(stored(&s.data_dir), before);
    assert!(!s.data_dir.parent().unwrap().join("etc").exists());
}

#[test]
fn tags_catalog_referrers_and_deletes() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let image = Image::new("tags", "amd64", 100);
    for t in ["a", "b", "c", "d", "e"] {
        oci::push(&api.c, &api.base, "team/app", t, &image);
    }
    oci::push(&api.c, &api.base, "team/other", "x", &image);
    // Pages of two, linked.
    let mut seen = Vec::new();
    let mut next = Some("/v2/team/app/tags/list?n=2".to_owned());
    while let Some(p) = next {
        let r = api.get(&p);
        assert_eq!(r.status(), 200);
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_owned()
        });
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["name"], "team/app");
        for t in v["tags"].as_array().unwrap() {
            seen.push(t.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let v: serde_json::Value = api.get("/v2/_catalog").json().unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["team/app", "team/other"])
    );
    let r = api.get("/v2/_catalog?n=1");
    assert!(r.headers()["link"]
        .to_str()
        .unwrap()
        .contains("last=team%2Fapp"));
    assert_eq!(
        code(api.get("/v2/no/such/tags/list")),
        (404, "NAME_UNKNOWN".into())
    );

    // A signature-like artifact that refers to the image.
    let config_blob = b"{}".to_vec();
    notarium_testkit::registry::push_blob(&api.c, &api.base, "team/app", &config_blob);
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&config_blob).to_string(), "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest.to_string(), "size": image.manifest.len()},
        "annotations": {"who": "alice"},
    }))
    .unwrap();
    let ad = Digest::sha256_of(&artifact);
    let r = api.put_manifest("team/app", &ad.to_string(), OCI_MANIFEST, &artifact);
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["oci-subject"],
        image.digest.to_string().as_str()
    );
    let r = api.get(&format!("/v2/team/app/referrers/{}", image.digest));
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["manifests"][0]["digest"], ad.to_string());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(v["manifests"][0]["annotations"]["who"], "alice");
    let r = api.get(&format!(
        "/v2/team/app/referrers/{}?artifactType=other",
        image.digest
    ));
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // Delete a tag; then the manifest (its other tags go with it).
    assert_eq!(
        api.c
            .delete(api.url("/v2/team/app/manifests/a"))
            .send()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(code(api.get("/v2/team/app/manifests/a")).0, 404);
    assert_eq!(api.get("/v2/team/app/manifests/b").status(), 200);
    let r = api
        .c
        .delete(api.url(&format!("/v2/team/app/manifests/{}", image.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        code(api.get("/v2/team/app/manifests/b")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    let v: serde_json::Value = api.get("/v2/team/app/tags/list").json().unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));
    assert_eq!(api.get("/v2/team/other/manifests/x").status(), 200);
}

#[test]
fn an_upload_survives_a_restart_and_a_partial_one_is_never_a_blob() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let data = oci::noise("restart", 300_000);
    let d = Digest::sha256_of(&data);
    let loc = api.start("team/app");
    assert_eq!(api.patch(&loc, &data[..100_000], Some(0)).status(), 202);
    // The server stops mid-upload (as a crash would leave it: the part is on disk).
    let s = s.restart();
    let api = Api::new(&s);
    assert_eq!(code(api.head(&format!("/v2/team/app/blobs/{d}"))).0, 404);
    let r = api.get(&loc);
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-99999");
    // Resumed where it stood; the digest is checked over the whole file.
    assert_eq!(
        api.patch(&loc, &data[100_000..], Some(100_000)).status(),
        202
    );
    assert_eq!(api.put_upload(&loc, &d.to_string(), b"").status(), 201);
    assert_eq!(
        api.get(&format!("/v2/team/app/blobs/{d}"))
            .bytes()
            .unwrap()
            .as_ref(),
        data.as_slice()
    );
}

#[test]
fn gc_deletes_only_what_no_manifest_references() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let kept = Image::new("kept", "amd64", 5000);
    let dropped = Image::new("dropped", "amd64", 5000);
    oci::push(&api.c, &api.base, "team/app", "kept", &kept);
    oci::push(&api.c, &api.base, "team/app", "dropped", &dropped);
    let orphan = oci::noise("orphan", 1000);
    notarium_testkit::registry::push_blob(&api.c, &api.base, "team/app", &orphan);
    let r = api
        .c
        .delete(api.url(&format!("/v2/team/app/manifests/{}", dropped.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let abandoned = api.start("team/app");
    api.patch(&abandoned, b"half", None);

    let mut report = None;
    // gc on the server's own backends (PostgreSQL and S3 in the reruns of scripts/test).
    let (database, blobs) = (s.database.clone(), s.blobs.clone());
    let s = s.restart_after(|dir| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (blob_loc, s3) = blobs.clone().unzip();
        let config = notarium_server::config::ServerConfig {
            data_dir: dir.to_path_buf(),
            database,
            blobs: blob_loc.clone(),
            s3: s3.flatten(),
            ..Default::default()
        };
        // With the default grace period everything is young and kept.
        let r = rt
            .block_on(notarium_server::collect_garbage(
                &config,
                std::time::Duration::from_secs(3600),
                false,
            ))
            .unwrap();
        assert_eq!(r.deleted, 0);
        let uploads = || match &blob_loc {
            Some(loc) => notarium_testkit::garage::Garage::shared().count_objects(&format!(
                "{}/uploads",
                loc.to_string().split(' ').next().unwrap()
            )),
            None => std::fs::read_dir(dir.join("registry/uploads"))
                .unwrap()
                .count(),
        };
        // The abandoned upload is its data and its .repo file (in S3: its tail object).
        let left = if blob_loc.is_some() { 1 } else { 2 };
        assert_eq!(uploads(), left);
        // A dry run says the same as the real run below, and removes nothing.
        let dry = rt
            .block_on(notarium_server::collect_garbage(
                &config,
                std::time::Duration::ZERO,
                true,
            ))
            .unwrap();
        assert_eq!((dry.deleted, dry.uploads_removed), (4, 1), "{dry:?}");
        assert_eq!(uploads(), left);
        let r = rt
            .block_on(notarium_server::collect_garbage(
                &config,
                std::time::Duration::ZERO,
                false,
            ))
            .unwrap();
        assert_eq!(r, dry);
        assert_eq!(uploads(), 0);
        report = Some(r);
    });
    let report = report.unwrap();
    // The dropped image's config and big layer, and the orphan; the small first layer
    // differs per image too.
    assert_eq!(report.deleted, 4, "{report:?}");
    assert_eq!(report.kept, 3, "{report:?}");
    assert_eq!(report.uploads_removed, 1, "{report:?}");
    let api = Api::new(&s);
    for b in kept.blobs() {
        assert_eq!(
            api.get(&format!("/v2/team/app/blobs/{}", b.digest))
                .bytes()
                .unwrap()
                .as_ref(),
            b.bytes.as_slice()
        );
    }
    for b in dropped.blobs() {
        assert_eq!(
            code(api.head(&format!("/v2/team/app/blobs/{}", b.digest))).0,
            404
        );
    }
    assert_eq!(
        code(api.head(&format!(
            "/v2/team/app/blobs/{}",
            Digest::sha256_of(&orphan)
        )))
        .0,
        404
    );
    assert_eq!(code(api.get(&abandoned)).0, 404);
    assert_eq!(api.get("/v2/team/app/manifests/kept").status(), 200);
}
