//! Access control: one decision, before any handler runs, for every trust and registry
//! request (`http::dispatch` asks [`Auth::authorize`] with the [`Requirement`] the route
//! parser derived).
//!
//! * [`settings`]: the `[auth]` config (`mode = "none" | "builtin" | "external"`);
//! * [`scope`]: actions and resources in the registry token format;
//! * [`policy`]: `[[auth.access]]` rules (who may do what on which repositories);
//! * [`htpasswd`]: builtin mode's users; [`limit`]: failed-login limits;
//! * [`jwt`], [`certs`]: registry tokens and the certificates that sign them;
//!   [`issuer`]: notarium's own token key; [`token`]: the token endpoint (`/auth/token`).
//!
//! Requests carry `Authorization: Bearer <token>`; a token is checked once (signature,
//! issuer, audience) and then remembered by its hash until it expires, so a read costs a
//! hash and a lookup, never a database query.

pub mod certs;
pub mod htpasswd;
pub mod issuer;
pub mod jwt;
pub mod limit;
pub mod policy;
pub mod scope;
pub mod settings;
pub mod token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use tuf::Clock;

use policy::{OwnHosts, Policy};
use scope::{Access, Kind};
pub use settings::{AuthSettings, Mode};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Htpasswd(#[from] htpasswd::HtpasswdError),
}

/// Which API a request belongs to: it decides the error envelope of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Trust,
    Registry,
    Other,
}

/// What a request needs before a handler may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Health, metrics, the token endpoint, unknown paths.
    Open,
    /// The `/v2/` ping: any valid token (anonymous ones too).
    Authenticated,
    /// `access` (every route needs one resource); `optional` (a mount's source) is
    /// checked but never refused.
    Access {
        access: Access,
        optional: Option<Access>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub surface: Surface,
    pub need: Need,
    /// A trust update (POST): refused with 400, not 404, outside `gun_prefixes`.
    pub update: bool,
}

impl Requirement {
    pub fn open(surface: Surface) -> Requirement {
        Requirement {
            surface,
            need: Need::Open,
            update: false,
        }
    }

    /// The repository the request is about, for logs.
    pub fn repository(&self) -> Option<&str> {
        match &self.need {
            Need::Access { access, .. } if access.kind == Kind::Repository => {
                Some(access.name.as_str())
            }
            _ => None,
        }
    }
}

/// A request allowed: by whom, and whether the optional access holds.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// `None`: anonymous.
    pub user: Option<String>,
    pub optional: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with a challenge (its `error`: none for no token, `invalid_token`, or
    /// `insufficient_scope`).
    Unauthorized {
        challenge: String,
        needs: Vec<Access>,
        /// Why, for the debug log (never a token).
        reason: String,
        /// The token's user, when a valid token lacked the access.
        user: Option<String>,
    },
    /// 403: the user is known and may not do this, whatever token they get.
    Denied {
        needs: Vec<Access>,
        challenge: String,
        user: String,
    },
    /// A GUN outside `gun_prefixes`: the reference's answers (400 on update, else 404).
    GunPrefix { update: bool, prefixes: Vec<String> },
}

impl Refusal {
    /// Why, in a few words.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Unauthorized { reason, .. } => reason,
            Refusal::Denied { .. } => "the rules do not allow it",
            Refusal::GunPrefix { .. } => "outside gun_prefixes",
        }
    }

    /// Who was refused, when a token said.
    pub fn user(&self) -> Option<&str> {
        match self {
            Refusal::Unauthorized { user, .. } => user.as_deref(),
            Refusal::Denied { user, .. } => Some(user),
            Refusal::GunPrefix { .. } => None,
        }
    }
}

/// At most this many bytes of remembered tokens (and their claims).
const VERIFIED_BYTES: u64 = 16 << 20;

#[derive(Clone)]
struct TokenWeight;

impl quick_cache::Weighter<Box<str>, Arc<jwt::Claims>> for TokenWeight {
    fn weight(&self, token: &Box<str>, c: &Arc<jwt::Claims>) -> u64 {
        let access: usize = c.access.iter().map(|a| a.name.len() + 64).sum();
        (token.len() + c.sub.len() + access + 256) as u64
    }
}

/// The access control of a running server.
pub struct Auth {
    pub mode: Mode,
    settings: AuthSettings,
    policy: Policy,
    gun_prefixes: Vec<String>,
    own_hosts: OnceLock<OwnHosts>,
    verifier: Option<jwt::Verifier>,
    pub(crate) key: Option<issuer::TokenKey>,
    pub(crate) users: Option<htpasswd::UserDb>,
    pub(crate) limiter: limit::LoginLimiter,
    /// Tokens that verified, keyed by the whole token (a lookup hashes it with the
    /// cache's fast hasher and compares it byte for byte), bounded in bytes.
    verified: quick_cache::sync::Cache<Box<str>, Arc<jwt::Claims>, TokenWeight>,
    pub(crate) clock: Arc<dyn Clock>,
    https: bool,
}

impl Auth {
    /// Set up for a server with these settings and this data directory. `shared_key`:
    /// the generated token key of servers sharing a database ([`issuer::load_shared`]),
    /// used instead of one in the data directory.
    pub fn open(
        settings: &AuthSettings,
        gun_prefixes: &[String],
        data_dir: &Path,
        passphrase: &str,
        https: bool,
        clock: Arc<dyn Clock>,
        shared_key: Option<issuer::TokenKey>,
    ) -> Result<Auth, AuthError> {
        let now = clock.now();
        let (verifier, key, users) = match settings.mode {
            Mode::None => (None, None, None),
            Mode::Builtin => {
                let path = settings.htpasswd_path(data_dir);
                if !path.exists() && settings.htpasswd.is_none() {
                    // First start: an empty file for `notarium server user add`.
                    let dir = data_dir.join("auth");
                    keys::store::create_private_dir(&dir)
                        .and_then(|()| keys::store::write_private_file(&path, b""))
                        .map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))?;
                }
                let users = htpasswd::UserDb::open(&path)?;
                let given = settings
                    .token_key
                    .as_deref()
                    .zip(settings.token_cert.as_deref());
                let key = match (shared_key, given) {
                    (Some(k), None) => k,
                    _ => issuer::load(data_dir, given, passphrase, now)?,
                };
                let verifier = jwt::Verifier::new(
                    key.chain.last().cloned().into_iter().collect(),
                    settings.issuer.clone(),
                    vec![settings.service.clone()],
                );
                (Some(verifier), Some(key), Some(users))
            }
            Mode::External => {
                let path = settings
                    .rootcertbundle
                    .as_deref()
                    .ok_or_else(|| AuthError::Config("[auth] rootcertbundle is required".into()))?;
                let pem = std::fs::read(path)
                    .map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))?;
                let roots = certs::Cert::read_pem_bundle(&pem)
                    .map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))?;
                let verifier = jwt::Verifier::new(
                    roots,
                    settings.issuer.clone(),
                    vec![settings.service.clone()],
                );
                (Some(verifier), None, None)
            }
        };
        Ok(Auth {
            mode: settings.mode,
            settings: settings.clone(),
            policy: Policy::new(settings.rules.clone()),
            gun_prefixes: gun_prefixes.to_vec(),
            own_hosts: OnceLock::new(),
            verifier,
            key,
            users,
            limiter: limit::LoginLimiter::new(
                settings.failed_logins_per_user,
                settings.failed_logins_per_address,
                settings.failed_login_window_secs,
            ),
            verified: quick_cache::sync::Cache::with_weighter(10_000, VERIFIED_BYTES, TokenWeight),
            clock,
            https,
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Called once the listener is bound: the names this server goes by.
    pub fn bind(&self, local: SocketAddr, tls_sans: &[String]) {
        let mut names: Vec<String> = tls_sans.to_vec();
        names.extend(self.settings.hosts.iter().cloned());
        let _ = self.own_hosts.set(OwnHosts::new(local, &names));
    }

    /// The repository name the rules see for `name` (a GUN without this server's host).
    pub fn repository<'a>(&self, name: &'a str) -> &'a str {
        match self.own_hosts.get() {
            Some(h) => h.repository(name),
            None => name,
        }
    }

    /// The token certificate file (builtin mode).
    pub fn token_cert_file(&self) -> Option<&Path> {
        self.key.as_ref().map(|k| k.cert_file.as_path())
    }

    fn realm(&self, host: Option<&str>) -> String {
        if let Some(r) = &self.settings.realm {
            return r.clone();
        }
        let scheme = if self.https { "https" } else { "http" };
        let host = host
            .filter(|h| {
                !h.is_empty()
                    && h.len() < 256
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            })
            .map(str::to_owned)
            .or_else(|| {
                self.own_hosts
                    .get()
                    .and_then(|h| h.names().first().cloned())
            })
            .unwrap_or_else(|| "localhost".into());
        format!("{scheme}://{host}/auth/token")
    }

    /// `Bearer realm="…",service="…"[,scope="…"][,error="…"]`.
    pub fn challenge(&self, host: Option<&str>, needs: &[Access], error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(host),
            self.settings.service
        );
        if !needs.is_empty() {
            c.push_str(&format!(",scope=\"{}\"", scope::challenge_scope(needs)));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// A token's claims, checked now (remembered after the first check).
    pub fn verify_token(&self, token: &str) -> Result<Arc<jwt::Claims>, jwt::TokenError> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| jwt::TokenError::UntrustedKey("no tokens are accepted".into()))?;
        let now = self.clock.now().unix_secs();
        if let Some(c) = self.verified.get(token) {
            if now > c.exp.saturating_add(jwt::LEEWAY_SECS) {
                self.verified.remove(token);
                return Err(jwt::TokenError::Expired);
            }
            if c.nbf.saturating_sub(jwt::LEEWAY_SECS) > now {
                return Err(jwt::TokenError::NotYetValid);
            }
            return Ok(c);
        }
        let c = Arc::new(verifier.verify(token, now, false)?);
        self.verified.insert(token.into(), c.clone());
        Ok(c)
    }

    /// Decide a request.
    pub fn authorize(&self, headers: &HeaderMap, req: &Requirement) -> Result<Grant, Refusal> {
        if let (Surface::Trust, Some(gun), false) =
            (req.surface, req.repository(), self.gun_prefixes.is_empty())
        {
            if !self
                .gun_prefixes
                .iter()
                .any(|p| gun.starts_with(p.as_str()))
            {
                return Err(Refusal::GunPrefix {
                    update: req.update,
                    prefixes: self.gun_prefixes.clone(),
                });
            }
        }
        if self.mode == Mode::None || req.need == Need::Open {
            return Ok(Grant {
                user: None,
                optional: true,
            });
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let (access, optional) = match &req.need {
            Need::Access { access, optional } => (Some(access), optional.as_ref()),
            _ => (None, None),
        };
        // Built only for a refusal: an allowed request allocates nothing here.
        let needs = || -> Vec<Access> { access.into_iter().chain(optional).cloned().collect() };
        let unauthorized = |error: Option<&'static str>, reason: String, user: Option<String>| {
            let needs = needs();
            Refusal::Unauthorized {
                challenge: self.challenge(host, &needs, error),
                needs,
                reason,
                user,
            }
        };
        let Some(token) = bearer(headers) else {
            return Err(unauthorized(None, "no token".into(), None));
        };
        let claims = self
            .verify_token(token)
            .map_err(|e| unauthorized(Some("invalid_token"), e.to_string(), None))?;
        let user = (!claims.sub.is_empty()).then(|| claims.sub.clone());
        if let Some(missing) = access.filter(|a| !scope::covers(&claims.access, a)) {
            // A known user whom the rules would never give this gets 403; anyone else may
            // come back with a better token.
            if let (Mode::Builtin, Some(u)) = (self.mode, &user) {
                if !self.may(Some(u), missing) {
                    let needs = needs();
                    return Err(Refusal::Denied {
                        challenge: self.challenge(host, &needs, Some("insufficient_scope")),
                        needs,
                        user: u.clone(),
                    });
                }
            }
            return Err(unauthorized(
                Some("insufficient_scope"),
                format!("the token does not grant {}", missing.scope()),
                user,
            ));
        }
        let optional = optional.is_none_or(|o| scope::covers(&claims.access, o));
        Ok(Grant { user, optional })
    }

    /// Whether the rules let `user` have `access` (builtin mode).
    pub fn may(&self, user: Option<&str>, access: &Access) -> bool {
        match access.kind {
            Kind::Registry => self.policy.catalog(user),
            Kind::Repository => self
                .policy
                .rights(user, self.repository(&access.name))
                .allows_all(access.actions),
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
