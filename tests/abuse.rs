//! `notarium server` (the binary) under abuse, each attack beside a well-behaved client
//! that must keep getting correct answers with a p99 latency under 200 ms (a new TLS
//! connection per request, as docker makes them), while the server's memory and
//! descriptors are measured: 2,000 idle connections under a 1,024-descriptor limit, slow
//! headers, slow bodies, 16 concurrent 250 MiB trust uploads, a 2 GiB PATCH past
//! `max_blob_bytes`, 10,000 abandoned upload sessions.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;

struct Server {
    child: Child,
    url: String,
    addr: String,
    ca: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with `[limits]` from `limits` (TOML lines), under `prlimit` when
/// `nofile` is given.
fn start(limits: &str, nofile: Option<u64>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.toml");
    // A cheap key derivation: these servers hold nothing worth the default cost.
    std::fs::write(&cfg, format!("kdf_iterations = 1000\n[limits]\n{limits}\n")).unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_notarium");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["server", "--addr", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .env("NOTARIUM_KEY_PASSPHRASE", "abuse")
        .env("NOTARIUM_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) and the notarium binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(4)
        .expect("ready line")
        .to_owned();
    let addr = url.trim_start_matches("https://").to_owned();
    Server {
        child,
        url,
        addr,
        ca: data.join("tls/ca.crt"),
        data,
        _dir: dir,
    }
}

impl Server {
    fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.url.clone(), Some(self.ca.clone()))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (RSS, peak RSS) in MB.
    fn memory(&self) -> (f64, f64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = |k: &str| -> f64 {
            s.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }

    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn nofile(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("")
            .to_owned()
    }
}

/// The well-behaved client: GET timestamp.json on a new connection each time, until
/// stopped; every answer must be the repository's timestamp.
struct GoodClient {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<(Vec<Duration>, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const GUN: &str = "registry.example.com/abuse/app";

fn good_client(s: &Server) -> GoodClient {
    let ep = s.endpoint();
    let repo = TestRepo::new(&ep, GUN);
    repo.publish_init(&ep);
    let want = ep.get_file(GUN, "timestamp.json").body;
    let pem = std::fs::read(&s.ca).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = ep.trust_url(GUN, "timestamp.json");
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let (st, res) = (stop.clone(), results.clone());
    let thread = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = client.get(&url).send().and_then(|r| {
                let status = r.status();
                r.bytes().map(|b| (status, b))
            });
            let took = t.elapsed();
            let mut g = res.lock().unwrap();
            match r {
                Ok((st, b)) if st == 200 && b[..] == want[..] => g.0.push(took),
                Ok((st, _)) => g.1.push(format!("HTTP {st}")),
                Err(e) => g.1.push(e.to_string()),
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    GoodClient {
        stop,
        results,
        thread: Some(thread),
    }
}

impl GoodClient {
    /// Stop, and check the answers: all correct, p99 under 200 ms. Returns the p99.
    fn finish(mut self, what: &str) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let (mut times, errors) = std::mem::take(&mut *self.results.lock().unwrap());
        assert!(errors.is_empty(), "{what}: the good client saw {errors:?}");
        assert!(times.len() >= 10, "{what}: only {} requests", times.len());
        times.sort();
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        assert!(p99 < Duration::from_millis(200), "{what}: p99 {p99:?}");
        p99
    }
}

/// A TLS connection from a raw client (no HTTP library), trusting the server's CA.
fn tls(s: &Server) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&s.ca).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "127.0.0.1".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(&s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// Whether the server closed this connection (a read ends or fails; it waits at most the
/// stream's read timeout, and a timeout is no close).
fn closed_by_server(stream: &mut impl Read) -> bool {
    let mut b = [0u8; 256];
    loop {
        match stream.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn raise_own_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
}

fn report(what: &str, s: &Server, p99: Duration) {
    let (rss, peak) = s.memory();
    eprintln!(
        "{what}: good client p99 {p99:?}; server RSS {rss:.1} MB (peak {peak:.1} MB), {} descriptors",
        s.descriptors()
    );
}

fn idle_connections_under_a_descriptor_limit() {
    raise_own_nofile();
    let s = start("tls_handshake_timeout_secs = 30", Some(1024));
    assert!(s.nofile().contains("1024"), "{}", s.nofile());
    let good = good_client(&s);
    // 2,000 connections that never say anything: more than the server has descriptors.
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let fds = s.descriptors();
    assert!(fds <= 1024, "{fds} descriptors");
    let p99 = good.finish("2,000 idle connections");
    report("2,000 idle connections", &s, p99);
    // The server is still whole, and the idle ones were let go as others came.
    drop(idle);
    assert_eq!(s.endpoint().get("/_notary_server/health").status, 200);
}

fn slow_headers() {
    let s = start("header_timeout_secs = 2", None);
    let good = good_client(&s);
    let mut slow: Vec<_> = (0..200)
        .map(|_| {
            let mut t = tls(&s);
            t.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
            t.flush().unwrap();
            t
        })
        .collect();
    // A byte of header every half second: never a whole head.
    let started = Instant::now();
    let mut open = slow.len();
    while started.elapsed() < Duration::from_secs(4) && open > 0 {
        open = 0;
        for t in &mut slow {
            if t.write_all(b"X").and_then(|()| t.flush()).is_ok() {
                open += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let p99 = good.finish("slow headers");
    report("200 slow headers", &s, p99);
    for t in &mut slow {
        assert!(closed_by_server(t), "a slow header was not cut");
    }
}

fn slow_bodies() {
    let s = start("idle_timeout_secs = 3", None);
    let ep = s.endpoint();
    let good = good_client(&s);
    let c = ep.client();
    let mut slow: Vec<_> = (0..100)
        .map(|i| {
            let r = c
                .post(format!("{}/v2/abuse/slow{}/blobs/uploads/", s.url, i % 10))
                .send()
                .unwrap();
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            let mut t = tls(&s);
            t.write_all(
                format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            t
        })
        .collect();
    // A byte every 200 ms: slow but moving, so kept.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        for t in &mut slow {
            t.write_all(b"x").unwrap();
            t.flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (rss, _) = s.memory();
    assert!(rss < 200.0, "{rss} MB for 100 slow bodies");
    // Then they stall: closed after idle_timeout_secs.
    std::thread::sleep(Duration::from_secs(5));
    let p99 = good.finish("slow bodies");
    report("100 slow bodies", &s, p99);
    for t in &mut slow {
        assert!(closed_by_server(t), "a stalled body was not cut");
    }
}

/// A multipart upload whose one part is `len` bytes of spaces, generated as it is sent.
struct BigUpload {
    head: Vec<u8>,
    len: u64,
    sent: u64,
    tail: Vec<u8>,
}

impl Read for BigUpload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            return Ok(n);
        }
        if self.sent < self.len {
            let n = ((self.len - self.sent) as usize).min(buf.len());
            buf[..n].fill(b' ');
            self.sent += n as u64;
            return Ok(n);
        }
        let n = self.tail.len().min(buf.len());
        buf[..n].copy_from_slice(&self.tail[..n]);
        self.tail.drain(..n);
        Ok(n)
    }
}

fn huge_trust_uploads() {
    let s = start("", None);
    let good = good_client(&s);
    let ep = s.endpoint();
    let len: u64 = 250 << 20;
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let ep = ep.clone();
            std::thread::spawn(move || {
                let head = b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
                let tail = b"\r\n--b0undary--\r\n".to_vec();
                let total = head.len() as u64 + len + tail.len() as u64;
                let body = reqwest::blocking::Body::sized(
                    BigUpload {
                        head,
                        len,
                        sent: 0,
                        tail,
                    },
                    total,
                );
                ep.client()
                    .post(ep.trust_url(GUN, ""))
                    .header("content-type", "multipart/form-data; boundary=b0undary")
                    .body(body)
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Refused: 413 past the part limit, 503 past the memory budget (or the connection
    // closed on a body the server stopped reading).
    assert!(
        statuses.iter().all(|s| [0, 413, 503].contains(s)),
        "{statuses:?}"
    );
    let (_, peak) = s.memory();
    assert!(peak < 512.0, "peak RSS {peak} MB");
    let p99 = good.finish("16 × 250 MiB trust uploads");
    report(&format!("16 × 250 MiB trust uploads {statuses:?}"), &s, p99);
}

fn a_patch_past_max_blob_bytes() {
    let s = start("max_blob_bytes = 1073741824", None);
    let good = good_client(&s);
    let ep = s.endpoint();
    let c = ep.client();
    let r = c
        .post(format!("{}/v2/abuse/big/blobs/uploads/", s.url))
        .send()
        .unwrap();
    let loc = format!("{}{}", s.url, r.headers()["location"].to_str().unwrap());
    // 2 GiB, streamed with no length: refused once past 1 GiB.
    let body = reqwest::blocking::Body::new(BigUpload {
        head: Vec::new(),
        len: 2 << 30,
        sent: 0,
        tail: Vec::new(),
    });
    let started = Instant::now();
    let status = c.patch(&loc).body(body).send().map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(413) | Err(_)), "{status:?}");
    let uploads = s.data.join("registry/uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads).unwrap().collect();
    assert!(left.is_empty(), "partial data left: {left:?}");
    assert_eq!(c.get(&loc).send().unwrap().status(), 404);
    let p99 = good.finish("a 2 GiB PATCH");
    report(&format!("a 2 GiB PATCH ({:?})", started.elapsed()), &s, p99);
}

fn abandoned_upload_sessions() {
    let s = start("upload_expiry_secs = 30", None);
    let ep = s.endpoint();
    let good = good_client(&s);
    let uploads = s.data.join("registry/uploads");
    let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let began = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ep = ep.clone();
            let created = created.clone();
            std::thread::spawn(move || {
                let c = ep.client();
                for i in 0..1250 {
                    let repo = format!("abuse/s{}", (t * 1250 + i) % 11);
                    let r = c
                        .post(format!("{}/v2/{repo}/blobs/uploads/", ep.url))
                        .send()
                        .unwrap();
                    if r.status() == 202 {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let creating = began.elapsed();
    assert!(
        creating < Duration::from_secs(25),
        "creating took {creating:?}"
    );
    assert_eq!(created.load(Ordering::Relaxed), 10_000);
    let r = ep
        .client()
        .post(format!("{}/v2/abuse/one-more/blobs/uploads/", ep.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429, "past the bound of 10,000 sessions");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 20_000);
    let (rss, _) = s.memory();
    // Removed by the running server after upload_expiry_secs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&uploads).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "abandoned sessions were not removed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = ep
        .client()
        .post(format!("{}/v2/abuse/one-more/blobs/uploads/", ep.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let p99 = good.finish("10,000 abandoned upload sessions");
    report(
        &format!("10,000 abandoned sessions (made in {creating:?}; RSS {rss:.1} MB with them)"),
        &s,
        p99,
    );
}

#[test]
fn the_server_holds_its_shape_under_abuse() {
    // One after another: each attack alone on the machine with its good client.
    let cases: [(&str, fn()); 6] = [
        (
            "idle connections",
            idle_connections_under_a_descriptor_limit,
        ),
        ("slow headers", slow_headers),
        ("slow bodies", slow_bodies),
        ("huge trust uploads", huge_trust_uploads),
        ("a 2 GiB PATCH", a_patch_past_max_blob_bytes),
        ("abandoned sessions", abandoned_upload_sessions),
    ];
    for (what, case) in cases {
        let t = Instant::now();
        case();
        eprintln!("{what}: {:?}", t.elapsed());
    }
}
