//! Images for tests: real tar layers (one plain, one gzipped), a config naming their
//! diff IDs, an OCI manifest, written as an OCI image layout; and a `docker save` tarball.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use registry::manifest::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST};
use registry::Digest;

/// One blob of an image.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.bytes.len(),
        })
    }
}

/// An image: config, layers, manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Uncompressed layer tars, in order (for `docker save`).
    pub layer_tars: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = tuf::hash::sha256(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = tuf::hash::sha256(&block);
    }
    out.truncate(len);
    out
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

impl Image {
    /// A linux image for `arch` whose content derives from `seed`; the second layer
    /// holds `big` bytes of noise.
    pub fn new(seed: &str, arch: &str, big: usize) -> Image {
        let l1 = tar_of(&[("etc/hello", format!("hello from {seed}\n").into_bytes())]);
        let l2 = tar_of(&[("data/noise.bin", noise(seed, big))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&l2).unwrap();
        let l2gz = gz.finish().unwrap();
        let layers = vec![
            Blob::new(OCI_LAYER, l1.clone()),
            Blob::new(OCI_LAYER_GZIP, l2gz),
        ];
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [
                Digest::sha256_of(&l1).to_string(), Digest::sha256_of(&l2).to_string()
            ]},
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            digest: Digest::sha256_of(&manifest),
            config,
            layers,
            layer_tars: vec![l1, l2],
            manifest,
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// An index over images (multi-arch).
#[derive(Debug, Clone)]
pub struct Index {
    pub images: Vec<(String, Image)>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl Index {
    pub fn new(seed: &str, arches: &[&str]) -> Index {
        let images: Vec<(String, Image)> = arches
            .iter()
            .map(|a| (a.to_string(), Image::new(&format!("{seed}-{a}"), a, 4096)))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(|(a, i)| serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": i.digest.to_string(),
                "size": i.manifest.len(),
                "platform": {"architecture": a, "os": "linux"},
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Index {
            digest: Digest::sha256_of(&manifest),
            images,
            manifest,
        }
    }
}

fn write_blob(dir: &Path, d: &Digest, bytes: &[u8]) {
    let p = dir.join("blobs").join(d.algorithm().as_str()).join(d.hex());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn write_layout_index(dir: &Path, media_type: &str, digest: &Digest, size: usize, tag: &str) {
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type, "digest": digest.to_string(), "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Write `image` as an OCI image layout in `dir`, tagged `tag`.
pub fn write_layout(dir: &Path, image: &Image, tag: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for b in image.blobs() {
        write_blob(dir, &b.digest, &b.bytes);
    }
    write_blob(dir, &image.digest, &image.manifest);
    write_layout_index(dir, OCI_MANIFEST, &image.digest, image.manifest.len(), tag);
    dir.to_path_buf()
}

/// Write `index` (and its images) as an OCI image layout in `dir`, tagged `tag`.
pub fn write_index_layout(dir: &Path, index: &Index, tag: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (_, image) in &index.images {
        for b in image.blobs() {
            write_blob(dir, &b.digest, &b.bytes);
        }
        write_blob(dir, &image.digest, &image.manifest);
    }
    write_blob(dir, &index.digest, &index.manifest);
    write_layout_index(dir, OCI_INDEX, &index.digest, index.manifest.len(), tag);
    dir.to_path_buf()
}

/// Write `image` as `docker save` did before docker 25: `manifest.json`, the config as
/// `<hex>.json`, each layer as `<n>/layer.tar` (uncompressed).
pub fn write_docker_save(path: &Path, image: &Image, repo_tag: &str) {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let config_name = format!("{}.json", image.config.digest.hex());
    let mut layers = Vec::new();
    for (i, t) in image.layer_tars.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        files.push((name.clone(), t.clone()));
        layers.push(name);
    }
    files.push((config_name.clone(), image.config.bytes.clone()));
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": [repo_tag], "Layers": layers,
    }]);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    std::fs::write(path, tar_of(&refs)).unwrap();
}

/// Push `image` to a registry: its blobs (monolithic uploads), then its manifest as `tag`.
pub fn push(client: &reqwest::blocking::Client, base: &str, name: &str, tag: &str, image: &Image) {
    for b in image.blobs() {
        crate::registry::push_blob(client, base, name, &b.bytes);
    }
    put_manifest(client, base, name, tag, OCI_MANIFEST, &image.manifest);
}

/// Push every image of `index`, then the index as `tag`.
pub fn push_index(
    client: &reqwest::blocking::Client,
    base: &str,
    name: &str,
    tag: &str,
    index: &Index,
) {
    for (_, image) in &index.images {
        for b in image.blobs() {
            crate::registry::push_blob(client, base, name, &b.bytes);
        }
        put_manifest(
            client,
            base,
            name,
            &image.digest.to_string(),
            OCI_MANIFEST,
            &image.manifest,
        );
    }
    put_manifest(client, base, name, tag, OCI_INDEX, &index.manifest);
}

pub fn put_manifest(
    client: &reqwest::blocking::Client,
    base: &str,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let r = client
        .put(format!("{base}/v2/{name}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .body(bytes.to_vec())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        status,
        201,
        "put manifest: {}",
        r.text().unwrap_or_default()
    );
}

/// Upload `data` to `name` through two servers that share one database and bucket, in
/// three requests: started on `a`, the first half through `b`, the rest through `a`,
/// completed on `b`. Each answer's status goes to `seen`.
pub fn push_blob_across(
    a: &crate::server::Endpoint,
    b: &crate::server::Endpoint,
    name: &str,
    data: &[u8],
    seen: &dyn Fn(u16),
) {
    let send = |rb: reqwest::blocking::RequestBuilder| {
        let r = rb.send().unwrap();
        seen(r.status().as_u16());
        r
    };
    let digest = Digest::sha256_of(data);
    let r = send(
        a.client()
            .post(format!("{}/v2/{name}/blobs/uploads/", a.url)),
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
    );
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
    let r = send(
        a.client()
            .patch(format!("{}{loc}", a.url))
            .header("Content-Type", "application/octet-stream")
            .body(data[half..].to_vec()),
    );
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap_or_default());
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", data.len() - 1)
    );
    let r = send(b.client().put(format!("{}{loc}?digest={digest}", b.url)));
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
}

/// Push `image` as `name:tag` across two servers (every blob as [`push_blob_across`],
/// the manifest to `b`); right after `b` acknowledged the manifest, `a` serves it.
pub fn push_image_across(
    a: &crate::server::Endpoint,
    b: &crate::server::Endpoint,
    name: &str,
    tag: &str,
    image: &Image,
    seen: &dyn Fn(u16),
) {
    for blob in image.blobs() {
        push_blob_across(a, b, name, &blob.bytes, seen);
    }
    let r = b
        .client()
        .put(format!("{}/v2/{name}/manifests/{tag}", b.url))
        .header("Content-Type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .unwrap();
    seen(r.status().as_u16());
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
    let r = a
        .client()
        .get(format!("{}/v2/{name}/manifests/{tag}", a.url))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    seen(r.status().as_u16());
    assert_eq!(
        r.status().as_u16(),
        200,
        "{name}:{tag} from the other server"
    );
    assert_eq!(r.bytes().unwrap().as_ref(), image.manifest.as_slice());
}

/// Every blob and the manifest of `image` as `name:tag` from `ep`, byte for byte.
pub fn assert_serves(ep: &crate::server::Endpoint, name: &str, tag: &str, image: &Image) {
    let r = ep
        .client()
        .get(format!("{}/v2/{name}/manifests/{tag}", ep.url))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{name}:{tag} from {}", ep.url);
    assert_eq!(r.bytes().unwrap().as_ref(), image.manifest.as_slice());
    for blob in image.blobs() {
        let r = ep
            .client()
            .get(format!("{}/v2/{name}/blobs/{}", ep.url, blob.digest))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name} {}", blob.digest);
        assert!(
            r.bytes().unwrap().as_ref() == blob.bytes.as_slice(),
            "{name} {} byte for byte from {}",
            blob.digest,
            ep.url
        );
    }
}
