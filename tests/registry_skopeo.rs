//! skopeo (a real OCI distribution client) copies images into notarium server and back
//! out unchanged, over TLS with the server's CA; `skopeo inspect` works; a multi-arch
//! index goes through whole.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use notarium_testkit::oci::{write_index_layout, write_layout, Image, Index};
use notarium_testkit::TestServer;

struct Skopeo {
    certs: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Skopeo {
    fn for_server(s: &TestServer) -> Skopeo {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(s.endpoint.ca.as_ref().unwrap(), certs.join("ca.crt")).unwrap();
        Skopeo { certs, _tmp: tmp }
    }

    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("skopeo")
            .args(["--insecure-policy"])
            .args(args)
            .env("HOME", self._tmp.path())
            .output()
            .expect("skopeo (Debian package skopeo) is needed by this test");
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn copy_in(&self, src: &str, dst: &str) {
        let c = self.certs.to_str().unwrap();
        self.run(&["copy", "--preserve-digests", "--dest-cert-dir", c, src, dst]);
    }

    fn copy_out(&self, src: &str, dst: &str, all: bool) {
        let c = self.certs.to_str().unwrap();
        let mut args = vec!["copy", "--preserve-digests", "--src-cert-dir", c];
        if all {
            args.push("--all");
        }
        args.extend([src, dst]);
        self.run(&args);
    }
}

fn blob_files(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).unwrap(),
        ));
    }
    out.sort();
    out
}

#[test]
fn skopeo_copies_an_image_in_and_out_unchanged() {
    let server = TestServer::start();
    let host = server.addr.to_string();
    let sk = Skopeo::for_server(&server);
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::new("skopeo", "amd64", 300_000);
    let src = write_layout(&tmp.path().join("src"), &image, "v1");
    let dest = format!("docker://{host}/team/app:v1");
    sk.copy_in(&format!("oci:{}:v1", src.display()), &dest);

    // inspect: the digest is the manifest's, the layers are ours.
    let c = sk.certs.to_str().unwrap().to_owned();
    let info: serde_json::Value =
        serde_json::from_str(&sk.run(&["inspect", "--cert-dir", &c, &dest])).unwrap();
    assert_eq!(info["Digest"], image.digest.to_string());
    assert_eq!(info["Architecture"], "amd64");
    let layers: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(info["Layers"], serde_json::json!(layers));
    let raw = sk.run(&["inspect", "--raw", "--cert-dir", &c, &dest]);
    assert_eq!(raw.as_bytes(), image.manifest.as_slice());
    let tags: serde_json::Value = serde_json::from_str(&sk.run(&[
        "list-tags",
        "--cert-dir",
        &c,
        &format!("docker://{host}/team/app"),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));

    // Back out: the same manifest and blobs, byte for byte.
    let out = tmp.path().join("out");
    sk.copy_out(&dest, &format!("oci:{}:v1", out.display()), false);
    assert_eq!(blob_files(&out), blob_files(&src));

    // A second repository gets the layers by cross-repository mount; the copy is still whole.
    sk.copy_in(
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/other/app:v1"),
    );
    let out2 = tmp.path().join("out2");
    sk.copy_out(
        &format!("docker://{host}/other/app:v1"),
        &format!("oci:{}:v1", out2.display()),
        false,
    );
    assert_eq!(blob_files(&out2), blob_files(&src));
}

#[test]
fn skopeo_copies_a_multi_arch_index_whole() {
    let server = TestServer::start();
    let host = server.addr.to_string();
    let sk = Skopeo::for_server(&server);
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::new("multi", &["amd64", "arm64"]);
    let src = write_index_layout(&tmp.path().join("src"), &index, "v1");
    let c = sk.certs.to_str().unwrap().to_owned();
    let dest = format!("docker://{host}/multi/app:v1");
    sk.run(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-cert-dir",
        &c,
        &format!("oci:{}:v1", src.display()),
        &dest,
    ]);
    let raw = sk.run(&["inspect", "--raw", "--cert-dir", &c, &dest]);
    assert_eq!(raw.as_bytes(), index.manifest.as_slice());
    let out = tmp.path().join("out");
    sk.copy_out(&dest, &format!("oci:{}:v1", out.display()), true);
    assert_eq!(blob_files(&out), blob_files(&src));
}
