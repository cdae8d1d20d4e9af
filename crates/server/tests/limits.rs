//! The server's bounds, in process: blob size, upload sessions (bounded, expired), the
//! memory budget and the metadata part limit, unused server keys reclaimed; the registry's
//! exact error codes; and connections that stay sound after an early answer, over
//! HTTP/1.1 and HTTP/2.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use notarium_server::config::Limits;
use notarium_testkit::server::{multipart, Options, TestServer};
use notarium_testkit::TestRepo;
use registry::Digest;

fn with_limits(tls: bool, f: impl FnOnce(&mut Limits) + Send + 'static) -> TestServer {
    TestServer::start_with(Options {
        tls,
        configure: Box::new(move |c| f(&mut c.limits)),
        ..Default::default()
    })
}

/// (status, code of the error envelope, headers) of a response.
fn answer(r: reqwest::blocking::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v: serde_json::Value = r.json().unwrap_or_default();
    let code = v["errors"][0]["code"].as_str().unwrap_or("").to_owned();
    (status, code, headers)
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn blobs_past_max_blob_bytes_are_refused_as_they_arrive() {
    let s = with_limits(true, |l| l.max_blob_bytes = 1 << 20);
    let c = s.client();
    let uploads = s.data_dir.join("registry/uploads");
    let start = || {
        let r = c
            .post(format!("{}/v2/team/app/blobs/uploads/", s.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        format!("{}{}", s.url, r.headers()["location"].to_str().unwrap())
    };
    // Streamed without a length: refused once the limit is crossed, nothing kept.
    let loc = start();
    let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(vec![7u8; 512 << 10]));
    let body = reqwest::blocking::Body::new(StreamReader::new(chunks.collect()));
    // The answer comes before the client has sent everything: it sees the 413, or (a
    // race in the client) the stream reset after it.
    match c.patch(&loc).body(body).send() {
        Ok(r) => {
            let (status, code, _) = answer(r);
            assert_eq!((status, code.as_str()), (413, "SIZE_INVALID"));
        }
        Err(e) => assert!(e.is_body() || e.is_request(), "{e}"),
    }
    assert_eq!(files_in(&uploads), 0, "the partial data is removed");
    let r = c.get(&loc).send().unwrap();
    assert_eq!(r.status(), 404, "the upload is gone");
    // Announced too long: refused before anything is read.
    let loc = start();
    let r = c
        .put(format!("{loc}?digest={}", Digest::sha256_of(b"x")))
        .header("content-length", (2u64 << 20).to_string())
        .body(vec![0u8; 2 << 20])
        .send();
    if let Ok(r) = r {
        assert_eq!(answer(r).0, 413);
    }
    assert_eq!(files_in(&uploads), 0);
    // Under the limit, all is well.
    let data = vec![1u8; 1 << 20];
    let loc = start();
    let r = c
        .put(format!("{loc}?digest={}", Digest::sha256_of(&data)))
        .body(data)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// A reader over chunks, so a body has no length.
struct StreamReader {
    chunks: std::collections::VecDeque<Vec<u8>>,
    pos: usize,
}

impl StreamReader {
    fn new(chunks: Vec<std::io::Result<Vec<u8>>>) -> Self {
        StreamReader {
            chunks: chunks.into_iter().map(Result::unwrap).collect(),
            pos: 0,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(front) = self.chunks.front() else {
            return Ok(0);
        };
        let n = (front.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&front[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == front.len() {
            self.chunks.pop_front();
            self.pos = 0;
        }
        Ok(n)
    }
}

#[test]
fn upload_sessions_are_bounded_and_expire() {
    let s = with_limits(true, |l| {
        l.max_upload_sessions = 8;
        l.max_upload_sessions_per_repository = 5;
        l.upload_expiry = Duration::from_secs(2);
    });
    let c = s.client();
    let start = |repo: &str| {
        c.post(format!("{}/v2/{repo}/blobs/uploads/", s.url))
            .send()
            .unwrap()
    };
    let mut open = Vec::new();
    let mut opened = |repo: &str| {
        let r = start(repo);
        assert_eq!(r.status(), 202);
        open.push(r.headers()["location"].to_str().unwrap().to_owned());
    };
    for _ in 0..5 {
        opened("a/one");
    }
    let (status, code, h) = answer(start("a/one"));
    assert_eq!(
        (status, code.as_str()),
        (429, "TOOMANYREQUESTS"),
        "per repository"
    );
    assert_eq!(h["retry-after"], "1");
    for _ in 0..3 {
        opened("a/two");
    }
    let (status, code, _) = answer(start("a/three"));
    assert_eq!((status, code.as_str()), (429, "TOOMANYREQUESTS"), "in all");
    // Sessions still open, asked over HTTP (whatever the blob store).
    let alive = |open: &[String]| {
        open.iter()
            .filter(|l| c.get(format!("{}{l}", s.url)).send().unwrap().status() == 204)
            .count()
    };
    assert_eq!(alive(&open), 8);
    let uploads = s.data_dir.join("registry/uploads");
    if s.blobs.is_none() {
        assert_eq!(files_in(&uploads), 16, "8 sessions, each data and .repo");
    }
    // The running server removes them once idle past upload_expiry_secs.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while alive(&open) > 0 || (s.blobs.is_none() && files_in(&uploads) > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "sessions were not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(start("a/one").status(), 202);
}

#[test]
fn trust_uploads_are_bounded_per_part_and_by_the_memory_budget() {
    let s = with_limits(true, |l| {
        l.max_metadata_bytes = 256 << 10;
        l.max_inflight_bytes = 1 << 20;
    });
    let gun = "registry.example.com/limits/app";
    let repo = TestRepo::new(&s, gun);
    repo.publish_init(&s);
    let before = s.get_file(gun, "targets.json").body;
    // A part past the metadata limit: 413, nothing stored.
    let big = vec![b' '; 300 << 10];
    let a = s.post_parts(gun, &[("targets", &big)]);
    assert_eq!((a.status, a.code().as_str()), (413, "MALFORMED_UPLOAD"));
    // The budget: a request that can never fit waits, then gets 503 and Retry-After.
    let s2 = with_limits(true, |l| {
        l.max_metadata_bytes = 4 << 20;
        l.max_inflight_bytes = 1 << 20;
    });
    let (ct, body) = multipart(&[("targets", &vec![b' '; 2 << 20])]);
    let r = s2
        .client()
        .post(s2.trust_url(gun, ""))
        .header("content-type", ct)
        .body(body)
        .send()
        .unwrap();
    let (status, code, h) = answer(r);
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(h["retry-after"], "1");
    assert_eq!(s.get_file(gun, "targets.json").body, before);
    // Ordinary uploads still pass through both.
    let mut repo = repo;
    let t = repo.add_delegation("releases");
    assert_eq!(s.post_parts(gun, &[("targets", &t)]).status, 200);
}

#[test]
fn server_keys_of_repositories_never_published_are_reclaimed() {
    let s = with_limits(true, |l| l.unused_key_expiry = Duration::from_secs(1));
    let unused = "registry.example.com/keys/unused";
    let used = "registry.example.com/keys/used";
    let first = s.server_key(unused, "timestamp");
    let repo = TestRepo::new(&s, used);
    repo.publish_init(&s);
    let kept = s.server_key(used, "timestamp");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = s.server_key(unused, "timestamp");
        if now.id() != first.id() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unused key was not reclaimed"
        );
    }
    assert_eq!(
        s.server_key(used, "timestamp").id(),
        kept.id(),
        "a used key stays"
    );
    assert_eq!(s.get_file(used, "timestamp.json").status, 200);
}

#[test]
fn registry_errors_are_the_specs() {
    let s = TestServer::start();
    let c = s.client();
    let get = |m: reqwest::Method, path: &str| {
        answer(c.request(m, format!("{}{path}", s.url)).send().unwrap())
    };
    // A reference that is neither a tag nor a digest: unknown (as distribution).
    for path in [
        "/v2/team/app/manifests/-bad",
        "/v2/team/app/manifests/sha256:abc",
    ] {
        let (status, code, _) = get(reqwest::Method::GET, path);
        assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"), "{path}");
        assert_eq!(get(reqwest::Method::HEAD, path).0, 404, "{path}");
    }
    let r = c
        .put(format!("{}/v2/team/app/manifests/-bad", s.url))
        .header("content-type", registry::manifest::OCI_MANIFEST)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(
        answer(r).0,
        400,
        "a write to a bad reference is a bad request"
    );
    // Pagination.
    let (status, code, _) = get(reqwest::Method::GET, "/v2/team/app/tags/list?n=many");
    assert_eq!((status, code.as_str()), (400, "PAGINATION_NUMBER_INVALID"));
    let (status, code, _) = get(reqwest::Method::GET, "/v2/_catalog?n=-1");
    assert_eq!((status, code.as_str()), (400, "PAGINATION_NUMBER_INVALID"));
    let (status, code, _) = get(reqwest::Method::GET, "/v2/_catalog?last=Not..Valid");
    assert_eq!((status, code.as_str()), (400, "NAME_INVALID"));
    let (status, code, _) = get(reqwest::Method::GET, "/v2/team/app/tags/list?last=-x");
    assert_eq!((status, code.as_str()), (400, "TAG_INVALID"));
    // Every registry path answers in the OCI envelope.
    let (status, code, _) = get(reqwest::Method::GET, "/v2/team/app");
    assert_eq!((status, code.as_str()), (404, "UNSUPPORTED"));
    // PATCH ranges that run backwards or disagree with the body.
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", s.url))
        .send()
        .unwrap();
    let loc = format!("{}{}", s.url, r.headers()["location"].to_str().unwrap());
    for range in ["10-5", "0-9", "x-y"] {
        let r = c
            .patch(&loc)
            .header("content-range", range)
            .body(vec![0u8; 4])
            .send()
            .unwrap();
        let (status, code, _) = answer(r);
        assert_eq!((status, code.as_str()), (416, "RANGE_INVALID"), "{range}");
    }
    let r = c
        .patch(&loc)
        .header("content-range", "0-3")
        .body(vec![0u8; 4])
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// One HTTP/1.1 exchange on an open connection: (status, `Connection` header, body).
fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    conn.get_mut().write_all(request).ok()?;
    let mut line = String::new();
    if conn.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let (mut len, mut connection) = (0usize, String::new());
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "connection" => connection = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    Some((status, connection, body))
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn a_connection_stays_sound_after_an_early_answer_over_http1() {
    let s = with_limits(false, |l| l.max_blob_bytes = 1 << 20);
    let addr = s.addr;
    let good = request("GET", "/v2/", &[], b"");
    let (ct, upload) = multipart(&[("root", &vec![b'x'; 200 << 10])]);
    let small = vec![0u8; 300 << 10];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a trust upload for a bad GUN",
            request(
                "POST",
                "/v2/..%2Fevil/_trust/tuf/",
                &[("Content-Type", &ct)],
                &upload,
            ),
            400,
        ),
        (
            "a trust upload that is not multipart",
            request(
                "POST",
                "/v2/registry.example.com/a/_trust/tuf/",
                &[("Content-Type", "text/plain")],
                &small,
            ),
            400,
        ),
        (
            "a PATCH to an unknown upload",
            request(
                "PATCH",
                &format!("/v2/a/b/blobs/uploads/{}", "0".repeat(32)),
                &[],
                &small,
            ),
            404,
        ),
        (
            "a manifest under a bad reference",
            request("PUT", "/v2/a/b/manifests/-bad", &[], &small),
            400,
        ),
        (
            "a PUT past max_blob_bytes (announced)",
            request(
                "POST",
                &format!("/v2/a/b/blobs/uploads/?digest={}", Digest::sha256_of(b"")),
                &[],
                &vec![0u8; (1 << 20) + 1],
            ),
            413,
        ),
    ];
    for (what, req, want) in cases {
        let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
        conn.get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (status, connection, _) =
            exchange(&mut conn, &req).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, want, "{what}");
        // A small unread body is drained: the connection is kept. A large one is not
        // read, and the answer says the connection closes.
        let closing = connection.eq_ignore_ascii_case("close");
        assert_eq!(
            closing,
            req.len() > (1 << 20),
            "{what}: Connection: {connection}"
        );
        if closing {
            continue;
        }
        let next = exchange(&mut conn, &good);
        assert_eq!(
            next.map(|n| n.0),
            Some(200),
            "{what}: the next request on the connection"
        );
    }
}

#[test]
fn refused_requests_do_not_break_http2_streams() {
    let s = with_limits(true, |_| {});
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(s.ca.as_ref().unwrap()).unwrap())
                .unwrap(),
        )
        .http2_prior_knowledge()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for i in 0..20 {
        let r = c
            .put(format!("{}/v2/a/b/manifests/-bad{i}", s.url))
            .body(vec![0u8; 64 << 10])
            .send()
            .unwrap_or_else(|e| panic!("refused PUT {i}: {e}"));
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 400);
        let r = c.get(format!("{}/v2/", s.url)).send().unwrap();
        assert_eq!(r.status(), 200);
    }
}
