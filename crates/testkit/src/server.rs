//! The real server, in-process, on a free loopback port, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use server::{App, ServerConfig};
use tuf::Clock;

/// A server to talk to: its URL and the CA its certificate chains to.
#[derive(Clone)]
pub struct Endpoint {
    /// `https://127.0.0.1:<port>` (or `http://` with `insecure_http`).
    pub url: String,
    /// The generated CA certificate clients must trust.
    pub ca: Option<PathBuf>,
    client: reqwest::blocking::Client,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    pub data_dir: PathBuf,
    /// The database the server uses (`None`: SQLite in the data directory).
    pub database: Option<server::db::Database>,
    /// Where its blobs are (`None`: the data directory), with the S3 settings.
    pub blobs: Option<(
        server::oci::blobs::BlobLocation,
        Option<server::config::S3File>,
    )>,
    /// A PostgreSQL database made for this server (`NOTARIUM_TEST_DATABASE=postgres`).
    pg: Option<Arc<crate::postgres::TestDb>>,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Options for [`TestServer::start_with`].
pub struct Options {
    pub data_dir: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub tls: bool,
    pub passphrase: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub configure: Box<dyn FnOnce(&mut ServerConfig) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_dir: None,
            addr: None,
            tls: true,
            passphrase: Some("test-passphrase".into()),
            clock: Arc::new(tuf::SystemClock),
            configure: Box::new(|_| {}),
        }
    }
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Self {
        Self::try_start_with(opts).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start_with(opts: Options) -> Result<Self, String> {
        Self::start_on(opts, None)
    }

    /// Start; with `NOTARIUM_TEST_DATABASE=postgres` (and no database chosen by the test),
    /// on a fresh PostgreSQL database (`pg`: the one of a server being restarted).
    fn start_on(opts: Options, pg: Option<Arc<crate::postgres::TestDb>>) -> Result<Self, String> {
        let (tmp, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let mut config = ServerConfig {
            addr: opts.addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
            data_dir: data_dir.clone(),
            insecure_http: !opts.tls,
            key_passphrase: opts.passphrase,
            dev: false,
            // A small KDF cost keeps tests fast; production uses 600,000.
            kdf_iterations: 1000,
            ..Default::default()
        };
        (opts.configure)(&mut config);
        let on_postgres = std::env::var("NOTARIUM_TEST_DATABASE").as_deref() == Ok("postgres");
        let pg = match pg {
            Some(pg) => Some(pg),
            None if on_postgres && config.database.is_none() => Some(if tmp.is_none() {
                // The test chose the data directory and may start another server on it
                // later: that one gets the same database.
                crate::postgres::TestDb::for_dir(&data_dir)
            } else {
                Arc::new(crate::postgres::TestDb::create())
            }),
            None => None,
        };
        if let Some(pg) = &pg {
            config.database =
                Some(server::db::Database::parse(&pg.url()).map_err(|e| e.to_string())?);
        }
        // `NOTARIUM_TEST_BLOBS=s3`: blobs in the test process's Garage, under a prefix of
        // this server's own (kept across a restart, which passes its location on).
        if std::env::var("NOTARIUM_TEST_BLOBS").as_deref() == Ok("s3") && config.blobs.is_none() {
            let g = crate::garage::Garage::shared();
            config.blobs = Some(server::oci::blobs::BlobLocation::parse(&g.fresh_url())?);
            config.s3 = Some(g.s3_settings());
        }
        let database = config.database.clone();
        let blobs = config.blobs.clone().map(|b| (b, config.s3.clone()));
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<Result<(SocketAddr, Option<PathBuf>), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let clock = opts.clock;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = match App::open(config.clone(), clock).await {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let tls = match app.tls() {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::bind(config.addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let addr = listener.local_addr().unwrap();
                let ca = tls.as_ref().and_then(|(f, _)| f.ca.clone());
                let _ = ready_tx.send(Ok((addr, ca)));
                server::serve(listener, app, tls.map(|t| t.1), async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let (addr, ca) = ready_rx.recv().map_err(|e| e.to_string())??;
        let scheme = if ca.is_some() { "https" } else { "http" };
        Ok(TestServer {
            addr,
            endpoint: Endpoint::new(format!("{scheme}://{addr}"), ca),
            data_dir,
            database,
            blobs,
            pg,
            _tmp: tmp,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stop and restart on the same data directory and port.
    pub fn restart(self) -> Self {
        self.restart_after(|_| {})
    }

    /// Stop, run `while_stopped` on the data directory, restart on it and the same port.
    pub fn restart_after(mut self, while_stopped: impl FnOnce(&Path)) -> Self {
        let tmp = self._tmp.take();
        let addr = self.addr;
        let data_dir = self.data_dir.clone();
        let (database, pg) = (self.database.clone(), self.pg.take());
        let blobs = self.blobs.clone();
        self.stop_now();
        while_stopped(&data_dir);
        let mut s = Self::start_on(
            Options {
                data_dir: Some(data_dir),
                addr: Some(addr),
                configure: Box::new(move |c| {
                    c.database = database;
                    if let Some((b, s3)) = blobs {
                        c.blobs = Some(b);
                        c.s3 = s3;
                    }
                }),
                ..Default::default()
            },
            pg,
        )
        .unwrap_or_else(|e| panic!("server did not restart: {e}"));
        s._tmp = tmp;
        s
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Install the CA where the docker CLI looks for it: `<config>/tls/<host:port>/ca.crt`.
    pub fn install_ca_for_docker(&self, docker_config: &Path) {
        let dir = docker_config.join("tls").join(self.addr.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca.as_ref().expect("TLS server"), dir.join("ca.crt")).unwrap();
    }

    /// A user of this trust server working in `base/name`: a docker configuration of its
    /// own, with this server's CA installed.
    pub fn user(&self, base: &Path, name: &str) -> crate::docker::Docker {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let d = crate::docker::Docker::new(&dir, &self.url);
        self.install_ca_for_docker(&d.config);
        d
    }
}

impl std::ops::Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Endpoint {
    pub fn new(url: String, ca: Option<PathBuf>) -> Self {
        Self::with_headers(url, ca, reqwest::header::HeaderMap::new())
    }

    /// This server, with every request carrying `Authorization: Bearer <token>`.
    pub fn authed(&self, token: &str) -> Endpoint {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        Self::with_headers(self.url.clone(), self.ca.clone(), h)
    }

    fn with_headers(url: String, ca: Option<PathBuf>, headers: reqwest::header::HeaderMap) -> Self {
        let mut b = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .default_headers(headers);
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        Endpoint {
            url,
            ca,
            client: b.build().unwrap(),
        }
    }

    /// A blocking HTTP client that trusts this server's CA (connections are pooled).
    pub fn client(&self) -> reqwest::blocking::Client {
        self.client.clone()
    }

    pub fn trust_url(&self, gun: &str, file: &str) -> String {
        format!("{}/v2/{gun}/_trust/tuf/{file}", self.url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A multipart body exactly as the Go client builds it, with raw filenames.
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "notariumtestboundary7f3a9c";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A response's status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error code of an error envelope.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The `Name` of a validation error detail (`ErrBadRoot`, …).
    pub fn detail_name(&self) -> String {
        self.json()["errors"][0]["detail"]["Name"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Endpoint {
    pub fn post_parts(&self, gun: &str, parts: &[(&str, &[u8])]) -> Answer {
        let (ct, body) = multipart(parts);
        self.post_raw(gun, &ct, body)
    }

    pub fn post_raw(&self, gun: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let r = self
            .client()
            .post(format!("{}/v2/{gun}/_trust/tuf/", self.url))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .unwrap();
        Answer {
            status: r.status().as_u16(),
            body: r.bytes().unwrap().to_vec(),
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        let r = self
            .client()
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap();
        Answer {
            status: r.status().as_u16(),
            body: r.bytes().unwrap().to_vec(),
        }
    }

    pub fn get_file(&self, gun: &str, file: &str) -> Answer {
        self.get(&format!("/v2/{gun}/_trust/tuf/{file}"))
    }

    /// A request with the path sent exactly as given (`curl --path-as-is`): HTTP libraries
    /// normalize `.` and `..` segments away, attackers do not.
    pub fn raw_path_request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("body");
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--path-as-is", "-X", method, "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}"]);
        if let Some(ca) = &self.ca {
            cmd.arg("--cacert").arg(ca);
        }
        if let Some((ct, data)) = body {
            let f = tmp.path().join("req");
            std::fs::write(&f, data).unwrap();
            cmd.args(["-H", &format!("Content-Type: {ct}"), "--data-binary"])
                .arg(format!("@{}", f.display()));
        }
        cmd.arg(format!("{}{path}", self.url));
        let o = cmd.output().expect("curl is needed by this test");
        assert!(
            o.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Answer {
            status: String::from_utf8_lossy(&o.stdout).trim().parse().unwrap(),
            body: std::fs::read(&out).unwrap_or_default(),
        }
    }

    /// The server's public key for a role (`GET <role>.key`).
    pub fn server_key(&self, gun: &str, role: &str) -> tuf::PublicKey {
        let a = self.get_file(gun, &format!("{role}.key"));
        assert_eq!(a.status, 200, "{}", a.text());
        serde_json::from_slice(&a.body).unwrap()
    }
}
