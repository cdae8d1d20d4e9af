//! `notarium server` as a process: the ready line, generated TLS files reused across
//! restarts, graceful shutdown on SIGTERM, the key passphrase rule, the config file, one
//! server per data directory.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    url: String,
    line: String,
}

fn notarium() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_notarium"));
    c.env_remove("NOTARIUM_KEY_PASSPHRASE")
        .env("NOTARIUM_LOG", "warn");
    c
}

fn start(args: &[&str], data: &Path, passphrase: Option<&str>) -> Result<Proc, String> {
    let mut c = notarium();
    c.args(["server", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = passphrase {
        c.env("NOTARIUM_KEY_PASSPHRASE", p);
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        return Err(format!("{status}: {err}"));
    }
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    Ok(Proc { child, url, line })
}

fn sigterm_and_wait(mut p: Proc) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(url: &str, ca: &Path) -> u16 {
    let pem = std::fs::read(ca).unwrap();
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    c.get(format!("{url}/v2/"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn generated_tls_ready_line_restart_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = start(&[], &data, Some("a passphrase")).unwrap();
    let ca = data.join("tls/ca.crt");
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.line);
    assert!(
        p.line
            .contains(&format!("(CA certificate: {})", ca.display())),
        "{}",
        p.line
    );
    assert_eq!(get(&p.url, &ca), 200);
    use std::os::unix::fs::PermissionsExt;
    for private in ["tls/server.key", "tls/ca.key"] {
        assert_eq!(
            std::fs::metadata(data.join(private))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{private}"
        );
    }
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let ca_bytes = std::fs::read(&ca).unwrap();
    let cert_bytes = std::fs::read(data.join("tls/server.crt")).unwrap();
    assert!(sigterm_and_wait(p).success());

    // Restart: the same CA and certificate are reused, and the server answers again.
    let p = start(&[], &data, Some("a passphrase")).unwrap();
    assert_eq!(std::fs::read(&ca).unwrap(), ca_bytes);
    assert_eq!(
        std::fs::read(data.join("tls/server.crt")).unwrap(),
        cert_bytes
    );
    assert_eq!(get(&p.url, &ca), 200);
    // A second server on the same data directory is refused.
    let err = start(&[], &data, Some("a passphrase")).err().unwrap();
    assert!(err.contains("another notarium server is using"), "{err}");
    assert!(sigterm_and_wait(p).success());

    // An extra name re-issues the server certificate from the same CA.
    let p = start(
        &["--tls-san", "notary.example.com"],
        &data,
        Some("a passphrase"),
    )
    .unwrap();
    assert_eq!(std::fs::read(&ca).unwrap(), ca_bytes);
    assert_ne!(
        std::fs::read(data.join("tls/server.crt")).unwrap(),
        cert_bytes
    );
    assert_eq!(get(&p.url, &ca), 200);
    assert!(sigterm_and_wait(p).success());
}

#[test]
fn key_passphrase_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let err = start(&[], &data, None).err().unwrap();
    assert!(err.contains("NOTARIUM_KEY_PASSPHRASE"), "{err}");
    assert!(err.contains("--dev"), "{err}");
    let p = start(&[], &data, Some("right")).unwrap();
    assert!(sigterm_and_wait(p).success());
    let err = start(&[], &data, Some("wrong")).err().unwrap();
    assert!(err.contains("passphrase does not open"), "{err}");
    // --dev runs without a passphrase (on its own data).
    let p = start(&["--dev"], &tmp.path().join("dev"), None).unwrap();
    assert!(sigterm_and_wait(p).success());
}

#[test]
fn config_file_and_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("notarium.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\ninsecure_http = true\nkey_passphrase = \"from the file\"\nkey_algorithm = \"ecdsa\"\n",
            tmp.path().join("data")
        ),
    )
    .unwrap();
    let mut c = notarium();
    c.args(["server", "--addr", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let key: serde_json::Value =
        reqwest::blocking::get(format!("{url}/v2/example.com/a/b/_trust/tuf/timestamp.key"))
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(key["keytype"], "ecdsa");
    assert!(tmp.path().join("data/notarium.db").exists());
    assert!(sigterm_and_wait(Proc { child, url, line }).success());
    // An unknown setting is an error, not silently ignored.
    std::fs::write(&cfg, "adress = \"127.0.0.1:1\"\n").unwrap();
    let out = notarium()
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
