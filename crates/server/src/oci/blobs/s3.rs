//! Blobs in an S3-compatible object store (`s3://BUCKET/PREFIX`), through `object_store`.
//!
//! Keys under the prefix:
//! * `blobs/<algorithm>/<hex[..2]>/<hex>`: a complete, checked blob;
//! * `uploads/<id>/data`: the multipart upload of session `<id>`, completed only once the
//!   client says it is done, and copied to its blob key once its digest checks;
//! * `uploads/<id>/tail-<size>`: the bytes of the session past its last full part (S3
//!   parts but the last must be at least 5 MiB; a chunk may be smaller), named after the
//!   session's size so a new tail never overwrites the one the database still names.
//!
//! The session (its size, multipart upload id, parts and tail) is a row of the registry
//! database, moved by compare-and-set on its size: any server on the same database and
//! bucket continues or completes it, and two requests racing on one session cannot both
//! move it. Memory per upload is one part (8 MiB at most), held against the budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore as _, PutPayload};
use registry::digest::{Algorithm, Hasher};
use registry::Digest;
use serde::{Deserialize, Serialize};
use tuf::Clock;

use super::{
    io_other, meta_io, BlobError, BlobStore, BlobStream, StoredBlob, Upload, UploadHandle,
    UploadLimits,
};
use crate::oci::meta::{RegistryMeta, UploadRecord, UploadSlot};

/// Bytes per multipart part: every part but the last is exactly this long.
pub const PART: usize = 8 << 20;

/// The largest object one CopyObject moves on AWS S3.
pub const MAX_COPY_BYTES: u64 = 5 << 30;

/// `s3://BUCKET/PREFIX` with the settings of `[storage.s3]` (each may also come from the
/// standard `AWS_*` variables: `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<zeroize::Zeroizing<String>>,
    /// `[storage.s3] unsigned_payload`; `None`: on unless the endpoint is plain HTTP.
    pub unsigned_payload: Option<bool>,
    /// `[storage.s3] max_copy_bytes`: the largest object one server-side copy may move
    /// (AWS's CopyObject: 5 GiB). A larger blob is copied part by part through the server.
    pub max_copy_bytes: Option<u64>,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " at {e}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials in logs.
        write!(f, "{self}")
    }
}

impl S3Location {
    /// (plain HTTP, unsigned payloads) for this location, `AWS_ENDPOINT` being
    /// `env_endpoint`. Over TLS the payload needs no hash of its own in the signature:
    /// hashing every uploaded byte for it cost this server a third of a push's CPU and the
    /// service a third of its own (BENCHMARKS.md). Over plain HTTP that hash is the
    /// only check in transit, so it stays unless the configuration turns it off.
    pub fn transport(&self, env_endpoint: Option<&str>) -> (bool, bool) {
        let plain_http = self
            .endpoint
            .as_deref()
            .or(env_endpoint)
            .is_some_and(|e| e.starts_with("http://"));
        (plain_http, self.unsigned_payload.unwrap_or(!plain_http))
    }

    /// `BUCKET[/PREFIX]` (what follows `s3://`).
    pub fn parse(rest: &str) -> Result<S3Location, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "s3://{}: a bucket name is 3 to 63 lowercase letters, digits, '-' or '.'",
                rest.chars().take(100).collect::<String>()
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
            || prefix.chars().any(|c| c.is_control())
        {
            return Err(format!("s3 key prefix {prefix:?} is not a plain path"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            ..Default::default()
        })
    }
}

/// What a session holds besides its size, as stored in its row.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    /// The multipart upload, once a first full part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the parts sent, in order (each `PART` bytes).
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes in the tail object (`size - parts * PART`).
    #[serde(default)]
    tail: u64,
    /// The multipart upload was completed (into the data key): nothing left to abort.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    completed: bool,
}

impl State {
    fn parse(s: &str) -> Result<State, BlobError> {
        if s.is_empty() {
            return Ok(State::default());
        }
        serde_json::from_str(s).map_err(|e| io_other(format!("upload state: {e}")).into())
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct S3Blobs {
    store: Arc<AmazonS3>,
    prefix: String,
    location: String,
    meta: Arc<dyn RegistryMeta>,
    limits: UploadLimits,
    budget: Arc<crate::budget::MemoryBudget>,
    clock: Arc<dyn Clock>,
    max_copy_bytes: u64,
    /// The running hash of each upload whose every byte this process saw in order, with
    /// that many bytes: a completion here then needs no second read. Bounded by the
    /// session limit.
    hashers: Mutex<HashMap<String, Hasher>>,
}

fn s3_error(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string())
        }
        e => std::io::Error::other(format!("object store: {e}")),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Blobs {
    pub async fn open(
        loc: &S3Location,
        meta: Arc<dyn RegistryMeta>,
        limits: UploadLimits,
        budget: Arc<crate::budget::MemoryBudget>,
        clock: Arc<dyn Clock>,
    ) -> Result<S3Blobs, BlobError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&loc.bucket);
        let env_endpoint = std::env::var("AWS_ENDPOINT").ok();
        let (plain_http, unsigned) = loc.transport(env_endpoint.as_deref());
        if let Some(e) = &loc.endpoint {
            b = b.with_endpoint(e);
        }
        b = b
            .with_allow_http(plain_http)
            .with_unsigned_payload(unsigned);
        if let Some(r) = &loc.region {
            b = b.with_region(r);
        }
        if let Some(k) = &loc.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &loc.secret_access_key {
            b = b.with_secret_access_key(s.as_str());
        }
        // A store that does not answer fails a request within seconds, not minutes.
        b = b.with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..Default::default()
        });
        let store = b
            .build()
            .map_err(|e| io_other(format!("object store {loc}: {e}")))?;
        Ok(S3Blobs {
            store: Arc::new(store),
            prefix: loc.prefix.clone(),
            location: loc.to_string(),
            meta,
            limits,
            budget,
            clock,
            max_copy_bytes: loc.max_copy_bytes.unwrap_or(MAX_COPY_BYTES),
            hashers: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, d: &Digest) -> Path {
        let hex = d.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            d.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn data_key(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}/data"))
    }

    fn tail_key(&self, id: &str, size: u64) -> Path {
        self.key(&format!("uploads/{id}/tail-{size}"))
    }

    fn now_ms(&self) -> i64 {
        crate::oci::meta::sqlite::now_ms(&*self.clock)
    }

    fn lock_hashers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hasher>> {
        self.hashers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running hash of `id` if it covers exactly `size` bytes.
    fn take_hasher(&self, id: &str, size: u64) -> Option<Hasher> {
        self.lock_hashers()
            .remove(id)
            .filter(|h| h.len() == size)
            .or_else(|| (size == 0).then(|| Hasher::new(Algorithm::Sha256)))
    }

    fn keep_hasher(&self, id: &str, h: Hasher) {
        let mut map = self.lock_hashers();
        if map.len() >= self.limits.max_sessions {
            // Sessions of other servers' clients or long gone: any may go.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(id.to_owned(), h);
    }

    async fn get_all(&self, key: &Path, expect: u64) -> Result<BytesMut, BlobError> {
        let got = self.store.get(key).await.map_err(s3_error)?;
        let bytes = got.bytes().await.map_err(s3_error)?;
        if bytes.len() as u64 != expect {
            return Err(io_other(format!(
                "{key} holds {} bytes, the session says {expect}",
                bytes.len()
            ))
            .into());
        }
        Ok(BytesMut::from(&bytes[..]))
    }

    async fn delete_quietly(&self, key: &Path) {
        match self.store.delete(key).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!("deleting {key}: {}", s3_error(e)),
        }
    }

    /// Send one full part of upload `id`, creating its multipart upload first if needed.
    async fn send_part(
        &self,
        id: &str,
        st: &mut State,
        old_size: u64,
        part: Bytes,
    ) -> Result<(), BlobError> {
        let key = self.data_key(id);
        let mp = match &st.multipart {
            Some(mp) => mp.clone(),
            None => {
                let mp = self.store.create_multipart(&key).await.map_err(s3_error)?;
                st.multipart = Some(mp.clone());
                // Recorded at once (no part yet, the tail unchanged), so an upload
                // abandoned from here on is aborted by whoever expires the session.
                let recorded = st.clone();
                if !self
                    .meta
                    .update_upload(id, old_size, old_size, &recorded.json())
                    .await?
                {
                    let _ = self.store.abort_multipart(&key, &mp).await;
                    return Err(BlobError::Concurrent(id.to_owned()));
                }
                mp
            }
        };
        let PartId { content_id } = self
            .store
            .put_part(&key, &mp, st.parts.len(), PutPayload::from(part))
            .await
            .map_err(s3_error)?;
        st.parts.push(content_id);
        self.meta.touch_upload(id).await?;
        Ok(())
    }

    async fn hash_object(&self, key: &Path, alg: Algorithm) -> Result<Digest, BlobError> {
        let got = self.store.get(key).await.map_err(s3_error)?;
        let mut stream = got.into_stream();
        let mut h = Hasher::new(alg);
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(s3_error)?);
        }
        Ok(h.finish())
    }

    /// Drop a session's objects and multipart upload (its row is the caller's): the tail,
    /// and the data key where a multipart upload (or an empty blob) was staged.
    async fn remove_session_objects(&self, r: &UploadRecord) {
        let st = State::parse(&r.state).unwrap_or_default();
        let key = self.data_key(&r.id);
        if let (Some(mp), false) = (&st.multipart, st.completed) {
            if let Err(e) = self.store.abort_multipart(&key, mp).await {
                if !is_not_found(&e) {
                    tracing::debug!("aborting the multipart upload of {}: {e}", r.id);
                }
            }
        }
        if st.tail > 0 {
            self.delete_quietly(&self.tail_key(&r.id, r.size)).await;
        }
        if st.multipart.is_some() || r.size == 0 {
            self.delete_quietly(&key).await;
        }
        self.lock_hashers().remove(&r.id);
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn stat(&self, d: &Digest) -> std::io::Result<Option<u64>> {
        match self.store.head(&self.blob_key(d)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn read(
        &self,
        d: &Digest,
        start: u64,
        count: u64,
    ) -> std::io::Result<Option<BlobStream>> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(start..start + count)),
            ..Default::default()
        };
        match self.store.get_opts(&self.blob_key(d), opts).await {
            Ok(got) => Ok(Some(got.into_stream().map_err(s3_error).boxed())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn start(&self, repo: &str) -> Result<UploadHandle, BlobError> {
        let id = super::new_upload_id()?;
        let record = UploadRecord {
            id: id.clone(),
            repo: repo.to_owned(),
            size: 0,
            state: State::default().json(),
            touched_ms: self.now_ms(),
        };
        match self
            .meta
            .create_upload(
                &record,
                self.limits.max_sessions,
                self.limits.max_sessions_per_repository,
            )
            .await?
        {
            UploadSlot::Created => {}
            UploadSlot::RegistryFull(n) => {
                return Err(BlobError::TooManySessions(format!(
                    "the registry has {n} upload sessions open, its limit"
                )))
            }
            UploadSlot::RepositoryFull(n) => {
                return Err(BlobError::TooManySessions(format!(
                    "{repo} has {n} upload sessions open, the limit per repository"
                )))
            }
        }
        let mut up = Upload::new(id, repo.to_owned());
        up.state = record.state;
        up.hasher = None;
        Ok(Arc::new(tokio::sync::Mutex::new(up)))
    }

    async fn session(&self, repo: &str, id: &str) -> Result<Option<UploadHandle>, BlobError> {
        let Some(r) = self.meta.get_upload(id).await? else {
            return Ok(None);
        };
        if r.repo != repo {
            return Ok(None);
        }
        Ok(Some(Arc::new(tokio::sync::Mutex::new(Upload {
            id: r.id,
            repo: r.repo,
            size: r.size,
            hasher: None,
            state: r.state,
        }))))
    }

    async fn append(&self, up: &mut Upload, body: Body) -> Result<u64, BlobError> {
        self.meta.touch_upload(&up.id).await?;
        let limit = self.limits.max_blob_bytes;
        let old_size = up.size;
        let mut st = State::parse(&up.state)?;
        let mut held = self.budget.start();
        let mut hasher = self.take_hasher(&up.id, old_size);
        // The bytes past the last full part: the tail so far, then the body's.
        let mut buf = if st.tail > 0 {
            held.grow(st.tail).await.map_err(|_| BlobError::Busy)?;
            self.get_all(&self.tail_key(&up.id, old_size), st.tail)
                .await?
        } else {
            BytesMut::new()
        };
        let (mut failure, mut too_large, mut busy) = (None, false, false);
        let mut received = old_size;
        let mut body = body;
        'frames: while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            };
            received += data.len() as u64;
            if received > limit {
                too_large = true;
                break;
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            let mut data = data;
            while !data.is_empty() {
                let take = data.len().min(PART - buf.len());
                let grow = held.grow(take as u64).await;
                if grow.is_err() {
                    busy = true;
                    break 'frames;
                }
                buf.extend_from_slice(&data.split_to(take));
                if buf.len() == PART {
                    let part = buf.split().freeze();
                    self.send_part(&up.id, &mut st, old_size, part).await?;
                    held = self.budget.start();
                }
            }
        }
        if too_large {
            self.discard(&up.id).await;
            return Err(BlobError::TooLarge { limit });
        }
        if busy || failure.is_some() {
            // Bytes that arrived after a frame's hash no longer match; hash again later.
            hasher = None;
        }
        let new_size = st.parts.len() as u64 * PART as u64 + buf.len() as u64;
        if new_size != old_size {
            if !buf.is_empty() {
                self.store
                    .put(
                        &self.tail_key(&up.id, new_size),
                        PutPayload::from(buf.freeze()),
                    )
                    .await
                    .map_err(s3_error)?;
            }
            let old_tail = st.tail;
            st.tail = new_size - st.parts.len() as u64 * PART as u64;
            if !self
                .meta
                .update_upload(&up.id, old_size, new_size, &st.json())
                .await?
            {
                if st.tail > 0 {
                    self.delete_quietly(&self.tail_key(&up.id, new_size)).await;
                }
                return Err(BlobError::Concurrent(up.id.clone()));
            }
            if old_tail > 0 {
                self.delete_quietly(&self.tail_key(&up.id, old_size)).await;
            }
        }
        up.size = new_size;
        up.state = st.json();
        if let Some(h) = hasher.filter(|h| h.len() == new_size) {
            self.keep_hasher(&up.id, h);
        }
        match failure {
            Some(f) => Err(BlobError::Body(f)),
            None if busy => Err(BlobError::Busy),
            None => Ok(new_size),
        }
    }

    async fn finish(&self, up: &mut Upload, expected: &Digest) -> Result<u64, BlobError> {
        let outcome = self.complete(up, expected).await;
        self.remove_session_objects(&UploadRecord {
            id: up.id.clone(),
            repo: up.repo.clone(),
            size: up.size,
            state: up.state.clone(),
            touched_ms: 0,
        })
        .await;
        self.meta.delete_upload(&up.id).await?;
        outcome
    }

    async fn discard(&self, id: &str) {
        match self.meta.get_upload(id).await {
            Ok(Some(r)) => {
                self.remove_session_objects(&r).await;
                if let Err(e) = self.meta.delete_upload(id).await {
                    tracing::warn!("removing upload session {id}: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("removing upload session {id}: {e}"),
        }
    }

    async fn expire(&self) -> usize {
        let cutoff = self.now_ms() - self.limits.expiry.as_millis() as i64;
        let old = match self.meta.uploads_touched_before(cutoff, 1000).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("expiring upload sessions: {e}");
                return 0;
            }
        };
        let mut n = 0;
        for r in old {
            self.remove_session_objects(&r).await;
            if self.meta.delete_upload(&r.id).await.unwrap_or(false) {
                n += 1;
            }
        }
        n
    }

    async fn list_blobs(&self) -> std::io::Result<Vec<StoredBlob>> {
        let mut out = Vec::new();
        let mut list = self.store.list(Some(&self.key("blobs")));
        while let Some(m) = list.next().await {
            let m = m.map_err(s3_error)?;
            let parts: Vec<_> = m.location.parts().collect();
            let n = parts.len();
            if n < 3 {
                continue;
            }
            let (alg, name) = (parts[n - 3].as_ref(), parts[n - 1].as_ref());
            if let Ok(d) = Digest::parse(&format!("{alg}:{name}")) {
                out.push(StoredBlob {
                    digest: d,
                    modified: SystemTime::from(m.last_modified),
                    size: m.size,
                });
            }
        }
        Ok(out)
    }

    async fn delete_blob(&self, d: &Digest) -> std::io::Result<()> {
        match self.store.delete(&self.blob_key(d)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn remove_stale_uploads(
        &self,
        before: SystemTime,
        dry_run: bool,
    ) -> std::io::Result<usize> {
        let before_ms = before
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let meta_err = meta_io;
        let stale = self
            .meta
            .uploads_touched_before(before_ms, usize::MAX >> 1)
            .await
            .map_err(meta_err)?;
        let n = stale.len();
        if !dry_run {
            for r in &stale {
                self.remove_session_objects(r).await;
                self.meta.delete_upload(&r.id).await.map_err(meta_err)?;
            }
        }
        // Objects of sessions the database no longer knows (a crash between writing an
        // object and recording it), old enough.
        let live = self.meta.upload_ids().await.map_err(meta_err)?;
        let mut list = self.store.list(Some(&self.key("uploads")));
        let mut strays = Vec::new();
        while let Some(m) = list.next().await {
            let m = m.map_err(s3_error)?;
            let parts: Vec<_> = m.location.parts().collect();
            let Some(id) = parts
                .len()
                .checked_sub(2)
                .map(|i| parts[i].as_ref().to_owned())
            else {
                continue;
            };
            if !live.contains(&id) && SystemTime::from(m.last_modified) < before {
                strays.push(m.location);
            }
        }
        if !dry_run {
            for k in &strays {
                self.delete_quietly(k).await;
            }
        }
        Ok(n)
    }

    async fn check(&self) -> Result<(), String> {
        match self.store.head(&self.key("health-probe")).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(format!("{}: {}", self.location, s3_error(e))),
        }
    }
}

impl S3Blobs {
    /// The last part, the multipart completion, the digest check and the copy to the
    /// blob's key.
    async fn complete(&self, up: &mut Upload, expected: &Digest) -> Result<u64, BlobError> {
        let mut st = State::parse(&up.state)?;
        let hasher = self.take_hasher(&up.id, up.size);
        let staged = match &st.multipart {
            // Everything is in the tail (or there is nothing).
            None if st.tail > 0 => self.tail_key(&up.id, up.size),
            None => {
                let key = self.data_key(&up.id);
                self.store
                    .put(&key, PutPayload::default())
                    .await
                    .map_err(s3_error)?;
                key
            }
            Some(mp) => {
                let mp = mp.clone();
                let key = self.data_key(&up.id);
                if st.tail > 0 {
                    let tail = self.tail_key(&up.id, up.size);
                    let mut held = self.budget.start();
                    held.grow(st.tail).await.map_err(|_| BlobError::Busy)?;
                    let bytes = self.get_all(&tail, st.tail).await?.freeze();
                    let PartId { content_id } = self
                        .store
                        .put_part(&key, &mp, st.parts.len(), PutPayload::from(bytes))
                        .await
                        .map_err(s3_error)?;
                    st.parts.push(content_id);
                }
                let parts = st
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.clone(),
                    })
                    .collect();
                self.store
                    .complete_multipart(&key, &mp, parts)
                    .await
                    .map_err(s3_error)?;
                st.completed = true;
                up.state = st.json();
                key
            }
        };
        let actual = match hasher {
            Some(h) if expected.algorithm() == Algorithm::Sha256 => h.finish(),
            _ => self.hash_object(&staged, expected.algorithm()).await?,
        };
        // The staged object (tail or data key) is removed by `finish` with the session.
        if &actual != expected {
            return Err(BlobError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let dest = self.blob_key(expected);
        if self.stat(expected).await? != Some(up.size) {
            if up.size > self.max_copy_bytes {
                self.copy_by_parts(&staged, &dest).await?;
            } else {
                self.store.copy(&staged, &dest).await.map_err(s3_error)?;
            }
        }
        Ok(up.size)
    }

    /// Copy an object too large for one server-side copy: read and written again, a
    /// part at a time (one part held against the budget), the new multipart upload
    /// aborted if anything fails.
    async fn copy_by_parts(&self, from: &Path, to: &Path) -> Result<(), BlobError> {
        use futures_util::StreamExt as _;
        let mut held = self.budget.start();
        held.grow(2 * PART as u64)
            .await
            .map_err(|_| BlobError::Busy)?;
        let upload = self.store.put_multipart(to).await.map_err(s3_error)?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let copied: Result<(), object_store::Error> = async {
            let mut stream = self.store.get(from).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                // At most one part on its way while the next fills.
                w.wait_for_capacity(1).await?;
                w.write(&chunk);
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                w.finish().await.map_err(s3_error)?;
                Ok(())
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(s3_error(e).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::S3Location;

    #[test]
    fn payloads_go_unsigned_only_over_tls_unless_configured() {
        let at = |endpoint: Option<&str>, unsigned: Option<bool>| S3Location {
            bucket: "b".into(),
            endpoint: endpoint.map(str::to_owned),
            unsigned_payload: unsigned,
            ..Default::default()
        };
        // AWS itself (no endpoint): HTTPS.
        assert_eq!(at(None, None).transport(None), (false, true));
        assert_eq!(
            at(Some("https://s3.internal"), None).transport(None),
            (false, true)
        );
        assert_eq!(
            at(Some("http://127.0.0.1:3900"), None).transport(None),
            (true, false)
        );
        // AWS_ENDPOINT counts when the configuration names none; it does not override.
        assert_eq!(
            at(None, None).transport(Some("http://minio:9000")),
            (true, false)
        );
        assert_eq!(
            at(Some("https://s3.internal"), None).transport(Some("http://minio:9000")),
            (false, true)
        );
        // The configuration decides when it says.
        assert_eq!(
            at(Some("http://127.0.0.1:3900"), Some(true)).transport(None),
            (true, true)
        );
        assert_eq!(at(None, Some(false)).transport(None), (false, false));
    }
}
