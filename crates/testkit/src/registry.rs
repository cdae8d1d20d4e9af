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
        Self::start_with("")
    }

    /// With token auth against an issuer: its realm (token URL), the service name tokens
    /// must carry, the issuer's name and its certificate bundle.
    pub fn start_with_token_auth(
        realm: &str,
        service: &str,
        issuer: &str,
        rootcertbundle: &std::path::Path,
    ) -> Self {
        Self::start_with(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            rootcertbundle.display()
        ))
    }

    /// With more YAML appended to the configuration.
    fn start_with(extra: &str) -> Self {
        // The port is picked free and then given to the registry: another test may take it
        // in between. Then the registry exits (and something else answers there): try a
        // new port.
        for _ in 0..5 {
            if let Some(d) = Self::try_start(extra) {
                return d;
            }
        }
        panic!("docker-registry did not start on five free ports");
    }

    fn try_start(extra: &str) -> Option<Self> {
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
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) is needed by this test");
        let start = Instant::now();
        let probe = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            // Ours answers /v2/ with the distribution header (maybe 401 with auth).
            if let Ok(r) = probe.get(format!("http://{addr}/v2/")).send() {
                if r.headers().contains_key("docker-distribution-api-version") {
                    // Still ours a moment later (not a listener that happened to be there).
                    if let Ok(Some(_)) = child.try_wait() {
                        return None;
                    }
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Distribution {
            addr,
            child,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// What a [`TokenRegistry`] saw: for each request, the method, path and the kind of
/// credentials it carried.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// `(method, path with query, authorization scheme or "")`.
    pub requests: Vec<(String, String, String)>,
    /// Users that fetched a token, with the scope they asked for.
    pub tokens: Vec<(String, String)>,
}

struct TokenState {
    users: Vec<(String, String)>,
    token: String,
    /// `name:reference` → (media type, manifest).
    manifests: std::collections::BTreeMap<String, (String, Vec<u8>)>,
    seen: Seen,
}

/// A registry that answers only with a Bearer token (the docker token flow): `GET /v2/`
/// and manifests without a token get 401 and a challenge naming `/token`, which hands out a
/// token for a user's Basic credentials. It serves manifests the test puts in it, over
/// HTTPS with its own CA.
pub struct TokenRegistry {
    pub served: crate::http::Served,
    state: std::sync::Arc<std::sync::Mutex<TokenState>>,
}

impl TokenRegistry {
    /// Accepts these `(user, password)` pairs.
    pub fn start(users: &[(&str, &str)]) -> Self {
        use std::sync::{Arc, Mutex};
        let mut rnd = [0u8; 16];
        aws_lc_rs::rand::fill(&mut rnd).unwrap();
        let state = Arc::new(Mutex::new(TokenState {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            token: hex::encode(rnd),
            manifests: Default::default(),
            seen: Seen::default(),
        }));
        let st = state.clone();
        let realm = Arc::new(Mutex::new(String::new()));
        let realm2 = realm.clone();
        let served = crate::http::serve(
            true,
            Arc::new(move |req, _body| {
                use crate::http::respond;
                use base64::Engine as _;
                let mut s = st.lock().unwrap();
                let auth = req
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let path = req.uri.path().to_owned();
                let pq = req
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let scheme = auth.split(' ').next().unwrap_or("").to_owned();
                s.seen
                    .requests
                    .push((req.method.to_string(), pq.clone(), scheme));
                if path == "/token" {
                    let creds = auth
                        .strip_prefix("Basic ")
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|c| c.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
                    return match creds {
                        Some(c) if s.users.contains(&c) => {
                            let scope = req
                                .uri
                                .query()
                                .unwrap_or("")
                                .split('&')
                                .find_map(|kv| kv.strip_prefix("scope="))
                                .unwrap_or("")
                                .replace("%3A", ":")
                                .replace("%2C", ",")
                                .replace("%2F", "/");
                            s.seen.tokens.push((c.0, scope));
                            let body = format!(r#"{{"token":"{}","expires_in":300}}"#, s.token);
                            respond(200, &[("content-type", "application/json")], body)
                        }
                        _ => respond(
                            401,
                            &[("content-type", "application/json")],
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                        ),
                    };
                }
                let challenge = format!(
                    r#"Bearer realm="{}/token",service="token-registry""#,
                    realm2.lock().unwrap()
                );
                if auth != format!("Bearer {}", s.token) {
                    return respond(
                        401,
                        &[
                            ("www-authenticate", challenge.as_str()),
                            ("content-type", "application/json"),
                        ],
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    );
                }
                if path == "/v2/" {
                    return respond(
                        200,
                        &[("docker-distribution-api-version", "registry/2.0")],
                        "{}",
                    );
                }
                let key = path
                    .strip_prefix("/v2/")
                    .and_then(|p| p.split_once("/manifests/"))
                    .map(|(n, r)| format!("{n}:{r}"));
                match key.and_then(|k| s.manifests.get(&k).cloned()) {
                    Some((mt, m)) => {
                        let digest = sha(&m);
                        let len = m.len().to_string();
                        let headers = [
                            ("content-type", mt.as_str()),
                            ("docker-content-digest", digest.as_str()),
                            ("content-length", len.as_str()),
                        ];
                        let body = if req.method == "HEAD" { Vec::new() } else { m };
                        respond(200, &headers, body)
                    }
                    None => respond(
                        404,
                        &[("content-type", "application/json")],
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                    ),
                }
            }),
        );
        *realm.lock().unwrap() = served.url.clone();
        TokenRegistry { served, state }
    }

    /// Serve `manifest` as `name:tag` and `name@digest`.
    pub fn put(&self, name: &str, tag: &str, media_type: &str, manifest: &[u8]) -> Pushed {
        let digest = sha(manifest);
        let mut s = self.state.lock().unwrap();
        for r in [tag, digest.as_str()] {
            s.manifests.insert(
                format!("{name}:{r}"),
                (media_type.to_owned(), manifest.to_vec()),
            );
        }
        Pushed {
            digest,
            size: manifest.len() as u64,
            manifest: manifest.to_vec(),
        }
    }

    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn host(&self) -> String {
        self.served.addr.to_string()
    }
}

/// Push an OCI image index over `images` (one per platform, in order) as `name:tag`.
pub fn push_index(base: &str, name: &str, tag: &str, images: &[(&str, &Pushed)]) -> Pushed {
    let client = reqwest::blocking::Client::new();
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(arch, p)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": p.digest, "size": p.size,
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests
    })
    .to_string()
    .into_bytes();
    let r = client
        .put(format!("{base}/v2/{name}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index.clone())
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "put index: {}",
        r.text().unwrap_or_default()
    );
    Pushed {
        digest: sha(&index),
        size: index.len() as u64,
        manifest: index,
    }
}
