//! Images on disk, for `notarium push` and `pull`: an OCI image layout directory, or a
//! `docker save` tarball (the legacy `manifest.json` form, or docker 25's OCI layout in a
//! tar).
//!
//! A source hands out the image (or index) to push, its child manifests and its blobs as
//! streams; a sink takes blobs as streams and checks each against its digest before
//! keeping it.

pub mod archive;
pub mod layout;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::Descriptor;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {cause}")]
    Io { path: String, cause: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: content has digest {actual}, expected {expected}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
}

impl ImageError {
    pub fn io(path: &Path, e: impl std::fmt::Display) -> ImageError {
        ImageError::Io {
            path: path.display().to_string(),
            cause: e.to_string(),
        }
    }
}

pub type ImageResult<T> = Result<T, ImageError>;

/// The top of an image: a manifest or an index, as exact bytes.
#[derive(Debug, Clone)]
pub struct Root {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

/// Somewhere to push an image from.
pub trait ImageSource {
    fn root(&self) -> &Root;
    /// A child manifest of an index.
    fn manifest(&self, d: &Digest) -> ImageResult<Vec<u8>>;
    /// A blob, as a stream of `size` bytes.
    fn blob(&self, d: &Descriptor) -> ImageResult<Box<dyn Read + Send>>;
}

/// Somewhere to pull an image to.
pub trait ImageSink {
    /// Whether a blob is already there (and need not be downloaded).
    fn has_blob(&self, d: &Descriptor) -> bool;
    /// Keep a blob read from `r`; its digest and size are checked first.
    fn put_blob(&mut self, d: &Descriptor, r: &mut dyn Read) -> ImageResult<()>;
    /// Keep a child manifest of an index.
    fn put_manifest(&mut self, d: &Descriptor, bytes: &[u8]) -> ImageResult<()>;
    /// Finish with the root, named `reference` (e.g. `registry.example.com/app:v1`).
    fn finish(self: Box<Self>, root: &Root, reference: &str, tag: &str) -> ImageResult<()>;
}

/// Open a source path: a directory is an OCI layout (`DIR` or `DIR:TAG`), a file a
/// `docker save` tarball.
pub fn open_source(spec: &str) -> ImageResult<Box<dyn ImageSource>> {
    let (path, tag) = split_spec(spec);
    if path.is_dir() {
        return Ok(Box::new(layout::LayoutSource::open(&path, tag.as_deref())?));
    }
    if path.is_file() {
        return Ok(Box::new(archive::ArchiveSource::open(
            &path,
            tag.as_deref(),
        )?));
    }
    Err(ImageError::Invalid(format!(
        "{spec}: no such OCI layout directory or docker save tarball"
    )))
}

/// Open a destination path: a path ending in `.tar` is a `docker save` tarball (for
/// `docker load`), anything else an OCI layout directory (created, or added to).
pub fn open_sink(path: &Path) -> ImageResult<Box<dyn ImageSink>> {
    if path.extension().is_some_and(|e| e == "tar") || path.is_file() {
        Ok(Box::new(archive::ArchiveSink::create(path)?))
    } else {
        Ok(Box::new(layout::LayoutSink::open(path)?))
    }
}

/// `path[:tag]`: the tag only when the path without it exists and the whole does not.
fn split_spec(spec: &str) -> (PathBuf, Option<String>) {
    let whole = PathBuf::from(spec);
    if whole.exists() {
        return (whole, None);
    }
    match spec.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && Path::new(p).exists() => {
            (PathBuf::from(p), Some(t.to_owned()))
        }
        _ => (whole, None),
    }
}

pub(crate) fn check(bytes: &[u8], d: &Digest, size: u64, what: &str) -> ImageResult<()> {
    if bytes.len() as u64 != size {
        return Err(ImageError::Invalid(format!(
            "{what}: {} bytes, expected {size}",
            bytes.len()
        )));
    }
    let mut h = d.hasher();
    h.update(bytes);
    let actual = h.finish();
    if &actual != d {
        return Err(ImageError::Digest {
            what: what.to_owned(),
            expected: d.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Copy `r` to `w`, checking the bytes against the digest and size as they pass.
pub fn copy_checked(
    r: &mut dyn Read,
    w: &mut dyn std::io::Write,
    d: &Descriptor,
    what: &str,
) -> ImageResult<()> {
    let mut h = d.digest.hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut limited = r.take(d.size + 1);
    loop {
        let n = limited
            .read(&mut buf)
            .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n])
            .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    }
    if h.len() != d.size {
        return Err(ImageError::Invalid(format!(
            "{what}: {} bytes, expected {}",
            h.len(),
            d.size
        )));
    }
    let actual = h.finish();
    if actual != d.digest {
        return Err(ImageError::Digest {
            what: what.to_owned(),
            expected: d.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}
