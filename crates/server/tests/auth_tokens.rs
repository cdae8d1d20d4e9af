//! Tokens the server must refuse (each a forgery or a misuse an attacker would try), the
//! token endpoint's rules (asking too much, services, refresh tokens, failed-login
//! limits), and external mode: tokens of another issuer accepted, notarium's own refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use notarium_server::auth::certs::Cert;
use notarium_server::auth::jwt::{self, Audience, Claims, Header};
use notarium_server::auth::scope::ResourceActions;
use notarium_testkit::auth::{AuthServer, Who};
use notarium_testkit::server::{Options, TestServer};
use tuf::{Clock, FixedClock};

const PASSPHRASE: &str = "test-passphrase";

fn now() -> i64 {
    tuf::SystemClock.now().unix_secs()
}

/// The server's own token key and certificate, read from its data directory.
fn server_key(s: &TestServer) -> (keys::PrivateKey, Cert) {
    let text = std::fs::read(s.data_dir.join("auth/token.key")).unwrap();
    let key = keys::file::read(&text, Some(PASSPHRASE)).unwrap().key;
    let pem = std::fs::read(s.data_dir.join("auth/token.crt")).unwrap();
    let cert = Cert::read_pem_bundle(&pem).unwrap().remove(0);
    (key, cert)
}

fn claims(iss: &str, aud: &str, access: &[(&str, &[&str])]) -> Claims {
    let t = now();
    Claims {
        iss: iss.into(),
        sub: "pusher".into(),
        aud: Audience::One(aud.into()),
        exp: t + 300,
        nbf: t,
        iat: t,
        jti: jwt::new_jti(),
        access: access
            .iter()
            .map(|(name, actions)| ResourceActions {
                typ: "repository".into(),
                name: (*name).into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
        pwh: None,
    }
}

struct Answer {
    status: u16,
    challenge: String,
    code: String,
}

fn get(s: &TestServer, path: &str, token: Option<&str>) -> Answer {
    let mut rb = s.client().get(format!("{}{path}", s.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    answer(rb.send().unwrap())
}

fn answer(r: reqwest::blocking::Response) -> Answer {
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let v: serde_json::Value = r.json().unwrap_or_default();
    Answer {
        status,
        challenge,
        code: v["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
    }
}

fn refused(a: &Answer, error: &str, what: &str) {
    assert_eq!(a.status, 401, "{what}");
    assert_eq!(a.code, "UNAUTHORIZED", "{what}");
    assert!(
        a.challenge.contains(&format!("error=\"{error}\"")),
        "{what}: {}",
        a.challenge
    );
}

#[test]
fn forged_and_misused_tokens_are_refused() {
    let s = AuthServer::start();
    let path = "/v2/team/app/tags/list";
    let good = s.token(Who::Reader, &["repository:team/app:pull"]).unwrap();
    // A genuine token works (the repository is empty: 404, past the authorizer).
    assert_eq!(get(&s, path, Some(&good)).status, 404);

    let (key, cert) = server_key(&s);
    let pull = [("team/app", &["pull"][..])];
    let forge = |c: &Claims| jwt::sign(&key, &cert, "JWT", c).unwrap();

    // Signed with the server's real key, but wrong in its claims.
    let mut c = claims("notarium", "notarium", &pull);
    c.nbf = now() + 3600;
    refused(
        &get(&s, path, Some(&forge(&c))),
        "invalid_token",
        "not yet valid",
    );
    let mut c = claims("notarium", "notarium", &pull);
    c.exp = now() - 120;
    refused(&get(&s, path, Some(&forge(&c))), "invalid_token", "expired");
    let c = claims("someone-else", "notarium", &pull);
    refused(
        &get(&s, path, Some(&forge(&c))),
        "invalid_token",
        "wrong issuer",
    );
    let c = claims("notarium", "another-registry", &pull);
    refused(
        &get(&s, path, Some(&forge(&c))),
        "invalid_token",
        "wrong audience",
    );
    let c = claims("notarium", "notarium", &[("team/other", &["pull"][..])]);
    refused(
        &get(&s, path, Some(&forge(&c))),
        "insufficient_scope",
        "a token for another repository",
    );

    // A real token for another service this server issues tokens for (a registry that
    // uses notarium as its token issuer) is not a token for this server.
    let r = s
        .client()
        .get(format!("{}/auth/token", s.url))
        .query(&[
            ("service", "cncf-registry"),
            ("scope", "repository:team/app:pull"),
        ])
        .basic_auth("reader", Some("reader-password"))
        .send()
        .unwrap();
    let other: serde_json::Value = r.json().unwrap();
    refused(
        &get(&s, path, other["token"].as_str()),
        "invalid_token",
        "a token for another service",
    );

    // The signature: one byte changed; another key in x5c; no signature at all.
    let (h, rest) = good.split_once('.').unwrap();
    let (c, sig) = rest.split_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 1;
    let flipped = format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(&raw));
    refused(
        &get(&s, path, Some(&flipped)),
        "invalid_token",
        "wrong signature",
    );
    let stranger = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
    let stranger_cert = Cert::parse(
        &keys::cert::self_signed(
            &stranger,
            "notarium token signer",
            tuf::SystemClock.now(),
            30,
            false,
        )
        .unwrap(),
    )
    .unwrap();
    let c = claims("notarium", "notarium", &pull);
    let t = jwt::sign(&stranger, &stranger_cert, "JWT", &c).unwrap();
    refused(
        &get(&s, path, Some(&t)),
        "invalid_token",
        "an untrusted x5c",
    );
    let mut header = jwt::header_for(&stranger_cert, "JWT");
    header.x5c = None;
    let t = jwt::sign_with(&stranger, &header, &c).unwrap();
    refused(&get(&s, path, Some(&t)), "invalid_token", "an unknown kid");

    // alg none, and HS256 keyed with the public certificate (key confusion).
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let body = b64(serde_json::to_value(claims("notarium", "notarium", &pull)).unwrap());
    let none = format!(
        "{}.{body}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"}))
    );
    refused(&get(&s, path, Some(&none)), "invalid_token", "alg none");
    let hs_head =
        b64(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": cert.key.libtrust_kid()}));
    let input = format!("{hs_head}.{body}");
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &cert.der),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    refused(
        &get(&s, path, Some(&hs)),
        "invalid_token",
        "HS256 with the public key",
    );
    // ES256 claimed, but the header says RS256 for the same signature.
    let mut rs = Header {
        alg: "RS256".into(),
        ..jwt::header_for(&cert, "JWT")
    };
    rs.typ = Some("JWT".into());
    let t = jwt::sign_with(&key, &rs, &claims("notarium", "notarium", &pull)).unwrap();
    refused(
        &get(&s, path, Some(&t)),
        "invalid_token",
        "an algorithm that does not fit the key",
    );

    // Garbage and huge tokens.
    refused(
        &get(&s, path, Some("not.a.token")),
        "invalid_token",
        "garbage",
    );
    let huge = format!("{h}.{}.x", "a".repeat(13_000));
    refused(&get(&s, path, Some(&huge)), "invalid_token", "a huge token");

    // A refresh token is not an access token.
    let r = s
        .client()
        .post(format!("{}/auth/token", s.url))
        .form(&[
            ("grant_type", "password"),
            ("username", "reader"),
            ("password", "reader-password"),
            ("service", "notarium"),
            ("scope", "repository:team/app:pull"),
            ("client_id", "test"),
        ])
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    refused(
        &get(&s, path, v["refresh_token"].as_str()),
        "invalid_token",
        "a refresh token",
    );
}

#[test]
fn a_pull_token_cannot_push() {
    let s = AuthServer::start();
    let gun = format!("{}/team/app", s.host());
    let pull = s.as_user(
        Who::Pusher,
        &[
            &format!("repository:{gun}:pull"),
            "repository:team/app:pull",
        ],
    );
    let before = notarium_testkit::auth::Snapshot::take(&s.data_dir);
    let r = pull
        .client()
        .post(format!("{}/v2/team/app/blobs/uploads/", s.url))
        .send()
        .unwrap();
    // The pusher could get a push token: 401 with a challenge naming push, not 403.
    let a = answer(r);
    refused(&a, "insufficient_scope", "a pull token used to push");
    assert!(
        a.challenge.contains("scope=\"repository:team/app:push\""),
        "{}",
        a.challenge
    );
    let a = pull.post_parts(&gun, &[("root", b"{}")]);
    assert_eq!((a.status, a.code().as_str()), (401, "UNAUTHORIZED"));
    let a = pull.get_file(&gun, "timestamp.key");
    assert_eq!(a.status, 401, "GET <role>.key needs push too");
    assert_eq!(notarium_testkit::auth::Snapshot::take(&s.data_dir), before);
}

#[test]
fn tokens_expire_on_the_servers_clock() {
    let clock = Arc::new(FixedClock::new(tuf::SystemClock.now()));
    let s = AuthServer::start_with(Options {
        clock: clock.clone(),
        ..Default::default()
    });
    let t = s.token(Who::Reader, &["repository:team/app:pull"]).unwrap();
    let path = "/v2/team/app/tags/list";
    assert_eq!(get(&s, path, Some(&t)).status, 404);
    // Valid for 300 s, with distribution's 60 s of leeway; then refused, also when the
    // token was checked (and remembered) before.
    clock.advance_secs(350);
    assert_eq!(get(&s, path, Some(&t)).status, 404);
    clock.advance_secs(20);
    refused(&get(&s, path, Some(&t)), "invalid_token", "expired");
}

#[test]
fn the_token_endpoint_grants_what_the_rules_allow() {
    let s = AuthServer::start();
    let host = s.host();
    let ask = |who: Who, scopes: &[&str]| -> serde_json::Value {
        let t = s.token(who, scopes).unwrap();
        let claims = t.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
    };
    // Asking too much is no error: the intersection.
    let c = ask(
        Who::Reader,
        &[
            "repository:team/app:pull,push,delete,*",
            "repository:secret/x:pull,push",
            "registry:catalog:*",
            "bogus:thing:pull",
        ],
    );
    assert_eq!(c["sub"], "reader");
    assert_eq!(c["aud"], "notarium");
    assert_eq!(c["iss"], "notarium");
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "secret/x", "actions": ["pull"]},
        ])
    );
    // Trust scopes name the GUN; the rules see it without this server's host.
    let c = ask(
        Who::Pusher,
        &[&format!("repository:{host}/team/app:push,pull")],
    );
    assert_eq!(c["access"][0]["name"], format!("{host}/team/app"));
    assert_eq!(
        c["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    let c = ask(
        Who::Pusher,
        &["repository:registry.example.com/team/app:push,pull"],
    );
    assert_eq!(
        c["access"],
        serde_json::json!([]),
        "another registry's GUN is matched whole"
    );
    // Anonymous: what `anonymous` may, and no refresh token.
    let c = ask(
        Who::Anonymous,
        &["repository:public/x:pull,push", "repository:team/app:pull"],
    );
    assert_eq!(c["sub"], "");
    assert_eq!(
        c["access"],
        serde_json::json!([{"type": "repository", "name": "public/x", "actions": ["pull"]}])
    );
    let c = ask(Who::Admin, &["registry:catalog:*"]);
    assert_eq!(c["access"][0]["name"], "catalog");
    // The answer's fields, as docker reads them.
    let r = s
        .client()
        .get(format!(
            "{}/auth/token?service=notarium&offline_token=true&client_id=docker",
            s.url
        ))
        .basic_auth("reader", Some("reader-password"))
        .send()
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert_eq!(v["expires_in"], 300);
    assert!(tuf::DateTime::parse(v["issued_at"].as_str().unwrap()).is_ok());
    assert!(
        v["refresh_token"].is_string(),
        "offline_token=true gives a refresh token"
    );
    // A service this server does not issue for; a wrong password.
    let r = s
        .client()
        .get(format!("{}/auth/token?service=elsewhere", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .client()
        .get(format!("{}/auth/token?service=notarium", s.url))
        .basic_auth("reader", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
}

fn oauth(s: &TestServer, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = s
        .client()
        .post(format!("{}/auth/token", s.url))
        .form(form)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

#[test]
fn refresh_tokens_end_with_the_user_or_the_password() {
    let s = AuthServer::start();
    let login = |pw: &str| {
        oauth(
            &s,
            &[
                ("grant_type", "password"),
                ("username", "pusher"),
                ("password", pw),
                ("service", "notarium"),
                ("client_id", "docker"),
                ("access_type", "offline"),
            ],
        )
    };
    let (status, v) = login("pusher-password");
    assert_eq!(status, 200);
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let use_refresh = |t: &str| {
        oauth(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t),
                ("service", "notarium"),
                ("client_id", "docker"),
                ("scope", "repository:team/app:pull,push"),
            ],
        )
    };
    let (status, v) = use_refresh(&refresh);
    assert_eq!(status, 200);
    let t = v["access_token"].as_str().unwrap();
    assert_eq!(get(&s, "/v2/team/app/tags/list", Some(t)).status, 404);
    // A tampered refresh token; the password changed; the user removed.
    let mut bad = refresh.clone();
    bad.pop();
    assert_eq!(use_refresh(&bad).0, 401);
    notarium_server::auth::htpasswd::set_password(&s.htpasswd, "pusher", "new-password", 4)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(use_refresh(&refresh).0, 401, "the password changed");
    assert_eq!(login("pusher-password").0, 401);
    let (_, v) = login("new-password");
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(use_refresh(&refresh).0, 200);
    notarium_server::auth::htpasswd::remove_user(&s.htpasswd, "pusher").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(use_refresh(&refresh).0, 401, "the user is gone");
    assert_eq!(oauth(&s, &[("grant_type", "client_credentials")]).0, 400);

    // A refresh token from a login for another service (docker login to a registry
    // that uses notarium as its issuer) works for that service.
    let r = s
        .client()
        .get(format!(
            "{}/auth/token?service=cncf-registry&offline_token=true&client_id=docker",
            s.url
        ))
        .basic_auth("reader", Some("reader-password"))
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    let (status, v) = oauth(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", v["refresh_token"].as_str().unwrap()),
            ("service", "cncf-registry"),
            ("client_id", "docker"),
            ("scope", "repository:team/app:pull"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    let claims = v["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], "cncf-registry");
}

#[test]
fn failed_logins_are_limited_per_user_and_per_address() {
    let s = AuthServer::start_with(Options {
        configure: Box::new(|c| {
            c.auth.failed_logins_per_user = 3;
            c.auth.failed_logins_per_address = 5;
            c.auth.failed_login_window_secs = 600;
        }),
        ..Default::default()
    });
    let try_login = |user: &str, pw: &str| {
        s.client()
            .get(format!("{}/auth/token?service=notarium", s.url))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(try_login("reader", "guess").status(), 401);
    }
    let r = try_login("reader", "reader-password");
    assert_eq!(
        r.status(),
        429,
        "the right password is refused too while limited"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&wait), "{wait}");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
    // The same through the OAuth2 form.
    let (status, _) = oauth(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "reader"),
            ("password", "reader-password"),
        ],
    );
    assert_eq!(status, 429);
    // Another user may still log in, until this address has failed 5 times in all.
    assert_eq!(try_login("pusher", "pusher-password").status(), 200);
    assert_eq!(try_login("nobody", "x").status(), 401);
    assert_eq!(try_login("nobody2", "x").status(), 401);
    assert_eq!(try_login("pusher", "pusher-password").status(), 429);
    // Anonymous tokens need no login and are not limited.
    assert_eq!(
        s.client()
            .get(format!("{}/auth/token?service=notarium", s.url))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// A token issuer that is not notarium: its own CA, signing key and name.
struct Issuer {
    key: keys::PrivateKey,
    leaf: Cert,
    bundle: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Issuer {
    /// A CA in the bundle and a signing certificate issued by it (`chained`), or a
    /// self-signed signing certificate that is itself the bundle.
    fn new(chained: bool) -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        let leaf_kp = rcgen::KeyPair::generate().unwrap();
        let key = keys::PrivateKey::from_pkcs8_der(&leaf_kp.serialize_der()).unwrap();
        let mut lp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        lp.distinguished_name
            .push(rcgen::DnType::CommonName, "test issuer signer");
        let (leaf_der, bundle_pem) = if chained {
            let ca_kp = rcgen::KeyPair::generate().unwrap();
            let mut cp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            cp.distinguished_name
                .push(rcgen::DnType::CommonName, "test issuer CA");
            cp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = cp.self_signed(&ca_kp).unwrap();
            let leaf = lp.signed_by(&leaf_kp, &ca, &ca_kp).unwrap();
            (leaf.der().to_vec(), ca.pem())
        } else {
            let leaf = lp.self_signed(&leaf_kp).unwrap();
            (leaf.der().to_vec(), leaf.pem())
        };
        std::fs::write(&bundle, bundle_pem).unwrap();
        Issuer {
            key,
            leaf: Cert::parse(&leaf_der).unwrap(),
            bundle,
            _dir: dir,
        }
    }

    fn token(&self, access: &[(&str, &[&str])], x5c: bool) -> String {
        let mut h = jwt::header_for(&self.leaf, "JWT");
        if !x5c {
            h.x5c = None;
        }
        let mut c = claims("test-issuer", "notarium-ext", access);
        c.sub = "someone".into();
        jwt::sign_with(&self.key, &h, &c).unwrap()
    }
}

fn external(issuer: &Issuer) -> TestServer {
    let bundle = issuer.bundle.clone();
    TestServer::start_with(Options {
        configure: Box::new(move |c| {
            let file: notarium_server::auth::settings::AuthFile = toml::from_str(&format!(
                "mode = \"external\"\nrealm = \"https://issuer.example/token\"\nservice = \"notarium-ext\"\nissuer = \"test-issuer\"\nrootcertbundle = {:?}\n",
                bundle.display().to_string()
            ))
            .unwrap();
            c.auth.apply(file).unwrap();
        }),
        ..Default::default()
    })
}

#[test]
fn external_mode_takes_another_issuers_tokens_and_not_notariums() {
    for chained in [false, true] {
        let issuer = Issuer::new(chained);
        let s = external(&issuer);
        let gun = "registry.example.com/team/app";
        let path = format!("/v2/{gun}/_trust/tuf/root.json");
        let a = get(&s, &path, None);
        assert_eq!(a.status, 401);
        assert_eq!(
            a.challenge,
            format!("Bearer realm=\"https://issuer.example/token\",service=\"notarium-ext\",scope=\"repository:{gun}:pull\"")
        );
        let t = issuer.token(&[(gun, &["pull"])], true);
        assert_eq!(
            get(&s, &path, Some(&t)).status,
            404,
            "chained={chained}: accepted"
        );
        if !chained {
            // distribution's other way to name the key: only its libtrust ID.
            let t = issuer.token(&[(gun, &["pull"])], false);
            assert_eq!(get(&s, &path, Some(&t)).status, 404, "kid only");
        }
        // The issuer's word is what counts: push granted, push allowed.
        let t = issuer.token(&[(gun, &["push", "pull"])], true);
        let repo = notarium_testkit::TestRepo::new(&s.endpoint.authed(&t), gun);
        repo.publish_init(&s.endpoint.authed(&t));
        let t = issuer.token(&[(gun, &["pull"])], true);
        assert_eq!(get(&s, &path, Some(&t)).status, 200);
        // No token endpoint here.
        assert_ne!(
            get(&s, "/auth/token?service=notarium-ext", None).status,
            200
        );
    }

    // notarium's own tokens (another issuer, another key) are refused.
    let issuer = Issuer::new(false);
    let s = external(&issuer);
    let builtin = AuthServer::start();
    let gun = "registry.example.com/team/app";
    let theirs = builtin
        .token(Who::Admin, &[&format!("repository:{gun}:*")])
        .unwrap();
    refused(
        &get(
            &s,
            &format!("/v2/{gun}/_trust/tuf/root.json"),
            Some(&theirs),
        ),
        "invalid_token",
        "a builtin server's token",
    );
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let o = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed by this test");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const EC: [&str; 3] = ["-newkey", "ec", "-pkeyopt"];

/// A token's header, decoded.
fn header_of(t: &str) -> serde_json::Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn with_token_key(key: &std::path::Path, cert: &std::path::Path) -> Options {
    let (k, c) = (key.to_owned(), cert.to_owned());
    Options {
        configure: Box::new(move |cfg| {
            cfg.auth.mode = notarium_server::auth::Mode::Builtin;
            cfg.auth.token_key = Some(k);
            cfg.auth.token_cert = Some(c);
        }),
        ..Default::default()
    }
}

#[test]
fn an_operators_token_key_and_certificate() {
    use base64::engine::general_purpose::STANDARD;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let req = |key: &str, out: &str, subj: &str| {
        let mut a = vec![
            "req",
            "-x509",
            EC[0],
            EC[1],
            EC[2],
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        a.extend(["-keyout", key, "-out", out, "-days", "30", "-subj", subj]);
        openssl(&a, d);
    };
    // Self-signed, as `openssl req -x509` makes it (its defaults add CA:TRUE).
    req("self.key", "self.pem", "/CN=ops token signer");
    let srv = AuthServer::start_with(with_token_key(&d.join("self.key"), &d.join("self.pem")));
    assert_eq!(
        std::fs::read(srv.data_dir.join("auth/token.crt")).unwrap(),
        std::fs::read(d.join("self.pem")).unwrap(),
        "token.crt is the operator's certificate"
    );
    assert!(
        !srv.data_dir.join("auth/token.key").exists(),
        "no key of its own"
    );
    let t = srv
        .token(Who::Reader, &["repository:team/app:pull"])
        .unwrap();
    let ops = Cert::read_pem_bundle(&std::fs::read(d.join("self.pem")).unwrap())
        .unwrap()
        .remove(0);
    let h = header_of(&t);
    // A self-signed certificate is found by its kid in the bundle; no x5c to carry.
    assert_eq!(h["kid"], ops.key.libtrust_kid());
    assert!(h.get("x5c").is_none(), "{h}");
    assert_eq!(get(&srv, "/v2/team/app/tags/list", Some(&t)).status, 404);
    drop(srv);

    // Issued by the operator's CA: the chain (leaf, CA) goes in token_cert and in x5c.
    req("ca.key", "ca.pem", "/CN=ops CA");
    openssl(
        &[
            "req",
            "-new",
            EC[0],
            EC[1],
            EC[2],
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=ops token leaf",
        ],
        d,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            "leaf.pem",
        ],
        d,
    );
    let chain = [
        std::fs::read(d.join("leaf.pem")).unwrap(),
        std::fs::read(d.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(d.join("chain.pem"), &chain).unwrap();
    let srv = AuthServer::start_with(with_token_key(&d.join("leaf.key"), &d.join("chain.pem")));
    let t = srv
        .token(Who::Reader, &["repository:team/app:pull"])
        .unwrap();
    let certs = Cert::read_pem_bundle(&chain).unwrap();
    let h = header_of(&t);
    assert_eq!(
        h["x5c"],
        serde_json::json!([
            STANDARD.encode(&certs[0].der),
            STANDARD.encode(&certs[1].der)
        ])
    );
    assert_eq!(h["kid"], certs[0].key.libtrust_kid());
    assert_eq!(get(&srv, "/v2/team/app/tags/list", Some(&t)).status, 404);
    drop(srv);

    // A certificate of another key: refused at start, saying so.
    let err = TestServer::try_start_with(with_token_key(&d.join("self.key"), &d.join("ca.pem")))
        .err()
        .unwrap();
    assert!(err.contains("its certificate"), "{err}");
}
