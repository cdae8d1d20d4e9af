//! A real Docker Engine for tests: Debian's `dockerd` (20.10) on a private socket and data
//! root, as root, with the vfs storage driver and no networking of its own; stopped (its
//! process, then its containerd) when dropped. Images get into it by `docker load` or from
//! notarium's own registry (127.0.0.0/8 registries are insecure by default: no
//! certificate setup in the engine).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Engine {
    /// `unix://<dir>/d.sock`, for `DOCKER_HOST`.
    pub host: String,
    pub dir: PathBuf,
    child: Child,
    _tmp: tempfile::TempDir,
}

impl Engine {
    pub fn start() -> Engine {
        let tmp = tempfile::Builder::new().prefix("engine").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let host = format!("unix://{}/d.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("d.pid"))
            .args(["--storage-driver=vfs", "--iptables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian package docker.io) runs; the tests run as root");
        let mut e = Engine {
            host,
            dir,
            child,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .env("DOCKER_HOST", &e.host)
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return e;
            }
            if let Ok(Some(status)) = e.child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", e.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not start:\n{}",
                e.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> &Path {
        Path::new(self.host.trim_start_matches("unix://"))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
