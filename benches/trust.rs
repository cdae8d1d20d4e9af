//! Client benchmark (not a test): `notarium trust inspect`, `trust verify` and `trust sign`
//! on repositories of 10,000 and 100,000 signed tags, with a cold cache (the repository's
//! local trust data removed before each run) and a warm one, wall time and peak resident
//! memory of the `notarium` process (GNU time's %M).
//!
//! Run: `cargo bench --bench trust` (needs `/usr/bin/time` and `docker-registry`).
//! `BENCH_TAGS=10000` picks sizes; `BENCH_RUNS=5` the runs per figure (median reported).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use notarium_testkit::docker::Docker;
use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::server::Options;
use notarium_testkit::TestServer;
use tuf::edit;
use tuf::sign::SigningKey;
use tuf::{RoleName, TargetName, Targets};

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

/// Wall seconds and peak RSS (KiB) of one `notarium` run.
fn measure(user: &Docker, args: &[&str]) -> (f64, u64) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let mut c = user.command_of(Path::new("/usr/bin/time"), &[]);
    c.args(["-f", "%M", "-o"])
        .arg(tmp.path())
        .arg(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let o = c.output().expect("/usr/bin/time (Debian package time)");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "notarium {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let kib = std::fs::read_to_string(tmp.path())
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    (secs, kib)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run(
    user: &Docker,
    cache: &Path,
    cold: bool,
    runs: usize,
    args: &dyn Fn(usize) -> Vec<String>,
) -> (f64, u64) {
    let mut times = Vec::new();
    let mut peak = 0;
    if !cold {
        let a = args(usize::MAX);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        measure(user, &a);
    }
    for i in 0..runs {
        if cold {
            let _ = std::fs::remove_dir_all(cache);
        }
        let a = args(i);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (s, k) = measure(user, &a);
        times.push(s);
        peak = peak.max(k);
    }
    (median(times), peak)
}

fn populate(server: &TestServer, user: &Docker, gun: &str, n: usize) {
    let file = user.key_file_for("alice");
    let key = keys::file::read(&std::fs::read(file).unwrap(), Some(&user.repo_passphrase))
        .unwrap()
        .key;
    let mut body = Targets::new(tuf::DateTime::from_unix_secs(0), 0);
    for i in 0..n {
        let digest = tuf::hash::sha256(format!("image {i}").as_bytes());
        edit::add_target(
            &mut body,
            TargetName::new(&format!("tag-{i:06}")).unwrap(),
            edit::docker_target(digest, 500 + i as u64 % 1000),
        )
        .unwrap();
    }
    let expires = {
        use tuf::Clock as _;
        tuf::SystemClock.now().plus_days(365)
    };
    let mut parts = Vec::new();
    for role in ["targets/releases", "targets/alice"] {
        let m = edit::resign(role, body.clone(), 0, expires, &[SigningKey::plain(&key)]).unwrap();
        parts.push((role.to_owned(), m.raw().to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = parts
        .iter()
        .map(|(r, b)| (r.as_str(), b.as_slice()))
        .collect();
    let a = server.endpoint.post_parts(gun, &refs);
    assert_eq!(a.status, 200, "{}", a.text());
    let _ = RoleName::targets();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_TAGS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let server = TestServer::start_with(Options {
        configure: Box::new(|c| c.max_upload_bytes = 64 << 20),
        ..Options::default()
    });
    let registry = Distribution::start();
    let tmp = tempfile::tempdir().unwrap();
    let user = Docker::new(tmp.path(), &server.url);
    server.install_ca_for_docker(&user.config);
    let notarium = |args: &[&str]| {
        let o = user.command_of(Path::new(BIN), args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    notarium(&["trust", "key", "generate", "alice", "--dir", "."]);
    println!("| tags | command | cache | median wall time | peak RSS |");
    println!("|---:|---|---|---:|---:|");
    for &n in &sizes {
        let name = format!("bench/t{n}");
        let repo = format!("{}/{name}", registry.addr);
        for i in 0..(runs + 1) * 2 {
            push_image(
                &registry.url(),
                &name,
                &format!("new-{i}"),
                &format!("{n} {i}"),
            );
        }
        notarium(&[
            "trust",
            "signer",
            "add",
            "--key",
            "alice.pub",
            "alice",
            &repo,
        ]);
        populate(&server, &user, &repo, n);
        let cache: PathBuf = user.config.join("trust/tuf").join(&repo);
        if std::env::var_os("BENCH_HOLD").is_some() {
            // For profiling by hand: the environment to run notarium in, then wait.
            println!(
                "DOCKER_CONFIG={} DOCKER_CONTENT_TRUST_SERVER={} DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE={} DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE={} {BIN} trust verify {repo}:tag-{:06}",
                user.config.display(),
                server.url,
                user.repo_passphrase,
                user.root_passphrase,
                n / 2
            );
            std::thread::sleep(std::time::Duration::from_secs(1800));
        }
        let mid = format!("{repo}:tag-{:06}", n / 2);
        let mut sign_i = 0usize;
        let mut rows = Vec::new();
        for cold in [true, false] {
            let label = if cold { "cold" } else { "warm" };
            rows.push((
                "inspect",
                label,
                run(&user, &cache, cold, runs, &|_| {
                    vec!["trust".into(), "inspect".into(), repo.clone()]
                }),
            ));
            rows.push((
                "verify",
                label,
                run(&user, &cache, cold, runs, &|_| {
                    vec!["trust".into(), "verify".into(), mid.clone()]
                }),
            ));
            let base = sign_i;
            rows.push((
                "sign (one more tag)",
                label,
                run(&user, &cache, cold, runs, &|i| {
                    let i = if i == usize::MAX { runs } else { i };
                    vec![
                        "trust".into(),
                        "sign".into(),
                        format!("{repo}:new-{}", base + i),
                    ]
                }),
            ));
            sign_i += runs + 1;
        }
        for (cmd, label, (secs, kib)) in rows {
            println!(
                "| {n} | `trust {cmd}` | {label} | {:.1} ms | {:.1} MB |",
                secs * 1000.0,
                kib as f64 / 1024.0
            );
        }
    }
}
