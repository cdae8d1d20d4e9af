//! `notarium server` as a process, with access control: no open server on a non-loopback
//! address unless asked for (`--no-auth`, `--insecure-http`), users managed from the
//! command line (and files written by Debian's `htpasswd`), and logs that hold one access
//! line per request and never a password, a token or an `Authorization` header.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "server passphrase";

fn notarium() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_notarium"));
    c.env("NOTARIUM_KEY_PASSPHRASE", PASSPHRASE)
        .env("NOTARIUM_LOG", "warn");
    c
}

struct Proc {
    child: Child,
    url: String,
}

/// Start `cmd` (a `notarium server …`); `Err(stderr)` when it exits instead.
fn start(mut cmd: Command) -> Result<Proc, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        child.wait().unwrap();
        return Err(err);
    }
    let url = line.split_whitespace().nth(4).unwrap().to_owned();
    Ok(Proc { child, url })
}

/// SIGTERM, wait, and return what the server wrote to stderr.
fn stop(mut p: Proc) -> String {
    Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// `notarium server` inside a new network namespace (only its own loopback): it can
/// listen on 0.0.0.0 without being reachable from anywhere.
fn in_private_network(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--net",
        "sh",
        "-c",
        "ip link set lo up && exec \"$0\" \"$@\"",
    ])
    .arg(env!("CARGO_BIN_EXE_notarium"))
    .args(args)
    .env("NOTARIUM_KEY_PASSPHRASE", PASSPHRASE)
    .env("NOTARIUM_LOG", "warn");
    c
}

#[test]
fn a_non_loopback_address_needs_auth_or_an_explicit_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let one_line = |err: &str| {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err.trim_end().to_owned()
    };
    // Without auth: refused, and nothing was created.
    let mut c = notarium();
    c.args(["server", "--addr", "0.0.0.0:0", "--data-dir", d]);
    let err = one_line(&start(c).err().expect("refused"));
    assert!(
        err.starts_with("refusing to serve 0.0.0.0:0 without authentication")
            && err.contains("--no-auth"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start writes nothing");
    // Explicitly open: a warning line, and it serves.
    let p = start(in_private_network(&[
        "server",
        "--addr",
        "0.0.0.0:0",
        "--data-dir",
        d,
        "--no-auth",
    ]))
    .unwrap();
    assert!(p.url.starts_with("https://0.0.0.0:"), "{}", p.url);
    let err = stop(p);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: --no-auth: anyone who can reach 0.0.0.0:")),
        "{err}"
    );

    // Plain HTTP from the config file on a non-loopback address: refused even with auth.
    let cfg = tmp.path().join("server.toml");
    std::fs::write(&cfg, "insecure_http = true\n[auth]\nmode = \"builtin\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--config",
        c,
        "--addr",
        "0.0.0.0:0",
        "--data-dir",
        d,
    ]);
    let err = one_line(&start(cmd).err().expect("refused"));
    assert!(
        err.starts_with("refusing to serve plain HTTP on 0.0.0.0:0")
            && err.contains("--insecure-http"),
        "{err}"
    );
    // Given on the command line: a warning, and it serves HTTP.
    let p = start(in_private_network(&[
        "server",
        "--config",
        c,
        "--addr",
        "0.0.0.0:0",
        "--data-dir",
        d,
        "--insecure-http",
    ]))
    .unwrap();
    assert!(p.url.starts_with("http://0.0.0.0:"), "{}", p.url);
    let err = stop(p);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: --insecure-http:")),
        "{err}"
    );
    assert!(!err.contains("--no-auth"), "{err}");
    // Both at once need both flags.
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--addr",
        "0.0.0.0:0",
        "--data-dir",
        d,
        "--insecure-http",
    ]);
    assert!(start(cmd).err().unwrap().contains("without authentication"));

    // Loopback: the embedded defaults, no warning.
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        d,
        "--insecure-http",
    ]);
    let p = start(cmd).unwrap();
    let err = stop(p);
    assert!(!err.contains("warning"), "{err}");
}

fn token_status(url: &str, ca: &Path, user: &str, password: &str) -> u16 {
    let pem = std::fs::read(ca).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
        .get(format!(
            "{url}/auth/token?service=notarium&scope=repository:team/app:pull"
        ))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn run(mut c: Command, stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Builtin auth, any user may pull; `extra` goes into `[auth]`.
fn builtin(extra: &str) -> String {
    format!("[auth]\nmode = \"builtin\"\n{extra}[[auth.access]]\nusers = [\"*\"]\nrepositories = [\"**\"]\nactions = [\"pull\"]\n")
}

#[test]
fn users_are_managed_from_the_command_line_while_the_server_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let cfg = tmp.path().join("server.toml");
    std::fs::write(&cfg, builtin("")).unwrap();
    let c = cfg.to_str().unwrap();
    let user = |args: &[&str], stdin: &str| {
        let mut cmd = notarium();
        cmd.args(["server", "--config", c, "--data-dir", d, "user"])
            .args(args);
        run(cmd, stdin)
    };
    let file = data.join("auth/htpasswd");
    let (code, out, _) = user(&["add", "alice", "--password-stdin"], "first password\n");
    assert_eq!(code, 0);
    assert_eq!(out, format!("added user alice to {}\n", file.display()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("alice:$2y$10$"), "{text}");
    assert!(!text.contains("first password"));

    let mut cmd = notarium();
    cmd.args([
        "server",
        "--config",
        c,
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        d,
    ]);
    let p = start(cmd).unwrap();
    let ca = data.join("tls/ca.crt");
    assert_eq!(token_status(&p.url, &ca, "alice", "first password"), 200);
    // A new password, taken by the running server.
    let (code, out, _) = user(&["add", "alice", "--password-stdin"], "second password\n");
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("changed the password of alice in {}\n", file.display()).as_str()
        )
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(token_status(&p.url, &ca, "alice", "first password"), 401);
    assert_eq!(token_status(&p.url, &ca, "alice", "second password"), 200);
    let (code, out, _) = user(&["remove", "alice"], "");
    assert_eq!(
        (code, out),
        (0, format!("removed user alice from {}\n", file.display()))
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(token_status(&p.url, &ca, "alice", "second password"), 401);
    let (code, _, err) = user(&["remove", "nobody"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no user nobody"), "{err}");
    let (code, _, err) = user(&["add", "anonymous", "--password-stdin"], "x\n");
    assert_eq!(code, 1);
    assert!(err.contains("reserved"), "{err}");
    stop(p);
}

#[test]
fn htpasswd_files_from_apache_utils() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let users = tmp.path().join("users");
    let htpasswd = |args: &[&str]| {
        let s = Command::new("htpasswd")
            .args(args)
            .status()
            .expect("htpasswd (Debian package apache2-utils) is needed by this test");
        assert!(s.success());
    };
    let u = users.to_str().unwrap();
    htpasswd(&["-B", "-b", "-c", u, "alice", "alice secret"]);
    let cfg = tmp.path().join("server.toml");
    std::fs::write(&cfg, builtin(&format!("htpasswd = {u:?}\n"))).unwrap();
    let c = cfg.to_str().unwrap();
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--config",
        c,
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        d,
    ]);
    let p = start(cmd).unwrap();
    let ca = data.join("tls/ca.crt");
    assert_eq!(token_status(&p.url, &ca, "alice", "alice secret"), 200);
    assert_eq!(token_status(&p.url, &ca, "alice", "wrong"), 401);
    stop(p);
    // An MD5 entry (htpasswd -m): refused at start, naming the line.
    htpasswd(&["-m", "-b", u, "bob", "bob secret"]);
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--config",
        c,
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        d,
    ]);
    let err = start(cmd).err().unwrap();
    assert!(
        err.contains(&format!("{u}:2: user \"bob\" has an MD5 (apr1) hash; only bcrypt entries are accepted (htpasswd -B)")),
        "{err}"
    );
}

#[test]
fn logs_have_one_access_line_per_request_and_no_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let cfg = tmp.path().join("server.toml");
    std::fs::write(&cfg, builtin("")).unwrap();
    let c = cfg.to_str().unwrap();
    let password = "correct horse battery staple";
    let mut add = notarium();
    add.args([
        "server",
        "--config",
        c,
        "--data-dir",
        d,
        "user",
        "add",
        "alice",
        "--password-stdin",
    ]);
    assert_eq!(run(add, &format!("{password}\n")).0, 0);
    let mut cmd = notarium();
    cmd.args([
        "server",
        "--config",
        c,
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        d,
        "--log-format",
        "json",
    ])
    .env("NOTARIUM_LOG", "info");
    let p = start(cmd).unwrap();
    let pem = std::fs::read(data.join("tls/ca.crt")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let url = &p.url;
    let mut requests = 0;
    let mut secrets: Vec<String> = vec![password.to_owned(), "wrong password".into()];
    // Basic credentials, right and wrong; the OAuth2 form; Bearer tokens, good and bad.
    let r = client
        .get(format!(
            "{url}/auth/token?service=notarium&scope=repository:team/app:pull&offline_token=true"
        ))
        .basic_auth("alice", Some(password))
        .send()
        .unwrap();
    requests += 1;
    let v: serde_json::Value = r.json().unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    secrets.push(token.clone());
    secrets.push(token.rsplit('.').next().unwrap().to_owned());
    secrets.push(v["refresh_token"].as_str().unwrap().to_owned());
    use base64::Engine as _;
    secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}")));
    assert_eq!(
        client
            .get(format!("{url}/auth/token?service=notarium"))
            .basic_auth("alice", Some("wrong password"))
            .send()
            .unwrap()
            .status(),
        401
    );
    requests += 1;
    let r = client
        .post(format!("{url}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", password),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    requests += 1;
    assert_eq!(
        client
            .get(format!("{url}/v2/team/app/tags/list"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        404
    );
    requests += 1;
    let forged = format!("{}.forged", &token[..token.len() - 20]);
    secrets.push(forged.clone());
    assert_eq!(
        client
            .get(format!("{url}/v2/team/app/tags/list"))
            .bearer_auth(&forged)
            .send()
            .unwrap()
            .status(),
        401
    );
    requests += 1;
    let log = stop(p);
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "the log holds a secret ({}…):\n{log}",
            &s[..8]
        );
    }
    assert!(!log.to_ascii_lowercase().contains("authorization"), "{log}");
    let mut access = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "notarium::access" {
            access.push(v["fields"].clone());
        }
    }
    assert_eq!(access.len(), requests, "{log}");
    let tags = &access[3];
    assert_eq!(tags["method"], "GET");
    assert_eq!(tags["route"], "registry.tags");
    assert_eq!(tags["repository"], "team/app");
    assert_eq!(tags["status"], 404);
    assert_eq!(tags["user"], "alice");
    assert!(tags["ms"].is_string() || tags["ms"].is_number(), "{tags}");
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["user"], "alice");
    assert_eq!(access[4]["user"], "-");
}

/// Every file the server makes under its data directory, with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push((p.strip_prefix(dir).unwrap().display().to_string(), mode));
        }
    }
    out
}

#[test]
fn the_server_process_is_private() {
    // Run as an unprivileged user, with a permissive umask: its files are private anyway,
    // and its /proc entries belong to root (not dumpable: no other process of the user
    // can read its memory).
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = env!("CARGO_BIN_EXE_notarium");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
    ])
    .arg("umask 022; exec \"$0\" server --addr 127.0.0.1:0 --data-dir \"$1\"")
    .arg(bin)
    .arg(&data)
    .env("NOTARIUM_KEY_PASSPHRASE", PASSPHRASE)
    .env("NOTARIUM_LOG", "warn");
    let p = start(cmd).expect("setpriv (util-linux) runs the server as nobody");
    // A blob upload, so that registry files exist too.
    let pem = std::fs::read(data.join("tls/ca.crt")).unwrap();
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", p.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let pid = p.child.id();
    use std::os::unix::fs::MetadataExt as _;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    let environ = std::fs::metadata(format!("/proc/{pid}/environ")).unwrap();
    assert_eq!(
        environ.uid(),
        0,
        "a dumpable process would own its /proc entries"
    );
    stop(p);
    let found = modes(&data);
    assert!(found.iter().any(|(f, _)| f == "notarium.db"), "{found:?}");
    assert!(
        found
            .iter()
            .any(|(f, _)| f.starts_with("registry/uploads/")),
        "{found:?}"
    );
    for (f, mode) in found {
        let private = if data.join(&f).is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode & !private, 0, "{f} is {mode:o}");
    }
}
