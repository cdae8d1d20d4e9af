//! `notarium server`: the Notary v1 trust API (and, on the same port, the registry).
//!
//! * [`route`]: the URL grammar; [`http`]: dispatch and responses; [`errors`]: the wire
//!   error envelope;
//! * [`trust`]: the update pipeline and reads (validation itself is `tuf::upload`);
//! * [`storage`]: the storage trait and its backends; [`signing`] + [`secrets`]: the
//!   timestamp/snapshot keys the server holds, sealed at rest;
//! * [`oci`]: the registry (OCI Distribution API) on the same port;
//! * [`auth`]: who may do what (the one decision before every handler), users, tokens;
//! * [`tls`], [`config`], [`metrics`].
//!
//! [`serve`] takes a bound listener, so tests run the real server in-process on port 0.
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod budget;
pub mod config;
pub mod conn;
pub mod db;
pub mod errors;
pub mod health;
pub mod http;
pub mod metrics;
pub mod oci;
pub mod route;
pub mod secrets;
pub mod signing;
pub mod storage;
pub mod tls;
pub mod trust;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tuf::Clock;

pub use config::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no key passphrase: set NOTARIUM_KEY_PASSPHRASE or key_passphrase in the config file (or run with --dev to use an empty one)")]
    NoPassphrase,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another notarium server is using the data directory {0}")]
    Locked(String),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("{0}")]
    Secret(#[from] secrets::SecretError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("registry: {0}")]
    Registry(#[from] oci::RegistryOpenError),
    #[error("garbage collection: {0}")]
    Gc(#[from] oci::gc::GcError),
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthError),
    #[error("{0}")]
    Exposed(String),
}

/// Take the data directory's lock: one process at a time (server or `gc`).
///
/// The lock (`flock`) belongs to the open file, which a child process forked by another
/// thread of this process shares until it calls `exec`: a lock just given up can seem
/// held for that instant. So a held lock is tried again for a second before it counts.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let lock_path = dir.join("notarium.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StartError::Io {
            path: lock_path.display().to_string(),
            source,
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while lock.try_lock().is_err() {
        if std::time::Instant::now() >= deadline {
            return Err(StartError::Locked(dir.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(lock)
}

/// `notarium server gc`: collect the registry's unreferenced blobs in a data directory
/// no server is using.
pub async fn collect_garbage(
    config: &ServerConfig,
    grace: Duration,
    dry_run: bool,
) -> Result<oci::gc::GcReport, StartError> {
    let data_dir = &config.data_dir;
    let _lock = lock_data_dir(data_dir)?;
    let limits = config::Limits::default();
    let budget = Arc::new(budget::MemoryBudget::new(
        limits.max_inflight_bytes,
        Duration::ZERO,
    ));
    let clock: Arc<dyn Clock> = Arc::new(tuf::SystemClock);
    let stores = db::open(&config.database(), clock.clone()).await?;
    let registry =
        oci::Registry::open(&config.blobs(), stores.registry, &limits, budget, clock).await?;
    Ok(oci::gc::collect(&registry, grace, dry_run).await?)
}

/// `notarium server migrate`: copy an installation's metadata from `from` to `to`, and
/// its blobs from `blobs_from` to `blobs_to` when both are given; resumable, verified.
/// A SQLite end is locked like a data directory (no server may run on it meanwhile).
pub async fn migrate(
    config: &ServerConfig,
    from: &db::Database,
    to: &db::Database,
    blobs: Option<(oci::blobs::BlobLocation, oci::blobs::BlobLocation)>,
) -> Result<db::copy::CopyReport, String> {
    let mut _locks = Vec::new();
    for d in [from, to] {
        if let db::Database::Sqlite(dir) = d {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            _locks.push(lock_data_dir(dir).map_err(|e| e.to_string())?);
        }
    }
    let mut report = db::copy::copy_metadata(from, to)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((src, dst)) = blobs {
        if src == dst {
            return Err(format!("the blob source and target are the same: {src}"));
        }
        let clock: Arc<dyn Clock> = Arc::new(tuf::SystemClock);
        // Upload sessions of the copy live in the target's database.
        let stores = db::open(to, clock.clone())
            .await
            .map_err(|e| e.to_string())?;
        let budget = Arc::new(budget::MemoryBudget::new(
            256 << 20,
            Duration::from_secs(30),
        ));
        let limits = oci::blobs::UploadLimits {
            max_blob_bytes: u64::MAX,
            ..oci::blobs::UploadLimits::from(&config.limits)
        };
        let open = |loc: oci::blobs::BlobLocation| {
            let (meta, budget, clock) = (stores.registry.clone(), budget.clone(), clock.clone());
            async move {
                oci::blobs::open(&loc, meta, limits, budget, clock)
                    .await
                    .map_err(|e| format!("{loc}: {e}"))
            }
        };
        let (src, dst) = (open(src).await?, open(dst).await?);
        report.blobs = Some(oci::blobs::copy_all(&*src, &*dst).await?);
    }
    Ok(report)
}

/// Everything a request handler needs.
pub struct App {
    pub trust: trust::TrustService,
    pub registry: oci::Registry,
    pub auth: auth::Auth,
    /// Request bytes held in memory, all requests together (`max_inflight_bytes`).
    pub budget: Arc<budget::MemoryBudget>,
    /// Whether storage can be written.
    pub health: health::Health,
    pub metrics: metrics::Metrics,
    pub config: ServerConfig,
    /// The TLS certificate being served (set by [`App::tls`]): renewed and reloaded by
    /// the maintenance task, its end shown by `/healthz`.
    pub tls_served: std::sync::OnceLock<Arc<tls::Served>>,
    /// `/verify` and the webhooks (`[admission]`).
    pub admission: Option<admission::Admission>,
    /// Held for the process's lifetime: one server per data directory.
    _lock: std::fs::File,
}

impl App {
    /// Open the data directory (creating it), its database and its sealed keys.
    pub async fn open(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Arc<App>, StartError> {
        config.check_exposure().map_err(StartError::Exposed)?;
        let dir = &config.data_dir;
        keys::store::create_private_dir(dir).map_err(|e| StartError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let lock = lock_data_dir(dir)?;
        let passphrase = match (&config.key_passphrase, config.dev) {
            (Some(p), _) => p.clone(),
            (None, true) => String::new(),
            (None, false) => return Err(StartError::NoPassphrase),
        };
        let health = health::Health::new(dir);
        if !health.prepare_start().await {
            tracing::warn!(
                "starting read-only: {}",
                health.failing().unwrap_or_default()
            );
        }
        let database = config.database();
        let stores = db::open(&database, clock.clone()).await?;
        if database.is_shared() {
            tracing::info!("metadata in {database}, shared with any other server on it");
        }
        let storage = stores.trust;
        let master =
            secrets::MasterKey::open(storage.as_ref(), &passphrase, config.kdf_iterations).await?;
        // Servers on one database issue tokens with one key, so that a token from any of
        // them is good at all (unless the operator gave a key of their own).
        let shared_key = match config.auth.mode {
            auth::Mode::Builtin if database.is_shared() && config.auth.token_key.is_none() => {
                Some(auth::issuer::load_shared(storage.as_ref(), &master, dir, clock.now()).await?)
            }
            _ => None,
        };
        let keys = signing::KeyService::new(
            storage.clone(),
            master,
            config.key_algorithm,
            2048,
            clock.clone(),
        );
        let limits = tuf::upload::Limits {
            max_version_jump: config.max_version_jump,
            ..Default::default()
        };
        let auth = auth::Auth::open(
            &config.auth,
            &config.gun_prefixes,
            dir,
            &passphrase,
            !config.insecure_http,
            clock.clone(),
            shared_key,
        )?;
        let trust = trust::TrustService::new(storage, keys, clock.clone(), limits, 16 << 20);
        let budget = Arc::new(budget::MemoryBudget::new(
            config.limits.max_inflight_bytes,
            Duration::from_secs(2),
        ));
        let blobs = config.blobs();
        let registry = oci::Registry::open(
            &blobs,
            stores.registry,
            &config.limits,
            budget.clone(),
            clock.clone(),
        )
        .await?;
        if blobs.is_shared() {
            tracing::info!("blobs in {blobs}");
        }
        let admission = config
            .admission
            .as_ref()
            .map(|a| admission::Admission::new(a, &config.data_dir.join("admission")));
        Ok(Arc::new(App {
            trust,
            registry,
            auth,
            budget,
            health,
            metrics: metrics::Metrics::default(),
            config,
            tls_served: std::sync::OnceLock::new(),
            admission,
            _lock: lock,
        }))
    }

    /// The TLS setup this configuration asks for: `None` with `insecure_http`.
    pub fn tls(&self) -> Result<Option<(tls::TlsFiles, Arc<rustls::ServerConfig>)>, StartError> {
        if self.config.insecure_http {
            return Ok(None);
        }
        let (files, generated) = match (&self.config.tls_cert, &self.config.tls_key) {
            (Some(cert), Some(key)) => (
                tls::TlsFiles {
                    ca: None,
                    cert: cert.clone(),
                    key: key.clone(),
                },
                None,
            ),
            (None, None) => (
                tls::ensure_generated(&self.config.data_dir.join("tls"), &self.config.tls_san)?,
                Some(self.config.tls_san.clone()),
            ),
            _ => {
                return Err(StartError::Tls(tls::TlsError::Invalid(
                    "--tls-cert and --tls-key go together".into(),
                )))
            }
        };
        // A generated certificate was renewed above if it was near its end; one the
        // operator gave can only be pointed out.
        if files.ca.is_none() {
            warn_near_end(&files.cert);
        }
        let served = Arc::new(tls::Served::load(files.clone(), generated)?);
        let _ = self.tls_served.set(served.clone());
        let cfg = tls::server_config(served)?;
        Ok(Some((files, cfg)))
    }
}

/// Log a configured TLS certificate that has expired or will within the renewal window.
fn warn_near_end(cert: &std::path::Path) {
    match tls::days_left(cert) {
        Some(n) if n < 0 => {
            tracing::warn!("TLS certificate {} expired {} days ago", cert.display(), -n)
        }
        Some(n) if n < tls::RENEW_BEFORE_DAYS => {
            tracing::warn!("TLS certificate {} expires in {n} days", cert.display())
        }
        _ => {}
    }
}

/// Look at the served TLS certificate: renew a generated one near its end, load changed
/// files, log a configured one near its end (once a day at most).
pub(crate) fn check_tls(served: &tls::Served, last_warning: &mut Option<tokio::time::Instant>) {
    match served.check() {
        Ok(true) => tracing::info!(
            "TLS certificate {} loaded; served from the next connection on",
            served.files().cert.display()
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("TLS certificate: {e} (the current one is still served)"),
    }
    if served.files().ca.is_none()
        && last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400))
        && tls::days_left(&served.files().cert).is_some_and(|n| n < tls::RENEW_BEFORE_DAYS)
    {
        warn_near_end(&served.files().cert);
        *last_warning = Some(tokio::time::Instant::now());
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then let open requests finish
/// (up to 10 s, then they are cut). Returns only when every connection is gone and `app`
/// with it (so the data directory's lock is free).
pub async fn serve<F>(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    if let Ok(local) = listener.local_addr() {
        app.auth.bind(local, &app.config.tls_san);
    }
    let l = &app.config.limits;
    let nofile = conn::raise_nofile_limit();
    let limits = conn::ConnLimits {
        tls_handshake: l.tls_handshake_timeout,
        header: l.header_timeout,
        idle: l.idle_timeout,
        max_connections: conn::connection_bound(l.max_connections, nofile),
    };
    if limits.max_connections < l.max_connections {
        tracing::info!(
            "serving at most {} connections at once (open-file limit {nofile})",
            limits.max_connections
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(maintenance(app.clone(), stop_rx.clone()));
    let router = http::router(app);
    let builder = auto::Builder::new(TokioExecutor::new());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let pool = Arc::new(conn::Pool::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let accept_errors = conn::Throttle::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the bound, the longest-idle connection is asked to go, and
        // until a slot is free new connections wait in the kernel's queue.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                pool.evict_one();
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    let fds = conn::out_of_descriptors(&e);
                    if fds {
                        pool.evict_one();
                    }
                    if accept_errors.ready() {
                        tracing::warn!("accept: {e}{}", if fds { " (closing idle connections)" } else { "" });
                    }
                    tokio::time::sleep(Duration::from_millis(if fds { 50 } else { 10 })).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = pool.add();
        let tower = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let tracker = slot.tracker.clone();
            let io = match acceptor {
                Some(acc) => {
                    let handshake = tokio::time::timeout(limits.tls_handshake, acc.accept(stream));
                    tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => tokio_util::either::Either::Left(s),
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake: {e}");
                                return;
                            }
                            Err(_) => return,
                        },
                        () = tracker.evicted() => return,
                        _ = stop.changed() => return,
                    }
                }
                None => tokio_util::either::Either::Right(stream),
            };
            let http1 = match &io {
                tokio_util::either::Either::Left(s) => s.get_ref().1.alpn_protocol() != Some(b"h2"),
                tokio_util::either::Either::Right(_) => true,
            };
            tracker.established(http1);
            let t = tracker.clone();
            // The client's address goes on each request (for failed-login limits), and
            // each request counts as in flight until its response body is dropped.
            let svc = hyper::service::service_fn(
                move |mut req: ::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(http::PeerAddr(peer));
                    let in_flight = t.request_started();
                    let fut = hyper::service::Service::call(&tower, req);
                    async move {
                        let resp = fut.await?;
                        Ok::<_, std::convert::Infallible>(
                            resp.map(|b| axum::body::Body::new(http::Guarded::new(b, in_flight))),
                        )
                    }
                },
            );
            let io = TokioIo::new(conn::Tracked::new(io, tracker.clone()));
            let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
            tokio::pin!(conn);
            let why = tokio::select! {
                _ = conn.as_mut() => return,
                why = conn::watch(&tracker, &limits) => Some(why),
                _ = stop.changed() => None,
            };
            match why {
                Some(w @ (conn::Closed::SlowHeader | conn::Closed::Stalled)) => {
                    tracing::debug!("closing {peer}: {w:?}");
                }
                _ => {
                    // Idle, evicted or shutting down: no request is cut.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
    Ok(())
}

/// What the running server does on its own: removes upload sessions idle past
/// `upload_expiry_secs`, reclaims server keys never used by a first update, renews
/// timestamps before they expire (every `timestamp_refresh_secs`), renews or reloads its
/// TLS certificate (every `tls_check_secs`), and probes whether storage can be written.
async fn maintenance(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::time::Instant;
    let l = &app.config.limits;
    let sweep_every = (l.upload_expiry / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let keys_every =
        (l.unused_key_expiry / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let refresh_every = app.config.timestamp_refresh_every;
    let tls_every = app.config.tls_check_every;
    let start = Instant::now();
    let (mut sweep, mut keys, mut probe, mut refresh, mut tls_check) = (
        start + sweep_every,
        start + keys_every,
        start + app.health.next_probe(),
        start + refresh_every,
        start + tls_every,
    );
    let mut tls_warned = None;
    let admission_every = app
        .config
        .admission
        .as_ref()
        .map_or(Duration::from_secs(86_400), |a| a.refresh_every);
    let mut admission = start + admission_every;
    loop {
        let next = sweep
            .min(keys)
            .min(probe)
            .min(refresh)
            .min(tls_check)
            .min(admission);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            // A write just failed: probe now, then every second until it passes.
            () = app.health.changed.notified() => probe = Instant::now(),
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        if now >= sweep {
            let n = app.registry.blobs.expire().await;
            if n > 0 {
                tracing::info!("removed {n} upload sessions idle for {:?}", l.upload_expiry);
            }
            sweep = now + sweep_every;
        }
        if now >= keys {
            match app
                .trust
                .reclaim_unused_keys(l.unused_key_expiry.as_secs() as i64)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!("reclaimed the unused server keys of {n} repositories"),
                Err(e) => tracing::warn!("reclaiming unused server keys: {e}"),
            }
            keys = now + keys_every;
        }
        if now >= refresh {
            // Read-only while storage cannot be written: nothing to renew into.
            if app.health.failing().is_none() {
                match app.trust.refresh_expiring().await {
                    Ok((_, 0)) => {}
                    Ok((seen, n)) => {
                        tracing::info!("renewed the timestamps of {n} of {seen} repositories")
                    }
                    Err(e) => tracing::warn!("renewing timestamps: {e}"),
                }
            }
            refresh = Instant::now() + refresh_every;
        }
        if now >= tls_check {
            if let Some(served) = app.tls_served.get().cloned() {
                // Files and a certificate signature: off the async workers.
                let mut warned = tls_warned;
                tls_warned = tokio::task::spawn_blocking(move || {
                    check_tls(&served, &mut warned);
                    warned
                })
                .await
                .unwrap_or(tls_warned);
            }
            tls_check = Instant::now() + tls_every;
        }
        if now >= admission {
            if let Some(v) = app.admission.as_ref().map(|a| a.verifier.clone()) {
                // Trust servers over the network: off the async workers.
                let _ = tokio::task::spawn_blocking(move || v.refresh_all()).await;
            }
            admission = Instant::now() + admission_every;
        }
        if now >= probe {
            app.health.probe().await;
            probe = Instant::now() + app.health.next_probe();
        }
    }
}
