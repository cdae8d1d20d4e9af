//! Admission benchmark (not a test): the release `notarium server` with `[admission]`
//! answering `POST /verify` for 10 images per request (one repository, ten signed tags).
//!
//! * from memory: wrk (1 thread, 16 connections, 10 s) requests per second and the p50
//!   and p99 latency it reports;
//! * a first, uncached verification: one request naming 10 tags of a repository never
//!   seen (the TUF client fetches and verifies root, timestamp, snapshot and targets from
//!   the trust server over HTTPS), the median and worst of 9 repositories.
//!
//! Run: `cargo bench --bench admission` (needs `wrk`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

mod common;

use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;
use tuf::{edit, TargetName};

fn main() {
    let trust_dir = tempfile::tempdir().unwrap();
    let td = trust_dir.path().to_path_buf();
    let server = common::start_server_with(&["--config", "admission.toml"], "warn", |dir| {
        std::fs::write(
            dir.join("admission.toml"),
            format!("[admission]\ndocker_config = \"{}\"\n", td.display()),
        )
        .unwrap();
    });
    let ep = Endpoint::new(server.url.clone(), Some(server.ca.clone()));
    let host = server.url.trim_start_matches("https://").to_owned();
    // The admission's docker configuration trusts the server's CA.
    let tls = trust_dir.path().join("tls").join(&host);
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&server.ca, tls.join("ca.crt")).unwrap();

    let repos: Vec<String> = (0..10).map(|n| format!("{host}/bench/app{n}")).collect();
    for gun in &repos {
        let mut r = TestRepo::new(&ep, gun);
        r.publish_init(&ep);
        let t = r.edit_targets(|t| {
            for i in 0..10u8 {
                edit::add_target(
                    t,
                    TargetName::new(&format!("v{i}")).unwrap(),
                    edit::docker_target([i; 32], 528),
                )
                .unwrap();
            }
        });
        assert_eq!(ep.post_parts(gun, &[("targets", &t)]).status, 200);
    }
    let body = |gun: &str| {
        let images: Vec<String> = (0..10).map(|i| format!("{gun}:v{i}")).collect();
        serde_json::json!({ "images": images }).to_string()
    };
    let verify = |gun: &str| {
        let r = ep
            .client()
            .post(format!("{}/verify", server.url))
            .header("content-type", "application/json")
            .body(body(gun))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().unwrap();
        let all = v["results"].as_array().unwrap();
        assert!(all.iter().all(|x| x["allowed"] == true), "{v}");
    };

    // First verifications: repositories 1..=9, each never seen before.
    let mut firsts: Vec<f64> = repos[1..]
        .iter()
        .map(|gun| {
            let t = Instant::now();
            verify(gun);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    firsts.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // From memory: repository 0, fetched once, then wrk.
    verify(&repos[0]);
    let script = trust_dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            body(&repos[0])
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args(["-t1", "-c16", "-d10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("{}/verify", server.url))
        .output()
        .expect("wrk is needed: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    let rss = common::memory(server.child.id()).0;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| /verify, 10 images, from memory: requests/s | {} |",
        field("Requests/sec:")
    );
    println!(
        "| … images/s | {:.0} |",
        field("Requests/sec:").parse::<f64>().unwrap_or(0.0) * 10.0
    );
    println!("| … latency p50 | {} |", field("50%"));
    println!("| … latency p99 | {} |", field("99%"));
    println!(
        "| first verification (10 images, uncached), median of 9 | {:.1} ms |",
        firsts[firsts.len() / 2]
    );
    println!("| … slowest of 9 | {:.1} ms |", firsts[firsts.len() - 1]);
    println!("| server RSS after | {rss:.1} MiB |");
}
