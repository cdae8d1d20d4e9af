//! An auth-enabled test server (builtin mode) with a fixed cast of users, tokens from its
//! token endpoint, and a snapshot of a data directory to show that a refused request
//! stored nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::server::{Endpoint, Options, TestServer};

/// Who the tests act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    /// No `Authorization` at all.
    NoToken,
    /// A token from the token endpoint without credentials.
    Anonymous,
    /// `pull` on everything.
    Reader,
    /// `push`, `pull` on `team/**` and `public/**`.
    Pusher,
    /// `*` on `**` (and the catalog).
    Admin,
    /// Everything on `other/**` only.
    Stranger,
}

impl Who {
    pub const ALL: [Who; 6] = [
        Who::NoToken,
        Who::Anonymous,
        Who::Stranger,
        Who::Reader,
        Who::Pusher,
        Who::Admin,
    ];

    /// (user, password) of the named users.
    pub fn credentials(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Who::Reader => ("reader", "reader-password"),
            Who::Pusher => ("pusher", "pusher-password"),
            Who::Admin => ("admin", "admin-password"),
            Who::Stranger => ("stranger", "stranger-password"),
            Who::NoToken | Who::Anonymous => return None,
        })
    }
}

/// The rules every auth test server runs with.
pub const RULES: &str = r#"
mode = "builtin"
services = ["notarium", "cncf-registry"]
bcrypt_cost = 4

[[access]]
users = ["anonymous"]
repositories = ["public/**"]
actions = ["pull"]

[[access]]
users = ["reader"]
repositories = ["**"]
actions = ["pull"]

[[access]]
users = ["pusher"]
repositories = ["team/**", "public/**"]
actions = ["push", "pull"]

[[access]]
users = ["admin"]
repositories = ["**"]
actions = ["*"]

[[access]]
users = ["stranger"]
repositories = ["other/**"]
actions = ["*"]
"#;

/// A builtin-auth server with [`RULES`] and the users of [`Who`] (bcrypt cost 4).
pub struct AuthServer {
    pub server: TestServer,
    pub htpasswd: PathBuf,
    _users: tempfile::TempDir,
}

impl std::ops::Deref for AuthServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl AuthServer {
    pub fn start() -> AuthServer {
        Self::start_with(Options::default())
    }

    /// With more settings applied after the auth ones.
    pub fn start_with(opts: Options) -> AuthServer {
        let users = tempfile::tempdir().unwrap();
        let htpasswd = users.path().join("htpasswd");
        for w in Who::ALL {
            if let Some((u, p)) = w.credentials() {
                server::auth::htpasswd::set_password(&htpasswd, u, p, 4).unwrap();
            }
        }
        let file: server::auth::settings::AuthFile = toml::from_str(RULES).unwrap();
        let path = htpasswd.clone();
        let more = opts.configure;
        let server = TestServer::start_with(Options {
            configure: Box::new(move |c| {
                c.auth.apply(file).unwrap();
                c.auth.htpasswd = Some(path);
                more(c);
            }),
            ..opts
        });
        AuthServer {
            server,
            htpasswd,
            _users: users,
        }
    }

    /// `host:port` (the GUN prefix of this server's own repositories).
    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// A token for `scopes` as `who` gets one (`None` for [`Who::NoToken`]).
    pub fn token(&self, who: Who, scopes: &[&str]) -> Option<String> {
        if who == Who::NoToken {
            return None;
        }
        let mut q: Vec<(&str, &str)> = vec![("service", "notarium")];
        q.extend(scopes.iter().map(|s| ("scope", *s)));
        let mut rb = self
            .server
            .client()
            .get(format!("{}/auth/token", self.server.url))
            .query(&q);
        if let Some((u, p)) = who.credentials() {
            rb = rb.basic_auth(u, Some(p));
        }
        let r = rb.send().unwrap();
        assert_eq!(r.status(), 200, "token for {who:?}");
        let v: serde_json::Value = r.json().unwrap();
        Some(v["token"].as_str().unwrap().to_owned())
    }

    /// This server as `who` with a token for `scopes`.
    pub fn as_user(&self, who: Who, scopes: &[&str]) -> Endpoint {
        match self.token(who, scopes) {
            Some(t) => self.server.endpoint.authed(&t),
            None => self.server.endpoint.clone(),
        }
    }
}

/// Everything a data directory holds: each file's SHA-256, and the rows of every SQLite
/// database (read logically, so a WAL checkpoint is no change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<String, String>);

impl Snapshot {
    pub fn take(dir: &Path) -> Snapshot {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if p.is_dir() {
                    out.insert(format!("{rel}/"), String::new());
                    stack.push(p);
                } else if rel.ends_with("-wal")
                    || rel.ends_with("-shm")
                    || rel == "notarium.lock"
                    || rel == server::health::PROBE_FILE
                {
                    continue;
                } else if rel.ends_with(".db") {
                    for (t, rows) in dump_db(&p) {
                        out.insert(format!("{rel}:{t}"), rows);
                    }
                } else {
                    let data = std::fs::read(&p).unwrap_or_default();
                    out.insert(rel, hex::encode(tuf::hash::sha256(&data)));
                }
            }
        }
        Snapshot(out)
    }

    /// What differs, for a readable failure.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut keys: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| self.0.get(*k) != other.0.get(*k))
            .map(|k| k.to_string())
            .collect()
    }
}

/// Every table's rows, hashed in rowid order.
fn dump_db(path: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let mut s = String::new();
                    for i in 0..n {
                        let v: rusqlite::types::Value = r.get(i)?;
                        s.push_str(&format!("{v:?}|"));
                    }
                    Ok(s)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            (
                t,
                hex::encode(tuf::hash::sha256(rows.join("\n").as_bytes())),
            )
        })
        .collect()
}
