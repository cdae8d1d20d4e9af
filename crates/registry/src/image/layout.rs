//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as
//! skopeo, buildah, crane and docker write them.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{check, copy_checked, ImageError, ImageResult, ImageSink, ImageSource, Root};
use crate::digest::Digest;
use crate::manifest::Descriptor;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
const LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm().as_str()).join(d.hex())
}

#[derive(serde::Deserialize, serde::Serialize)]
struct IndexFile {
    #[serde(rename = "schemaVersion")]
    schema_version: u64,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations.as_ref()?.get(key)?.as_str()
}

/// Pick the entry of `index.json` for `tag`, or the only one.
pub(crate) fn select(
    entries: &[Descriptor],
    tag: Option<&str>,
    what: &str,
) -> ImageResult<Descriptor> {
    match tag {
        Some(t) => entries
            .iter()
            .find(|d| {
                annotation(d, REF_NAME) == Some(t)
                    || annotation(d, CONTAINERD_NAME)
                        .is_some_and(|n| n.rsplit_once(':').is_some_and(|(_, nt)| nt == t))
            })
            .cloned()
            .ok_or_else(|| ImageError::Invalid(format!("{what} has no image tagged {t}"))),
        None if entries.len() == 1 => Ok(entries[0].clone()),
        None => {
            let names: Vec<&str> = entries
                .iter()
                .filter_map(|d| annotation(d, REF_NAME))
                .collect();
            Err(ImageError::Invalid(format!(
                "{what} holds {} images; name one as PATH:TAG ({})",
                entries.len(),
                names.join(", ")
            )))
        }
    }
}

pub struct LayoutSource {
    dir: PathBuf,
    root: Root,
}

impl LayoutSource {
    pub fn open(dir: &Path, tag: Option<&str>) -> ImageResult<LayoutSource> {
        let index_path = dir.join("index.json");
        let text = std::fs::read(&index_path).map_err(|e| ImageError::io(&index_path, e))?;
        let index: IndexFile = serde_json::from_slice(&text)
            .map_err(|e| ImageError::Invalid(format!("{}: {e}", index_path.display())))?;
        let entry = select(&index.manifests, tag, &dir.display().to_string())?;
        let path = blob_path(dir, &entry.digest);
        let bytes = std::fs::read(&path).map_err(|e| ImageError::io(&path, e))?;
        check(&bytes, &entry.digest, entry.size, &entry.digest.to_string())?;
        Ok(LayoutSource {
            dir: dir.to_path_buf(),
            root: Root {
                media_type: entry.media_type,
                bytes,
                digest: entry.digest,
            },
        })
    }
}

impl ImageSource for LayoutSource {
    fn root(&self) -> &Root {
        &self.root
    }

    fn manifest(&self, d: &Digest) -> ImageResult<Vec<u8>> {
        let path = blob_path(&self.dir, d);
        let bytes = std::fs::read(&path).map_err(|e| ImageError::io(&path, e))?;
        check(&bytes, d, bytes.len() as u64, &d.to_string())?;
        Ok(bytes)
    }

    fn blob(&self, d: &Descriptor) -> ImageResult<Box<dyn Read + Send>> {
        let path = blob_path(&self.dir, &d.digest);
        let f = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        Ok(Box::new(f))
    }
}

pub struct LayoutSink {
    dir: PathBuf,
}

impl LayoutSink {
    pub fn open(dir: &Path) -> ImageResult<LayoutSink> {
        std::fs::create_dir_all(dir.join("blobs")).map_err(|e| ImageError::io(dir, e))?;
        Ok(LayoutSink {
            dir: dir.to_path_buf(),
        })
    }

    /// Write through a temporary file, renamed into place once checked.
    fn write(&self, d: &Descriptor, r: &mut dyn Read) -> ImageResult<()> {
        let dest = blob_path(&self.dir, &d.digest);
        let parent = dest
            .parent()
            .ok_or_else(|| ImageError::Invalid("blob path".into()))?;
        std::fs::create_dir_all(parent).map_err(|e| ImageError::io(parent, e))?;
        let tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| ImageError::io(parent, e))?;
        let mut out = crate::direct::Appender::open(tmp.path(), 0, 1 << 20)
            .map_err(|e| ImageError::io(tmp.path(), e))?;
        copy_checked(r, &mut out, d, &d.digest.to_string())?;
        out.finish().map_err(|e| ImageError::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| ImageError::io(&dest, e))?;
        tmp.persist(&dest)
            .map_err(|e| ImageError::io(&dest, e.error))?;
        Ok(())
    }
}

impl ImageSink for LayoutSink {
    fn has_blob(&self, d: &Descriptor) -> bool {
        std::fs::metadata(blob_path(&self.dir, &d.digest)).is_ok_and(|m| m.len() == d.size)
    }

    fn put_blob(&mut self, d: &Descriptor, r: &mut dyn Read) -> ImageResult<()> {
        self.write(d, r)
    }

    fn put_manifest(&mut self, d: &Descriptor, bytes: &[u8]) -> ImageResult<()> {
        self.write(d, &mut &bytes[..])
    }

    fn finish(self: Box<Self>, root: &Root, reference: &str, tag: &str) -> ImageResult<()> {
        let desc = Descriptor {
            media_type: root.media_type.clone(),
            digest: root.digest.clone(),
            size: root.bytes.len() as u64,
            platform: None,
            artifact_type: None,
            annotations: Some(
                [
                    (
                        REF_NAME.to_owned(),
                        serde_json::Value::String(tag.to_owned()),
                    ),
                    (
                        CONTAINERD_NAME.to_owned(),
                        serde_json::Value::String(reference.to_owned()),
                    ),
                ]
                .into_iter()
                .collect(),
            ),
        };
        self.write(&desc, &mut &root.bytes[..])?;
        let layout = self.dir.join("oci-layout");
        std::fs::write(&layout, LAYOUT_FILE).map_err(|e| ImageError::io(&layout, e))?;
        let index_path = self.dir.join("index.json");
        let mut index = match std::fs::read(&index_path) {
            Ok(t) => serde_json::from_slice::<IndexFile>(&t)
                .map_err(|e| ImageError::Invalid(format!("{}: {e}", index_path.display())))?,
            Err(_) => IndexFile {
                schema_version: 2,
                media_type: Some(crate::manifest::OCI_INDEX.to_owned()),
                manifests: Vec::new(),
            },
        };
        index
            .manifests
            .retain(|d| annotation(d, REF_NAME) != Some(tag));
        index.manifests.push(desc);
        let text = serde_json::to_vec(&index).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| ImageError::io(&self.dir, e))?;
        std::io::Write::write_all(&mut tmp, &text).map_err(|e| ImageError::io(&index_path, e))?;
        tmp.persist(&index_path)
            .map_err(|e| ImageError::io(&index_path, e.error))?;
        Ok(())
    }
}
