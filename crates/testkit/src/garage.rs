//! A real S3-compatible object store for tests: Garage, one single-node instance per test
//! process, started on free loopback ports the first time a test asks for it, killed when
//! the process exits (`setpriv --pdeathsig`). Each caller gets its own key prefix in one
//! bucket, so tests do not see each other's objects.
//!
//! `garage` must be on the PATH or in `~/.cargo/bin` (`scripts/test` installs it with
//! `cargo install garage --locked` when missing); a test that cannot start it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BUCKET: &str = "notarium-test";
pub const REGION: &str = "garage";

pub struct Garage {
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    /// The `garage server` process (for CPU figures in benchmarks).
    pub pid: u32,
    dir: PathBuf,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("NOTARIUM_TEST_GARAGE") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("garage");
        if p.is_file() {
            return p;
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cargo/bin/garage");
    if p.is_file() {
        return p;
    }
    panic!("garage is needed by this test (cargo install garage --locked; scripts/test does it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Remove the directories of Garage instances whose test process is gone.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("garage-")
            .and_then(|p| p.parse::<u32>().ok())
        {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Garage {
    /// The instance of this test process (started on first use).
    pub fn shared() -> &'static Garage {
        static G: OnceLock<Garage> = OnceLock::new();
        G.get_or_init(|| {
            let mut last = String::new();
            for _ in 0..5 {
                match Garage::start() {
                    Ok(g) => return g,
                    Err(e) => last = e,
                }
            }
            panic!("garage did not start: {last}")
        })
    }

    fn garage(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(binary())
            .arg("-c")
            .arg(self.dir.join("garage.toml"))
            .args(args)
            .output()
            .map_err(|e| format!("garage {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "garage {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start() -> Result<Garage, String> {
        let base = std::env::temp_dir();
        sweep(&base);
        let dir = base.join(format!("garage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?,
            &mut secret,
        )
        .map_err(|e| e.to_string())?;
        let config = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            d = dir.display(),
            secret = hex::encode(secret),
        );
        std::fs::write(dir.join("garage.toml"), config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("garage.log")).map_err(|e| e.to_string())?;
        let conf = dir.join("garage.toml");
        let bin = binary();
        // The server is the child of a thread that lives as long as the process, so
        // `pdeathsig` (tied to the parent thread) fires only when the process goes.
        let (tx, rx) = std::sync::mpsc::channel::<Result<u32, String>>();
        std::thread::spawn(move || {
            let child = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--"])
                .arg(&bin)
                .arg("-c")
                .arg(&conf)
                .arg("server")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(
                    log.try_clone()
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .stderr(Stdio::from(log))
                .spawn();
            match child {
                Ok(mut c) => {
                    // setpriv execs garage: the same process.
                    let _ = tx.send(Ok(c.id()));
                    let _ = c.wait();
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("setpriv (util-linux) runs garage: {e}")));
                }
            }
        });
        let pid = rx.recv().map_err(|e| e.to_string())??;
        let mut g = Garage {
            pid,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            match g.garage(&["node", "id", "-q"]) {
                Ok(out) => break out.trim().split('@').next().unwrap_or("").to_owned(),
                Err(e) if Instant::now() > deadline => return Err(g.with_log(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        g.garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &id])?;
        g.garage(&["layout", "apply", "--version", "1"])?;
        let key = g.garage(&["key", "create", "notarium-test"])?;
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .ok_or_else(|| format!("no {name} in {key}"))
        };
        g.key_id = field("Key ID:")?;
        g.secret = field("Secret key:")?;
        // The bucket can be refused for a moment while the layout settles.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match g.garage(&["bucket", "create", BUCKET]) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(g.with_log(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        g.garage(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "notarium-test",
        ])?;
        Ok(g)
    }

    fn with_log(&self, e: String) -> String {
        let log = std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default();
        format!("{e}\ngarage.log:\n{log}")
    }

    /// A key prefix no other caller of this process uses: `s3://BUCKET/PREFIX`.
    pub fn fresh_url(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "s3://{BUCKET}/t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// `[storage.s3]` for this instance (payloads signed, the default over plain HTTP).
    pub fn s3_settings(&self) -> server::config::S3File {
        server::config::S3File {
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.into()),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            unsigned_payload: None,
            max_copy_bytes: None,
        }
    }

    /// [`Garage::s3_settings`] with unsigned payloads (the default over HTTPS).
    pub fn s3_settings_unsigned(&self) -> server::config::S3File {
        server::config::S3File {
            unsigned_payload: Some(true),
            ..self.s3_settings()
        }
    }

    /// The same as `AWS_*` variables (for server binaries).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The number of objects under an `s3://` URL's prefix (what a test left behind).
    pub fn count_objects(&self, url: &str) -> usize {
        let prefix = url
            .strip_prefix(&format!("s3://{BUCKET}/"))
            .unwrap_or_default()
            .to_owned();
        let (endpoint, key_id, secret) = (
            self.endpoint.clone(),
            self.key_id.clone(),
            self.secret.clone(),
        );
        // Its own thread: the caller may be inside a runtime already.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                use futures_util::StreamExt as _;
                use object_store::ObjectStore as _;
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(&endpoint)
                    .with_allow_http(true)
                    .with_region(REGION)
                    .with_bucket_name(BUCKET)
                    .with_access_key_id(&key_id)
                    .with_secret_access_key(&secret)
                    .build()
                    .expect("an S3 client");
                let path = object_store::path::Path::from(prefix);
                store.list(Some(&path)).count().await
            })
        })
        .join()
        .expect("listing the bucket")
    }
}
