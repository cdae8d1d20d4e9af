//! Server configuration: an optional TOML file, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthSettings, Mode};

/// The TOML file (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub tls_san: Vec<String>,
    pub insecure_http: Option<bool>,
    /// Passphrase sealing server-held keys (or `NOTARIUM_KEY_PASSPHRASE`).
    pub key_passphrase: Option<String>,
    /// `ed25519` (default) or `ecdsa`.
    pub key_algorithm: Option<String>,
    /// PBKDF2 iterations for a new data directory's master key.
    pub kdf_iterations: Option<u32>,
    #[serde(default)]
    pub gun_prefixes: Vec<String>,
    pub max_upload_bytes: Option<u64>,
    pub max_version_jump: Option<u64>,
    pub cache_current_secs: Option<u32>,
    pub cache_consistent_secs: Option<u32>,
    /// How often the server renews, without waiting for a read, the timestamps (and the
    /// snapshots it holds the key for) that expire within three days (default 3600).
    pub timestamp_refresh_secs: Option<u64>,
    /// How often the running server looks at its TLS certificate (default 3600): a
    /// generated one within 30 days of its end is issued again, a configured one whose
    /// files changed is loaded, and either is served from the next handshake on.
    pub tls_check_secs: Option<u64>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    pub auth: Option<crate::auth::settings::AuthFile>,
    pub limits: Option<LimitsFile>,
    pub storage: Option<StorageFile>,
    /// `[admission]`: `/verify` and the Kubernetes webhooks (see
    /// [`trust_client::admission::policy`]).
    pub admission: Option<trust_client::admission::policy::AdmissionFile>,
}

/// `[storage]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// `sqlite://DIR` or `postgres://…` (as `--database`).
    pub database: Option<String>,
    /// `file://PATH` or `s3://BUCKET/PREFIX` (as `--blobs`).
    pub blobs: Option<String>,
    pub s3: Option<S3File>,
}

/// `[storage.s3]`: where and how to reach an `s3://` blob store. Unset values come from
/// the standard `AWS_*` variables.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    /// `http(s)://host:port` of an S3-compatible service (AWS's when unset).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Send uploads without a SHA-256 of their payload in the request signature (the
    /// service then does not hash them either). Default: on over `https://` (TLS keeps
    /// the payload whole in transit), off over plain `http://`.
    pub unsigned_payload: Option<bool>,
    /// The largest object one server-side copy may move (default 5 GiB, AWS's limit);
    /// a larger blob is copied part by part through the server when its upload completes.
    pub max_copy_bytes: Option<u64>,
}

impl std::fmt::Debug for S3File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3File")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("unsigned_payload", &self.unsigned_payload)
            .field("max_copy_bytes", &self.max_copy_bytes)
            .finish_non_exhaustive()
    }
}

/// `[limits]` as written: what a hostile client could push, bounded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub tls_handshake_timeout_secs: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_inflight_bytes: Option<u64>,
    pub max_metadata_bytes: Option<u64>,
    pub max_blob_bytes: Option<u64>,
    pub max_upload_sessions: Option<usize>,
    pub max_upload_sessions_per_repository: Option<usize>,
    pub upload_expiry_secs: Option<u64>,
    pub unused_key_expiry_secs: Option<u64>,
}

/// The resolved `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub tls_handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Connections served at once (also bounded by the open-file limit at start).
    pub max_connections: usize,
    /// Request bytes held in memory by all requests together.
    pub max_inflight_bytes: u64,
    /// One metadata file of a trust upload.
    pub max_metadata_bytes: u64,
    pub max_blob_bytes: u64,
    pub max_upload_sessions: usize,
    pub max_upload_sessions_per_repository: usize,
    pub upload_expiry: Duration,
    /// Server keys of a repository that never got a first update are deleted this long
    /// after they were made.
    pub unused_key_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_inflight_bytes: 256 << 20,
            max_metadata_bytes: 100 << 20,
            max_blob_bytes: 10 << 30,
            max_upload_sessions: 10_000,
            max_upload_sessions_per_repository: 1_000,
            upload_expiry: Duration::from_secs(3600),
            unused_key_expiry: Duration::from_secs(86_400),
        }
    }
}

impl Limits {
    pub fn apply(&mut self, f: LimitsFile) -> Result<(), String> {
        let secs = |v: u64, what: &str| {
            if v == 0 {
                Err(format!("[limits] {what} must be at least 1"))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if let Some(v) = f.tls_handshake_timeout_secs {
            self.tls_handshake_timeout = secs(v, "tls_handshake_timeout_secs")?;
        }
        if let Some(v) = f.header_timeout_secs {
            self.header_timeout = secs(v, "header_timeout_secs")?;
        }
        if let Some(v) = f.idle_timeout_secs {
            self.idle_timeout = secs(v, "idle_timeout_secs")?;
        }
        if let Some(v) = f.upload_expiry_secs {
            self.upload_expiry = secs(v, "upload_expiry_secs")?;
        }
        if let Some(v) = f.unused_key_expiry_secs {
            self.unused_key_expiry = secs(v, "unused_key_expiry_secs")?;
        }
        if let Some(v) = f.max_connections {
            self.max_connections = v.max(1);
        }
        if let Some(v) = f.max_inflight_bytes {
            self.max_inflight_bytes = v.max(1 << 20);
        }
        if let Some(v) = f.max_metadata_bytes {
            self.max_metadata_bytes = v.max(1 << 10);
        }
        if let Some(v) = f.max_blob_bytes {
            self.max_blob_bytes = v.max(1);
        }
        if let Some(v) = f.max_upload_sessions {
            self.max_upload_sessions = v.max(1);
        }
        if let Some(v) = f.max_upload_sessions_per_repository {
            self.max_upload_sessions_per_repository = v.max(1);
        }
        Ok(())
    }
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_san: Vec<String>,
    pub insecure_http: bool,
    pub key_passphrase: Option<String>,
    pub dev: bool,
    pub key_algorithm: keys::Algorithm,
    pub kdf_iterations: u32,
    pub gun_prefixes: Vec<String>,
    pub max_upload_bytes: u64,
    pub max_version_jump: u64,
    pub cache_current_secs: u32,
    /// See [`FileConfig::timestamp_refresh_secs`].
    pub timestamp_refresh_every: Duration,
    /// See [`FileConfig::tls_check_secs`].
    pub tls_check_every: Duration,
    pub cache_consistent_secs: u32,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// Where metadata lives (`--database`, `[storage] database`); `None`: SQLite in the
    /// data directory.
    pub database: Option<crate::db::Database>,
    /// Where blobs live (`--blobs`, `[storage] blobs`); `None`: `<data-dir>/registry`.
    pub blobs: Option<crate::oci::blobs::BlobLocation>,
    /// `[storage.s3]`, applied to an `s3://` location however it was given.
    pub s3: Option<S3File>,
    /// `--no-auth`: serve without authentication on a non-loopback address.
    pub allow_no_auth: bool,
    /// `--insecure-http` given on the command line: plain HTTP on a non-loopback address.
    pub allow_insecure_http: bool,
    /// `[admission]`; `None`: its routes answer 404.
    pub admission: Option<Admission>,
}

/// `[admission]`, checked.
#[derive(Debug, Clone)]
pub struct Admission {
    pub policy: trust_client::admission::policy::Policy,
    /// The docker configuration trust data is read with (default `<data-dir>/admission`).
    pub docker_config: Option<PathBuf>,
    pub refresh_every: Duration,
    pub fetch_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_images: usize,
}

impl Admission {
    pub fn from_file(f: &trust_client::admission::policy::AdmissionFile) -> Result<Self, String> {
        Ok(Admission {
            policy: trust_client::admission::policy::Policy::from_file(f)?,
            docker_config: f.docker_config.clone(),
            refresh_every: Duration::from_secs(f.refresh_secs.unwrap_or(60).clamp(1, 86_400)),
            fetch_timeout: Duration::from_secs(f.fetch_timeout_secs.unwrap_or(5).clamp(1, 300)),
            max_body_bytes: f.max_body_bytes.unwrap_or(3 << 20).clamp(1024, 64 << 20),
            max_images: f.max_images.unwrap_or(1000).clamp(1, 100_000),
        })
    }
}

pub const DEFAULT_ADDR: &str = "127.0.0.1:4443";
pub const DEFAULT_DATA_DIR: &str = "./notarium-data";
/// Notary's download cap for metadata is 100 MiB; an upload holds a few files.
pub const DEFAULT_MAX_UPLOAD: u64 = 256 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: DEFAULT_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 4443))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            tls_cert: None,
            tls_key: None,
            tls_san: Vec::new(),
            insecure_http: false,
            key_passphrase: None,
            dev: false,
            key_algorithm: keys::Algorithm::Ecdsa,
            kdf_iterations: crate::secrets::DEFAULT_KDF_ITERATIONS,
            gun_prefixes: Vec::new(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            max_version_jump: tuf::upload::Limits::default().max_version_jump,
            cache_current_secs: 300,
            timestamp_refresh_every: Duration::from_secs(3600),
            tls_check_every: Duration::from_secs(3600),
            cache_consistent_secs: 2_592_000,
            auth: AuthSettings::default(),
            limits: Limits::default(),
            database: None,
            blobs: None,
            s3: None,
            allow_no_auth: false,
            allow_insecure_http: false,
            admission: None,
        }
    }
}

impl ServerConfig {
    /// Apply a config file's settings over the defaults.
    pub fn apply_file(&mut self, f: FileConfig) -> Result<(), String> {
        if let Some(v) = f.addr {
            self.addr = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        self.tls_cert = f.tls_cert.or(self.tls_cert.take());
        self.tls_key = f.tls_key.or(self.tls_key.take());
        self.tls_san.extend(f.tls_san);
        if let Some(v) = f.insecure_http {
            self.insecure_http = v;
        }
        if f.key_passphrase.is_some() {
            self.key_passphrase = f.key_passphrase;
        }
        if let Some(a) = f.key_algorithm {
            self.key_algorithm = parse_algorithm(&a)?;
        }
        if let Some(v) = f.kdf_iterations {
            self.kdf_iterations = v.max(1);
        }
        self.gun_prefixes.extend(f.gun_prefixes);
        for p in &self.gun_prefixes {
            if !p.ends_with('/') || p.starts_with('/') || p.starts_with("..") {
                return Err(format!(
                    "gun prefix {p:?} must end with '/' and not start with '/' or '..'"
                ));
            }
        }
        if let Some(v) = f.max_upload_bytes {
            self.max_upload_bytes = v;
        }
        if let Some(v) = f.max_version_jump {
            self.max_version_jump = v.max(1);
        }
        if let Some(v) = f.timestamp_refresh_secs {
            // At least a second, at most a day (the renewal window is three days).
            self.timestamp_refresh_every = Duration::from_secs(v.clamp(1, 86_400));
        }
        if let Some(v) = f.tls_check_secs {
            self.tls_check_every = Duration::from_secs(v.clamp(1, 86_400));
        }
        if let Some(v) = f.cache_current_secs {
            self.cache_current_secs = v.min(31_536_000);
        }
        if let Some(v) = f.cache_consistent_secs {
            self.cache_consistent_secs = v.min(31_536_000);
        }
        if let Some(a) = f.auth {
            self.auth.apply(a)?;
        }
        if let Some(l) = f.limits {
            self.limits.apply(l)?;
        }
        if let Some(a) = &f.admission {
            self.admission = Some(Admission::from_file(a)?);
        }
        if let Some(st) = f.storage {
            if let Some(url) = st.database {
                self.database = Some(crate::db::Database::parse(&url).map_err(|e| e.to_string())?);
            }
            if let Some(url) = st.blobs {
                self.blobs = Some(crate::oci::blobs::BlobLocation::parse(&url)?);
            }
            if st.s3.is_some() {
                self.s3 = st.s3;
            }
        }
        Ok(())
    }

    /// The database this server uses.
    pub fn database(&self) -> crate::db::Database {
        self.database
            .clone()
            .unwrap_or_else(|| crate::db::Database::in_data_dir(&self.data_dir))
    }

    /// The blob store this server uses, with `[storage.s3]` applied.
    pub fn blobs(&self) -> crate::oci::blobs::BlobLocation {
        use crate::oci::blobs::BlobLocation;
        let loc = self
            .blobs
            .clone()
            .unwrap_or_else(|| BlobLocation::File(self.data_dir.join("registry")));
        self.with_s3(loc)
    }

    /// `loc` with the `[storage.s3]` settings applied when it is an `s3://` location.
    pub fn with_s3(
        &self,
        mut loc: crate::oci::blobs::BlobLocation,
    ) -> crate::oci::blobs::BlobLocation {
        use crate::oci::blobs::BlobLocation;
        if let (BlobLocation::S3(s), Some(f)) = (&mut loc, &self.s3) {
            s.endpoint = f.endpoint.clone().or(s.endpoint.take());
            s.region = f.region.clone().or(s.region.take());
            s.access_key_id = f.access_key_id.clone().or(s.access_key_id.take());
            s.unsigned_payload = f.unsigned_payload.or(s.unsigned_payload);
            s.max_copy_bytes = f.max_copy_bytes.or(s.max_copy_bytes);
            if let Some(k) = &f.secret_access_key {
                s.secret_access_key = Some(zeroize::Zeroizing::new(k.clone()));
            }
        }
        loc
    }

    /// Refuse what would expose a non-loopback address: no authentication without
    /// `--no-auth`, plain HTTP without `--insecure-http` on the command line. `Ok` holds
    /// the warning lines of what was allowed explicitly.
    pub fn check_exposure(&self) -> Result<Vec<String>, String> {
        let addr = self.addr;
        if addr.ip().is_loopback() {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        if self.auth.mode == Mode::None {
            if !self.allow_no_auth {
                return Err(format!(
                    "refusing to serve {addr} without authentication: it is not a loopback address; set [auth] mode = \"builtin\" or \"external\" in the config file, or pass --no-auth to let anyone change any repository"
                ));
            }
            warnings.push(format!(
                "warning: --no-auth: anyone who can reach {addr} can change and delete every repository"
            ));
        }
        if self.insecure_http {
            if !self.allow_insecure_http {
                return Err(format!(
                    "refusing to serve plain HTTP on {addr}: it is not a loopback address; pass --insecure-http on the command line if a TLS-terminating proxy is in front"
                ));
            }
            warnings.push(format!(
                "warning: --insecure-http: {addr} serves plain HTTP; passwords and tokens cross the network unencrypted unless a TLS proxy is in front"
            ));
        }
        Ok(warnings)
    }
}

pub fn parse_algorithm(s: &str) -> Result<keys::Algorithm, String> {
    match s {
        "ed25519" => Ok(keys::Algorithm::Ed25519),
        "ecdsa" => Ok(keys::Algorithm::Ecdsa),
        other => Err(format!(
            "key algorithm {other:?}: expected ed25519 or ecdsa"
        )),
    }
}
