//! The client side: HTTP sessions to registries and trust servers the way the docker CLI
//! opens them (TLS directory, ping, Bearer or Basic challenge, credentials from
//! `config.json`), with bounded reads; and the registry operations notarium needs.

pub mod config;
pub mod oci;
pub mod tls;
pub mod transfer;

use std::io::Read as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use config::{Credentials, DockerConfig};
pub use tls::TlsOptions;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("TLS failure talking to {url}: {cause}")]
    Tls { url: String, cause: String },
    #[error("{url}: authentication required (HTTP 401); log in with `docker login {host}`")]
    Unauthorized { url: String, host: String },
    #[error("{url}: {user} is not allowed {scope} (HTTP 401, insufficient scope)")]
    NotAllowed {
        url: String,
        user: String,
        scope: String,
    },
    #[error("{url}: access denied (HTTP 403)")]
    Forbidden { url: String },
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the response is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {cause}")]
    Io { url: String, cause: String },
    #[error("token server {realm}: {msg}")]
    Token { realm: String, msg: String },
}

/// How a server asked to be authenticated (from the ping's `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// Parse `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut realm = None;
            let mut service = None;
            for (k, v) in parse_params(rest) {
                match k.to_ascii_lowercase().as_str() {
                    "realm" => realm = Some(v),
                    "service" => service = Some(v),
                    _ => {}
                }
            }
            Some(Challenge::Bearer {
                realm: realm?,
                service,
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (v, remainder) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((k, v));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

struct Token {
    scope: String,
    value: String,
    expires: Instant,
}

/// One server, opened: its base URL, client, challenge and cached tokens.
pub struct Session {
    http: reqwest::blocking::Client,
    /// For streaming large bodies up (the blocking client sends readers 8 KiB at a time).
    tls: TlsOptions,
    /// The async client and its runtime for those uploads, made on the first one and
    /// kept: every blob of a push reuses its connection.
    streamer: std::sync::OnceLock<Streamer>,
    /// `https://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    host: String,
    creds: Option<Credentials>,
    challenge: Option<Challenge>,
    token: Mutex<Option<Token>>,
}

struct Streamer {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Turn a transport error into a one-line cause users recognize.
pub fn classify(url: &str, e: &reqwest::Error) -> NetError {
    let chain = error_chain(e);
    let tls_words = [
        "certificate",
        "UnknownIssuer",
        "invalid peer",
        "handshake",
        "tls",
        "TLS",
    ];
    if tls_words.iter().any(|w| chain.contains(w)) {
        let cause = if chain.contains("UnknownIssuer") {
            "certificate signed by unknown authority".to_owned()
        } else if chain.contains("NotValidForName") {
            "certificate is not valid for this name".to_owned()
        } else if chain.contains("Expired") {
            "certificate has expired".to_owned()
        } else {
            chain.rsplit(": ").next().unwrap_or(&chain).to_owned()
        };
        return NetError::Tls {
            url: url.to_owned(),
            cause,
        };
    }
    if e.is_timeout() {
        return NetError::Connect {
            url: url.to_owned(),
            cause: "timed out".into(),
        };
    }
    if e.is_connect() || chain.contains("Connection refused") || chain.contains("dns error") {
        let cause = if chain.contains("Connection refused") {
            "connection refused".to_owned()
        } else if chain.contains("dns error") || chain.contains("failed to lookup") {
            "no such host".to_owned()
        } else {
            chain.rsplit(": ").next().unwrap_or(&chain).to_owned()
        };
        return NetError::Connect {
            url: url.to_owned(),
            cause,
        };
    }
    NetError::Io {
        url: url.to_owned(),
        cause: chain,
    }
}

pub const USER_AGENT: &str = concat!("notarium/", env!("CARGO_PKG_VERSION"));

impl Session {
    /// Open a session: build the TLS client and ping `<base>/v2/` (5 s), noting any auth
    /// challenge. A server that cannot be reached is an error right here.
    pub fn open(
        base: &str,
        tls: &TlsOptions,
        creds: Option<Credentials>,
    ) -> Result<Session, NetError> {
        let base = base.trim_end_matches('/').to_owned();
        let host = base
            .split("://")
            .nth(1)
            .unwrap_or(&base)
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::limited(5));
        if base.starts_with("https://") {
            b = b.use_preconfigured_tls(tls::client_config(tls)?);
        }
        let http = b.build().map_err(|e| NetError::Config(e.to_string()))?;
        let ping = format!("{base}/v2/");
        let r = http
            .get(&ping)
            .timeout(Duration::from_secs(5))
            .send()
            .map_err(|e| classify(&base, &e))?;
        let challenge = if r.status().as_u16() == 401 {
            r.headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(parse_challenge)
                .next()
        } else {
            None
        };
        Ok(Session {
            http,
            tls: tls.clone(),
            streamer: std::sync::OnceLock::new(),
            base,
            host,
            creds,
            challenge,
            token: Mutex::new(None),
        })
    }

    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// The `Authorization` header for `scope` (`repository:<name>:pull,push`), fetching a
    /// token when the server uses Bearer auth.
    fn authorization(&self, scope: &str) -> Result<Option<String>, NetError> {
        use base64::Engine as _;
        match &self.challenge {
            None => Ok(None),
            Some(Challenge::Basic) => match &self.creds {
                Some(Credentials::Basic { username, password }) => Ok(Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ))),
                _ => Err(NetError::Unauthorized {
                    url: self.base.clone(),
                    host: self.host.clone(),
                }),
            },
            Some(Challenge::Bearer { realm, service }) => {
                let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = cached.as_ref() {
                    if t.scope == scope && t.expires > Instant::now() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let t = self.fetch_token(realm, service.as_deref(), scope)?;
                let header = format!("Bearer {}", t.value);
                *cached = Some(t);
                Ok(Some(header))
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, NetError> {
        self.token_request(realm, service, Some(scope), false)
            .map(|(t, _)| t)
    }

    /// Ask the token server for a token (`scope`: none for a login). `offline` asks for a
    /// refresh token too (`offline_token=true`), as `docker login` does; it comes back as
    /// the second value when the server issues one.
    fn token_request(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        offline: bool,
    ) -> Result<(Token, Option<String>), NetError> {
        let err = |msg: String| NetError::Token {
            realm: realm.to_owned(),
            msg,
        };
        let resp = match &self.creds {
            Some(Credentials::IdentityToken { token, .. }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", token.clone()),
                    ("client_id", "docker".to_owned()),
                ];
                if let Some(s) = scope {
                    form.push(("scope", s.to_owned()));
                }
                if let Some(s) = service {
                    form.push(("service", s.to_owned()));
                }
                self.http.post(realm).form(&form).send()
            }
            creds => {
                let mut q: Vec<(&str, String)> = Vec::new();
                if let Some(s) = scope {
                    q.push(("scope", s.to_owned()));
                }
                if let Some(s) = service {
                    q.push(("service", s.to_owned()));
                }
                if offline {
                    q.push(("offline_token", "true".to_owned()));
                    q.push(("client_id", "docker".to_owned()));
                }
                let mut rb = self.http.get(realm);
                if let Some(Credentials::Basic { username, password }) = creds {
                    q.push(("account", username.clone()));
                    rb = rb.basic_auth(username, Some(password));
                }
                rb.query(&q).send()
            }
        }
        .map_err(|e| classify(realm, &e))?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(NetError::Unauthorized {
                url: realm.to_owned(),
                host: self.host.clone(),
            });
        }
        if !(200..300).contains(&status) {
            let summary = error_summary(resp);
            return Err(err(if summary.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {summary}")
            }));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
            refresh_token: Option<String>,
        }
        let body = read_limited(resp, 1 << 20, realm)?;
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| err(e.to_string()))?;
        let value = t
            .access_token
            .or(t.token)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                err("authorization server did not include a token in the response".into())
            })?;
        let ttl = t.expires_in.unwrap_or(60).max(60);
        Ok((
            Token {
                scope: scope.unwrap_or("").to_owned(),
                value,
                expires: Instant::now() + Duration::from_secs(ttl.saturating_sub(10)),
            },
            t.refresh_token.filter(|r| !r.is_empty()),
        ))
    }

    /// Check this session's credentials the way `docker login` does: a token (with a
    /// refresh token asked for) or Basic auth, then `GET /v2/` with it. Returns the
    /// refresh token the server gave, if any (docker stores it as the identity token).
    pub fn login(&self) -> Result<Option<String>, NetError> {
        let ping = format!("{}/v2/", self.base);
        let (auth, refresh) = match &self.challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => (self.authorization("")?, None),
            Some(Challenge::Bearer { realm, service }) => {
                let (t, refresh) = self.token_request(realm, service.as_deref(), None, true)?;
                (Some(format!("Bearer {}", t.value)), refresh)
            }
        };
        let mut rb = self.http.get(&ping);
        if let Some(h) = auth {
            rb = rb.header(reqwest::header::AUTHORIZATION, h);
        }
        let r = self.send(rb, &ping)?;
        match r.status().as_u16() {
            200..=299 => Ok(refresh),
            status => Err(NetError::Status {
                url: ping,
                status,
                body: error_summary(r),
            }),
        }
    }

    /// A request to `<base><path>` with the authorization `scope` needs.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        scope: &str,
    ) -> Result<reqwest::blocking::RequestBuilder, NetError> {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, &url);
        if let Some(h) = self.authorization(scope)? {
            rb = rb.header(reqwest::header::AUTHORIZATION, h);
        }
        Ok(rb)
    }

    /// A 401: "log in" without credentials; with them, what the token did not grant.
    fn unauthorized(&self, url: &str, challenge: Option<&str>) -> NetError {
        let params = challenge
            .and_then(|c| c.trim().split_once(' '))
            .map(|(_, rest)| parse_params(rest))
            .unwrap_or_default();
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match (&self.creds, param("error").as_deref()) {
            (Some(c), Some("insufficient_scope")) => NetError::NotAllowed {
                url: url.to_owned(),
                user: if c.username().is_empty() {
                    "this login".to_owned()
                } else {
                    c.username().to_owned()
                },
                scope: param("scope").unwrap_or_default(),
            },
            _ => NetError::Unauthorized {
                url: url.to_owned(),
                host: self.host.clone(),
            },
        }
    }

    /// Send, turning transport failures and 401/403 into clear errors.
    pub fn send(
        &self,
        rb: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::blocking::Response, NetError> {
        let r = rb.send().map_err(|e| classify(what, &e))?;
        match r.status().as_u16() {
            401 => Err(self.unauthorized(
                what,
                r.headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
            )),
            403 => Err(NetError::Forbidden {
                url: what.to_owned(),
            }),
            _ => Ok(r),
        }
    }

    /// GET `<base><path>`: `None` on 404, the body (at most `limit` bytes) on 200.
    pub fn get(
        &self,
        path: &str,
        scope: &str,
        limit: u64,
    ) -> Result<Option<std::sync::Arc<[u8]>>, NetError> {
        let url = format!("{}{path}", self.base);
        let r = self.send(self.request(reqwest::Method::GET, path, scope)?, &url)?;
        match r.status().as_u16() {
            200 => Ok(Some(read_limited_shared(r, limit, &url)?)),
            404 => Ok(None),
            status => Err(NetError::Status {
                url,
                status,
                body: error_summary(r),
            }),
        }
    }

    /// Send `len` bytes read from `body` to `<base><path>` with `method`, streamed in
    /// 1 MiB chunks (a reader thread feeds an async request). Returns the status and, for
    /// errors, a summary of the body.
    pub fn send_stream(
        &self,
        method: reqwest::Method,
        path: &str,
        scope: &str,
        content_type: &str,
        body: Box<dyn std::io::Read + Send>,
        len: u64,
    ) -> Result<(u16, String), NetError> {
        let url = format!("{}{path}", self.base);
        let auth = self.authorization(scope)?;
        let Streamer { rt, client } = self.streamer()?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let reader = std::thread::spawn(move || {
            let mut body = body;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let mut filled = 0;
                while filled < buf.len() {
                    match body.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                if filled == 0 {
                    return;
                }
                buf.truncate(filled);
                if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let result = rt.block_on(async {
            let mut rb = client
                .request(method, &url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(stream));
            if let Some(h) = auth {
                rb = rb.header(reqwest::header::AUTHORIZATION, h);
            }
            let r = rb.send().await?;
            let status = r.status().as_u16();
            let challenge = r
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = if (200..300).contains(&status) {
                String::new()
            } else {
                r.text().await.unwrap_or_default()
            };
            Ok::<_, reqwest::Error>((status, text, challenge))
        });
        let _ = reader.join();
        let (status, text, challenge) = result.map_err(|e| classify(&url, &e))?;
        match status {
            401 => Err(self.unauthorized(&url, challenge.as_deref())),
            403 => Err(NetError::Forbidden { url }),
            _ => Ok((status, summarize(&text))),
        }
    }

    fn streamer(&self) -> Result<&Streamer, NetError> {
        if let Some(s) = self.streamer.get() {
            return Ok(s);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30));
        if self.base.starts_with("https://") {
            b = b.use_preconfigured_tls(tls::client_config(&self.tls)?);
        }
        let client = b.build().map_err(|e| NetError::Config(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NetError::Config(e.to_string()))?;
        Ok(self.streamer.get_or_init(|| Streamer { rt, client }))
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Read a body, refusing more than `limit` bytes (the connection is dropped there).
pub fn read_limited(
    r: reqwest::blocking::Response,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, NetError> {
    if let Some(len) = r.content_length() {
        if len > limit {
            return Err(NetError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
    }
    // Sized from Content-Length (already bounded), so a 10 MB body is not grown by doubling.
    let mut out = Vec::with_capacity(r.content_length().map_or(0, |n| n as usize + 1));
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| NetError::Io {
            url: url.to_owned(),
            cause: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(NetError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(out)
}

/// Like [`read_limited`], into shared memory: with a Content-Length, one allocation of
/// that size and no copy.
pub fn read_limited_shared(
    mut r: reqwest::blocking::Response,
    limit: u64,
    url: &str,
) -> Result<std::sync::Arc<[u8]>, NetError> {
    let Some(len) = r.content_length().filter(|n| *n <= limit) else {
        return read_limited(r, limit, url).map(Into::into);
    };
    let io = |e: std::io::Error| NetError::Io {
        url: url.to_owned(),
        cause: e.to_string(),
    };
    let mut out: std::sync::Arc<[u8]> = std::iter::repeat_n(0u8, len as usize).collect();
    let Some(buf) = std::sync::Arc::get_mut(&mut out) else {
        return read_limited(r, limit, url).map(Into::into);
    };
    r.read_exact(buf).map_err(io)?;
    if r.read(&mut [0u8; 1]).map_err(io)? != 0 {
        return Err(NetError::Io {
            url: url.to_owned(),
            cause: "more data than its Content-Length".into(),
        });
    }
    Ok(out)
}

/// The first error code/message of a registry or Notary error body, for messages.
pub fn error_summary(r: reqwest::blocking::Response) -> String {
    match read_limited(r, 64 * 1024, "") {
        Ok(body) => summarize(&String::from_utf8_lossy(&body)),
        Err(_) => String::new(),
    }
}

/// The first error code/message of an error body's text.
fn summarize(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let e = &v["errors"][0];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(c), Some(m)) => {
            let detail = match &e["detail"] {
                serde_json::Value::Null => String::new(),
                d => {
                    let s = d
                        .get("Error")
                        .and_then(|x| x.get("Msg"))
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                        .or_else(|| d.as_str().map(str::to_owned))
                        .unwrap_or_else(|| d.to_string());
                    if s == "{}" {
                        String::new()
                    } else {
                        format!(" ({s})")
                    }
                }
            };
            format!("{c}: {m}{detail}")
        }
        _ => body.chars().take(200).collect::<String>().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }
}
