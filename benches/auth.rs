//! Access control benchmark (not a test): the release `notarium server` on loopback, TLS.
//!
//! * tokens issued per second by `GET /auth/token` with Basic credentials (remembered
//!   after the first bcrypt check), anonymously, and first logins (bcrypt, cost 10);
//! * HTTPS reads of `timestamp.json` per second with a Bearer token (builtin auth) next to
//!   the same reads from a server without auth, alternated in one run, with and without
//!   the access log, and the servers' memory.
//!
//! Run: `cargo bench --bench auth` (needs `wrk`). Prints a Markdown table for
//! BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

mod common;

use common::wrk;

use notarium_testkit::server::Endpoint;
use notarium_testkit::TestRepo;

const RULES: &str = r#"
[auth]
mode = "builtin"
htpasswd = "users"

[[auth.access]]
users = ["*"]
repositories = ["**"]
actions = ["*"]
"#;

const USERS: usize = 20;

fn start(auth: bool, log: &str) -> (common::Server, Endpoint) {
    let args: &[&str] = if auth {
        &["--config", "server.toml"]
    } else {
        &[]
    };
    let server = common::start_server_with(args, log, |dir| {
        if auth {
            std::fs::write(dir.join("server.toml"), RULES).unwrap();
            for i in 0..USERS {
                server::auth::htpasswd::set_password(
                    &dir.join("users"),
                    &format!("user{i}"),
                    &format!("password {i}"),
                    10,
                )
                .unwrap();
            }
        }
    });
    let ep = Endpoint::new(server.url.clone(), Some(server.ca.clone()));
    (server, ep)
}

fn token(ep: &Endpoint, scope: &str) -> String {
    let r = ep
        .client()
        .get(format!(
            "{}/auth/token?service=notarium&scope={scope}",
            ep.url
        ))
        .basic_auth("user0", Some("password 0"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn main() {
    if std::env::args().any(|a| a == "--test") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u32 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let gun = "registry.example.com/bench/reads";
    let scope = format!("repository:{gun}:*");
    println!("| measurement | result |\n| --- | --- |");

    // Token issuing.
    let (auth_srv, auth_ep) = start(true, "warn");
    let pid = auth_srv.child.id();
    println!(
        "| builtin-auth server RSS at start | {:.1} MB |",
        common::memory(pid).0
    );
    // First logins: every user once, 4 at a time; each is one bcrypt check (cost 10).
    let begin = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let ep = auth_ep.clone();
            std::thread::spawn(move || {
                for i in (t..USERS).step_by(4) {
                    let r = ep
                        .client()
                        .get(format!("{}/auth/token?service=notarium", ep.url))
                        .basic_auth(format!("user{i}"), Some(format!("password {i}")))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "| first logins (bcrypt cost 10), {USERS} users, 4 clients | {:.0} logins/s |",
        USERS as f64 / begin.elapsed().as_secs_f64()
    );
    use base64::Engine as _;
    let basic = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user0:password 0")
    );
    let token_url = format!(
        "{}/auth/token?service=notarium&scope=repository:{gun}:pull",
        auth_ep.url
    );
    wrk(&token_url, 2, Some(&basic));
    let rps = wrk(&token_url, secs, Some(&basic));
    println!("| tokens issued, Basic credentials (remembered), wrk -t1 -c16, {secs} s | {rps:.0} tokens/s |");
    let rps = wrk(&token_url, secs, None);
    println!("| tokens issued, anonymous, wrk -t1 -c16, {secs} s | {rps:.0} tokens/s |");
    println!(
        "| builtin-auth server RSS after issuing | {:.1} MB |",
        common::memory(pid).0
    );

    // Reads: the same repository on a server without auth and on the auth server.
    let admin = auth_ep.authed(&token(&auth_ep, &scope));
    TestRepo::new(&admin, gun).publish_init(&admin);
    let (open_srv, open_ep) = start(false, "warn");
    TestRepo::new(&open_ep, gun).publish_init(&open_ep);
    let path = format!("/v2/{gun}/_trust/tuf/timestamp.json");
    let bearer = format!("Authorization: Bearer {}", token(&auth_ep, &scope));
    let open_url = format!("{}{path}", open_ep.url);
    let auth_url = format!("{}{path}", auth_ep.url);
    wrk(&open_url, 2, None);
    wrk(&auth_url, 2, Some(&bearer));
    let mem = |pid| common::memory(pid).0;
    let (open_before, auth_before) = (mem(open_srv.child.id()), mem(pid));
    let mut open_runs = Vec::new();
    let mut auth_runs = Vec::new();
    for _ in 0..2 {
        open_runs.push(wrk(&open_url, secs, None));
        auth_runs.push(wrk(&auth_url, secs, Some(&bearer)));
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "| reads of timestamp.json, no auth, wrk -t1 -c16, 2 × {secs} s | {:.0} req/s ({}) |",
        avg(&open_runs),
        open_runs
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| reads of timestamp.json, Bearer token, same run, alternated | {:.0} req/s ({}); ratio {:.3} |",
        avg(&auth_runs),
        auth_runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        avg(&auth_runs) / avg(&open_runs)
    );
    println!(
        "| RSS before / after the reads: no auth {open_before:.1} / {:.1} MB; auth {auth_before:.1} / {:.1} MB |  |",
        mem(open_srv.child.id()),
        mem(pid)
    );
    drop(open_srv);
    drop(auth_srv);

    // The access log (one line per request, on by default at info) costs what it costs:
    // the same comparison with it on, written to a file.
    let (open_srv, open_ep) = start(false, "info");
    TestRepo::new(&open_ep, gun).publish_init(&open_ep);
    let (auth_srv, auth_ep) = start(true, "info");
    let admin = auth_ep.authed(&token(&auth_ep, &scope));
    TestRepo::new(&admin, gun).publish_init(&admin);
    let bearer = format!("Authorization: Bearer {}", token(&auth_ep, &scope));
    let open_url = format!("{}{path}", open_ep.url);
    let auth_url = format!("{}{path}", auth_ep.url);
    wrk(&open_url, 2, None);
    wrk(&auth_url, 2, Some(&bearer));
    let o = wrk(&open_url, secs, None);
    let a = wrk(&auth_url, secs, Some(&bearer));
    println!(
        "| with the access log on (info, to a file): no auth {o:.0} req/s, Bearer {a:.0} req/s; ratio {:.3} |  |",
        a / o
    );
    println!(
        "| RSS after: no auth {:.1} MB, auth {:.1} MB |  |",
        mem(open_srv.child.id()),
        mem(auth_srv.child.id())
    );
    std::thread::sleep(Duration::from_millis(100));
}
