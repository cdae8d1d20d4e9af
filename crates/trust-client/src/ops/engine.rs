//! Trusted push and pull into a Docker Engine, what docker ≤ 28 did with
//! `DOCKER_CONTENT_TRUST=1` and docker 29 no longer does: `trust push IMAGE:TAG` pushes
//! the image from the engine (Engine API) and signs the digest the push reported; `trust
//! pull IMAGE:TAG` resolves the tag through the trust data, has the engine pull
//! `IMAGE@<digest>` and tags it `IMAGE:TAG` (an unsigned tag is refused, a moved one
//! still yields the signed content).
//!
//! The engine is reached at `DOCKER_HOST` (a unix socket by default, `tcp://` too); the
//! registry credentials from `config.json` go along as `X-Registry-Auth`, as docker sends
//! them.

use std::io::Write;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions, TagImageOptions};
use futures_util::StreamExt;
use registry::client::Credentials;
use registry::Reference;
use tuf::edit;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::ops::sign::{self, SignRequest};

fn engine_err(e: impl std::fmt::Display) -> TrustError {
    TrustError::Other(format!("Docker Engine: {e}"))
}

/// One call into the engine, on a runtime of its own (the rest of the client is blocking).
fn on_engine<T>(
    f: impl AsyncFnOnce(bollard::Docker) -> std::result::Result<T, TrustError>,
) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(engine_err)?;
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(engine_err)?
            .negotiate_version()
            .await
            .map_err(|e| {
                engine_err(format!(
                    "{e} (is the engine running at {}?)",
                    std::env::var("DOCKER_HOST")
                        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
                ))
            })?;
        f(docker).await
    })
}

/// The registry credentials docker would send for `r`'s registry.
fn credentials(ctx: &Context, r: &Reference) -> Result<Option<DockerCredentials>> {
    let c = ctx
        .config
        .credentials(&r.domain)
        .map_err(TrustError::Other)?;
    Ok(c.map(|c| match c {
        Credentials::Basic { username, password } => DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: Some(r.domain.clone()),
            ..Default::default()
        },
        Credentials::IdentityToken { username, token } => DockerCredentials {
            username: Some(username),
            identitytoken: Some(token),
            serveraddress: Some(r.domain.clone()),
            ..Default::default()
        },
    }))
}

fn tagged(image: &str) -> Result<(Reference, String)> {
    let r = Reference::parse(image).map_err(|e| TrustError::Usage(e.to_string()))?;
    if r.digest.is_some() {
        return Err(TrustError::Usage(format!(
            "{image}: give IMAGE:TAG (content trust signs and resolves tags)"
        )));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    Ok((r, tag))
}

/// `TAG: digest: sha256:<hex> size: N`, as the engine reports a finished push.
fn reported(status: &str, tag: &str) -> Option<([u8; 32], u64)> {
    let rest = status
        .strip_prefix(tag)?
        .strip_prefix(": digest: sha256:")?;
    let (hex_digest, rest) = rest.split_once(' ')?;
    let size = rest.strip_prefix("size: ")?.trim().parse().ok()?;
    let bytes = hex::decode(hex_digest).ok()?;
    Some((bytes.try_into().ok()?, size))
}

/// `trust push IMAGE:TAG`.
pub fn push(ctx: &mut Context, out: &mut dyn Write, image: &str) -> Result<()> {
    let (r, tag) = tagged(image)?;
    let auth = credentials(ctx, &r)?;
    let name = r.name();
    let lines: Vec<String> = on_engine(async |docker| {
        let mut lines = Vec::new();
        let mut s = docker.push_image(
            &name,
            Some(PushImageOptions {
                tag: Some(tag.clone()),
                ..Default::default()
            }),
            auth,
        );
        while let Some(item) = s.next().await {
            let info = item.map_err(engine_err)?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(engine_err(e));
            }
            if let Some(st) = info.status {
                lines.push(st);
            }
        }
        Ok(lines)
    })?;
    let mut found = None;
    for l in &lines {
        // The engine's per-layer lines carry no layer ID through this API; what is left is
        // the repository and the outcome, as docker prints them.
        let digest = reported(l, &tag);
        if digest.is_some() || l.starts_with("The push refers to repository") {
            let _ = writeln!(out, "{l}");
        }
        found = found.or(digest);
    }
    let (digest, size) = found
        .ok_or_else(|| engine_err(format!("the push of {image} reported no digest to sign")))?;
    let mut named = r.clone();
    named.tag = Some(tag);
    sign::sign(
        ctx,
        out,
        &SignRequest {
            image: named.familiar(),
            tag: None,
            target: Some(edit::docker_target(digest, size)),
            stage: None,
        },
    )
}

/// `trust pull IMAGE:TAG`.
pub fn pull(ctx: &mut Context, out: &mut dyn Write, image: &str) -> Result<()> {
    let (r, tag) = tagged(image)?;
    let mut named = r.clone();
    named.tag = Some(tag.clone());
    // Refused here, with docker's words, when the tag is not signed.
    let (digest, _, _) = sign::verify(ctx, &named.familiar())?;
    let by_digest = format!("{}@{digest}", r.name());
    let _ = writeln!(out, "Pull (1 of 1): {}:{tag}@{digest}", r.name());
    let auth = credentials(ctx, &r)?;
    let repo = r.name();
    let lines: Vec<String> = on_engine(async |docker| {
        let mut lines = Vec::new();
        let mut s = docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(by_digest.clone()),
                ..Default::default()
            }),
            None,
            auth,
        );
        while let Some(item) = s.next().await {
            let info = item.map_err(engine_err)?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(engine_err(e));
            }
            let skip = info.progress_detail.is_some_and(|p| p.total.is_some());
            if let (Some(st), false) = (info.status, skip) {
                lines.push(match info.id {
                    Some(id) => format!("{id}: {st}"),
                    None => st,
                });
            }
        }
        docker
            .tag_image(
                &by_digest,
                Some(TagImageOptions {
                    repo: Some(repo.clone()),
                    tag: Some(tag.clone()),
                }),
            )
            .await
            .map_err(engine_err)?;
        Ok(lines)
    })?;
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "Tagging {by_digest} as {}:{tag}", r.name());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pushed_digest_is_read_from_the_engine_s_report() {
        let hex = "8cfd983f0e611c519fe2d502d8f7578fe67b6c1f872c4a87f1f58d094f5f4d26";
        let (d, size) =
            super::reported(&format!("v1: digest: sha256:{hex} size: 528"), "v1").unwrap();
        assert_eq!((hex::encode(d), size), (hex.to_owned(), 528));
        assert!(super::reported(&format!("v10: digest: sha256:{hex} size: 528"), "v1").is_none());
        assert!(super::reported("v1: digest: sha256:zz size: 1", "v1").is_none());
    }
}
