//! The registry: the OCI Distribution API (v1.1) on the trust server's port.
//!
//! * [`route`]: the URL grammar under `/v2/`; [`errors`]: the spec's error envelope;
//! * [`blobs`]: content-addressed blobs and uploads (filesystem or S3, behind a trait);
//! * [`meta`]: repositories' blob links, manifests, tags (behind a trait; SQLite);
//! * [`gc`]: garbage collection of blobs no manifest references.
//!
//! A manifest is stored only when every blob (and, for an index, every manifest) it
//! references is already in the repository; a blob is visible only once complete and
//! checked; a repository sees only blobs uploaded or mounted into it.

pub mod blobs;
pub mod errors;
pub mod gc;
pub mod meta;
pub mod route;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt as _;
use registry::manifest::{self, Manifest};
use registry::Digest;

use crate::health::OutOfSpace;
use blobs::{BlobError, BlobLocation, BlobStore};
use errors::{OciCode, OciError, OciResult};
use meta::{NewManifest, RegistryMeta};
use route::{ManifestRef, OciRoute};

/// Manifests larger than this are refused (the spec's suggestion).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Page size of tag lists and the catalog when the client names none, and the most a
/// client may ask for.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

pub struct Registry {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn RegistryMeta>,
    /// Manifests' bytes are held against the server's memory budget.
    pub budget: Arc<crate::budget::MemoryBudget>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryOpenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Meta(#[from] meta::MetaError),
    #[error("blob store: {0}")]
    Blobs(#[from] BlobError),
}

impl Registry {
    /// Open (creating) the registry's blob store at `location`, with its metadata in `meta`.
    pub async fn open(
        location: &BlobLocation,
        meta: Arc<dyn RegistryMeta>,
        limits: &crate::config::Limits,
        budget: Arc<crate::budget::MemoryBudget>,
        clock: Arc<dyn tuf::Clock>,
    ) -> Result<Registry, RegistryOpenError> {
        let blobs = blobs::open(
            location,
            meta.clone(),
            blobs::UploadLimits::from(limits),
            budget.clone(),
            clock,
        )
        .await?;
        Ok(Registry {
            blobs,
            meta,
            budget,
        })
    }
}

/// A server-side failure: 507 when it is a lack of space (named in the answer), else
/// 500 `UNKNOWN` with the cause only in the log.
fn internal(e: impl std::fmt::Display + OutOfSpace) -> OciError {
    if e.out_of_space() {
        return OciError::detail(OciCode::Unknown, crate::health::NO_SPACE)
            .with_status(StatusCode::INSUFFICIENT_STORAGE);
    }
    OciError::internal(e)
}

/// Answer an authorized request for a registry route. `may_mount`: whether the client may
/// read the source of a cross-repository mount (if not, the mount is a plain upload).
pub async fn handle(reg: &Registry, route: OciRoute, req: Request, may_mount: bool) -> Response {
    let (parts, body) = req.into_parts();
    let r = match (route, parts.method.clone()) {
        (OciRoute::Catalog, Method::GET) => catalog(reg, &parts).await,
        (OciRoute::Manifest(name, r), Method::GET | Method::HEAD) => {
            get_manifest(reg, &name, &r).await
        }
        (OciRoute::Manifest(name, r), Method::PUT) => {
            put_manifest(reg, &name, &r, &parts, body).await
        }
        (OciRoute::Manifest(name, r), Method::DELETE) => delete_manifest(reg, &name, &r).await,
        (OciRoute::BadManifestRef(name, _), Method::GET | Method::HEAD | Method::DELETE) => {
            Err(OciError::detail(
                OciCode::ManifestUnknown,
                format!("{name} has no manifest by that reference"),
            ))
        }
        (OciRoute::BadManifestRef(_, e), Method::PUT) => Err(e),
        (OciRoute::Blob(name, d), Method::GET | Method::HEAD) => {
            get_blob(reg, &name, &d, &parts).await
        }
        (OciRoute::Blob(name, d), Method::DELETE) => delete_blob(reg, &name, &d).await,
        (OciRoute::Uploads(name), Method::POST) => {
            start_upload(reg, &name, &parts, body, may_mount).await
        }
        (OciRoute::Upload(name, id), _) => upload(reg, &name, &id, &parts, body).await,
        (OciRoute::Tags(name), Method::GET) => tags(reg, &name, &parts).await,
        (OciRoute::Referrers(name, d), Method::GET) => referrers(reg, &name, &d, &parts).await,
        _ => Err(OciError::new(OciCode::Unsupported)),
    };
    let mut r = r.unwrap_or_else(|e| e.into_response());
    r.headers_mut().insert(
        "Docker-Distribution-Api-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// `key=value` pairs of the query, decoded.
fn query(req: &Parts) -> Vec<(String, String)> {
    crate::http::form_pairs(req.uri.query().unwrap_or(""))
}

fn param(q: &[(String, String)], key: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// `n` and `last` of a paginated list (`last` must pass `valid_last`, else `last_error`).
fn page(
    q: &[(String, String)],
    valid_last: fn(&str) -> bool,
    last_error: OciCode,
) -> OciResult<(usize, Option<String>, bool)> {
    let n = match param(q, "n") {
        Some(n) => n.parse::<usize>().map(|n| n.min(MAX_PAGE)).map_err(|_| {
            OciError::detail(
                OciCode::PaginationNumberInvalid,
                format!("n must be a number from 0 to {MAX_PAGE}"),
            )
        })?,
        None => DEFAULT_PAGE,
    };
    let last = param(q, "last").filter(|l| !l.is_empty());
    if let Some(l) = &last {
        if !valid_last(l) {
            return Err(OciError::detail(
                last_error,
                format!(
                    "last {:?} is not a valid name here",
                    l.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    Ok((n, last, param(q, "n").is_some()))
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn json_response(status: StatusCode, body: serde_json::Value, content_type: &str) -> Response {
    let mut r = (status, body.to_string()).into_response();
    set(r.headers_mut(), "content-type", content_type);
    r
}

/// A `Link` to the next page (RFC 5988, as the spec asks).
fn link_next(r: &mut Response, path: &str, n: usize, last: &str) {
    let last = percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
    set(
        r.headers_mut(),
        "link",
        &format!("<{path}?last={last}&n={n}>; rel=\"next\""),
    );
}

async fn catalog(reg: &Registry, req: &Parts) -> OciResult<Response> {
    let q = query(req);
    let (n, last, _) = page(
        &q,
        registry::reference::valid_repository,
        OciCode::NameInvalid,
    )?;
    let repos = reg
        .meta
        .catalog(n, last.as_deref())
        .await
        .map_err(internal)?;
    let next = (repos.len() == n && n > 0).then(|| repos[n - 1].clone());
    let mut r = json_response(
        StatusCode::OK,
        serde_json::json!({ "repositories": repos }),
        "application/json",
    );
    if let Some(last) = next {
        link_next(&mut r, "/v2/_catalog", n, &last);
    }
    Ok(r)
}

async fn tags(reg: &Registry, name: &str, req: &Parts) -> OciResult<Response> {
    let q = query(req);
    let (n, last, _) = page(&q, registry::reference::valid_tag, OciCode::TagInvalid)?;
    let Some(tags) = reg
        .meta
        .tags(name, n, last.as_deref())
        .await
        .map_err(internal)?
    else {
        return Err(OciError::detail(
            OciCode::NameUnknown,
            format!("repository {name} is not known"),
        ));
    };
    let next = (tags.len() == n && n > 0).then(|| tags[n - 1].clone());
    let mut r = json_response(
        StatusCode::OK,
        serde_json::json!({ "name": name, "tags": tags }),
        "application/json",
    );
    if let Some(last) = next {
        link_next(&mut r, &format!("/v2/{name}/tags/list"), n, &last);
    }
    Ok(r)
}

async fn get_manifest(reg: &Registry, name: &str, r: &ManifestRef) -> OciResult<Response> {
    let digest = match r {
        ManifestRef::Digest(d) => Some(d.to_string()),
        ManifestRef::Tag(t) => reg.meta.tag(name, t).await.map_err(internal)?,
    };
    let found = match digest {
        Some(d) => reg.meta.get_manifest(name, &d).await.map_err(internal)?,
        None => None,
    };
    let Some(m) = found else {
        return Err(OciError::detail(
            OciCode::ManifestUnknown,
            format!("{name}:{r} is not known"),
        ));
    };
    let len = m.content.len();
    let mut resp = (StatusCode::OK, m.content).into_response();
    let h = resp.headers_mut();
    set(h, "content-type", &m.media_type);
    set(h, "docker-content-digest", &m.digest);
    set(h, "content-length", &len.to_string());
    Ok(resp)
}

/// Read a request body of at most `limit` bytes, held against the memory budget.
async fn read_body(
    body: Body,
    limit: usize,
    held: &mut crate::budget::Reservation,
) -> OciResult<Vec<u8>> {
    let too_large = || {
        OciError::detail(
            OciCode::SizeInvalid,
            format!("a manifest may be {limit} bytes at most"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OciError::detail(OciCode::ManifestInvalid, format!("reading the body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(too_large());
            }
            held.grow(data.len() as u64).await.map_err(|_| busy())?;
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// 503 with `Retry-After`: the server's memory budget is spent for now.
fn busy() -> OciError {
    OciError::detail(
        OciCode::Unavailable,
        "the server is busy; try again shortly",
    )
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    r: &ManifestRef,
    req: &Parts,
    body: Body,
) -> OciResult<Response> {
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut held = reg.budget.start();
    let bytes = read_body(body, MAX_MANIFEST, &mut held).await?;
    let m = Manifest::parse(&bytes, &content_type)
        .map_err(|e| OciError::detail(OciCode::ManifestInvalid, e.to_string()))?;
    let digest = match r {
        ManifestRef::Digest(want) => {
            let mut h = want.hasher();
            h.update(&bytes);
            let actual = h.finish();
            if &actual != want {
                return Err(OciError::detail(
                    OciCode::DigestInvalid,
                    format!("the manifest's digest is {actual}, not {want}"),
                ));
            }
            actual
        }
        ManifestRef::Tag(_) => Digest::sha256_of(&bytes),
    };
    let mut refs = Vec::new();
    for b in m.blobs() {
        let linked = reg
            .meta
            .blob_linked(name, &b.digest.to_string())
            .await
            .map_err(internal)?;
        let size = if linked {
            reg.blobs.stat(&b.digest).await.map_err(internal)?
        } else {
            None
        };
        match size {
            Some(s) if s == b.size => refs.push(b.digest.to_string()),
            Some(s) => {
                return Err(OciError::detail(
                    OciCode::ManifestBlobUnknown,
                    format!(
                        "blob {} is {s} bytes, the manifest says {}",
                        b.digest, b.size
                    ),
                ))
            }
            None => {
                return Err(OciError::detail(
                    OciCode::ManifestBlobUnknown,
                    format!("blob {} is not in {name}", b.digest),
                ))
            }
        }
    }
    for child in &m.manifests {
        let d = child.digest.to_string();
        if !reg.meta.manifest_exists(name, &d).await.map_err(internal)? {
            return Err(OciError::detail(
                OciCode::ManifestBlobUnknown,
                format!("manifest {d} is not in {name}"),
            ));
        }
        refs.push(d);
    }
    let subject = m.subject.as_ref().map(|s| s.digest.to_string());
    reg.meta
        .put_manifest(NewManifest {
            repo: name.to_owned(),
            digest: digest.to_string(),
            media_type: m.media_type.clone(),
            artifact_type: m.artifact_type.clone(),
            subject: subject.clone(),
            annotations: m
                .annotations
                .as_ref()
                .map(|a| serde_json::Value::Object(a.clone()).to_string()),
            content: bytes,
            refs,
            tag: match r {
                ManifestRef::Tag(t) => Some(t.clone()),
                ManifestRef::Digest(_) => None,
            },
        })
        .await
        .map_err(internal)?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    set(h, "location", &format!("/v2/{name}/manifests/{digest}"));
    set(h, "docker-content-digest", &digest.to_string());
    if let Some(s) = subject {
        set(h, "oci-subject", &s);
    }
    Ok(resp)
}

async fn delete_manifest(reg: &Registry, name: &str, r: &ManifestRef) -> OciResult<Response> {
    let found = match r {
        ManifestRef::Digest(d) => reg.meta.delete_manifest(name, &d.to_string()).await,
        ManifestRef::Tag(t) => reg.meta.delete_tag(name, t).await,
    }
    .map_err(internal)?;
    if !found {
        return Err(OciError::detail(
            OciCode::ManifestUnknown,
            format!("{name}:{r} is not known"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A single `bytes=start-end` range (end inclusive, optional) of a blob of `len` bytes.
fn parse_range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if spec.contains(',') {
        return Some(Err(()));
    }
    let range = match (a.trim(), b.trim()) {
        ("", suffix) => suffix
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (len.saturating_sub(n), len - 1)),
        (start, "") => start
            .parse::<u64>()
            .ok()
            .map(|s| (s, len.saturating_sub(1))),
        (start, end) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) => Some((s, e.min(len.saturating_sub(1)))),
            _ => None,
        },
    };
    Some(match range {
        Some((s, e)) if s <= e && s < len => Ok((s, e)),
        _ => Err(()),
    })
}

async fn get_blob(reg: &Registry, name: &str, d: &Digest, req: &Parts) -> OciResult<Response> {
    let unknown = || OciError::detail(OciCode::BlobUnknown, format!("blob {d} is not in {name}"));
    if !reg
        .meta
        .blob_linked(name, &d.to_string())
        .await
        .map_err(internal)?
    {
        return Err(unknown());
    }
    let Some(len) = reg.blobs.stat(d).await.map_err(internal)? else {
        return Err(unknown());
    };
    let range = req
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| parse_range(h, len));
    let (status, start, count) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Some(Err(())) => {
            let mut r = OciError::detail(OciCode::RangeInvalid, format!("the blob is {len} bytes"))
                .into_response();
            set(r.headers_mut(), "content-range", &format!("bytes */{len}"));
            return Ok(r);
        }
    };
    let body = if req.method == Method::HEAD || count == 0 {
        Body::empty()
    } else {
        match reg.blobs.read(d, start, count).await.map_err(internal)? {
            Some(stream) => Body::from_stream(stream),
            None => return Err(unknown()),
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    set(h, "content-type", "application/octet-stream");
    set(h, "content-length", &count.to_string());
    set(h, "docker-content-digest", &d.to_string());
    set(h, "accept-ranges", "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            "content-range",
            &format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(resp)
}

async fn delete_blob(reg: &Registry, name: &str, d: &Digest) -> OciResult<Response> {
    if !reg
        .meta
        .unlink_blob(name, &d.to_string())
        .await
        .map_err(internal)?
    {
        return Err(OciError::detail(
            OciCode::BlobUnknown,
            format!("blob {d} is not in {name}"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

fn blob_error(e: BlobError) -> OciError {
    match e {
        BlobError::DigestMismatch { .. } => OciError::detail(OciCode::DigestInvalid, e.to_string()),
        BlobError::Body(m) => OciError::detail(
            OciCode::BlobUploadInvalid,
            format!("the request body ended early: {m}"),
        ),
        BlobError::TooLarge { .. } => OciError::detail(OciCode::SizeInvalid, e.to_string())
            .with_status(StatusCode::PAYLOAD_TOO_LARGE),
        BlobError::TooManySessions(m) => OciError::detail(OciCode::TooManyRequests, m),
        BlobError::Busy => busy(),
        BlobError::Concurrent(_) => OciError::detail(OciCode::BlobUploadInvalid, e.to_string())
            .with_status(StatusCode::CONFLICT),
        BlobError::Io(e) => internal(e),
    }
}

fn digest_param(q: &[(String, String)]) -> OciResult<Option<Digest>> {
    match param(q, "digest") {
        None => Ok(None),
        Some(d) => Digest::parse(&d)
            .map(Some)
            .map_err(|e| OciError::detail(OciCode::DigestInvalid, e.to_string())),
    }
}

/// 201 for a blob now in the repository.
fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    set(h, "location", &format!("/v2/{name}/blobs/{d}"));
    set(h, "docker-content-digest", &d.to_string());
    set(h, "content-length", "0");
    r
}

/// 202 with where an upload stands.
fn upload_status(name: &str, id: &str, size: u64, status: StatusCode) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    set(h, "location", &format!("/v2/{name}/blobs/uploads/{id}"));
    set(h, "range", &format!("0-{}", size.saturating_sub(1)));
    set(h, "docker-upload-uuid", id);
    set(h, "content-length", "0");
    r
}

async fn start_upload(
    reg: &Registry,
    name: &str,
    req: &Parts,
    body: Body,
    may_mount: bool,
) -> OciResult<Response> {
    let q = query(req);
    // Cross-repository mount: a blob the client may read in `from`, linked here.
    if let (Some(m), Some(from), true) = (param(&q, "mount"), param(&q, "from"), may_mount) {
        if let (Ok(d), true) = (
            Digest::parse(&m),
            registry::reference::valid_repository(&from),
        ) {
            let readable = reg
                .meta
                .blob_linked(&from, &d.to_string())
                .await
                .map_err(internal)?
                && reg.blobs.stat(&d).await.map_err(internal)?.is_some();
            if readable {
                reg.meta
                    .link_blob(name, &d.to_string())
                    .await
                    .map_err(internal)?;
                return Ok(blob_created(name, &d));
            }
        }
    }
    let digest = digest_param(&q)?;
    let up = reg.blobs.start(name).await.map_err(blob_error)?;
    let mut up = up.lock().await;
    match digest {
        // Monolithic: POST ?digest=… with the whole blob.
        Some(d) => complete_upload(reg, name, &mut up, req, body, &d).await,
        None => Ok(upload_status(name, &up.id, 0, StatusCode::ACCEPTED)),
    }
}

/// `start-end` of a Content-Range header on a chunk.
/// The last bytes of an upload, then the digest check that makes the blob visible and
/// its link to the repository. A body that fails to arrive ends the upload.
async fn complete_upload(
    reg: &Registry,
    name: &str,
    up: &mut blobs::Upload,
    req: &Parts,
    body: Body,
    d: &Digest,
) -> OciResult<Response> {
    check_length(reg, up, req).await?;
    if let Err(e) = reg.blobs.append(up, body).await {
        reg.blobs.discard(&up.id).await;
        return Err(blob_error(e));
    }
    reg.blobs.finish(up, d).await.map_err(blob_error)?;
    reg.meta
        .link_blob(name, &d.to_string())
        .await
        .map_err(internal)?;
    Ok(blob_created(name, d))
}

/// Refuse a body whose announced length would take the upload past `max_blob_bytes`
/// before reading it (the upload is dropped).
async fn check_length(reg: &Registry, up: &blobs::Upload, req: &Parts) -> OciResult<()> {
    let len = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = reg.blobs.limits().max_blob_bytes;
    if len.is_some_and(|n| up.size.saturating_add(n) > limit) {
        reg.blobs.discard(&up.id).await;
        return Err(blob_error(BlobError::TooLarge { limit }));
    }
    Ok(())
}

/// A chunk's `Content-Range: <start>-<end>` (`bytes ` prefix allowed): `None` without
/// one; `Err` when it is malformed, runs backwards, or disagrees with the body's
/// `Content-Length`.
fn content_range(h: &HeaderMap) -> Option<Result<(u64, u64), ()>> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let parsed = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Some(match parsed {
        Some((start, end)) if end >= start && len.is_none_or(|n| n == end - start + 1) => {
            Ok((start, end))
        }
        _ => Err(()),
    })
}

async fn upload(
    reg: &Registry,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
) -> OciResult<Response> {
    let Some(up) = reg.blobs.session(name, id).await.map_err(blob_error)? else {
        return Err(OciError::detail(
            OciCode::BlobUploadUnknown,
            format!("no upload {id} in {name}"),
        ));
    };
    let mut up = up.lock().await;
    match req.method.clone() {
        Method::GET => Ok(upload_status(name, id, up.size, StatusCode::NO_CONTENT)),
        Method::DELETE => {
            reg.blobs.discard(id).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::PATCH => {
            // A chunk must start where the upload stands, and its range fit its body.
            if let Some(range) = content_range(&req.headers) {
                let problem = match range {
                    Err(()) => Some(
                        "Content-Range must be <start>-<end>, end not before start, covering the body"
                            .to_owned(),
                    ),
                    Ok((start, _)) if start != up.size => Some(format!(
                        "the upload has {} bytes; a chunk must start there",
                        up.size
                    )),
                    Ok(_) => None,
                };
                if let Some(problem) = problem {
                    let mut r = OciError::detail(OciCode::RangeInvalid, problem).into_response();
                    set(
                        r.headers_mut(),
                        "range",
                        &format!("0-{}", up.size.saturating_sub(1)),
                    );
                    set(
                        r.headers_mut(),
                        "location",
                        &format!("/v2/{name}/blobs/uploads/{id}"),
                    );
                    return Ok(r);
                }
            }
            check_length(reg, &up, req).await?;
            let size = reg.blobs.append(&mut up, body).await.map_err(blob_error)?;
            Ok(upload_status(name, id, size, StatusCode::ACCEPTED))
        }
        Method::PUT => {
            let q = query(req);
            let Some(d) = digest_param(&q)? else {
                return Err(OciError::detail(
                    OciCode::DigestInvalid,
                    "the digest parameter is required",
                ));
            };
            complete_upload(reg, name, &mut up, req, body, &d).await
        }
        _ => Err(OciError::new(OciCode::Unsupported)),
    }
}

async fn referrers(
    reg: &Registry,
    name: &str,
    subject: &Digest,
    req: &Parts,
) -> OciResult<Response> {
    let q = query(req);
    let filter = param(&q, "artifactType");
    let list = reg
        .meta
        .referrers(name, &subject.to_string())
        .await
        .map_err(internal)?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|r| filter.is_none() || r.artifact_type == filter)
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
            });
            if let Some(a) = r.artifact_type {
                d["artifactType"] = serde_json::Value::String(a);
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let mut r = json_response(
        StatusCode::OK,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": manifests,
        }),
        manifest::OCI_INDEX,
    );
    if filter.is_some() {
        set(r.headers_mut(), "oci-filters-applied", "artifactType");
    }
    Ok(r)
}
