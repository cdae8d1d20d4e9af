//! `notarium push` and `notarium pull` with content trust: against notarium server (registry
//! and trust data on one port) and against the CNCF distribution registry with trust data
//! on notarium server. OCI layouts, `docker save` tarballs (legacy and OCI), multi-arch
//! indexes; a trusted pull gets exactly the signed digest and refuses anything else.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::oci::{write_docker_save, write_index_layout, write_layout, Image, Index};
use notarium_testkit::registry::Distribution;
use notarium_testkit::TestServer;

fn notarium(d: &Docker, args: &[&str], trust: bool) -> Run {
    let mut c = d.command_of(Path::new(env!("CARGO_BIN_EXE_notarium")), args);
    if trust {
        c.env("DOCKER_CONTENT_TRUST", "1");
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(r.code, 0, "{what}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn blobs(layout: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn tar_members(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn tar_member(path: &Path, name: &str) -> Vec<u8> {
    use std::io::Read as _;
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            return b;
        }
    }
    panic!("{name} not in {}", path.display());
}

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    alice: Docker,
}

impl World {
    fn new(server: &TestServer) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let alice = Docker::new(&dir.join("alice"), &server.url);
        server.install_ca_for_docker(&alice.config);
        World {
            _tmp: tmp,
            dir,
            alice,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
}

#[test]
fn trusted_push_and_pull_against_notarium_server() {
    let server = TestServer::start();
    let host = server.addr.to_string();
    let w = World::new(&server);
    let a = &w.alice;
    let repo = format!("{host}/team/app");
    let v1 = Image::new("one", "amd64", 100_000);
    let src = write_layout(&w.path("src"), &v1, "v1");

    // A trusted push uploads, then signs the tag (a new repository is initialized).
    let r = ok(
        notarium(
            a,
            &["push", src.to_str().unwrap(), &format!("{repo}:v1")],
            true,
        ),
        "trusted push",
    );
    assert!(
        r.stdout.contains(&format!("v1: digest: {}", v1.digest)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("Successfully signed {repo}:v1")),
        "{}",
        r.stdout
    );
    let r = ok(
        notarium(a, &["trust", "verify", &format!("{repo}:v1")], false),
        "verify",
    );
    assert_eq!(r.stdout.trim(), v1.digest.to_string());
    // The docker CLI sees the signature.
    let json: serde_json::Value =
        serde_json::from_str(&a.ok(&["trust", "inspect", &repo]).stdout).unwrap();
    assert_eq!(json[0]["SignedTags"][0]["Digest"], v1.digest.hex());

    // A trusted pull into a layout: the same blobs, the tag named in index.json.
    let out = w.path("out");
    let r = ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), out.to_str().unwrap()],
            true,
        ),
        "trusted pull",
    );
    assert!(
        r.stdout
            .contains(&format!("Pull (1 of 1): {repo}:v1@{}", v1.digest)),
        "{}",
        r.stdout
    );
    assert_eq!(blobs(&out), blobs(&src));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], v1.digest.to_string());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    // Into a tarball for `docker load`: manifest.json names the config and layers.
    let tarball = w.path("v1.tar");
    ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), tarball.to_str().unwrap()],
            true,
        ),
        "pull to a tarball",
    );
    let members = tar_members(&tarball);
    for m in ["manifest.json", "index.json", "oci-layout"] {
        assert!(members.iter().any(|x| x == m), "{m} in {members:?}");
    }
    let legacy: serde_json::Value =
        serde_json::from_slice(&tar_member(&tarball, "manifest.json")).unwrap();
    assert_eq!(legacy[0]["RepoTags"][0], format!("{repo}:v1"));
    assert_eq!(
        legacy[0]["Config"],
        format!("blobs/sha256/{}", v1.config.digest.hex())
    );
    // …and that tarball pushes back as the very same image.
    let r = ok(
        notarium(
            a,
            &[
                "push",
                tarball.to_str().unwrap(),
                &format!("{host}/team/copy:v1"),
            ],
            false,
        ),
        "push a pulled tarball",
    );
    assert!(r.stdout.contains(&v1.digest.to_string()), "{}", r.stdout);

    // A legacy `docker save` tarball: an OCI manifest is made over its layers and signed.
    let legacy_tar = w.path("legacy.tar");
    let old = Image::new("legacy", "amd64", 50_000);
    write_docker_save(&legacy_tar, &old, "example/legacy:latest");
    let r = ok(
        notarium(
            a,
            &[
                "push",
                legacy_tar.to_str().unwrap(),
                &format!("{repo}:legacy"),
            ],
            true,
        ),
        "push a legacy docker save tarball",
    );
    let digest = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("legacy: digest: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let r = ok(
        notarium(a, &["trust", "verify", &format!("{repo}:legacy")], false),
        "verify",
    );
    assert_eq!(r.stdout.trim(), digest);
    let out = w.path("legacy-out");
    ok(
        notarium(
            a,
            &["pull", &format!("{repo}:legacy"), out.to_str().unwrap()],
            true,
        ),
        "pull legacy",
    );
    // The layers are the archive's own tars, byte for byte.
    for t in &old.layer_tars {
        let d = registry::Digest::sha256_of(t);
        assert_eq!(
            &std::fs::read(out.join("blobs/sha256").join(d.hex())).unwrap(),
            t
        );
    }

    // The tag moves to other content by an unsigned push…
    let v2 = Image::new("two", "amd64", 1000);
    let src2 = write_layout(&w.path("src2"), &v2, "v1");
    ok(
        notarium(
            a,
            &[
                "push",
                "--disable-content-trust",
                src2.to_str().unwrap(),
                &format!("{repo}:v1"),
            ],
            true,
        ),
        "untrusted push over the tag",
    );
    // …an untrusted pull gets it, a trusted pull still gets exactly the signed digest…
    let r = ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), w.path("u").to_str().unwrap()],
            false,
        ),
        "untrusted pull",
    );
    assert!(
        r.stdout.contains(&format!("Digest: {}", v2.digest)),
        "{}",
        r.stdout
    );
    let r = ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), w.path("t").to_str().unwrap()],
            true,
        ),
        "trusted pull after the move",
    );
    assert!(
        r.stdout.contains(&format!("Digest: {}", v1.digest)),
        "{}",
        r.stdout
    );
    // …and once the signed content is gone from the registry, a trusted pull refuses.
    let resp = server
        .endpoint
        .client()
        .delete(format!(
            "{}/v2/team/app/manifests/{}",
            server.url, v1.digest
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let r = notarium(
        a,
        &[
            "pull",
            &format!("{repo}:v1"),
            w.path("t2").to_str().unwrap(),
        ],
        true,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    assert!(r.stderr.contains(&v1.digest.to_string()), "{}", r.stderr);
    assert!(!w.path("t2").join("index.json").exists());

    // A tag with no trust data is refused by a trusted pull.
    ok(
        notarium(
            a,
            &["push", src2.to_str().unwrap(), &format!("{repo}:unsigned")],
            false,
        ),
        "unsigned push",
    );
    let r = notarium(
        a,
        &[
            "pull",
            &format!("{repo}:unsigned"),
            w.path("x").to_str().unwrap(),
        ],
        true,
    );
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim(), "No valid trust data for unsigned");
}

#[test]
fn multi_arch_index_is_signed_by_its_own_digest() {
    let server = TestServer::start();
    let host = server.addr.to_string();
    let w = World::new(&server);
    let a = &w.alice;
    let repo = format!("{host}/multi/app");
    let index = Index::new("multi", &["amd64", "arm64"]);
    let src = write_index_layout(&w.path("src"), &index, "v1");
    ok(
        notarium(
            a,
            &["push", src.to_str().unwrap(), &format!("{repo}:v1")],
            true,
        ),
        "push an index",
    );
    let r = ok(
        notarium(a, &["trust", "verify", &format!("{repo}:v1")], false),
        "verify",
    );
    assert_eq!(r.stdout.trim(), index.digest.to_string());
    // A layout gets the whole index; a tarball one platform's image.
    let out = w.path("all");
    ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), out.to_str().unwrap()],
            true,
        ),
        "pull the index",
    );
    assert_eq!(blobs(&out), blobs(&src));
    let tarball = w.path("arm.tar");
    let r = ok(
        notarium(
            a,
            &[
                "pull",
                "--platform",
                "linux/arm64",
                &format!("{repo}:v1"),
                tarball.to_str().unwrap(),
            ],
            true,
        ),
        "pull arm64",
    );
    let arm = &index.images[1].1;
    assert!(
        r.stdout
            .contains(&format!("Image for this platform: {}", arm.digest)),
        "{}",
        r.stdout
    );
    let legacy: serde_json::Value =
        serde_json::from_slice(&tar_member(&tarball, "manifest.json")).unwrap();
    assert_eq!(
        legacy[0]["Config"],
        format!("blobs/sha256/{}", arm.config.digest.hex())
    );
}

#[test]
fn trusted_push_and_pull_with_the_cncf_registry() {
    let server = TestServer::start();
    let registry = Distribution::start();
    let w = World::new(&server);
    let a = &w.alice;
    // The registry is the CNCF one (plain HTTP on loopback); trust data is on notarium.
    let repo = format!("{}/cncf/app", registry.addr);
    let v1 = Image::new("cncf-one", "amd64", 200_000);
    let src = write_layout(&w.path("src"), &v1, "v1");
    let r = ok(
        notarium(
            a,
            &["push", src.to_str().unwrap(), &format!("{repo}:v1")],
            true,
        ),
        "trusted push to docker-registry",
    );
    assert!(r.stdout.contains("Successfully signed"), "{}", r.stdout);
    let out = w.path("out");
    ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), out.to_str().unwrap()],
            true,
        ),
        "trusted pull from docker-registry",
    );
    assert_eq!(blobs(&out), blobs(&src));

    // Someone moves the tag in the registry (no trust) and removes the signed manifest.
    let v2 = Image::new("cncf-two", "amd64", 1000);
    let src2 = write_layout(&w.path("src2"), &v2, "v1");
    ok(
        notarium(
            a,
            &["push", src2.to_str().unwrap(), &format!("{repo}:v1")],
            false,
        ),
        "untrusted push",
    );
    let resp = reqwest::blocking::Client::new()
        .delete(format!(
            "{}/v2/cncf/app/manifests/{}",
            registry.url(),
            v1.digest
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let r = notarium(
        a,
        &["pull", &format!("{repo}:v1"), w.path("t").to_str().unwrap()],
        true,
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    // Without trust, the moved tag is what comes.
    let r = ok(
        notarium(
            a,
            &["pull", &format!("{repo}:v1"), w.path("u").to_str().unwrap()],
            false,
        ),
        "untrusted pull",
    );
    assert!(r.stdout.contains(&v2.digest.to_string()), "{}", r.stdout);
}
