//! Registry tokens: compact JWS (JWT) as distribution issues and checks them.
//!
//! Header `{"typ","alg","kid","x5c"}`; claims `iss`, `sub`, `aud` (a string, as
//! distribution 2.8 reads it; a list is accepted on input), `exp`, `nbf`, `iat`, `jti`,
//! `access`. Only asymmetric algorithms are accepted (`none` and HMAC never), and the
//! algorithm must fit the key the signature is checked with.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::certs::{verify_chain, Cert, CertKey};
use super::scope::ResourceActions;

/// The `typ` of notarium's refresh tokens: never accepted as an access token.
pub const REFRESH_TYP: &str = "notarium-refresh+jwt";
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 12 << 10;
/// Clock skew tolerated on `exp` and `nbf` (distribution's leeway).
pub const LEEWAY_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token's signing key is not trusted: {0}")]
    UntrustedKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by {0:?}, not a trusted issuer")]
    Issuer(String),
    #[error("the token is for another service")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("a refresh token is not an access token")]
    WrongType,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

/// `aud`: one service or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, s: &str) -> bool {
        match self {
            Audience::One(a) => a == s,
            Audience::Many(v) => v.iter().any(|a| a == s),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default)]
    pub nbf: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Refresh tokens only: the fingerprint of the user's password hash when issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwh: Option<String>,
}

/// The header of notarium's tokens: ES256, the certificate's `kid` and `x5c`.
pub fn header_for(cert: &Cert, typ: &str) -> Header {
    Header {
        typ: Some(typ.to_owned()),
        alg: "ES256".into(),
        kid: Some(cert.key.libtrust_kid()),
        x5c: Some(vec![STANDARD.encode(&cert.der)]),
    }
}

/// The header notarium signs its tokens with: the leaf's `kid`, and `x5c` (the chain)
/// only when the leaf is not self-signed. A self-signed certificate can only be trusted
/// by being in the verifier's bundle, where the `kid` finds it (distribution and
/// notary-server look keys up by it), so sending it along would only make every request
/// carry 800 bytes more.
pub fn header_for_chain(chain: &[Cert], typ: &str) -> Result<Header, String> {
    let leaf = chain.first().ok_or("no token certificate")?;
    let mut h = header_for(leaf, typ);
    h.x5c =
        (!leaf.is_self_signed()).then(|| chain.iter().map(|c| STANDARD.encode(&c.der)).collect());
    Ok(h)
}

/// Sign `claims` under [`header_for`] (the certificate's `kid` and `x5c`).
pub fn sign(
    key: &keys::PrivateKey,
    cert: &Cert,
    typ: &str,
    claims: &Claims,
) -> Result<String, String> {
    sign_with(key, &header_for(cert, typ), claims)
}

/// Sign `claims` under any header, with an ECDSA P-256 key (ES256; `header.alg` is
/// written as given, so tests can forge what an attacker would).
pub fn sign_with(
    key: &keys::PrivateKey,
    header: &Header,
    claims: &Claims,
) -> Result<String, String> {
    use tuf::sign::Sign as _;
    if !key.is_ecdsa() {
        return Err("the token key must be an ECDSA P-256 key".into());
    }
    let mut out = format!("{}.{}", b64_json(header)?, b64_json(claims)?);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

fn b64_json<T: Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_vec(v)
        .map(|j| URL_SAFE_NO_PAD.encode(j))
        .map_err(|e| e.to_string())
}

/// A token split and decoded, its signature not yet checked.
pub struct Unverified<'a> {
    pub header: Header,
    pub claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

pub fn decode(token: &str) -> Result<Unverified<'_>, TokenError> {
    let bad = |m: &str| TokenError::Malformed(m.to_owned());
    if token.len() > MAX_TOKEN_BYTES {
        return Err(bad("too long"));
    }
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three parts"));
    };
    let signing_input = &token[..h.len() + 1 + c.len()];
    let header: Header = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| bad("header is not base64url"))?,
    )
    .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    let claims: Claims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(c)
            .map_err(|_| bad("claims are not base64url"))?,
    )
    .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad("signature is not base64url"))?;
    Ok(Unverified {
        header,
        claims,
        signing_input,
        signature,
    })
}

/// Checks tokens against trusted certificates, an issuer and the accepted services.
pub struct Verifier {
    roots: Vec<Cert>,
    issuer: String,
    audiences: Vec<String>,
}

impl Verifier {
    pub fn new(roots: Vec<Cert>, issuer: String, audiences: Vec<String>) -> Verifier {
        Verifier {
            roots,
            issuer,
            audiences,
        }
    }

    fn key<'a>(
        &'a self,
        h: &Header,
        chain: &'a [Cert],
        now: i64,
    ) -> Result<&'a CertKey, TokenError> {
        if !chain.is_empty() {
            return verify_chain(chain, &self.roots, now).map_err(TokenError::UntrustedKey);
        }
        match &h.kid {
            Some(kid) => self
                .roots
                .iter()
                .map(|r| &r.key)
                .find(|k| &k.libtrust_kid() == kid)
                .ok_or_else(|| TokenError::UntrustedKey(format!("no trusted key has ID {kid}"))),
            None => Err(TokenError::UntrustedKey(
                "the header names no key (x5c or kid)".into(),
            )),
        }
    }

    /// Check signature, issuer, audience and time. A refresh token (`refresh`) must carry
    /// [`REFRESH_TYP`]; an access token must not.
    pub fn verify(&self, token: &str, now: i64, refresh: bool) -> Result<Claims, TokenError> {
        let t = decode(token)?;
        if !matches!(
            t.header.alg.as_str(),
            "ES256"
                | "ES384"
                | "ES512"
                | "RS256"
                | "RS384"
                | "RS512"
                | "PS256"
                | "PS384"
                | "PS512"
                | "EdDSA"
        ) {
            return Err(TokenError::Algorithm(t.header.alg.clone()));
        }
        let is_refresh = t.header.typ.as_deref() == Some(REFRESH_TYP);
        if is_refresh != refresh {
            return Err(TokenError::WrongType);
        }
        let chain: Vec<Cert> = match &t.header.x5c {
            Some(list) => list
                .iter()
                .take(6)
                .map(|b| {
                    STANDARD
                        .decode(b)
                        .map_err(|_| TokenError::Malformed("x5c is not base64".into()))
                        .and_then(|der| Cert::parse(&der).map_err(TokenError::Malformed))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let key = self.key(&t.header, &chain, now)?;
        key.verify_jws(&t.header.alg, t.signing_input.as_bytes(), &t.signature)
            .map_err(|_| TokenError::BadSignature)?;
        let c = t.claims;
        if c.iss != self.issuer {
            return Err(TokenError::Issuer(c.iss.chars().take(100).collect()));
        }
        if !self.audiences.iter().any(|a| c.aud.contains(a)) {
            return Err(TokenError::Audience);
        }
        if now > c.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if c.nbf.saturating_sub(LEEWAY_SECS) > now {
            return Err(TokenError::NotYetValid);
        }
        Ok(c)
    }
}

/// A random token ID.
pub fn new_jti() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    hex::encode(b)
}
