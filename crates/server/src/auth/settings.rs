//! The `[auth]` table of the server's config file, and the settings it resolves to.

use std::path::PathBuf;

use serde::Deserialize;

use super::policy::{Rule, RuleConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No authentication (loopback only, unless `--no-auth`).
    #[default]
    None,
    /// Users in an htpasswd file; notarium issues the tokens.
    Builtin,
    /// Tokens from another issuer, checked against its certificates.
    External,
}

/// `[auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub mode: Option<String>,
    pub htpasswd: Option<PathBuf>,
    pub realm: Option<String>,
    pub service: Option<String>,
    pub services: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub rootcertbundle: Option<PathBuf>,
    pub token_key: Option<PathBuf>,
    pub token_cert: Option<PathBuf>,
    pub token_ttl_secs: Option<u64>,
    pub refresh_token_ttl_secs: Option<u64>,
    pub hosts: Option<Vec<String>>,
    pub failed_logins_per_user: Option<u32>,
    pub failed_logins_per_address: Option<u32>,
    pub failed_login_window_secs: Option<u64>,
    pub bcrypt_cost: Option<u32>,
    #[serde(default)]
    pub access: Vec<RuleConfig>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: Mode,
    /// `None`: `<data-dir>/auth/htpasswd`.
    pub htpasswd: Option<PathBuf>,
    /// `None`: `<scheme>://<Host of the request>/auth/token`.
    pub realm: Option<String>,
    /// The service this server is (in challenges; the audience its tokens must carry).
    pub service: String,
    /// Services the token endpoint issues tokens for (`service=`); always includes
    /// `service`.
    pub services: Vec<String>,
    pub issuer: String,
    pub rootcertbundle: Option<PathBuf>,
    pub token_key: Option<PathBuf>,
    pub token_cert: Option<PathBuf>,
    pub token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Names clients reach this server by (beside its address), taken off GUNs.
    pub hosts: Vec<String>,
    pub failed_logins_per_user: u32,
    pub failed_logins_per_address: u32,
    pub failed_login_window_secs: u64,
    pub bcrypt_cost: u32,
    pub rules: Vec<Rule>,
}

pub const DEFAULT_SERVICE: &str = "notarium";
pub const DEFAULT_ISSUER: &str = "notarium";

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: Mode::None,
            htpasswd: None,
            realm: None,
            service: DEFAULT_SERVICE.into(),
            services: vec![DEFAULT_SERVICE.into()],
            issuer: DEFAULT_ISSUER.into(),
            rootcertbundle: None,
            token_key: None,
            token_cert: None,
            token_ttl_secs: 300,
            refresh_token_ttl_secs: 90 * 86_400,
            hosts: Vec::new(),
            failed_logins_per_user: 10,
            failed_logins_per_address: 50,
            failed_login_window_secs: 300,
            bcrypt_cost: 10,
            rules: Vec::new(),
        }
    }
}

impl AuthSettings {
    pub fn apply(&mut self, f: AuthFile) -> Result<(), String> {
        if let Some(m) = f.mode {
            self.mode = match m.as_str() {
                "none" => Mode::None,
                "builtin" => Mode::Builtin,
                "external" => Mode::External,
                other => {
                    return Err(format!(
                        "[auth] mode {other:?}: expected \"none\", \"builtin\" or \"external\""
                    ))
                }
            };
        }
        self.htpasswd = f.htpasswd.or(self.htpasswd.take());
        if let Some(r) = f.realm {
            if !(r.starts_with("https://") || r.starts_with("http://")) {
                return Err(format!("[auth] realm {r:?}: an http(s) URL"));
            }
            self.realm = Some(r);
        }
        if let Some(s) = f.service {
            self.service = s;
        }
        self.services = match f.services {
            Some(list) => list,
            None => vec![self.service.clone()],
        };
        if !self.services.contains(&self.service) {
            self.services.insert(0, self.service.clone());
        }
        if let Some(i) = f.issuer {
            self.issuer = i;
        }
        self.rootcertbundle = f.rootcertbundle.or(self.rootcertbundle.take());
        match (f.token_key, f.token_cert) {
            (Some(k), Some(c)) => {
                self.token_key = Some(k);
                self.token_cert = Some(c);
            }
            (None, None) => {}
            _ => return Err("[auth] token_key and token_cert go together".into()),
        }
        if let Some(v) = f.token_ttl_secs {
            self.token_ttl_secs = v.clamp(60, 86_400);
        }
        if let Some(v) = f.refresh_token_ttl_secs {
            self.refresh_token_ttl_secs = v.clamp(60, 3650 * 86_400);
        }
        if let Some(h) = f.hosts {
            self.hosts = h;
        }
        if let Some(v) = f.failed_logins_per_user {
            self.failed_logins_per_user = v.max(1);
        }
        if let Some(v) = f.failed_logins_per_address {
            self.failed_logins_per_address = v.max(1);
        }
        if let Some(v) = f.failed_login_window_secs {
            self.failed_login_window_secs = v.clamp(1, 86_400);
        }
        if let Some(v) = f.bcrypt_cost {
            if !(4..=31).contains(&v) {
                return Err(format!("[auth] bcrypt_cost {v}: 4 to 31"));
            }
            self.bcrypt_cost = v;
        }
        for (i, r) in f.access.iter().enumerate() {
            self.rules.push(
                Rule::from_config(r).map_err(|e| format!("[[auth.access]] #{}: {e}", i + 1))?,
            );
        }
        if self.mode == Mode::External {
            let missing: Vec<&str> = [
                ("realm", self.realm.is_none()),
                ("rootcertbundle", self.rootcertbundle.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, m)| m.then_some(k))
            .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "[auth] mode = \"external\" needs {}",
                    missing.join(" and ")
                ));
            }
        }
        Ok(())
    }

    /// The htpasswd file of builtin mode.
    pub fn htpasswd_path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.htpasswd
            .clone()
            .unwrap_or_else(|| data_dir.join("auth").join("htpasswd"))
    }
}
