//! `notarium trust status`: every role's expiry, threshold and keys, root certificates,
//! which keys the server holds, and an exit code CI can gate on (0 ok, 1 warning, 2
//! expired or unreadable). The expired case runs the real binary under Debian's
//! `faketime`, a month ahead: the server (on the real clock) signed a timestamp for 14
//! days, which a client a month ahead must refuse.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::docker::{Docker, Run};
use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

fn notarium(d: &Docker, args: &[&str]) -> Run {
    d.run_program(Path::new(BIN), args, "")
}

fn ok(d: &Docker, args: &[&str]) -> Run {
    let r = notarium(d, args);
    assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    r
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn role<'a>(repo: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    repo["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == name)
        .unwrap_or_else(|| panic!("no {name} in {repo}"))
}

#[test]
fn status_reports_expiry_and_gates_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let alice = server.user(tmp.path(), "alice");
    let repo = format!("{}/status/app", registry.addr);
    let image = push_image(&registry.url(), "status/app", "v1", "v1");
    alice.sign_as(
        Path::new(env!("CARGO_BIN_EXE_notarium")),
        "alice",
        &repo,
        "v1",
    );

    // All well: every role, its threshold and keys, the root certificate, and the keys
    // the server holds.
    let r = ok(&alice, &["trust", "status", "--format", "json", &repo]);
    let v = json(&r);
    assert_eq!(v["status"], "ok");
    let st = &v["repositories"][0];
    assert_eq!(st["name"], repo.as_str());
    for name in ["root", "targets", "snapshot", "timestamp", "targets/alice"] {
        let ro = role(st, name);
        assert_eq!(ro["status"], "ok", "{name}");
        assert_eq!(ro["threshold"], 1, "{name}");
        assert_eq!(ro["keys"].as_array().unwrap().len(), 1, "{name}");
    }
    assert_eq!(role(st, "timestamp")["server_holds_key"], true);
    assert_eq!(role(st, "snapshot")["server_holds_key"], true);
    assert!(role(st, "timestamp")["days_left"].as_i64().unwrap() <= 14);
    let cert_days = role(st, "root")["keys"][0]["certificate_days_left"]
        .as_i64()
        .unwrap();
    assert!((3640..=3660).contains(&cert_days), "{cert_days}");
    let targets_days = role(st, "targets")["days_left"].as_i64().unwrap();
    assert!((1090..=1096).contains(&targets_days), "{targets_days}");
    // The same in text, and for every cached repository when none is named.
    let text = ok(&alice, &["trust", "status"]).stdout;
    assert!(text.starts_with(&format!("{repo}: ok\n")), "{text}");
    for name in ["root", "targets", "snapshot", "timestamp", "targets/alice"] {
        assert!(text.contains(&format!("\n  {name} ")), "{name} in {text}");
    }
    assert!(text.contains("certificate until"), "{text}");

    // Inside the warning window: exit code 1, and the roles named.
    let r = notarium(&alice, &["trust", "status", "--warn-days", "2000", &repo]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("{repo}: WARNING")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("! targets expires in"), "{}", r.stdout);

    // A month ahead (faketime moves this binary's clock, not the server's): the
    // timestamp the server signed for 14 days has expired: exit code 2.
    let faked = alice.run_program(
        Path::new("faketime"),
        &[
            "-f", "+30d", BIN, "trust", "status", "--format", "json", &repo,
        ],
        "",
    );
    assert_eq!(faked.code, 2, "{}{}", faked.stdout, faked.stderr);
    let v = json(&faked);
    assert_eq!(v["status"], "expired");
    let problem = v["repositories"][0]["problems"][0].as_str().unwrap();
    assert!(problem.contains("timestamp"), "{problem}");
    assert!(problem.contains("expired"), "{problem}");

    // `trust renew`: everything alice holds keys for is signed again with fresh expiries
    // (root: a new certificate for the same key); the tag still verifies.
    let before = json(&ok(&alice, &["trust", "status", "--format", "json", &repo]));
    let r = ok(&alice, &["trust", "renew", &repo]);
    for line in [
        "Renewed root",
        "Renewed targets of",
        "Renewed targets/alice",
        "Renewed targets/releases",
    ] {
        assert!(r.stdout.contains(line), "{line}: {}", r.stdout);
    }
    let after = json(&ok(&alice, &["trust", "status", "--format", "json", &repo]));
    let (b, a) = (&before["repositories"][0], &after["repositories"][0]);
    for name in [
        "root",
        "targets",
        "targets/alice",
        "targets/releases",
        "snapshot",
        "timestamp",
    ] {
        let (rb, ra) = (role(b, name), role(a, name));
        assert!(
            ra["version"].as_u64() > rb["version"].as_u64(),
            "{name}: {rb} -> {ra}"
        );
        assert!(ra["expires"].as_str() >= rb["expires"].as_str(), "{name}");
    }
    assert_ne!(
        role(a, "root")["keys"][0]["id"],
        role(b, "root")["keys"][0]["id"],
        "a new root certificate"
    );
    let reader = server.user(tmp.path(), "reader");
    assert_eq!(
        ok(&reader, &["trust", "verify", &format!("{repo}:v1")])
            .stdout
            .trim(),
        image.digest
    );

    // A repository without trust data cannot be read: exit code 2 too.
    let r = notarium(
        &alice,
        &["trust", "status", &format!("{}/status/none", registry.addr)],
    );
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("UNREADABLE"), "{}", r.stdout);
    assert!(
        r.stdout.contains("does not have trust data"),
        "{}",
        r.stdout
    );
}
