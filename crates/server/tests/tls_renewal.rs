//! The TLS certificate is renewed and reloaded while the server runs (`tls_check_secs`):
//! a generated certificate within 30 days of its end is issued again by the server's CA
//! and served from the next connection on; an operator's certificate whose files were
//! replaced (a renewal by certbot or the like) is served without a restart. Certificates
//! are made with the `openssl` command, as an operator would.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use notarium_testkit::server::Options;
use notarium_testkit::TestServer;

/// `openssl req -x509` for a new P-256 key (unencrypted), with `args` after.
fn new_ec_certificate(args: &[&str]) {
    let mut all = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    all.extend_from_slice(args);
    openssl(&all);
}

fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A certificate for 127.0.0.1 valid `days`, signed by `ca` (its key beside it as
/// `ca.key`), at `dir/name.crt` and `dir/name.key`.
fn issue(dir: &Path, ca_crt: &Path, ca_key: &Path, name: &str, days: u32) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    new_ec_certificate(&[
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-days",
        &days.to_string(),
        "-CA",
        ca_crt.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    (crt, key)
}

fn der(pem: &Path) -> Vec<u8> {
    let o = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

/// The certificate a new connection to `url` is served (its DER), trusting `ca`.
fn served(url: &str, ca: &Path) -> Vec<u8> {
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = c.get(format!("{url}/v2/")).send().unwrap();
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

/// `/healthz`: status and body, trusting `ca`.
fn health(url: &str, ca: &Path) -> (u16, String) {
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let r = c.get(format!("{url}/healthz")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Wait (at most 10 s) until a new connection is served something `ok` accepts.
fn until(url: &str, ca: &Path, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = served(url, ca);
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the served certificate did not change"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fast_checks() -> Options {
    Options {
        configure: Box::new(|c| c.tls_check_every = Duration::from_millis(200)),
        ..Default::default()
    }
}

#[test]
fn a_generated_certificate_near_its_end_is_issued_again_while_running() {
    let s = TestServer::start_with(fast_checks());
    let tls = s.data_dir.join("tls");
    let ca = tls.join("ca.crt");
    let first = served(&s.url, &ca);
    assert_eq!(first, der(&tls.join("server.crt")));
    // Ten days left (as after 815 days of running): the server issues a new one.
    let tmp = tempfile::tempdir().unwrap();
    let (crt, key) = issue(tmp.path(), &ca, &tls.join("ca.key"), "near", 10);
    let near = der(&crt);
    std::fs::copy(&key, tls.join("server.key")).unwrap();
    std::fs::copy(&crt, tls.join("server.crt")).unwrap();
    let now = until(&s.url, &ca, |d| {
        d != first.as_slice() && d != near.as_slice()
    });
    assert_eq!(now, der(&tls.join("server.crt")), "served what is on disk");
    let left = notarium_server::tls::days_left(&tls.join("server.crt")).unwrap();
    assert!(
        left >= notarium_server::tls::SERVER_CERT_DAYS - 1,
        "{left} days left"
    );
    // The health page has nothing to say about it.
    let h = s.get("/healthz");
    assert_eq!((h.status, h.text().as_str()), (200, "{}"));
}

#[test]
fn a_configured_certificate_replaced_on_disk_is_served_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    new_ec_certificate(&[
        "-subj",
        "/CN=operator CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        ca_key.to_str().unwrap(),
        "-out",
        ca_crt.to_str().unwrap(),
    ]);
    let (a_crt, a_key) = issue(dir, &ca_crt, &ca_key, "a", 5);
    let (cert, key) = (dir.join("live.crt"), dir.join("live.key"));
    std::fs::copy(&a_crt, &cert).unwrap();
    std::fs::copy(&a_key, &key).unwrap();
    let (c, k) = (cert.clone(), key.clone());
    let s = TestServer::start_with(Options {
        configure: Box::new(move |cfg| {
            cfg.tls_cert = Some(c);
            cfg.tls_key = Some(k);
            cfg.tls_check_every = Duration::from_millis(200);
        }),
        ..Default::default()
    });
    // (The test server names its scheme by its own CA; this one is the operator's.)
    let url = format!("https://{}", s.addr);
    assert_eq!(served(&url, &ca_crt), der(&a_crt));
    // Five days left: health says so, and still answers.
    let h = health(&url, &ca_crt);
    assert_eq!(h.0, 200);
    assert!(
        h.1.contains("expires in 4 days") || h.1.contains("expires in 5 days"),
        "{}",
        h.1
    );
    // The operator renews: key first, then certificate (as certbot writes them); a check
    // between the two sees a mismatched pair, keeps serving the old one, and loads the new
    // pair next time.
    let (b_crt, b_key) = issue(dir, &ca_crt, &ca_key, "b", 90);
    std::fs::copy(&b_key, &key).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served(&url, &ca_crt),
        der(&a_crt),
        "a mismatched pair was served"
    );
    std::fs::copy(&b_crt, &cert).unwrap();
    let b = der(&b_crt);
    until(&url, &ca_crt, |d| d == b.as_slice());
    let h = health(&url, &ca_crt);
    assert_eq!((h.0, h.1.as_str()), (200, "{}"));
}
