//! Trust server load benchmark (not a test): starts the release `notarium server` binary on
//! loopback and measures
//!
//! * HTTPS reads of `timestamp.json` per second with wrk (1 thread, 16 connections), and
//!   server memory before and after;
//! * signed updates per second: W writers each uploading pre-signed delegation updates
//!   (durable: SQLite WAL, synchronous=FULL), to one repository and to many;
//! * memory as repositories grow.
//!
//! Run: `cargo bench --bench server` (needs `wrk`). Prints a Markdown table for
//! BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;
use tuf::edit;
use tuf::metadata::Metadata;
use tuf::sign::SigningKey;
use tuf::{RoleName, TargetName, Targets};

struct Server {
    server: common::Server,
    endpoint: Endpoint,
}

fn start() -> Server {
    let server = common::start_server();
    let endpoint = Endpoint::new(server.url.clone(), Some(server.ca.clone()));
    Server { server, endpoint }
}

fn rss_mb(pid: u32) -> f64 {
    common::memory(pid).0
}

fn wrk(url: &str, secs: u32) -> f64 {
    common::wrk(url, secs, None)
}

/// A published repository with one delegation per writer.
fn repo(ep: &Endpoint, gun: &str, writers: usize) -> TestRepo {
    let mut r = TestRepo::new(ep, gun);
    r.publish_init(ep);
    let mut t = Vec::new();
    for w in 0..writers {
        t = r.add_delegation(&format!("w{w}"));
    }
    assert_eq!(ep.post_parts(gun, &[("targets", &t)]).status, 200);
    r
}

/// Pre-signed uploads: `per_writer` successive versions of each writer's delegation.
fn uploads(r: &mut TestRepo, writers: usize, per_writer: u64) -> Vec<Vec<Vec<u8>>> {
    (0..writers)
        .map(|w| {
            let role = format!("targets/w{w}");
            let key = r
                .delegation_keys
                .remove(&RoleName::new(&role).unwrap())
                .unwrap();
            (1..=per_writer)
                .map(|v| {
                    let mut t = Targets::new(r.now.plus_days(30), v);
                    edit::add_target(
                        &mut t,
                        TargetName::new(&format!("v{v}")).unwrap(),
                        edit::docker_target([v as u8; 32], 528),
                    )
                    .unwrap();
                    Metadata::sign(&role, t, &[SigningKey::plain(&key)])
                        .unwrap()
                        .raw()
                        .to_vec()
                })
                .collect()
        })
        .collect()
}

/// Send every writer's uploads in order, writers in parallel; updates per second.
/// Run each job (a writer's uploads) in its own thread; a writer's uploads go to the
/// servers in turn. Updates per second, all writers together.
fn run_writers(eps: &[Endpoint], jobs: Vec<(String, usize, Vec<Vec<u8>>)>) -> f64 {
    drive(eps, jobs, |w| format!("targets/w{w}"), true)
}

/// `alternate`: a writer's uploads go to the servers in turn; else writer `w` keeps to
/// server `w % servers` (as behind a load balancer with affinity).
fn drive(
    eps: &[Endpoint],
    jobs: Vec<(String, usize, Vec<Vec<u8>>)>,
    role_of: fn(usize) -> String,
    alternate: bool,
) -> f64 {
    let total: usize = jobs.iter().map(|j| j.2.len()).sum();
    let start = Instant::now();
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(gun, w, ups)| {
            let eps = eps.to_vec();
            std::thread::spawn(move || {
                let role = role_of(w);
                for (i, u) in ups.into_iter().enumerate() {
                    let ep = &eps[if alternate { i + w } else { w } % eps.len()];
                    let a = ep.post_parts(&gun, &[(&role, &u)]);
                    assert_eq!(a.status, 200, "{}", a.text());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Jobs for `writers` writers of `per_writer` updates on a new repository `gun`.
fn writer_jobs(
    ep: &Endpoint,
    gun: &str,
    writers: usize,
    per_writer: u64,
) -> Vec<(String, usize, Vec<Vec<u8>>)> {
    let mut r = repo(ep, gun, writers);
    uploads(&mut r, writers, per_writer)
        .into_iter()
        .enumerate()
        .map(|(w, u)| (gun.to_owned(), w, u))
        .collect()
}

/// `BENCH_ONLY=postgres`: signed updates and timestamp reads on PostgreSQL with one and
/// with two servers (and the embedded SQLite default in the same run, for scale).
fn postgres_one_and_two() {
    let db = notarium_testkit::postgres::TestDb::create();
    let url = db.url();
    let start_with = |args: &[&str]| {
        let server = common::start_server_with(args, "warn", |_| {});
        let endpoint = Endpoint::new(server.url.clone(), Some(server.ca.clone()));
        Server { server, endpoint }
    };
    let sqlite = start_with(&[]);
    let a = start_with(&["--database", &url]);
    let b = start_with(&["--database", &url]);
    println!("| backend, servers | signed updates/s, 4 writers × 250, one repository | 8 writers × 125, one repository each | reads of timestamp.json, wrk -t1 -c16 per server, 10 s |\n| --- | --- | --- | --- |");
    let read = |eps: &[&Endpoint], gun: &str| -> f64 {
        let urls: Vec<String> = eps
            .iter()
            .map(|e| format!("{}/v2/{gun}/_trust/tuf/timestamp.json", e.url))
            .collect();
        let hs: Vec<_> = urls
            .into_iter()
            .map(|u| std::thread::spawn(move || wrk(&u, 10)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    };
    let many = |ep: &Endpoint, prefix: &str| -> Vec<(String, usize, Vec<Vec<u8>>)> {
        (0..8)
            .flat_map(|i| {
                let mut jobs = writer_jobs(
                    ep,
                    &format!("registry.example.com/bench/{prefix}{i}"),
                    1,
                    125,
                );
                for j in &mut jobs {
                    j.1 = 0;
                }
                jobs
            })
            .collect()
    };
    let rows: [(&str, Vec<&Endpoint>, bool); 4] = [
        ("SQLite (default), 1 server", vec![&sqlite.endpoint], true),
        ("PostgreSQL, 1 server", vec![&a.endpoint], true),
        (
            "PostgreSQL, 2 servers (each writer alternates)",
            vec![&a.endpoint, &b.endpoint],
            true,
        ),
        (
            "PostgreSQL, 2 servers (each writer keeps to one)",
            vec![&a.endpoint, &b.endpoint],
            false,
        ),
    ];
    for (n, (name, eps, alternate)) in rows.iter().enumerate() {
        let owned: Vec<Endpoint> = eps.iter().map(|e| (*e).clone()).collect();
        let one = drive(
            &owned,
            writer_jobs(
                eps[0],
                &format!("registry.example.com/bench/pg-one{n}"),
                4,
                250,
            ),
            |w| format!("targets/w{w}"),
            *alternate,
        );
        let jobs = many(eps[0], &format!("pg-many{n}-"));
        // Each writer of its own repository: writer index spreads them over the servers.
        let jobs: Vec<_> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, (g, _, u))| (g, i, u))
            .collect();
        let many_s = run_writers_roles(&owned, jobs, *alternate);
        let reads = read(eps, &format!("registry.example.com/bench/pg-one{n}"));
        println!("| {name} | {one:.0}/s | {many_s:.0}/s | {reads:.0} req/s |");
    }
    drop((sqlite, a, b));
    drop(db);
}

/// As [`run_writers`], for jobs whose writer is always `targets/w0` of its own repository
/// (the index only chooses the first server).
fn run_writers_roles(
    eps: &[Endpoint],
    jobs: Vec<(String, usize, Vec<Vec<u8>>)>,
    alternate: bool,
) -> f64 {
    drive(eps, jobs, |_| "targets/w0".into(), alternate)
}

fn main() {
    // `cargo test --benches` runs benches once in test mode; do nothing then.
    if std::env::args().any(|a| a == "--test") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "limits" {
        return limits_on_and_off();
    }
    if only == "postgres" {
        return postgres_one_and_two();
    }
    let s = start();
    let pid = s.server.child.id();
    if only == "updates" {
        // For profiling: print the PID, wait for a profiler to attach, run the update phases.
        eprintln!("server pid {pid}");
        std::thread::sleep(Duration::from_secs(3));
        let gun = "registry.example.com/bench/one";
        let mut r = repo(&s.endpoint, gun, 4);
        let ups = uploads(&mut r, 4, 250);
        let jobs = ups
            .into_iter()
            .enumerate()
            .map(|(w, u)| (gun.to_owned(), w, u))
            .collect();
        println!(
            "one repo: {:.0} updates/s",
            run_writers(std::slice::from_ref(&s.endpoint), jobs)
        );
        return;
    }
    let ep = &s.endpoint;
    println!("| measurement | result |\n| --- | --- |");
    println!("| server RSS at start | {:.1} MB |", rss_mb(pid));

    // Reads.
    let gun = "registry.example.com/bench/reads";
    repo(ep, gun, 1);
    let url = format!("{}/v2/{gun}/_trust/tuf/timestamp.json", ep.url);
    wrk(&url, 2);
    let before = rss_mb(pid);
    let rps = wrk(&url, 15);
    println!("| HTTPS reads of timestamp.json, wrk -t1 -c16, 15 s | {rps:.0} req/s |");
    println!(
        "| server RSS before / after the read run | {before:.1} MB / {:.1} MB |",
        rss_mb(pid)
    );

    // Updates, 4 writers, one repository.
    let gun = "registry.example.com/bench/one";
    let mut r = repo(ep, gun, 4);
    let ups = uploads(&mut r, 4, 250);
    let jobs = ups
        .into_iter()
        .enumerate()
        .map(|(w, u)| (gun.to_owned(), w, u))
        .collect();
    let before = rss_mb(pid);
    let ups_s = run_writers(std::slice::from_ref(ep), jobs);
    println!("| signed updates, 4 writers, 1 repository (1,000 updates, durable) | {ups_s:.0} updates/s |");
    println!(
        "| server RSS before / after | {before:.1} MB / {:.1} MB |",
        rss_mb(pid)
    );

    // Updates, 16 writers, 16 repositories.
    let mut jobs = Vec::new();
    for i in 0..16 {
        let gun = format!("registry.example.com/bench/many{i}");
        let mut r = repo(ep, &gun, 1);
        let mut u = uploads(&mut r, 1, 100);
        jobs.push((gun, 0, u.remove(0)));
    }
    let ups_s = run_writers(std::slice::from_ref(ep), jobs);
    println!("| signed updates, 16 writers, 16 repositories (1,600 updates, durable) | {ups_s:.0} updates/s |");

    // Growth: many repositories, in rounds; memory must level off (caches are bounded).
    let n = 2000;
    for round in 1..=5 {
        let before = rss_mb(pid);
        let start = Instant::now();
        let ep2 = Arc::new(ep.clone());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let ep = ep2.clone();
                std::thread::spawn(move || {
                    for i in (t..n).step_by(4) {
                        let gun = format!("registry.example.com/grow{round}/r{i}");
                        let r = TestRepo::new(&ep, &gun);
                        r.publish_init(&ep);
                        assert_eq!(ep.get_file(&gun, "timestamp.json").status, 200);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "| round {round}: {n} new repositories (keys + first publish + read, 4 clients) | {:.0} repos/s; RSS {before:.1} → {:.1} MB |",
            n as f64 / secs,
            rss_mb(pid)
        );
    }
    let rps = wrk(&url, 10);
    println!("| reads of timestamp.json after growth, wrk -t1 -c16, 10 s | {rps:.0} req/s |");
    println!("| server RSS at end | {:.1} MB |", rss_mb(pid));
}

/// `[limits]` with every bound at its maximum: the limits as good as off.
const LIMITS_OFF: &str = "[limits]\ntls_handshake_timeout_secs = 86400\nheader_timeout_secs = 86400\nidle_timeout_secs = 86400\nmax_connections = 1000000\nmax_inflight_bytes = 1099511627776\nmax_metadata_bytes = 1099511627776\nmax_blob_bytes = 1099511627776\nmax_upload_sessions = 100000000\nmax_upload_sessions_per_repository = 100000000\nupload_expiry_secs = 31536000\nunused_key_expiry_secs = 31536000\n";

/// `BENCH_ONLY=limits`: reads and updates with the limits on (defaults) and as good as
/// off, two servers side by side, alternated in one run.
fn limits_on_and_off() {
    let start_with = |limits: Option<&'static str>| {
        let args: &[&str] = if limits.is_some() {
            &["--config", "server.toml"]
        } else {
            &[]
        };
        let server = common::start_server_with(args, "warn", move |dir| {
            if let Some(l) = limits {
                std::fs::write(dir.join("server.toml"), l).unwrap();
            }
        });
        let endpoint = Endpoint::new(server.url.clone(), Some(server.ca.clone()));
        Server { server, endpoint }
    };
    let servers = [
        ("limits on (defaults)", start_with(None)),
        (
            "limits off (every bound at its maximum)",
            start_with(Some(LIMITS_OFF)),
        ),
    ];
    let gun = "registry.example.com/bench/reads";
    for (_, s) in &servers {
        repo(&s.endpoint, gun, 1);
        wrk(
            &format!("{}/v2/{gun}/_trust/tuf/timestamp.json", s.endpoint.url),
            2,
        );
    }
    let mut reads = [Vec::new(), Vec::new()];
    let mut updates = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, (_, s)) in servers.iter().enumerate() {
            let url = format!("{}/v2/{gun}/_trust/tuf/timestamp.json", s.endpoint.url);
            reads[i].push(wrk(&url, 10));
            let g = format!("registry.example.com/bench/limits{round}");
            let mut r = repo(&s.endpoint, &g, 4);
            let ups = uploads(&mut r, 4, 250);
            let jobs = ups
                .into_iter()
                .enumerate()
                .map(|(w, u)| (g.clone(), w, u))
                .collect();
            updates[i].push(run_writers(std::slice::from_ref(&s.endpoint), jobs));
        }
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| server | reads of timestamp.json, wrk -t1 -c16, 3 × 10 s | signed updates/s, 4 writers, 3 × 1,000 |\n| --- | --- | --- |");
    for (i, (name, _)) in servers.iter().enumerate() {
        println!(
            "| {name} | {:.0} req/s ({}) | {:.0}/s ({}) |",
            avg(&reads[i]),
            list(&reads[i]),
            avg(&updates[i]),
            list(&updates[i])
        );
    }
    println!(
        "| ratio on / off | {:.3} | {:.3} |",
        avg(&reads[0]) / avg(&reads[1]),
        avg(&updates[0]) / avg(&updates[1])
    );
}
