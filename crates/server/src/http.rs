//! HTTP: one fallback handler dispatches on [`crate::route::parse`], so the trust API and
//! the registry share `/v2/` by grammar, not by router order. Every request is decided by
//! [`crate::auth::Auth::authorize`] before a handler sees it, and logged once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use tuf::Gun;

use crate::auth::scope::Access;
use crate::auth::token::{TokenRequest, TokenUser};
use crate::auth::{Grant, Refusal, Surface};
use crate::errors::{ApiError, Code};
use crate::metrics::Operation;
use crate::oci::errors::{OciCode, OciError};
use crate::route::{self, Route, TufFile};
use crate::storage::StoredFile;
use crate::App;

/// The client's address, put on every request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// A response body that keeps its request counted as in flight until it is dropped
/// (sent, or the connection gone).
pub struct Guarded {
    inner: Body,
    _in_flight: crate::conn::InFlight,
}

impl Guarded {
    pub fn new(inner: Body, in_flight: crate::conn::InFlight) -> Self {
        Guarded {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The axum router: every request goes through [`dispatch`].
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = Instant::now();
    let (req, body_state) = probe(req);
    let route = route::parse(req.uri().path());
    let method = req.method().clone();
    let requirement = route.requirement(&method, req.uri().query());
    let kind = route.kind();
    let (mut resp, user) = match app.auth.authorize(req.headers(), &requirement) {
        Ok(Grant { .. })
            if app.health.failing().is_some()
                && requirement.surface != Surface::Other
                && matches!(method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            // Read-only until storage can be written again.
            (no_space(requirement.surface), None)
        }
        Ok(Grant { user, optional }) => {
            let (op, resp) = handle(&app, route, req, optional).await;
            let resp = resp.unwrap_or_else(|e| e.into_response());
            if let Some(op) = op {
                app.metrics
                    .observe(op, resp.status().as_u16(), started.elapsed());
            }
            (resp, user)
        }
        Err(refusal) => {
            tracing::debug!(route = kind, "refused: {}", refusal.reason());
            let user = refusal.user().map(str::to_owned);
            (refuse(requirement.surface, refusal, req), user)
        }
    };
    let user = match resp.extensions_mut().remove::<TokenUser>() {
        Some(TokenUser(u)) => u,
        None => user,
    };
    if method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    if resp.status() == StatusCode::INSUFFICIENT_STORAGE {
        app.health.storage_failed(crate::health::NO_SPACE);
    }
    if let Some(state) = body_state {
        if !state.will_finish() {
            // The answer came before the request body, and too much of it is left to
            // read: this connection cannot be reused (HTTP/2 resets just the stream).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    tracing::info!(
        target: "notarium::access",
        method = %method,
        route = kind,
        repository = requirement.repository().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        user = user.as_deref().unwrap_or("-"),
    );
    resp
}

/// 507, in the envelope of the API the request was for.
fn no_space(surface: Surface) -> Response {
    match surface {
        Surface::Trust => ApiError::no_space().into_response(),
        _ => OciError::detail(OciCode::Unknown, crate::health::NO_SPACE)
            .with_status(StatusCode::INSUFFICIENT_STORAGE)
            .into_response(),
    }
}

/// The answer to a refused request, in the envelope of the API it was for. Nothing was
/// read or stored; a body the client sent is drained (or the connection closed) by
/// [`probe`].
fn refuse(surface: Surface, refusal: Refusal, req: Request) -> Response {
    drop(req);
    let access_detail = |needs: &[Access]| {
        if needs.is_empty() {
            return None;
        }
        Some(serde_json::Value::Array(
            needs
                .iter()
                .flat_map(|a| {
                    a.actions.iter().map(move |act| {
                        serde_json::json!({
                            "Type": a.kind.as_str(), "Class": "", "Name": a.name, "Action": act.as_str()
                        })
                    })
                })
                .collect(),
        ))
    };
    let (mut resp, challenge) = match (refusal, surface) {
        (
            Refusal::GunPrefix {
                update: true,
                prefixes,
            },
            _,
        ) => (
            ApiError::with_detail(
                Code::InvalidGun,
                serde_json::Value::String(format!("Require GUNs with prefix: {prefixes:?}")),
            )
            .into_response(),
            None,
        ),
        (Refusal::GunPrefix { update: false, .. }, _) => {
            (ApiError::no_route().into_response(), None)
        }
        // Notary clients (docker trust, notary) report every status but 401 as "server
        // unavailable", so a trust route says 401 to a user who may not, too.
        (
            Refusal::Unauthorized {
                challenge, needs, ..
            }
            | Refusal::Denied {
                challenge, needs, ..
            },
            Surface::Trust,
        ) => (
            ApiError {
                code: Code::Unauthorized,
                detail: access_detail(&needs),
                status: None,
            }
            .into_response(),
            Some(challenge),
        ),
        (
            Refusal::Unauthorized {
                challenge, needs, ..
            },
            _,
        ) => (
            OciError {
                detail: access_detail(&needs),
                ..OciError::new(OciCode::Unauthorized)
            }
            .into_response(),
            Some(challenge),
        ),
        (Refusal::Denied { needs, .. }, _) => (
            OciError {
                detail: access_detail(&needs),
                ..OciError::new(OciCode::Denied)
            }
            .into_response(),
            None,
        ),
    };
    let h = resp.headers_mut();
    if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::WWW_AUTHENTICATE, c);
    }
    if surface == Surface::Registry {
        h.insert(
            "Docker-Distribution-Api-Version",
            HeaderValue::from_static("registry/2.0"),
        );
    }
    resp
}

type Handled = (Option<Operation>, Result<Response, ApiError>);

/// Answer an authorized request. `may_mount`: the optional access (a mount's source) holds.
async fn handle(app: &App, route: Route, req: Request, may_mount: bool) -> Handled {
    let m = req.method().clone();
    match (route, m) {
        (Route::Base, Method::GET | Method::HEAD) => (None, Ok(base())),
        (Route::Health, Method::GET) => (None, Ok(health(app).await)),
        (Route::Metrics, Method::GET) => (None, Ok(app.metrics.render())),
        (Route::Verify | Route::AdmissionValidate | Route::AdmissionMutate, Method::POST) => (
            None,
            Ok(match &app.admission {
                Some(a) => crate::admission::route(a, req).await,
                None => StatusCode::NOT_FOUND.into_response(),
            }),
        ),
        (Route::Token, Method::GET | Method::POST) => (None, Ok(token(app, req).await)),
        (Route::Repository(gun), Method::POST) => {
            (Some(Operation::UpdateTuf), update(app, &gun, req).await)
        }
        (Route::Repository(gun), Method::DELETE) => (
            Some(Operation::DeleteTuf),
            app.trust.delete(&gun).await.map(|()| empty_ok()),
        ),
        (Route::File(gun, file), Method::GET) => get_file(app, &gun, file).await,
        (Route::File(gun, TufFile::Key(role)), Method::POST) => (
            Some(Operation::RotateKey),
            match rotation_algorithm(req.uri().query()) {
                Ok(a) => app.trust.key(&gun, &role, Some(a)).await.map(key_response),
                Err(e) => Err(e),
            },
        ),
        (Route::Changefeed(gun), Method::GET) => (
            Some(Operation::Changefeed),
            changefeed(app, gun.as_ref(), req.uri().query()).await,
        ),
        (Route::BadGun(g), Method::POST | Method::DELETE) => (None, {
            drop(req);
            Err(ApiError::with_detail(
                Code::InvalidGun,
                serde_json::Value::String(match Gun::new(&g) {
                    Err(e) => e.to_string(),
                    Ok(_) => "invalid repository name".into(),
                }),
            ))
        }),
        (Route::BadGun(_), _) => (None, Err(ApiError::not_found())),
        (Route::Registry(r), _) => (
            None,
            Ok(crate::oci::handle(&app.registry, r, req, may_mount).await),
        ),
        (Route::RegistryInvalid(e), _) => (None, Ok(e.into_response())),
        _ => (None, Err(ApiError::no_route())),
    }
}

/// `POST <role>.key?algorithm=ecdsa|ed25519` (a notarium extension; Notary clients send no
/// query and get the server's default).
fn rotation_algorithm(query: Option<&str>) -> Result<Option<keys::Algorithm>, ApiError> {
    let mut out = None;
    for (k, v) in form_pairs(query.unwrap_or("")) {
        if k == "algorithm" {
            out = Some(
                crate::config::parse_algorithm(&v)
                    .map_err(|e| ApiError::with_detail(Code::InvalidParameters, e.into()))?,
            );
        }
    }
    Ok(out)
}

/// The token endpoint (builtin mode): GET with the query, POST with a form body.
async fn token(app: &App, req: Request) -> Response {
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let (parts, body) = req.into_parts();
    let params = if parts.method == Method::POST {
        use http_body_util::BodyExt as _;
        match http_body_util::Limited::new(body, 64 << 10).collect().await {
            Ok(b) => form_pairs(&String::from_utf8_lossy(&b.to_bytes())),
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "token requests are at most 64 KiB\n",
                )
                    .into_response()
            }
        }
    } else {
        form_pairs(parts.uri.query().unwrap_or(""))
    };
    let (mut r, user) = crate::auth::token::handle(
        &app.auth,
        TokenRequest {
            method: parts.method,
            headers: parts.headers,
            params,
            peer,
        },
    )
    .await;
    r.extensions_mut().insert(user);
    r
}

/// `key=value` pairs of a query string or form body, decoded (`+` is a space).
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .take(256)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// A request body the handler may leave unread (an early answer): the most of it
/// still read and thrown away so that the connection stays usable.
pub const DRAIN_MAX: u64 = 1 << 20;

/// What became of a request's body.
#[derive(Default)]
struct BodyState {
    read: std::sync::atomic::AtomicU64,
    ended: std::sync::atomic::AtomicBool,
    draining: std::sync::atomic::AtomicBool,
    /// Content-Length, when the client sent one.
    length: Option<u64>,
}

impl BodyState {
    /// Whether the body was, or is being, read to its end.
    fn will_finish(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.ended.load(Relaxed) || self.draining.load(Relaxed)
    }
}

/// Wrap a request's body so that, if the handler drops it unread, a small remainder is
/// drained in the background (the connection stays reusable), and a large one is
/// noticed (the answer then closes the connection). `None`: no body.
fn probe(req: Request) -> (Request, Option<Arc<BodyState>>) {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return (req, None);
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let state = Arc::new(BodyState {
        length,
        ..Default::default()
    });
    let (parts, body) = req.into_parts();
    let probed = Probed {
        inner: Some(body),
        state: state.clone(),
    };
    (Request::from_parts(parts, Body::new(probed)), Some(state))
}

struct Probed {
    inner: Option<Body>,
    state: Arc<BodyState>,
}

impl http_body::Body for Probed {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let r = std::pin::Pin::new(inner).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(None) => self.state.ended.store(true, Relaxed),
            std::task::Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.state.read.fetch_add(d.len() as u64, Relaxed);
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

impl Drop for Probed {
    fn drop(&mut self) {
        use http_body::Body as _;
        use std::sync::atomic::Ordering::Relaxed;
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.state.ended.load(Relaxed) || body.is_end_stream() {
            self.state.ended.store(true, Relaxed);
            return;
        }
        let read = self.state.read.load(Relaxed);
        let small = self
            .state
            .length
            .is_some_and(|n| n.saturating_sub(read) <= DRAIN_MAX);
        if small {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                self.state.draining.store(true, Relaxed);
                rt.spawn(async move {
                    use http_body_util::BodyExt as _;
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        http_body_util::Limited::new(body, DRAIN_MAX as usize + 1).collect(),
                    )
                    .await;
                });
            }
        }
    }
}

fn base() -> Response {
    let mut r = (StatusCode::OK, "{}").into_response();
    r.headers_mut().insert(
        "Docker-Distribution-Api-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

/// 200 `{}`, or 503 with each failing check and why (as notary-server's health).
async fn health(app: &App) -> Response {
    let mut failing = serde_json::Map::new();
    if let Err(e) = app.trust.storage.ping().await {
        failing.insert("DB operational".into(), e.to_string().into());
    }
    if let Some(why) = app.health.failing() {
        failing.insert("Storage writable".into(), why.into());
    }
    // The registry's database and blob store, each given a few seconds to answer.
    let wait = std::time::Duration::from_secs(5);
    let meta = tokio::time::timeout(wait, app.registry.meta.catalog(1, None));
    let blobs = tokio::time::timeout(wait, app.registry.blobs.check());
    match meta.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            failing.insert("Registry DB operational".into(), e.to_string().into());
        }
        Err(_) => {
            failing.insert("Registry DB operational".into(), "no answer in 5 s".into());
        }
    }
    let blob_failure = match blobs.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!(
            "{}: no answer in 5 s",
            app.registry.blobs.location()
        )),
    };
    if let Some(e) = blob_failure {
        failing.insert("Blob store operational".into(), e.into());
    }
    // The served TLS certificate: past its end the server is down for every client that
    // checks it; within the renewal window it is worth a look, but still up.
    let mut notes = serde_json::Map::new();
    if let Some(not_after) = app.tls_served.get().and_then(|t| t.not_after()) {
        let left = not_after - app.trust.clock.now().unix_secs();
        if left <= 0 {
            failing.insert("TLS certificate".into(), "expired".into());
        } else if left < crate::tls::RENEW_BEFORE_DAYS * 86_400 {
            notes.insert(
                "TLS certificate".into(),
                format!("expires in {} days", left / 86_400).into(),
            );
        }
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    failing.extend(notes);
    let mut r = (status, serde_json::Value::Object(failing).to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn get_file(app: &App, gun: &Gun, file: TufFile) -> Handled {
    match file {
        TufFile::Current(role) => (
            Some(Operation::GetRole),
            app.trust
                .current(gun, &role)
                .await
                .map(|f| metadata_response(app, f, false)),
        ),
        TufFile::Checksum(role, sha) => (
            Some(Operation::GetRoleByHash),
            app.trust
                .by_checksum(gun, &role, &sha)
                .await
                .map(|f| metadata_response(app, f, true)),
        ),
        TufFile::Version(role, v) => (
            Some(Operation::GetRoleByVersion),
            app.trust
                .by_version(gun, &role, v)
                .await
                .map(|f| metadata_response(app, f, true)),
        ),
        TufFile::Key(role) => (
            Some(Operation::GetKey),
            app.trust.key(gun, &role, None).await.map(key_response),
        ),
    }
}

fn key_response(k: tuf::PublicKey) -> Response {
    let mut r = (StatusCode::OK, tuf::key::key_endpoint_json(&k)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Go's `time.RFC1123` layout (zone abbreviation `UTC`, as the reference sends it).
pub fn rfc1123_utc(unix_secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn metadata_response(app: &App, f: StoredFile, consistent: bool) -> Response {
    let mut r = (
        StatusCode::OK,
        Body::from(bytes::Bytes::from_owner(ArcBytes(f.data))),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let max_age = if consistent {
        app.config.cache_consistent_secs
    } else {
        app.config.cache_current_secs
    };
    let cc = if max_age == 0 {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        "max-age=0, no-cache, no-store".to_owned()
    } else if consistent {
        format!("public, max-age={max_age}, s-maxage={max_age}")
    } else {
        format!("public, max-age={max_age}, s-maxage={max_age}, must-revalidate")
    };
    if let Ok(v) = HeaderValue::from_str(&cc) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rfc1123_utc(f.created_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

/// Lets a response body share the stored bytes without copying them.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

async fn update(app: &App, gun: &Gun, req: Request) -> Result<Response, ApiError> {
    let limits = &app.config.limits;
    let mut held = app.budget.start();
    let parts = read_multipart(
        req,
        app.config.max_upload_bytes,
        limits.max_metadata_bytes,
        &mut held,
    )
    .await?;
    app.trust.update(gun, parts).await?;
    Ok(empty_ok())
}

/// A request body as the stream of its data frames that [`multer`] reads. Its end is
/// announced only after one poll that answers `Pending` (and wakes the task at once).
///
/// multer 3.1, while looking for the first boundary, polls the stream a second time in
/// the same call and, if that poll reaches the end, reports "incomplete multipart stream"
/// without looking at the bytes it just read. That happens whenever the rest of a body
/// (a small one: all of it) arrives between those two polls, a race that now and then
/// turned a valid signed update into a 400 under load (seen in CI and in the benchmark). With a `Pending` before
/// the end, the poll that brings the last bytes never also sees the end: the end comes
/// on a later call, which looks at the whole body first.
struct MulterBody {
    body: Option<Body>,
    /// The `Pending` before the end is still to come.
    before_end: bool,
}

impl MulterBody {
    fn new(body: Body) -> Self {
        MulterBody {
            body: Some(body),
            before_end: true,
        }
    }
}

impl futures_util::Stream for MulterBody {
    type Item = Result<bytes::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use http_body::Body as _;
        use std::task::Poll;
        while let Some(body) = self.body.as_mut() {
            match std::pin::Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(None) => self.body = None,
            }
        }
        if self.before_end {
            self.before_end = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(None)
    }
}

/// Read every part of a multipart upload: (filename, bytes). The filename is taken verbatim
/// (a delegation's `targets/releases` keeps its slash). The body is parsed as it streams
/// in: the whole request is bounded by `limit`, each part by `part_limit`, and every byte
/// held is reserved in the server's memory budget (`held`; 503 when it is spent).
async fn read_multipart(
    req: Request,
    limit: u64,
    part_limit: u64,
    held: &mut crate::budget::Reservation,
) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let malformed =
        |msg: String| ApiError::with_detail(Code::MalformedUpload, serde_json::Value::String(msg));
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct)
        .map_err(|e| malformed(format!("not multipart/form-data: {e}")))?;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut mp = multer::Multipart::with_constraints(
        MulterBody::new(req.into_body()),
        boundary,
        constraints,
    );
    let mut parts = Vec::new();
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(multer::Error::StreamSizeExceeded { .. }) => return Err(too_large(limit)),
            Err(e) => return Err(malformed(e.to_string())),
        };
        let name = field.file_name().unwrap_or("").to_owned();
        if name.is_empty() {
            return Err(ApiError::new(Code::NoFilename));
        }
        if parts.len() >= 1000 {
            return Err(malformed("more than 1000 parts".into()));
        }
        let mut data: Vec<u8> = Vec::new();
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(multer::Error::StreamSizeExceeded { .. }) => return Err(too_large(limit)),
                Err(e) => return Err(malformed(e.to_string())),
            };
            if (data.len() + chunk.len()) as u64 > part_limit {
                return Err(ApiError {
                    code: Code::MalformedUpload,
                    detail: Some(serde_json::Value::String(format!(
                        "{} is larger than {part_limit} bytes",
                        name.chars().take(100).collect::<String>()
                    ))),
                    status: Some(StatusCode::PAYLOAD_TOO_LARGE),
                });
            }
            held.grow(chunk.len() as u64)
                .await
                .map_err(|_| ApiError::new(Code::Unavailable))?;
            data.extend_from_slice(&chunk);
        }
        parts.push((name, data));
    }
    Ok(parts)
}

fn too_large(limit: u64) -> ApiError {
    ApiError {
        code: Code::MalformedUpload,
        detail: Some(serde_json::Value::String(format!(
            "request body larger than {limit} bytes"
        ))),
        status: Some(StatusCode::PAYLOAD_TOO_LARGE),
    }
}

async fn changefeed(
    app: &App,
    gun: Option<&Gun>,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let bad = |msg: String| {
        ApiError::with_detail(Code::InvalidParameters, serde_json::Value::String(msg))
    };
    let mut records: Option<&str> = None;
    let mut change_id: Option<&str> = None;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("records", v)) => records = Some(v),
            Some(("change_id", v)) => change_id = Some(v),
            _ => {}
        }
    }
    let records: i32 = records
        .unwrap_or("")
        .parse()
        .map_err(|e| bad(format!("invalid records parameter: {e}")))?;
    let records = if records == 0 { 100 } else { records as i64 };
    // A 32-bit integer, as the reference parses it.
    let change_id: i64 = match change_id {
        None | Some("") => 0,
        Some(v) => v
            .parse::<i32>()
            .map_err(|e| bad(format!("invalid change_id parameter: {e}")))?
            .into(),
    };
    let changes = app
        .trust
        .storage
        .changes(gun, change_id, records)
        .await
        .map_err(|e| ApiError::internal(Code::Unknown, e))?;
    let records: Vec<FeedRecord> = changes
        .into_iter()
        .map(|c| FeedRecord {
            id: c.id.to_string(),
            created_at: tuf::DateTime::from_unix_secs(c.created_at)
                .format()
                .unwrap_or_default(),
            gun: c.gun,
            version: c.version,
            sha256: c.sha256,
            category: c.category,
        })
        .collect();
    let body = serde_json::to_string(&Feed {
        count: records.len(),
        records,
    })
    .map_err(|e| ApiError::internal(Code::Unknown, e))?;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The changefeed's JSON, with Go's field names and order.
#[derive(serde::Serialize)]
struct Feed {
    count: usize,
    records: Vec<FeedRecord>,
}

#[derive(serde::Serialize)]
struct FeedRecord {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "GUN")]
    gun: String,
    #[serde(rename = "Version")]
    version: u64,
    #[serde(rename = "SHA256")]
    sha256: String,
    #[serde(rename = "Category")]
    category: String,
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that arrives in the given pieces, answering `Pending` (and waking) before
    /// each piece, and before its end, where asked.
    struct Arriving {
        pieces: Vec<bytes::Bytes>,
        pend: Vec<bool>,
        next: usize,
        pended: bool,
    }

    impl futures_util::Stream for Arriving {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let i = self.next;
            if self.pend[i] && !self.pended {
                self.pended = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pended = false;
            if i == self.pieces.len() {
                return Poll::Ready(None);
            }
            self.next += 1;
            Poll::Ready(Some(Ok(self.pieces[i].clone())))
        }
    }

    /// However a valid body is cut in two and whenever it makes the reader wait, every
    /// part is read whole (multer alone fails when the rest of the body and its end come
    /// in one of its calls).
    #[tokio::test]
    async fn a_multipart_body_is_read_whole_however_it_arrives() {
        let boundary = "b0undary";
        let parts: [(&str, Vec<u8>); 2] = [
            ("root", b"{\"signed\":{}}".to_vec()),
            ("targets/releases", vec![b'x'; 300]),
        ];
        let mut body = Vec::new();
        for (name, data) in &parts {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let budget = crate::budget::MemoryBudget::new(1 << 20, std::time::Duration::ZERO);
        for cut in 1..body.len() {
            for mask in 0..8u8 {
                let arriving = Arriving {
                    pieces: vec![
                        bytes::Bytes::copy_from_slice(&body[..cut]),
                        bytes::Bytes::copy_from_slice(&body[cut..]),
                    ],
                    pend: vec![mask & 1 != 0, mask & 2 != 0, mask & 4 != 0],
                    next: 0,
                    pended: false,
                };
                let req = axum::http::Request::builder()
                    .method("POST")
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(axum::body::Body::from_stream(arriving))
                    .unwrap();
                let mut held = budget.start();
                let got = super::read_multipart(req, 1 << 20, 1 << 20, &mut held)
                    .await
                    .unwrap_or_else(|e| panic!("cut at {cut}, waits {mask:03b}: {e:?}"));
                let want: Vec<(String, Vec<u8>)> = parts
                    .iter()
                    .map(|(n, d)| ((*n).to_owned(), d.clone()))
                    .collect();
                assert_eq!(got, want, "cut at {cut}, waits {mask:03b}");
            }
        }
    }

    #[test]
    fn rfc1123_like_go() {
        assert_eq!(super::rfc1123_utc(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(
            super::rfc1123_utc(1_764_033_600),
            "Tue, 25 Nov 2025 01:20:00 UTC"
        );
    }
}
