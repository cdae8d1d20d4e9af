//! Registries for tests: the CNCF distribution registry (Debian's `docker-registry`) on a
//! free loopback port, and pushing small real images to any registry over the OCI API.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry` process, stopped when dropped.
pub struct Distribution {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Distribution {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) is needed by this test");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Distribution {
            addr,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a push left in the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    pub size: u64,
    pub manifest: Vec<u8>,
}

impl Pushed {
    pub fn hex(&self) -> &str {
        &self.digest[7..]
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(tuf::hash::sha256(data)))
}

/// Upload a blob (monolithic: POST then PUT with the digest).
pub fn push_blob(
    client: &reqwest::blocking::Client,
    base: &str,
    name: &str,
    data: &[u8],
) -> String {
    let digest = sha(data);
    let r = client
        .post(format!("{base}/v2/{name}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        202,
        "start upload: {}",
        r.text().unwrap_or_default()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let url = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = client
        .put(format!("{url}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "finish upload: {}",
        r.text().unwrap_or_default()
    );
    digest
}

/// Push a one-layer OCI image whose content is `content`, tagged `tag`.
pub fn push_image(base: &str, name: &str, tag: &str, content: &str) -> Pushed {
    let client = reqwest::blocking::Client::new();
    let layer = format!("layer: {content}").into_bytes();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"content": content}},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
    })
    .to_string()
    .into_bytes();
    let layer_digest = push_blob(&client, base, name, &layer);
    let config_digest = push_blob(&client, base, name, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
    })
    .to_string()
    .into_bytes();
    let r = client
        .put(format!("{base}/v2/{name}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "put manifest: {}",
        r.text().unwrap_or_default()
    );
    Pushed {
        digest: sha(&manifest),
        size: manifest.len() as u64,
        manifest,
    }
}
