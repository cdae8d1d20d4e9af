//! What a trust command runs with: the docker configuration directory, the trust server
//! and registry rules, passphrases, the clock.

use std::sync::Arc;

use registry::client::{DockerConfig, Session, TlsOptions};
use registry::Reference;
use tuf::Clock;

use crate::cache::FileCache;
use crate::error::{Result, TrustError};
use crate::passphrase::Passphrases;
use crate::remote::TrustRemote;

pub const TRUST_SERVER_ENV: &str = "DOCKER_CONTENT_TRUST_SERVER";
pub const DOCKER_HUB_NOTARY: &str = "https://notary.docker.io";

pub struct Context {
    pub config: DockerConfig,
    /// `DOCKER_CONTENT_TRUST_SERVER`, if set.
    pub trust_server: Option<String>,
    /// Registries that may be reached over plain HTTP (besides loopback ones).
    pub insecure_registries: Vec<String>,
    pub passphrases: Passphrases,
    pub clock: Arc<dyn Clock>,
    /// `<config>/notarium.toml`: root pins and trust servers (an unreadable file is an
    /// error at first use of a repository, not a silent trust on first use).
    pub client_config: std::result::Result<crate::client_config::ClientConfig, String>,
}

impl Context {
    pub fn from_env() -> Self {
        Self::with_config(DockerConfig::from_env())
    }

    /// A context on the docker configuration at `dir` (its trust cache, CA certificates,
    /// credentials and `notarium.toml`), the trust server env variable honoured.
    pub fn at(dir: &std::path::Path) -> Self {
        Self::with_config(DockerConfig::at(dir))
    }

    fn with_config(config: DockerConfig) -> Self {
        let client_config = crate::client_config::ClientConfig::load(&config.dir);
        Context {
            client_config,
            config,
            trust_server: std::env::var(TRUST_SERVER_ENV)
                .ok()
                .filter(|s| !s.is_empty()),
            insecure_registries: Vec::new(),
            passphrases: Passphrases::from_env(),
            clock: Arc::new(tuf::SystemClock),
        }
    }

    /// The trust server for an image: `DOCKER_CONTENT_TRUST_SERVER` (https only), else
    /// the registry's entry in `[trust_servers]` of `notarium.toml`, else as docker picks
    /// it: Docker Hub's notary, or `https://<registry host>`.
    pub fn trust_server_url(&self, r: &Reference) -> Result<String> {
        if let Some(s) = &self.trust_server {
            let ok = s
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(TrustError::Usage(format!(
                    "valid https URL required for trust server, got {s}"
                )));
            }
            return Ok(s.trim_end_matches('/').to_owned());
        }
        if let Some(url) = self
            .client_config
            .as_ref()
            .ok()
            .and_then(|p| p.trust_servers.get(&r.domain))
        {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        if r.domain == registry::reference::DEFAULT_DOMAIN {
            return Ok(DOCKER_HUB_NOTARY.to_owned());
        }
        Ok(format!("https://{}", r.domain))
    }

    /// Open the trust server for an image's repository. `write` asks for push access.
    pub fn open_trust(
        &self,
        r: &Reference,
        write: bool,
    ) -> Result<(TrustRemote, FileCache, String)> {
        let gun = r.gun()?;
        let url = self.trust_server_url(r)?;
        let host_port = url
            .strip_prefix("https://")
            .unwrap_or(&url)
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let tls = TlsOptions {
            cert_dir: Some(self.config.tls_dir(&host_port)),
            // Docker skips verifying the trust server of a loopback registry.
            insecure_skip_verify: r.is_loopback(),
        };
        let creds = self
            .config
            .credentials(&r.domain)
            .map_err(TrustError::Other)?;
        let session = Session::open(&url, &tls, creds)?;
        let cache = FileCache::new(self.config.tuf_dir(&gun));
        cache.prepare().map_err(TrustError::Other)?;
        Ok((
            TrustRemote {
                session,
                gun,
                actions: if write { "pull,push" } else { "pull" },
            },
            cache,
            host_port,
        ))
    }

    pub fn now(&self) -> tuf::DateTime {
        self.clock.now()
    }
}
