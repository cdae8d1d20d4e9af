//! `notarium push` and `notarium pull`: images between disk (an OCI layout directory or a
//! `docker save` tarball) and any registry, with content trust as docker's trusted push
//! and pull have it: a push signs the tag it just uploaded; a pull resolves the tag
//! through the trust data and fetches exactly the signed digest.

use std::io::{IsTerminal as _, Write};

use registry::client::oci;
use registry::client::transfer::{self, PlatformChoice, Progress, Repository};
use registry::image;
use registry::Reference;
use tuf::edit;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::ops::sign::{self, SignRequest};

pub struct PushRequest {
    /// An OCI layout directory (`DIR` or `DIR:TAG`) or a `docker save` tarball.
    pub source: String,
    /// Where to: `registry/name:tag`.
    pub reference: String,
    pub trust: bool,
}

pub struct PullRequest {
    pub reference: String,
    /// An OCI layout directory, or a `.tar` for `docker load`.
    pub dest: std::path::PathBuf,
    pub trust: bool,
    /// `os/arch`: the image of an index to pull (a tarball holds one image: by default
    /// this machine's).
    pub platform: Option<String>,
}

fn other(e: impl std::fmt::Display) -> TrustError {
    TrustError::Other(e.to_string())
}

fn tag_of(r: &Reference) -> String {
    r.tag.clone().unwrap_or_else(|| "latest".into())
}

pub fn push(ctx: &mut Context, out: &mut dyn Write, req: &PushRequest) -> Result<()> {
    let r = Reference::parse(&req.reference).map_err(|e| TrustError::Usage(e.to_string()))?;
    if r.digest.is_some() {
        return Err(TrustError::Usage(format!(
            "cannot push to a digest reference: {}",
            req.reference
        )));
    }
    let tag = tag_of(&r);
    let src = image::open_source(&req.source).map_err(other)?;
    let session = oci::open(&ctx.config, &r.domain, &ctx.insecure_registries)?;
    let repo = Repository::new(&session, &r);
    let progress = Progress::new(std::io::stderr().is_terminal());
    let _ = writeln!(out, "The push refers to repository [{}]", r.name());
    let moved = transfer::push(&repo, src.as_ref(), &tag, &progress).map_err(other)?;
    let _ = writeln!(
        out,
        "{tag}: digest: {} size: {} ({} blobs pushed, {} already there)",
        moved.root.digest,
        moved.root.bytes.len(),
        moved.blobs,
        moved.skipped
    );
    if !req.trust {
        return Ok(());
    }
    let digest = moved
        .root
        .digest
        .sha256_bytes()
        .ok_or_else(|| TrustError::Other("only sha256 manifests can be signed".into()))?;
    let target = edit::docker_target(digest, moved.root.bytes.len() as u64);
    let mut named = r.clone();
    named.tag = Some(tag.clone());
    sign::sign(
        ctx,
        out,
        &SignRequest {
            image: named.familiar(),
            tag: None,
            target: Some(target),
            stage: None,
        },
    )
}

pub fn pull(ctx: &mut Context, out: &mut dyn Write, req: &PullRequest) -> Result<()> {
    let r = Reference::parse(&req.reference).map_err(|e| TrustError::Usage(e.to_string()))?;
    let tag = tag_of(&r);
    let session = oci::open(&ctx.config, &r.domain, &ctx.insecure_registries)?;
    let repo = Repository::new(&session, &r);
    let shown = match &r.digest {
        Some(d) => format!("{}@{d}", r.name()),
        None => format!("{}:{tag}", r.name()),
    };
    // What to fetch: with trust, the digest the trust data signs for the tag.
    let (reference, trusted_size) = match (&r.digest, req.trust) {
        (Some(d), _) => (d.clone(), None),
        (None, false) => (tag.clone(), None),
        (None, true) => {
            let mut named = r.clone();
            named.tag = Some(tag.clone());
            let (digest, size, _role) = sign::verify(ctx, &named.familiar())?;
            let _ = writeln!(out, "Pull (1 of 1): {}:{tag}@{digest}", r.name());
            (digest, Some(size))
        }
    };
    let m = repo.get_manifest(&reference)?.ok_or_else(|| match trusted_size {
        Some(_) => TrustError::Other(format!(
            "{shown} is signed as {reference}, which the registry does not have: refusing other content"
        )),
        None => TrustError::Other(format!("manifest for {shown} not found")),
    })?;
    if let Some(size) = trusted_size {
        if m.size != size {
            return Err(TrustError::Other(format!(
                "{shown}: the registry's manifest is {} bytes, the trust data says {size}",
                m.size
            )));
        }
    }
    let tarball = req.dest.extension().is_some_and(|e| e == "tar") || req.dest.is_file();
    let platform = match &req.platform {
        Some(p) => Some(PlatformChoice::parse(p).ok_or_else(|| {
            TrustError::Usage(format!("invalid platform {p:?}: expected os/arch"))
        })?),
        None if tarball => Some(PlatformChoice::host()),
        None => None,
    };
    let sink = image::open_sink(&req.dest).map_err(other)?;
    let progress = Progress::new(std::io::stderr().is_terminal());
    let digest = m.digest.clone();
    let name_tag = format!("{}:{tag}", r.name());
    let moved = transfer::pull(
        &repo,
        m,
        sink,
        &name_tag,
        &tag,
        platform.as_ref(),
        &progress,
    )
    .map_err(other)?;
    let _ = writeln!(out, "Digest: {digest}");
    if moved.root.digest.to_string() != digest {
        let _ = writeln!(out, "Image for this platform: {}", moved.root.digest);
    }
    let _ = writeln!(
        out,
        "Status: pulled {shown} to {} ({} blobs, {} bytes)",
        req.dest.display(),
        moved.blobs,
        moved.bytes
    );
    Ok(())
}
