//! Registry operations over the OCI distribution API.

use super::{DockerConfig, NetError, Session, TlsOptions};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::reference::{is_loopback_host, Reference};

/// Media types notarium asks for: OCI image manifests and indexes, Docker schema 2
/// manifests and manifest lists.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests larger than this are refused (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// A resolved manifest: what docker signs for a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `sha256:<hex>` of the exact manifest bytes.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    pub fn sha256(&self) -> [u8; 32] {
        tuf::hash::sha256(&self.bytes)
    }

    pub fn is_index(&self) -> bool {
        self.media_type.contains("index") || self.media_type.contains("manifest.list")
    }
}

/// The registry API host for a domain (Docker Hub's differs from its name).
pub fn api_host(domain: &str) -> &str {
    if domain == "docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// Open a registry: HTTPS, or plain HTTP for a loopback registry (as docker allows) or one
/// named in `insecure`, when HTTPS fails to connect.
pub fn open(cfg: &DockerConfig, domain: &str, insecure: &[String]) -> Result<Session, NetError> {
    let creds = cfg.credentials(domain).map_err(NetError::Config)?;
    open_with(cfg, domain, insecure, creds)
}

/// [`open`] with the given credentials (`notarium login` checks new ones).
pub fn open_with(
    cfg: &DockerConfig,
    domain: &str,
    insecure: &[String],
    creds: Option<super::Credentials>,
) -> Result<Session, NetError> {
    let host = api_host(domain);
    let tls = TlsOptions {
        cert_dir: Some(cfg.tls_dir(host)),
        insecure_skip_verify: false,
    };
    match Session::open(&format!("https://{host}"), &tls, creds.clone()) {
        Ok(s) => Ok(s),
        Err(e @ (NetError::Connect { .. } | NetError::Tls { .. } | NetError::Io { .. }))
            if is_loopback_host(host) || insecure.iter().any(|i| i == host || i == domain) =>
        {
            Session::open(&format!("http://{host}"), &tls, creds).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

pub fn pull_scope(path: &str) -> String {
    format!("repository:{path}:pull")
}

/// Fetch the manifest a reference (tag or digest) points at, and check its digest.
pub fn resolve(session: &Session, r: &Reference) -> Result<Option<Manifest>, NetError> {
    let what = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    fetch_manifest(session, &r.path, &what)
}

/// `GET /v2/<repo>/manifests/<reference>`: the manifest's bytes, checked against the
/// digest asked for (a digest reference) and the one the registry names
/// (`Docker-Content-Digest`); `None` when the registry has no such manifest.
pub fn fetch_manifest(
    session: &Session,
    repo: &str,
    reference: &str,
) -> Result<Option<Manifest>, NetError> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let url = format!("{}{path}", session.base());
    let rb = session
        .request(reqwest::Method::GET, &path, &pull_scope(repo))?
        .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
    let resp = session.send(rb, &url)?;
    match resp.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        status => {
            return Err(NetError::Status {
                url,
                status,
                body: super::error_summary(resp),
            })
        }
    }
    let header_digest = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok());
    let media_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned())
        .unwrap_or_default();
    let bytes = super::read_limited(resp, MAX_MANIFEST, &url)?;
    let wanted = Digest::parse(reference).ok();
    let hash = |alg: Algorithm| {
        let mut h = Hasher::new(alg);
        h.update(&bytes);
        h.finish()
    };
    let digest = hash(wanted.as_ref().map_or(Algorithm::Sha256, Digest::algorithm));
    if let Some(want) = wanted {
        if want != digest {
            return Err(NetError::Io {
                url,
                cause: format!("asked for {want}, got content hashing to {digest}"),
            });
        }
    }
    if let Some(h) = header_digest {
        let actual = hash(h.algorithm());
        if h != actual {
            return Err(NetError::Io {
                url,
                cause: format!(
                    "the registry says the manifest is {h}, but its bytes hash to {actual}"
                ),
            });
        }
    }
    let media_type = if media_type.is_empty() || media_type == "application/json" {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_default()
    } else {
        media_type
    };
    Ok(Some(Manifest {
        size: bytes.len() as u64,
        digest: digest.to_string(),
        media_type,
        bytes,
    }))
}
