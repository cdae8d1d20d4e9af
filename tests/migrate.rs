//! `notarium server migrate`: a populated embedded installation (SQLite + filesystem:
//! three repositories with trusted pushes, delegations, rotated root and targets keys,
//! several images) copied to PostgreSQL + S3 (Garage). Afterwards the server on the new
//! backends serves every repository as before: the docker CLI (with its cache, and a new
//! user without one) and `notarium trust verify` read the same keys, tags and digests,
//! every trust file and the changefeed are byte for byte the same, every blob reads back
//! under its digest. The copy is resumable: rows removed from the target are copied again
//! by a second run, which copies nothing else.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::garage::Garage;
use notarium_testkit::oci::{write_layout, Image};
use notarium_testkit::postgres::TestDb;
use notarium_testkit::server::Options;
use notarium_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

fn notarium(d: &Docker, args: &[&str], trust: bool) -> Run {
    let mut c = d.command_of(Path::new(BIN), args);
    if trust {
        c.env("DOCKER_CONTENT_TRUST", "1");
    }
    let o = c.output().unwrap();
    let r = Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert_eq!(r.code, 0, "notarium {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// What a reader sees of a repository: docker's view (keys, signers, tags) and the bytes
/// of its current trust files.
fn view(server: &TestServer, d: &Docker, repo: &str) -> (serde_json::Value, Vec<Vec<u8>>) {
    let docker: serde_json::Value =
        serde_json::from_str(&d.ok(&["trust", "inspect", repo]).stdout).unwrap();
    let files = [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "targets/releases.json",
        "targets/alice.json",
    ]
    .iter()
    .map(|f| {
        let a = server.endpoint.get_file(repo, f);
        assert!(
            a.status == 200 || a.status == 404,
            "{repo} {f}: {}",
            a.status
        );
        a.body
    })
    .collect();
    (docker, files)
}

/// A docker CLI user trusting `server`'s CA.
fn user(dir: &Path, server: &TestServer, name: &str) -> Docker {
    let u = Docker::new(&dir.join(name), &server.url);
    server.install_ca_for_docker(&u.config);
    u
}

fn migrate(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = try_migrate(data, args);
    assert!(ok, "migrate {args:?}:\n{out}\n{err}");
    eprintln!("{err}{out}");
    out
}

/// Whether it succeeded, standard output, standard error.
fn try_migrate(data: &Path, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.args(["server", "migrate", "--data-dir"])
        .arg(data)
        .args(args);
    for (k, v) in Garage::shared().env() {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn line<'a>(report: &'a str, table: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{table}: ")))
        .unwrap_or_else(|| panic!("no {table} in {report}"))
}

#[test]
fn an_embedded_installation_moves_to_postgres_and_s3_and_reads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = TestServer::start_with(Options {
        data_dir: Some(data.clone()),
        configure: Box::new(|c| c.database = None),
        ..Default::default()
    });
    assert!(server.database.is_none() && server.blobs.is_none());
    let addr = server.addr;
    let host = addr.to_string();
    let alice = user(tmp.path(), &server, "alice");
    let repos: Vec<String> = (0..3).map(|i| format!("{host}/mig/app{i}")).collect();
    let mut images = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        let img = Image::new(&format!("mig-{i}"), "amd64", 50_000 + i * 10_000);
        let layout = write_layout(&tmp.path().join(format!("src{i}")), &img, "v1");
        notarium(
            &alice,
            &["push", layout.to_str().unwrap(), &format!("{repo}:v1")],
            true,
        );
        images.push((repo.clone(), "v1", img));
    }
    // Delegations: alice's key as signer "alice" of app0 and app1, each signing v2.
    notarium(
        &alice,
        &["trust", "key", "generate", "alice", "--dir", "."],
        false,
    );
    for (i, repo) in repos.iter().take(2).enumerate() {
        notarium(
            &alice,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                "alice.pub",
                "alice",
                repo,
            ],
            false,
        );
        let img = Image::new(&format!("mig-{i}-v2"), "amd64", 20_000);
        let layout = write_layout(&tmp.path().join(format!("src{i}v2")), &img, "v2");
        notarium(
            &alice,
            &["push", layout.to_str().unwrap(), &format!("{repo}:v2")],
            true,
        );
        images.push((repo.clone(), "v2", img));
    }
    // Rotated keys: app0's root and targets keys.
    notarium(
        &alice,
        &["trust", "key", "rotate", &repos[0], "root"],
        false,
    );
    notarium(
        &alice,
        &["trust", "key", "rotate", &repos[0], "targets"],
        false,
    );

    let before: Vec<_> = repos.iter().map(|r| view(&server, &alice, r)).collect();
    let feed_before = server
        .endpoint
        .get("/v2/_trust/changefeed?records=1000&change_id=0");
    assert_eq!(feed_before.status, 200);
    let verified_before: Vec<String> = images
        .iter()
        .map(|(r, t, _)| notarium(&alice, &["trust", "verify", &format!("{r}:{t}")], false).stdout)
        .collect();
    drop(server);

    // Metadata first, then (a second run) metadata again and the blobs.
    let db = TestDb::create();
    let bucket = Garage::shared().fresh_url();
    let from = format!("sqlite://{}", data.display());
    let report = migrate(&data, &["--from", &from, "--to", &db.url()]);
    assert!(line(&report, "tuf_files").contains("verified"), "{report}");
    assert!(report.contains("blobs: not copied"), "{report}");
    // An interrupted copy: the newest trust files and a tag never reached the target.
    let psql = |sql: &str| {
        let o = Command::new("psql")
            .args([&db.url(), "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let removed: u64 = psql(
        "WITH d AS (DELETE FROM tuf_files WHERE id > (SELECT max(id) - 5 FROM tuf_files) RETURNING 1) \
         SELECT count(*) FROM d",
    )
    .parse()
    .unwrap();
    assert_eq!(removed, 5);
    psql("DELETE FROM tags WHERE tag = 'v2'");
    let report = migrate(
        &data,
        &["--from", &from, "--to", &db.url(), "--blobs-to", &bucket],
    );
    assert!(
        line(&report, "tuf_files").contains("(5 copied now,"),
        "{report}"
    );
    assert!(line(&report, "tags").contains("(2 copied now,"), "{report}");
    assert!(
        line(&report, "changefeed").contains("(0 copied now,"),
        "{report}"
    );
    let blobs = line(&report, "blobs");
    assert!(
        blobs.contains("every digest verified") && !blobs.starts_with("blobs: 0 "),
        "{report}"
    );
    // Nothing left to do: a third run copies nothing.
    let report = migrate(
        &data,
        &["--from", &from, "--to", &db.url(), "--blobs-to", &bucket],
    );
    for l in report.lines() {
        assert!(l.contains("(0 copied now"), "{l}");
    }
    // A target whose rows differ from the source's (another installation's) is refused.
    let tag = psql("SELECT digest FROM tags WHERE tag = 'v1' AND repo LIKE '%app2'");
    psql("UPDATE tags SET digest = 'sha256:00' WHERE tag = 'v1' AND repo LIKE '%app2'");
    let (ok, _, err) = try_migrate(&data, &["--from", &from, "--to", &db.url()]);
    assert!(!ok, "a differing target passed verification");
    assert!(
        err.contains("verification failed: tags: the source has 5 rows, the target 5 with different contents"),
        "{err}"
    );
    psql(&format!(
        "UPDATE tags SET digest = '{tag}' WHERE tag = 'v1' AND repo LIKE '%app2'"
    ));

    // The server on the new backends (same data directory for its TLS files, same port).
    let url = db.url();
    let (g, blob_url) = (Garage::shared(), bucket.clone());
    let server = TestServer::start_with(Options {
        data_dir: Some(data.clone()),
        addr: Some(addr),
        configure: Box::new(move |c| {
            c.database = Some(server::db::Database::parse(&url).unwrap());
            c.blobs = Some(server::oci::blobs::BlobLocation::parse(&blob_url).unwrap());
            c.s3 = Some(g.s3_settings());
        }),
        ..Default::default()
    });
    // No blob left on the filesystem is read: move the old store away.
    std::fs::rename(data.join("registry"), tmp.path().join("old-registry")).unwrap();
    let after: Vec<_> = repos.iter().map(|r| view(&server, &alice, r)).collect();
    assert_eq!(
        after, before,
        "the same keys, signers, tags and trust files"
    );
    let feed_after = server
        .endpoint
        .get("/v2/_trust/changefeed?records=1000&change_id=0");
    assert_eq!(feed_after.body, feed_before.body, "the same changefeed");
    let fresh = user(tmp.path(), &server, "carol");
    for (i, (r, t, img)) in images.iter().enumerate() {
        let v = notarium(&fresh, &["trust", "verify", &format!("{r}:{t}")], false).stdout;
        assert_eq!(v, verified_before[i]);
        assert_eq!(v.trim(), img.digest.to_string());
        let name = r.strip_prefix(&format!("{host}/")).unwrap();
        for b in img.blobs() {
            let got = server
                .endpoint
                .client()
                .get(format!("{}/v2/{name}/blobs/{}", server.url, b.digest))
                .send()
                .unwrap();
            assert_eq!(got.status().as_u16(), 200, "{name} {}", b.digest);
            let bytes = got.bytes().unwrap();
            assert_eq!(registry::Digest::sha256_of(&bytes), b.digest);
        }
    }
    let c: serde_json::Value =
        serde_json::from_str(&fresh.ok(&["trust", "inspect", &repos[0]]).stdout).unwrap();
    assert_eq!(c, before[0].0, "a reader without a cache sees the same");
    // The new installation takes updates: a new signature lands.
    let img = Image::new("mig-after", "amd64", 10_000);
    let layout = write_layout(&tmp.path().join("after"), &img, "v3");
    notarium(
        &alice,
        &[
            "push",
            layout.to_str().unwrap(),
            &format!("{}:v3", repos[2]),
        ],
        true,
    );
    let v = notarium(
        &fresh,
        &["trust", "verify", &format!("{}:v3", repos[2])],
        false,
    )
    .stdout;
    assert_eq!(v.trim(), img.digest.to_string());
}
