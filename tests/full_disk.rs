//! `notarium server` on a full disk: a 64 MiB tmpfs data directory (mounted by the
//! test, which runs as root like CI), filled up. Writes get 507 with the documented body,
//! reads keep working, health turns 503 and back to 200 when space is freed, the
//! databases pass `PRAGMA integrity_check`, and a server started on the full disk serves
//! reads.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;
use registry::Digest;

const NO_SPACE: &str =
    "no space left on the server's storage: writes fail until space is freed; reads go on";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let s = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(s.success(), "mount -t tmpfs needs root (CI runs as root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Take every free byte with a file outside the data directory.
    fn fill(&self) {
        let free = rustix::fs::statvfs(self.path()).unwrap();
        let bytes = free.f_bavail * free.f_frsize;
        let f = std::fs::File::create(self.path().join("filler")).unwrap();
        if bytes > 0 {
            rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, bytes).unwrap();
        }
        let left = rustix::fs::statvfs(self.path()).unwrap().f_bavail;
        assert_eq!(left, 0, "the tmpfs is full");
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

struct Server {
    child: Child,
    ep: Endpoint,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, log: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args(["server", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("NOTARIUM_KEY_PASSPHRASE", "full disk")
        .env("NOTARIUM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("no ready line: {}", std::fs::read_to_string(log).unwrap()))
        .to_owned();
    Server {
        child,
        ep: Endpoint::new(url, Some(data.join("tls/ca.crt"))),
        stderr: log.to_owned(),
    }
}

fn stop(mut s: Server) {
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    s.child.wait().unwrap();
}

fn health(ep: &Endpoint) -> (u16, serde_json::Value) {
    let a = ep.get("/healthz");
    (a.status, a.json())
}

fn wait_health(ep: &Endpoint, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(ep).0 != want {
        assert!(
            Instant::now() < deadline,
            "health did not turn {want}: {:?}",
            health(ep)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn push_blob(ep: &Endpoint, name: &str, data: &[u8]) -> (u16, serde_json::Value) {
    let r = ep
        .client()
        .post(format!(
            "{}/v2/{name}/blobs/uploads/?digest={}",
            ep.url,
            Digest::sha256_of(data)
        ))
        .body(data.to_vec())
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

#[test]
fn a_full_disk_refuses_writes_and_keeps_serving_reads() {
    let fs = Tmpfs::mount("64m");
    let data = fs.path().join("data");
    let log = std::env::temp_dir().join(format!("notarium-full-disk-{}.log", std::process::id()));
    let s = start(&data, &log);
    let gun = "registry.example.com/full/app";
    let mut repo = TestRepo::new(&s.ep, gun);
    repo.publish_init(&s.ep);
    let blob = notarium_testkit::oci::noise("before", 100_000);
    assert_eq!(push_blob(&s.ep, "full/app", &blob).0, 201);
    let timestamp = s.ep.get_file(gun, "timestamp.json").body;
    assert_eq!(health(&s.ep).0, 200);

    fs.fill();
    // Writes: 507 with the documented bodies (a blob, a trust update).
    let (status, body) = push_blob(
        &s.ep,
        "full/app",
        &notarium_testkit::oci::noise("during", 200_000),
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["errors"][0]["code"], "UNKNOWN");
    assert_eq!(body["errors"][0]["detail"], NO_SPACE);
    let t = repo.add_delegation("releases");
    let a = s.ep.post_parts(gun, &[("targets", &t)]);
    assert_eq!(a.status, 507, "{}", a.text());
    assert_eq!(a.code(), "UPDATING");
    assert_eq!(a.json()["errors"][0]["detail"], NO_SPACE);
    // Reads go on; health says why it is unhealthy.
    assert_eq!(s.ep.get_file(gun, "timestamp.json").body, timestamp);
    let r =
        s.ep.client()
            .get(format!(
                "{}/v2/full/app/blobs/{}",
                s.ep.url,
                Digest::sha256_of(&blob)
            ))
            .send()
            .unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), blob);
    let (status, why) = health(&s.ep);
    assert_eq!(status, 503);
    assert_eq!(why["Storage writable"], NO_SPACE);
    assert_eq!(s.ep.get("/_notary_server/health").status, 503);

    // Space again: healthy again, and writes work.
    fs.free();
    wait_health(&s.ep, 200);
    let a = s.ep.post_parts(gun, &[("targets", &t)]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        push_blob(
            &s.ep,
            "full/app",
            &notarium_testkit::oci::noise("after", 100_000)
        )
        .0,
        201
    );
    let timestamp = s.ep.get_file(gun, "timestamp.json").body;
    stop(s);

    for db in ["notarium.db", "registry.db"] {
        let c = rusqlite::Connection::open(data.join(db)).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "{db}");
    }

    // Started on a full disk: read-only, with a warning, and reads served.
    fs.fill();
    let s = start(&data, &log);
    let warned = std::fs::read_to_string(&s.stderr).unwrap();
    assert!(warned.contains("starting read-only"), "{warned}");
    assert_eq!(s.ep.get_file(gun, "timestamp.json").body, timestamp);
    assert_eq!(health(&s.ep).0, 503);
    assert_eq!(push_blob(&s.ep, "full/app", b"no room").0, 507);
    fs.free();
    wait_health(&s.ep, 200);
    assert_eq!(push_blob(&s.ep, "full/app", b"room again").0, 201);
    stop(s);
    let _ = std::fs::remove_file(&log);
}
