//! The token endpoint of builtin mode, as docker, containers/image and distribution's
//! token spec use it:
//!
//! * `GET /auth/token?service=…&scope=…[&scope=…][&offline_token=true]`, with HTTP Basic
//!   credentials or anonymously;
//! * `POST /auth/token` (OAuth2 form): `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), `scope` separated by spaces.
//!
//! The answer holds `token` and `access_token` (the same registry JWT), `expires_in`,
//! `issued_at`, and a `refresh_token` for password logins (docker keeps it as its identity
//! token). Each scope gets the actions asked for that the rules allow; asking too much is
//! never an error. Wrong credentials are 401, and too many of them 429 with `Retry-After`.

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use super::jwt::{self, Audience, Claims};
use super::scope::{Access, Actions, Kind, ResourceActions};
use super::Auth;

/// The user a token request ended up as (`None`: anonymous), for the access log.
#[derive(Debug, Clone)]
pub struct TokenUser(pub Option<String>);

struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn bad(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "UNSUPPORTED",
            message: message.into(),
            retry_after: None,
        }
    }

    fn unauthorized(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            message: message.into(),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message}]
        });
        let mut r = (self.status, format!("{body}\n")).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"notarium\""),
            );
        }
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// A request to the token endpoint, read.
pub struct TokenRequest {
    pub method: Method,
    pub headers: HeaderMap,
    /// Query pairs (GET) or form pairs (POST).
    pub params: Vec<(String, String)>,
    pub peer: Option<IpAddr>,
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

enum Login {
    Anonymous,
    Password { user: String, password: String },
    Refresh(String),
}

pub async fn handle(auth: &Auth, req: TokenRequest) -> (Response, TokenUser) {
    match issue(auth, &req).await {
        Ok((r, user)) => (r, TokenUser(user)),
        Err((f, user)) => (f.into_response(), TokenUser(user)),
    }
}

async fn issue(
    auth: &Auth,
    req: &TokenRequest,
) -> Result<(Response, Option<String>), (Failure, Option<String>)> {
    let (Some(key), Some(users)) = (&auth.key, &auth.users) else {
        return Err((Failure::bad("this server issues no tokens"), None));
    };
    let p = &req.params;
    let login = if req.method == Method::POST {
        match param(p, "grant_type") {
            Some("password") => Login::Password {
                user: param(p, "username").unwrap_or("").to_owned(),
                password: param(p, "password").unwrap_or("").to_owned(),
            },
            Some("refresh_token") => {
                Login::Refresh(param(p, "refresh_token").unwrap_or("").to_owned())
            }
            other => {
                return Err((
                    Failure::bad(format!(
                        "grant_type {:?}: expected password or refresh_token",
                        other.unwrap_or("")
                    )),
                    None,
                ))
            }
        }
    } else {
        match basic(&req.headers) {
            Some(Ok((user, password))) => Login::Password { user, password },
            Some(Err(())) => {
                return Err((Failure::unauthorized("malformed Basic credentials"), None))
            }
            None => Login::Anonymous,
        }
    };
    let now = auth.clock.now().unix_secs();
    let (user, offline) = match login {
        Login::Anonymous => (None, false),
        Login::Password { user, password } => {
            if let Some(wait) = auth.limiter.blocked(Some(&user), req.peer, now) {
                return Err((
                    Failure {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        code: "TOOMANYREQUESTS",
                        message: format!("too many failed logins; try again in {wait} seconds"),
                        retry_after: Some(wait),
                    },
                    Some(user),
                ));
            }
            if !users.verify(&user, &password).await {
                auth.limiter.failed(Some(&user), req.peer, now);
                tracing::info!(user = %user, "failed login");
                return Err((
                    Failure::unauthorized("incorrect username or password"),
                    Some(user),
                ));
            }
            auth.limiter.succeeded(&user);
            let offline = req.method == Method::POST || param(p, "offline_token") == Some("true");
            (Some(user), offline)
        }
        Login::Refresh(t) => {
            let verifier = auth
                .verifier
                .as_ref()
                .ok_or((Failure::bad("no tokens"), None))?;
            let c = verifier
                .verify(&t, now, true)
                .map_err(|e| (Failure::unauthorized(format!("refresh token: {e}")), None))?;
            let current = users.current_fingerprint(&c.sub);
            if c.sub.is_empty() || current.is_none() || current != c.pwh {
                return Err((
                    Failure::unauthorized(
                        "the refresh token's user or password has changed; log in again",
                    ),
                    Some(c.sub.clone()),
                ));
            }
            (Some(c.sub.clone()), false)
        }
    };
    let service = match param(p, "service") {
        Some(s) if !auth.settings.services.iter().any(|x| x == s) => {
            return Err((
                Failure::bad(format!(
                    "service {s:?} is not one this server issues tokens for"
                )),
                user,
            ))
        }
        Some(s) => s.to_owned(),
        None => auth.settings.service.clone(),
    };
    let access = grant(auth, user.as_deref(), p);
    let ttl = auth.settings.token_ttl_secs as i64;
    let claims = Claims {
        iss: auth.settings.issuer.clone(),
        sub: user.clone().unwrap_or_default(),
        aud: Audience::One(service.clone()),
        exp: now + ttl,
        nbf: now,
        iat: now,
        jti: jwt::new_jti(),
        access,
        pwh: None,
    };
    let sign = |typ: &str, c: &Claims| {
        jwt::header_for_chain(&key.chain, typ).and_then(|h| jwt::sign_with(&key.key, &h, c))
    };
    let token =
        sign("JWT", &claims).map_err(|e| (Failure::bad(format!("signing: {e}")), user.clone()))?;
    let issued_at = tuf::DateTime::from_unix_secs(now)
        .format()
        .unwrap_or_default();
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": issued_at,
    });
    if let (true, Some(u)) = (offline, &user) {
        let refresh = Claims {
            // Whatever service it was asked for, a refresh token comes back here.
            aud: Audience::One(auth.settings.service.clone()),
            exp: now + auth.settings.refresh_token_ttl_secs as i64,
            access: Vec::new(),
            jti: jwt::new_jti(),
            pwh: users.current_fingerprint(u),
            ..claims
        };
        if let Ok(t) = sign(jwt::REFRESH_TYP, &refresh) {
            body["refresh_token"] = serde_json::Value::String(t);
        }
    }
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((r, user))
}

/// Each asked scope, with the actions the rules allow (scopes granted nothing are left
/// out).
fn grant(auth: &Auth, user: Option<&str>, p: &[(String, String)]) -> Vec<ResourceActions> {
    let mut out: Vec<ResourceActions> = Vec::new();
    let scopes = p
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .take(64);
    for s in scopes {
        let Some(asked) = Access::parse_scope(s) else {
            continue;
        };
        let allowed = match asked.kind {
            Kind::Registry if asked.name == "catalog" && auth.policy.catalog(user) => {
                Actions::of(&[super::scope::Action::All])
            }
            Kind::Registry => Actions::NONE,
            Kind::Repository => auth.policy.rights(user, auth.repository(&asked.name)),
        };
        let granted = allowed.grant(asked.actions);
        if granted.is_empty() {
            continue;
        }
        let entry = ResourceActions::from(&Access {
            actions: granted,
            ..asked
        });
        match out
            .iter_mut()
            .find(|e| e.typ == entry.typ && e.name == entry.name)
        {
            Some(e) => {
                for a in entry.actions {
                    if !e.actions.contains(&a) {
                        e.actions.push(a);
                    }
                }
            }
            None => out.push(entry),
        }
    }
    out
}

/// `Authorization: Basic …` as (user, password); `Some(Err)` when it is malformed.
fn basic(h: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    Some(match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((u, p)) if !u.is_empty() => Ok((u.to_owned(), p.to_owned())),
        _ => Err(()),
    })
}
