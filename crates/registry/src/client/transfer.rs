//! Moving images between a registry and disk: blobs streamed both ways (never held whole),
//! checked against their digests; manifests by tag or digest. Progress bars on a
//! terminal (indicatif), nothing otherwise.

use std::io::Read;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::oci;
use super::{NetError, Session};
use crate::digest::Digest;
use crate::image::{ImageError, ImageSink, ImageSource, Root};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Reference;

/// Blob downloads may take long; the session's default timeout is for metadata.
const BLOB_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Invalid(String),
}

/// Progress reporting: bars on a terminal, silence otherwise.
pub struct Progress {
    multi: Option<indicatif::MultiProgress>,
}

impl Progress {
    pub fn new(on_terminal: bool) -> Progress {
        Progress {
            multi: on_terminal.then(indicatif::MultiProgress::new),
        }
    }

    fn bar(&self, label: &str, total: u64) -> ProgressBar {
        match &self.multi {
            None => ProgressBar::hidden(),
            Some(m) => {
                let b = m.add(ProgressBar::new(total));
                if let Ok(s) = ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ) {
                    b.set_style(s.progress_chars("=> "));
                }
                b.set_prefix(label.to_owned());
                b
            }
        }
    }
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

/// One repository on a registry.
pub struct Repository<'s> {
    pub session: &'s Session,
    pub name: String,
}

impl<'s> Repository<'s> {
    pub fn new(session: &'s Session, r: &Reference) -> Repository<'s> {
        Repository {
            session,
            name: r.path.clone(),
        }
    }

    fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.name)
    }

    fn pull_scope(&self) -> String {
        oci::pull_scope(&self.name)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.session.base())
    }

    fn fail(&self, url: String, r: reqwest::blocking::Response) -> NetError {
        NetError::Status {
            url,
            status: r.status().as_u16(),
            body: super::error_summary(r),
        }
    }

    /// Whether the registry has this blob in the repository.
    pub fn has_blob(&self, d: &Digest) -> Result<bool, NetError> {
        let path = format!("/v2/{}/blobs/{d}", self.name);
        let url = self.url(&path);
        let r = self.session.send(
            self.session
                .request(reqwest::Method::HEAD, &path, &self.push_scope())?,
            &url,
        )?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail(url, r)),
        }
    }

    /// Upload a blob: start an upload, then send the whole blob with the digest.
    pub fn push_blob(
        &self,
        d: &Descriptor,
        body: Box<dyn Read + Send>,
        progress: &Progress,
    ) -> Result<(), NetError> {
        let path = format!("/v2/{}/blobs/uploads/", self.name);
        let url = self.url(&path);
        let r = self.session.send(
            self.session
                .request(reqwest::Method::POST, &path, &self.push_scope())?,
            &url,
        )?;
        if r.status().as_u16() != 202 {
            return Err(self.fail(url, r));
        }
        let loc = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| NetError::Io {
                url: url.clone(),
                cause: "no Location for the upload".into(),
            })?
            .to_owned();
        let loc = loc
            .strip_prefix(self.session.base())
            .unwrap_or(&loc)
            .to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put_path = format!("{loc}{sep}digest={}", d.digest);
        let put_url = if put_path.starts_with("http") {
            put_path.clone()
        } else {
            self.url(&put_path)
        };
        if put_path.starts_with("http") {
            // An upload elsewhere (another host): no session authorization applies.
            return Err(NetError::Io {
                url: put_url,
                cause: "uploads redirected to another host are not supported".into(),
            });
        }
        let bar = progress.bar(&short(&d.digest), d.size);
        let reader = bar.wrap_read(body);
        let (status, summary) = self.session.send_stream(
            reqwest::Method::PUT,
            &put_path,
            &self.push_scope(),
            "application/octet-stream",
            Box::new(reader),
            d.size,
        )?;
        bar.finish_and_clear();
        if status != 201 {
            return Err(NetError::Status {
                url: put_url,
                status,
                body: summary,
            });
        }
        Ok(())
    }

    /// Store a manifest as `reference` (a tag or a digest); its digest as the registry says.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), NetError> {
        let path = format!("/v2/{}/manifests/{reference}", self.name);
        let url = self.url(&path);
        let rb = self
            .session
            .request(reqwest::Method::PUT, &path, &self.push_scope())?
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes.to_vec());
        let r = self.session.send(rb, &url)?;
        if r.status().as_u16() != 201 {
            return Err(self.fail(url, r));
        }
        Ok(())
    }

    /// A manifest by tag or digest, its bytes checked against the digest asked for.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<oci::Manifest>, NetError> {
        oci::fetch_manifest(self.session, &self.name, reference)
    }

    /// Download a blob into `sink`, checked as it streams.
    pub fn pull_blob(
        &self,
        d: &Descriptor,
        sink: &mut dyn ImageSink,
        progress: &Progress,
    ) -> Result<(), TransferError> {
        let path = format!("/v2/{}/blobs/{}", self.name, d.digest);
        let url = self.url(&path);
        let rb = self
            .session
            .request(reqwest::Method::GET, &path, &self.pull_scope())?
            .timeout(BLOB_TIMEOUT);
        let r = self.session.send(rb, &url)?;
        if r.status().as_u16() != 200 {
            return Err(self.fail(url, r).into());
        }
        let bar = progress.bar(&short(&d.digest), d.size);
        let mut reader = bar.wrap_read(r);
        let out = sink.put_blob(d, &mut reader);
        bar.finish_and_clear();
        Ok(out?)
    }
}

/// What a push or pull moved.
#[derive(Debug, Clone)]
pub struct Moved {
    pub root: Root,
    pub blobs: usize,
    pub skipped: usize,
    pub bytes: u64,
}

fn parse_manifest(bytes: &[u8], media_type: &str) -> Result<Manifest, TransferError> {
    Manifest::parse(bytes, media_type).map_err(|e| TransferError::Invalid(e.to_string()))
}

/// Push an image or index from `src` as `tag`: blobs the registry lacks, then the
/// manifests (an index's children by digest), then the root by tag.
pub fn push(
    repo: &Repository<'_>,
    src: &dyn ImageSource,
    tag: &str,
    progress: &Progress,
) -> Result<Moved, TransferError> {
    let root = src.root().clone();
    let top = parse_manifest(&root.bytes, &root.media_type)?;
    let mut images: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    for child in &top.manifests {
        images.push((child.clone(), src.manifest(&child.digest)?));
    }
    let mut moved = Moved {
        root: root.clone(),
        blobs: 0,
        skipped: 0,
        bytes: 0,
    };
    let mut push_blobs = |m: &Manifest| -> Result<(), TransferError> {
        for b in m.blobs() {
            if repo.has_blob(&b.digest)? {
                moved.skipped += 1;
                continue;
            }
            repo.push_blob(b, src.blob(b)?, progress)?;
            moved.blobs += 1;
            moved.bytes += b.size;
        }
        Ok(())
    };
    for (d, bytes) in &images {
        let m = parse_manifest(bytes, &d.media_type)?;
        if m.is_index() {
            return Err(TransferError::Invalid(format!(
                "{}: nested indexes are not supported",
                d.digest
            )));
        }
        push_blobs(&m)?;
        repo.put_manifest(&d.digest.to_string(), &d.media_type, bytes)?;
    }
    push_blobs(&top)?;
    repo.put_manifest(tag, &root.media_type, &root.bytes)?;
    Ok(moved)
}

/// Which image of an index to pull for a single-image destination.
#[derive(Debug, Clone)]
pub struct PlatformChoice {
    pub os: String,
    pub architecture: String,
}

impl PlatformChoice {
    /// This machine's platform, as Go names it.
    pub fn host() -> PlatformChoice {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            other => other,
        };
        PlatformChoice {
            os: "linux".into(),
            architecture: architecture.into(),
        }
    }

    pub fn parse(s: &str) -> Option<PlatformChoice> {
        let (os, arch) = s.split_once('/')?;
        Some(PlatformChoice {
            os: os.into(),
            architecture: arch.split('/').next()?.into(),
        })
    }
}

/// Pull the manifest `root` (already fetched and checked) and everything it references
/// into `sink`. With `platform`, an index is narrowed to that platform's image (for a
/// destination that holds one image, such as `docker load`'s tarball).
pub fn pull(
    repo: &Repository<'_>,
    root: oci::Manifest,
    mut sink: Box<dyn ImageSink>,
    reference: &str,
    tag: &str,
    platform: Option<&PlatformChoice>,
    progress: &Progress,
) -> Result<Moved, TransferError> {
    let mut root = Root {
        digest: Digest::parse(&root.digest).map_err(|e| TransferError::Invalid(e.to_string()))?,
        media_type: root.media_type,
        bytes: root.bytes,
    };
    let mut top = parse_manifest(&root.bytes, &root.media_type)?;
    if let (true, Some(p)) = (top.is_index(), platform) {
        let child = top
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|pl| pl.os == p.os && pl.architecture == p.architecture)
            })
            .cloned()
            .ok_or_else(|| {
                TransferError::Invalid(format!(
                    "{reference} has no image for {}/{}",
                    p.os, p.architecture
                ))
            })?;
        let m = repo
            .get_manifest(&child.digest.to_string())?
            .ok_or_else(|| {
                TransferError::Invalid(format!("{reference}: manifest {} is missing", child.digest))
            })?;
        root = Root {
            digest: child.digest.clone(),
            media_type: child.media_type.clone(),
            bytes: m.bytes,
        };
        top = parse_manifest(&root.bytes, &root.media_type)?;
    }
    let mut moved = Moved {
        root: root.clone(),
        blobs: 0,
        skipped: 0,
        bytes: 0,
    };
    let mut images = vec![top.clone()];
    for child in &top.manifests {
        let m = repo
            .get_manifest(&child.digest.to_string())?
            .ok_or_else(|| {
                TransferError::Invalid(format!("{reference}: manifest {} is missing", child.digest))
            })?;
        let parsed = parse_manifest(&m.bytes, &child.media_type)?;
        sink.put_manifest(child, &m.bytes)?;
        images.push(parsed);
    }
    for m in &images {
        for b in m.blobs() {
            if sink.has_blob(b) {
                moved.skipped += 1;
                continue;
            }
            repo.pull_blob(b, sink.as_mut(), progress)?;
            moved.blobs += 1;
            moved.bytes += b.size;
        }
    }
    sink.finish(&root, reference, tag)?;
    Ok(moved)
}
