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

pub mod auth;
pub mod config;
pub mod errors;
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
    if lock.try_lock().is_err() {
        return Err(StartError::Locked(dir.display().to_string()));
    }
    Ok(lock)
}

/// `notarium server gc`: collect the registry's unreferenced blobs in a data directory
/// no server is using.
pub async fn collect_garbage(
    data_dir: &std::path::Path,
    grace: Duration,
    dry_run: bool,
) -> Result<oci::gc::GcReport, StartError> {
    let _lock = lock_data_dir(data_dir)?;
    let registry = oci::Registry::open(data_dir)?;
    Ok(oci::gc::collect(&registry, grace, dry_run).await?)
}

/// Everything a request handler needs.
pub struct App {
    pub trust: trust::TrustService,
    pub registry: oci::Registry,
    pub auth: auth::Auth,
    pub metrics: metrics::Metrics,
    pub config: ServerConfig,
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
        let storage: Arc<dyn storage::Storage> =
            Arc::new(storage::sqlite::SqliteStorage::open(&dir.join("notarium.db")).await?);
        let master =
            secrets::MasterKey::open(storage.as_ref(), &passphrase, config.kdf_iterations).await?;
        let keys = signing::KeyService::new(storage.clone(), master, config.key_algorithm, 2048);
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
        )?;
        let trust = trust::TrustService::new(storage, keys, clock, limits, 16 << 20);
        let registry = oci::Registry::open(dir)?;
        Ok(Arc::new(App {
            trust,
            registry,
            auth,
            metrics: metrics::Metrics::default(),
            config,
            _lock: lock,
        }))
    }

    /// The TLS setup this configuration asks for: `None` with `insecure_http`.
    pub fn tls(&self) -> Result<Option<(tls::TlsFiles, Arc<rustls::ServerConfig>)>, StartError> {
        if self.config.insecure_http {
            return Ok(None);
        }
        let files = match (&self.config.tls_cert, &self.config.tls_key) {
            (Some(cert), Some(key)) => tls::TlsFiles {
                ca: None,
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None) => {
                tls::ensure_generated(&self.config.data_dir.join("tls"), &self.config.tls_san)?
            }
            _ => {
                return Err(StartError::Tls(tls::TlsError::Invalid(
                    "--tls-cert and --tls-key go together".into(),
                )))
            }
        };
        let cfg = tls::server_config(&files)?;
        Ok(Some((files, cfg)))
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then let open requests finish
/// (up to 10 s).
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
    let router = http::router(app);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The client's address goes on each request (for failed-login limits); inserted
        // here, not by a router layer, which would box every request's future once more.
        let tower = TowerToHyperService::new(router.clone());
        let svc =
            hyper::service::service_fn(move |mut req: ::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(http::PeerAddr(peer));
                hyper::service::Service::call(&tower, req)
            });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acc) => {
                    let tls_stream =
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}
