//! `docker save` tarballs. Read: docker 25's form (an OCI layout inside the tar) or the
//! legacy one (`manifest.json`, `<config>.json`, `<id>/layer.tar`, for which an OCI
//! manifest is made over the layers as they are). Written: both at once (an OCI layout
//! plus `manifest.json`), which `docker load` and OCI tools read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::layout::{select, CONTAINERD_NAME, REF_NAME};
use super::{check, ImageError, ImageResult, ImageSink, ImageSource, Root};
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest};

/// Where each member's data lies in the tar file.
struct Members {
    path: PathBuf,
    at: HashMap<String, (u64, u64)>,
}

impl Members {
    fn scan(path: &Path) -> ImageResult<Members> {
        let f = File::open(path).map_err(|e| ImageError::io(path, e))?;
        let mut a = tar::Archive::new(f);
        let mut at = HashMap::new();
        for e in a.entries_with_seek().map_err(|e| ImageError::io(path, e))? {
            let e = e.map_err(|e| ImageError::io(path, e))?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let name = e
                .path()
                .map_err(|e| ImageError::io(path, e))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            at.insert(name, (e.raw_file_position(), e.size()));
        }
        Ok(Members {
            path: path.to_path_buf(),
            at,
        })
    }

    fn open(&self, name: &str) -> ImageResult<(Box<dyn Read + Send>, u64)> {
        let (off, size) = *self.at.get(name).ok_or_else(|| {
            ImageError::Invalid(format!("{}: no member {name}", self.path.display()))
        })?;
        let mut f = File::open(&self.path).map_err(|e| ImageError::io(&self.path, e))?;
        f.seek(SeekFrom::Start(off))
            .map_err(|e| ImageError::io(&self.path, e))?;
        Ok((Box::new(f.take(size)), size))
    }

    fn read(&self, name: &str, limit: u64) -> ImageResult<Vec<u8>> {
        let (mut r, size) = self.open(name)?;
        if size > limit {
            return Err(ImageError::Invalid(format!("{name} is {size} bytes")));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf)
            .map_err(|e| ImageError::io(&self.path, e))?;
        Ok(buf)
    }

    fn has(&self, name: &str) -> bool {
        self.at.contains_key(name)
    }
}

fn blob_member(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

pub struct ArchiveSource {
    members: Members,
    root: Root,
    /// Legacy archives: the member holding each blob.
    legacy: HashMap<Digest, String>,
}

#[derive(serde::Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl ArchiveSource {
    pub fn open(path: &Path, tag: Option<&str>) -> ImageResult<ArchiveSource> {
        let members = Members::scan(path)?;
        let what = path.display().to_string();
        if members.has("index.json") {
            #[derive(serde::Deserialize)]
            struct Index {
                manifests: Vec<Descriptor>,
            }
            let index: Index = serde_json::from_slice(&members.read("index.json", 4 << 20)?)
                .map_err(|e| ImageError::Invalid(format!("{what}: index.json: {e}")))?;
            let entry = select(&index.manifests, tag, &what)?;
            let bytes = members.read(&blob_member(&entry.digest), 4 << 20)?;
            check(&bytes, &entry.digest, entry.size, &entry.digest.to_string())?;
            return Ok(ArchiveSource {
                members,
                root: Root {
                    media_type: entry.media_type,
                    bytes,
                    digest: entry.digest,
                },
                legacy: HashMap::new(),
            });
        }
        let list: Vec<LegacyEntry> =
            serde_json::from_slice(&members.read("manifest.json", 4 << 20)?)
                .map_err(|e| ImageError::Invalid(format!("{what}: manifest.json: {e}")))?;
        let entry = match tag {
            Some(t) => list
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|rt| rt.rsplit_once(':').is_some_and(|(_, x)| x == t))
                })
                .ok_or_else(|| ImageError::Invalid(format!("{what} has no image tagged {t}")))?,
            None if list.len() == 1 => &list[0],
            None => {
                return Err(ImageError::Invalid(format!(
                    "{what} holds {} images; name one as PATH:TAG",
                    list.len()
                )))
            }
        };
        // An OCI manifest over the archive's own bytes: the config, and each layer as it is
        // (gzip-compressed layers keep their type).
        let mut legacy = HashMap::new();
        let config = members.read(&entry.config, 16 << 20)?;
        let config_digest = Digest::sha256_of(&config);
        legacy.insert(config_digest.clone(), entry.config.clone());
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (mut r, size) = members.open(l)?;
            let mut h = crate::digest::Hasher::new(crate::digest::Algorithm::Sha256);
            let mut buf = vec![0u8; 1 << 20];
            let mut first = [0u8; 2];
            loop {
                let n = r.read(&mut buf).map_err(|e| ImageError::io(path, e))?;
                if n == 0 {
                    break;
                }
                if h.is_empty() && n >= 2 {
                    first.copy_from_slice(&buf[..2]);
                }
                h.update(&buf[..n]);
            }
            let d = h.finish();
            let media_type = if first == [0x1f, 0x8b] {
                manifest::OCI_LAYER_GZIP
            } else {
                manifest::OCI_LAYER
            };
            layers.push(
                serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": size}),
            );
            legacy.insert(d, l.clone());
        }
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
        }))
        .map_err(|e| ImageError::Invalid(e.to_string()))?;
        Ok(ArchiveSource {
            members,
            root: Root {
                media_type: manifest::OCI_MANIFEST.to_owned(),
                digest: Digest::sha256_of(&bytes),
                bytes,
            },
            legacy,
        })
    }
}

impl ImageSource for ArchiveSource {
    fn root(&self) -> &Root {
        &self.root
    }

    fn manifest(&self, d: &Digest) -> ImageResult<Vec<u8>> {
        let bytes = self.members.read(&blob_member(d), 4 << 20)?;
        check(&bytes, d, bytes.len() as u64, &d.to_string())?;
        Ok(bytes)
    }

    fn blob(&self, d: &Descriptor) -> ImageResult<Box<dyn Read + Send>> {
        let name = self
            .legacy
            .get(&d.digest)
            .cloned()
            .unwrap_or_else(|| blob_member(&d.digest));
        Ok(self.members.open(&name)?.0)
    }
}

/// Hashes what passes through and fails at the end if it is not what was expected.
struct Checking<'a> {
    inner: &'a mut dyn Read,
    hasher: crate::digest::Hasher,
    want: &'a Descriptor,
}

impl Read for Checking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 || self.hasher.len() > self.want.size {
            let h = std::mem::replace(
                &mut self.hasher,
                crate::digest::Hasher::new(self.want.digest.algorithm()),
            );
            let (len, d) = (h.len(), h.finish());
            if len != self.want.size || d != self.want.digest {
                return Err(std::io::Error::other(format!(
                    "{}: content has {len} bytes and digest {d}",
                    self.want.digest
                )));
            }
        }
        Ok(n)
    }
}

pub struct ArchiveSink {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    tar: tar::Builder<File>,
    added: std::collections::HashSet<Digest>,
}

impl ArchiveSink {
    pub fn create(path: &Path) -> ImageResult<ArchiveSink> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| ImageError::io(&dir, e))?;
        let f = tmp.reopen().map_err(|e| ImageError::io(path, e))?;
        Ok(ArchiveSink {
            path: path.to_path_buf(),
            tmp,
            tar: tar::Builder::new(f),
            added: Default::default(),
        })
    }

    fn append(&mut self, name: &str, size: u64, r: &mut dyn Read) -> ImageResult<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        self.tar
            .append_data(&mut h, name, r)
            .map_err(|e| ImageError::Invalid(format!("{}: {e}", self.path.display())))
    }
}

impl ImageSink for ArchiveSink {
    fn has_blob(&self, d: &Descriptor) -> bool {
        self.added.contains(&d.digest)
    }

    fn put_blob(&mut self, d: &Descriptor, r: &mut dyn Read) -> ImageResult<()> {
        let mut c = Checking {
            inner: r,
            hasher: d.digest.hasher(),
            want: d,
        };
        self.append(&blob_member(&d.digest), d.size, &mut c)?;
        self.added.insert(d.digest.clone());
        Ok(())
    }

    fn put_manifest(&mut self, d: &Descriptor, bytes: &[u8]) -> ImageResult<()> {
        check(bytes, &d.digest, d.size, &d.digest.to_string())?;
        if self.added.insert(d.digest.clone()) {
            self.append(&blob_member(&d.digest), d.size, &mut &bytes[..])?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, root: &Root, reference: &str, tag: &str) -> ImageResult<()> {
        let size = root.bytes.len() as u64;
        if self.added.insert(root.digest.clone()) {
            self.append(&blob_member(&root.digest), size, &mut &root.bytes[..])?;
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": [{
                "mediaType": root.media_type, "digest": root.digest.to_string(), "size": size,
                "annotations": {REF_NAME: tag, CONTAINERD_NAME: reference},
            }],
        });
        let index = serde_json::to_vec(&index).map_err(|e| ImageError::Invalid(e.to_string()))?;
        self.append("index.json", index.len() as u64, &mut &index[..])?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        self.append("oci-layout", layout.len() as u64, &mut &layout[..])?;
        // `docker load` reads manifest.json: an image, its config and its layers.
        if let Ok(m) = Manifest::parse(&root.bytes, &root.media_type) {
            if let (false, Some(config)) = (m.is_index(), &m.config) {
                let legacy = serde_json::json!([{
                    "Config": blob_member(&config.digest),
                    "RepoTags": [reference],
                    "Layers": m.layers.iter().map(|l| blob_member(&l.digest)).collect::<Vec<_>>(),
                }]);
                let legacy =
                    serde_json::to_vec(&legacy).map_err(|e| ImageError::Invalid(e.to_string()))?;
                self.append("manifest.json", legacy.len() as u64, &mut &legacy[..])?;
            }
        }
        let f = self
            .tar
            .into_inner()
            .map_err(|e| ImageError::io(&self.path, e))?;
        f.sync_all().map_err(|e| ImageError::io(&self.path, e))?;
        self.tmp
            .persist(&self.path)
            .map_err(|e| ImageError::io(&self.path, e.error))?;
        Ok(())
    }
}
