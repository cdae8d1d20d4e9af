//! What the benchmarks that run the `notarium` binary share: a release server on port 0
//! with its own data directory, and a process's memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A `notarium server` process, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The CA certificate the server generated.
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the release server in a new data directory, over TLS, and wait for its ready
/// line: "notarium server ready at https://127.0.0.1:PORT (CA certificate: PATH)".
#[allow(dead_code)]
pub fn start_server() -> Server {
    start_server_with(&[], "warn", |_| {})
}

/// [`start_server`] with more arguments, a log level (`NOTARIUM_LOG`; the log goes to
/// `<dir>/server.log`), and `setup` run on the temporary directory first (a config file,
/// users).
#[allow(dead_code)]
pub fn start_server_with(args: &[&str], log: &str, setup: impl FnOnce(&std::path::Path)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let log_file = std::fs::File::create(dir.path().join("server.log")).unwrap();
    // `BENCH_NOTARIUM`: another build to measure (e.g. an earlier commit's), same flags.
    let bin =
        std::env::var("BENCH_NOTARIUM").unwrap_or_else(|_| env!("CARGO_BIN_EXE_notarium").into());
    let mut child = Command::new(bin)
        .args(["server", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(args)
        .current_dir(dir.path())
        .env("NOTARIUM_KEY_PASSPHRASE", "bench-passphrase")
        .env("NOTARIUM_LOG", log)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    let ca = dir.path().join(
        line.split("CA certificate: ")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(')'),
    );
    Server {
        child,
        url,
        ca,
        _dir: dir,
    }
}

/// (VmRSS, VmHWM) of a process, in MiB.
pub fn memory(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Requests per second of `wrk -t1 -c16 -d<secs>s` on `url` (with one extra header, if
/// given); any non-2xx answer fails the benchmark.
#[allow(dead_code)]
pub fn wrk(url: &str, secs: u32, header: Option<&str>) -> f64 {
    let mut c = Command::new("wrk");
    c.args(["-t1", "-c16", &format!("-d{secs}s")]);
    if let Some(h) = header {
        c.args(["-H", h]);
    }
    let out = c
        .arg(url)
        .output()
        .expect("wrk is needed: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// CPU seconds (user + system) process `pid` has used so far.
#[allow(dead_code)]
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}
