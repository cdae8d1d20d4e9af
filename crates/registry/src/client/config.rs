//! The docker CLI's configuration directory: `DOCKER_CONFIG` or `~/.docker`, holding
//! `trust/` (keys and TUF cache), `tls/<host:port>/` and `config.json` (credentials).

use std::path::{Path, PathBuf};

use base64::Engine as _;

#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub dir: PathBuf,
}

/// Credentials for a registry (and for its trust server, which docker authenticates with
/// the registry's credentials).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json).
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, ***)")
            }
        }
    }
}

impl Credentials {
    pub fn username(&self) -> &str {
        match self {
            Credentials::Basic { username, .. } | Credentials::IdentityToken { username, .. } => {
                username
            }
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// `DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_env() -> Self {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                home.join(".docker")
            }
        };
        DockerConfig { dir }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        DockerConfig { dir: dir.into() }
    }

    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }

    pub fn private_dir(&self) -> PathBuf {
        self.trust_dir().join("private")
    }

    /// `trust/tuf/<gun>/` (the GUN's path components become directories).
    pub fn tuf_dir(&self, gun: &tuf::Gun) -> PathBuf {
        let mut p = self.trust_dir().join("tuf");
        for seg in gun.as_str().split('/') {
            p = p.join(seg);
        }
        p
    }

    /// `tls/<host:port>/`: CA certificates (`*.crt`) and a client certificate
    /// (`*.cert` + `*.key`) for that server.
    pub fn tls_dir(&self, host_port: &str) -> PathBuf {
        self.dir.join("tls").join(host_port)
    }

    /// Credentials for `registry` (`host[:port]`): a credential helper named for it, else
    /// `auths`, else the default credential store.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, String> {
        let path = self.dir.join("config.json");
        let cfg: ConfigFile = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let keys = lookup_keys(registry);
        for k in &keys {
            if let Some(helper) = cfg.cred_helpers.get(k) {
                return helper_get(helper, k);
            }
        }
        for k in &keys {
            if let Some(a) = cfg.auths.get(k) {
                if let Some(c) = entry_credentials(a)? {
                    return Ok(Some(c));
                }
            }
        }
        match &cfg.creds_store {
            Some(store) if !store.is_empty() => helper_get(store, &keys[0]),
            _ => Ok(None),
        }
    }
}

/// Where `store_credentials` put them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// In `config.json`, base64 but not encrypted.
    File(PathBuf),
    /// In a credential helper (`docker-credential-<name>`).
    Helper(String),
}

impl DockerConfig {
    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// config.json as JSON (every field kept), or an empty object.
    fn load_raw(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let path = self.config_path();
        match std::fs::read(&path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Write config.json whole (0600, renamed into place), as docker does.
    fn save_raw(&self, cfg: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
        let path = self.config_path();
        let text = serde_json::to_string_pretty(cfg).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        keys::store::write_private_file(&path, format!("{text}\n").as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The helper that holds `registry`'s credentials, if one is configured.
    fn helper_for(
        cfg: &serde_json::Map<String, serde_json::Value>,
        registry: &str,
    ) -> Option<String> {
        cfg.get("credHelpers")
            .and_then(|h| h.get(registry))
            .or_else(|| cfg.get("credsStore"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// `docker login`'s write: the credentials (an identity token instead of the password
    /// when the registry gave one) under `registry`, in its credential helper if one is
    /// configured, else in config.json.
    pub fn store_credentials(&self, registry: &str, creds: &Credentials) -> Result<Stored, String> {
        let mut cfg = self.load_raw()?;
        if let Some(helper) = Self::helper_for(&cfg, registry) {
            let (user, secret) = match creds {
                Credentials::Basic { username, password } => (username.as_str(), password.as_str()),
                Credentials::IdentityToken { token, .. } => ("<token>", token.as_str()),
            };
            let input =
                serde_json::json!({"ServerURL": registry, "Username": user, "Secret": secret});
            helper_run(&helper, "store", input.to_string().as_bytes())?;
            return Ok(Stored::Helper(helper));
        }
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let entry = match creds {
            Credentials::Basic { username, password } => {
                serde_json::json!({ "auth": b64(format!("{username}:{password}")) })
            }
            Credentials::IdentityToken { username, token } => serde_json::json!({
                "auth": b64(format!("{username}:")),
                "identitytoken": token,
            }),
        };
        let auths = cfg
            .entry("auths")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !auths.is_object() {
            *auths = serde_json::Value::Object(Default::default());
        }
        if let Some(a) = auths.as_object_mut() {
            a.insert(registry.to_owned(), entry);
        }
        self.save_raw(&cfg)?;
        Ok(Stored::File(self.config_path()))
    }

    /// `docker logout`'s erase: whether there were credentials for `registry`.
    pub fn erase_credentials(&self, registry: &str) -> Result<bool, String> {
        let mut cfg = self.load_raw()?;
        let in_file = cfg
            .get_mut("auths")
            .and_then(|a| a.as_object_mut())
            .and_then(|a| a.remove(registry))
            .is_some();
        if in_file {
            self.save_raw(&cfg)?;
        }
        if let Some(helper) = Self::helper_for(&cfg, registry) {
            return match helper_run(&helper, "erase", registry.as_bytes()) {
                Ok(_) => Ok(true),
                Err(e) if e.contains("not found") => Ok(in_file),
                Err(e) => Err(e),
            };
        }
        Ok(in_file)
    }
}

/// The keys under which docker stores a registry's credentials.
fn lookup_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" || registry == "index.docker.io" {
        return vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
        ];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

fn entry_credentials(a: &AuthEntry) -> Result<Option<Credentials>, String> {
    let (user, pass) = match (&a.auth, &a.username, &a.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| "config.json: an auth entry is not base64".to_owned())?;
            let s = String::from_utf8(raw)
                .map_err(|_| "config.json: an auth entry is not UTF-8".to_owned())?;
            let (u, p) = s
                .split_once(':')
                .ok_or("config.json: an auth entry is not user:password")?;
            (u.to_owned(), p.to_owned())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => (String::new(), String::new()),
    };
    if let Some(t) = &a.identitytoken {
        if !t.is_empty() {
            return Ok(Some(Credentials::IdentityToken {
                username: user,
                token: t.clone(),
            }));
        }
    }
    if user.is_empty() && pass.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::Basic {
        username: user,
        password: pass,
    }))
}

/// Run `docker-credential-<helper> <action>` with `input` on its standard input, as the
/// docker CLI does; its standard output, or its message when it fails.
fn helper_run(helper: &str, action: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!("invalid credential helper name {helper:?}"));
    }
    let prog = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&prog)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout);
        return Err(format!("credential helper {prog}: {}", msg.trim()));
    }
    Ok(out.stdout)
}

/// `docker-credential-<helper> get`, as the docker CLI runs it.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, String> {
    let out = match helper_run(helper, "get", server.as_bytes()) {
        Ok(o) => o,
        Err(e) if e.contains("credentials not found") => return Ok(None),
        Err(e) => return Err(e),
    };
    let prog = format!("docker-credential-{helper}");
    #[derive(serde::Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: HelperOut =
        serde_json::from_slice(&out).map_err(|e| format!("credential helper {prog}: {e}"))?;
    Ok(Some(if h.username == "<token>" {
        Credentials::IdentityToken {
            username: String::new(),
            token: h.secret,
        }
    } else {
        Credentials::Basic {
            username: h.username,
            password: h.secret,
        }
    }))
}

/// Whether `path` exists and is a directory.
pub fn is_dir(path: &Path) -> bool {
    path.is_dir()
}
