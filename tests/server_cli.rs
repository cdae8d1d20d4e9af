//! `notarium server` as a process: the ready line, generated TLS files reused across
//! restarts, graceful shutdown on SIGTERM, the key passphrase rule, the config file, one
//! server per data directory, a server killed in the middle of a blob upload.

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

/// Every file under `dir` whose name is not the SHA-256 of its content (a blob that is
/// not whole), and the number of files seen.
fn partial_blobs(dir: &Path) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            seen += 1;
            let content = std::fs::read(&path).unwrap();
            let hex = registry::Digest::sha256_of(&content).hex().to_string();
            if path.file_name().and_then(|n| n.to_str()) != Some(hex.as_str()) {
                bad.push(path.display().to_string());
            }
        }
    }
    (bad, seen)
}

/// Send the head of a request and `body` of its `len` bytes, without finishing it.
fn start_request(
    url: &str,
    line: &str,
    len: usize,
    extra: &str,
    body: &[u8],
) -> std::net::TcpStream {
    use std::io::Write as _;
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{line} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
    .unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
    s
}

/// Wait until the upload's file on disk holds at least `n` bytes (the server has written
/// what it received); its size.
fn upload_file_reaches(data: &Path, id: &str, n: u64) -> u64 {
    let path = data.join("registry/uploads").join(id);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len >= n {
            return len;
        }
        assert!(
            Instant::now() < deadline,
            "the server wrote {len} of {n} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(mut p: Proc) {
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[test]
fn a_killed_server_shows_no_partial_blob_and_the_upload_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let blob: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = registry::Digest::sha256_of(&blob).to_string();
    let c = reqwest::blocking::Client::new();
    let serve = || start(&["--insecure-http"], &data, Some("pw")).unwrap();
    let blob_status = |url: &str| {
        c.head(format!("{url}/v2/crash/app/blobs/{digest}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };

    let p = serve();
    let r = c
        .post(format!("{}/v2/crash/app/blobs/uploads/", p.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = loc.rsplit('/').next().unwrap().to_owned();

    // 1. Killed in the middle of a PATCH: 4.5 of 6 MB sent.
    let _conn = start_request(
        &p.url,
        &format!("PATCH {loc}"),
        blob.len(),
        "",
        &blob[..4_500_000],
    );
    upload_file_reaches(&data, &id, 4 << 20);
    kill9(p);
    let p = serve();
    assert_eq!(
        blob_status(&p.url),
        404,
        "a blob appeared from half an upload"
    );
    assert_eq!(partial_blobs(&data.join("registry/blobs")), (vec![], 0));
    let r = c.get(format!("{}{loc}", p.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let have: usize = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    assert!((4 << 20..=4_500_000).contains(&have), "{range}");

    // 2. Killed in the middle of the closing PUT (digest given, body partly sent).
    let _conn = start_request(
        &p.url,
        &format!("PUT {loc}?digest={digest}"),
        blob.len() - have,
        &format!("Content-Range: {have}-{}\r\n", blob.len() - 1),
        &blob[have..have + 100_000],
    );
    std::thread::sleep(Duration::from_millis(300));
    kill9(p);
    let p = serve();
    assert_eq!(
        blob_status(&p.url),
        404,
        "a blob appeared from a cut-off PUT"
    );
    assert_eq!(partial_blobs(&data.join("registry/blobs")).1, 0);

    // 3. Resumed from what the server says it has; the digest covers the whole file.
    let r = c.get(format!("{}{loc}", p.url)).send().unwrap();
    assert_eq!(
        r.status().as_u16(),
        204,
        "the upload did not survive the kill"
    );
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let have = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    let url = &p.url;
    let r = c
        .patch(format!("{url}{loc}"))
        .header("content-range", format!("{have}-{}", blob.len() - 1))
        .body(blob[have..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    let r = c.put(format!("{url}{loc}?digest={digest}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    let got = c
        .get(format!("{url}/v2/crash/app/blobs/{digest}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got.as_ref() == blob.as_slice(), "the resumed blob differs");
    assert_eq!(partial_blobs(&data.join("registry/blobs")), (vec![], 1));
    kill9(p);
}
