//! `trust status [REPO…]`: the life of each repository's keys at a glance. For every role:
//! its version, when it expires and how many days are left, its threshold and keys (a
//! root key's certificate NotAfter too), and for the timestamp and snapshot whether the
//! trust server holds the key. Anything expiring within `--warn-days` is a warning (but
//! what the server signs, and renews by itself, only once expired); anything expired, or
//! trust data that cannot be read, is an error. The exit code says
//! which (0 ok, 1 warning, 2 expired or unreadable), so CI can gate on it.
//!
//! Without REPO: every repository in the local trust cache (`<config>/trust/tuf/`).

use std::io::Write;
use std::path::Path;

use registry::Reference;
use serde::Serialize;
use tuf::{DateTime, PublicKey};

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::repo::{Load, Repo, View};

/// How far from expiry a role or certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Expired,
    Unreadable,
}

impl Level {
    /// The process exit code for the worst level seen.
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Expired | Level::Unreadable => 2,
        }
    }

    fn of(now: &DateTime, expires: &DateTime, warn_days: i64) -> Level {
        let left = now.secs_until(expires);
        if left <= 0 {
            Level::Expired
        } else if left < warn_days * 86_400 {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub id: String,
    /// An x509 key's certificate (every root key; a delegation key added as one): its
    /// NotAfter and days left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_days_left: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub version: u64,
    pub expires: String,
    pub days_left: i64,
    pub threshold: u64,
    pub keys: Vec<KeyStatus>,
    /// Timestamp and snapshot: whether the trust server holds the key root lists (`None`:
    /// not asked, or the server did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_holds_key: Option<bool>,
    pub status: Level,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    pub name: String,
    pub status: Level,
    pub roles: Vec<RoleStatus>,
    /// What is wrong, in words (empty when all is well).
    pub problems: Vec<String>,
}

pub struct StatusOptions {
    pub warn_days: i64,
    pub json: bool,
}

/// Days from `now` to `t`, rounded down (negative once past).
fn days_left(now: &DateTime, t: &DateTime) -> i64 {
    now.secs_until(t).div_euclid(86_400)
}

/// Every GUN with trust data in the local cache, sorted.
pub fn cached_repositories(tuf_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
        if depth > 32 {
            return;
        }
        if dir.join("metadata").join("root.json").is_file() {
            out.push(prefix.to_owned());
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "metadata" || name == "changelist" || !e.path().is_dir() {
                continue;
            }
            let next = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            walk(&e.path(), &next, out, depth + 1);
        }
    }
    let mut out = Vec::new();
    walk(tuf_dir, "", &mut out, 0);
    out.sort();
    out
}

fn key_status(key: &PublicKey, now: &DateTime, warn_days: i64, worst: &mut Level) -> KeyStatus {
    let leaf = tuf::x509::parse_pem_chain(key.public_bytes())
        .ok()
        .and_then(|c| c.into_iter().next());
    let (expires, days) = match leaf {
        Some(c) => {
            let t = DateTime::from_unix_secs(c.not_after);
            *worst = (*worst).max(Level::of(now, &t, warn_days));
            (Some(t.to_string()), Some(days_left(now, &t)))
        }
        None => (None, None),
    };
    KeyStatus {
        id: key.id().to_string(),
        certificate_expires: expires,
        certificate_days_left: days,
    }
}

/// The keys of `role`, each certificate's end judged (an x509 key: every root key, and a
/// delegation key added as a certificate): `level` raised and a problem said for one
/// that expires within the window or has expired.
fn keys_status(
    role: &str,
    keys: &[PublicKey],
    now: &DateTime,
    warn_days: i64,
    level: &mut Level,
    problems: &mut Vec<String>,
) -> Vec<KeyStatus> {
    keys.iter()
        .map(|k| {
            let mut cert_level = Level::Ok;
            let s = key_status(k, now, warn_days, &mut cert_level);
            *level = (*level).max(cert_level);
            if cert_level != Level::Ok {
                problems.push(format!(
                    "{role} key {}: certificate {} ({} days left)",
                    s.id,
                    if cert_level == Level::Expired {
                        "expired"
                    } else {
                        "expires soon"
                    },
                    s.certificate_days_left.unwrap_or(0)
                ));
            }
            s
        })
        .collect()
}

fn expiry_problem(
    problems: &mut Vec<String>,
    role: &str,
    level: Level,
    now: &DateTime,
    expires: &DateTime,
) {
    match level {
        Level::Warning => problems.push(format!(
            "{role} expires in {} days ({expires})",
            days_left(now, expires)
        )),
        Level::Expired => problems.push(format!("{role} expired {expires}")),
        _ => {}
    }
}

/// The status of one repository's verified state.
fn from_view(
    name: &str,
    view: &View,
    server_holds: &dyn Fn(&str, &[PublicKey]) -> Option<bool>,
    now: &DateTime,
    warn_days: i64,
) -> RepoStatus {
    let root = view.root.signed();
    let mut roles = Vec::new();
    let mut problems = Vec::new();
    let mut top = |role: &str, version: u64, expires: &DateTime| {
        let (threshold, keys) = root
            .role_keys(role)
            .map(|(r, ks)| (r.threshold, ks.into_iter().cloned().collect::<Vec<_>>()))
            .unwrap_or_default();
        let held = matches!(role, "timestamp" | "snapshot")
            .then(|| server_holds(role, &keys))
            .flatten();
        // What the server signs it renews by itself (a timestamp lives 14 days): only
        // its expiry is news. The timestamp key is always the server's.
        let renewed = role == "timestamp" || held == Some(true);
        let own = match Level::of(now, expires, warn_days) {
            Level::Warning if renewed => Level::Ok,
            l => l,
        };
        expiry_problem(&mut problems, role, own, now, expires);
        let mut level = own;
        let key_list = keys_status(role, &keys, now, warn_days, &mut level, &mut problems);
        roles.push(RoleStatus {
            role: role.to_owned(),
            version,
            expires: expires.to_string(),
            days_left: days_left(now, expires),
            threshold,
            keys: key_list,
            server_holds_key: held,
            status: level,
        });
    };
    top("root", root.version, &root.expires);
    if let Some(t) = view.role("targets") {
        top("targets", t.signed().version, &t.signed().expires);
    }
    if let Some(s) = &view.snapshot {
        top("snapshot", s.signed().version, &s.signed().expires);
    }
    if let Some(t) = &view.timestamp {
        top("timestamp", t.signed().version, &t.signed().expires);
    }
    // Delegations: threshold and keys from the role that delegates them.
    for (role, m) in view.roles.iter().filter(|(r, _)| r.as_str() != "targets") {
        let parent = role.parent().and_then(|p| view.role(p.as_str()));
        let (threshold, keys) = parent
            .and_then(|p| {
                let d = &p.signed().delegations;
                d.role(role.as_str()).map(|r| {
                    let ks: Vec<PublicKey> = r
                        .keyids
                        .iter()
                        .filter_map(|id| d.keys.get(id))
                        .cloned()
                        .collect();
                    (r.threshold, ks)
                })
            })
            .unwrap_or_default();
        let expires = &m.signed().expires;
        let own = Level::of(now, expires, warn_days);
        expiry_problem(&mut problems, role.as_str(), own, now, expires);
        let mut level = own;
        let keys = keys_status(
            role.as_str(),
            &keys,
            now,
            warn_days,
            &mut level,
            &mut problems,
        );
        roles.push(RoleStatus {
            role: role.to_string(),
            version: m.signed().version,
            expires: expires.to_string(),
            days_left: days_left(now, expires),
            threshold,
            keys,
            server_holds_key: None,
            status: level,
        });
    }
    problems.extend(view.warnings.iter().cloned());
    let status = roles.iter().map(|r| r.status).max().unwrap_or(Level::Ok);
    RepoStatus {
        name: name.to_owned(),
        status,
        roles,
        problems,
    }
}

/// The status of one repository, asking its trust server.
pub fn repo_status(ctx: &Context, name: &str, warn_days: i64) -> RepoStatus {
    let unreadable = |msg: String| RepoStatus {
        name: name.to_owned(),
        status: Level::Unreadable,
        roles: Vec::new(),
        problems: vec![msg],
    };
    let reference = match Reference::parse(name) {
        Ok(r) => r,
        Err(e) => return unreadable(e.to_string()),
    };
    let mut repo = match Repo::open(ctx, &reference, false) {
        Ok(r) => r,
        Err(e) => return unreadable(e.to_string()),
    };
    let view = match repo.view(ctx, false, Load::All) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return unreadable(
                TrustError::NotFound {
                    gun: repo.gun.to_string(),
                    host: repo.host.clone(),
                }
                .to_string(),
            )
        }
        Err(e) => {
            // A client refuses expired metadata (freeze protection) and a root whose
            // certificates expired: that is this repository's status, not a failure to
            // read it.
            let expired = match &e {
                TrustError::Client(tuf::client::ClientError::Tuf(tuf::Error::Expired {
                    ..
                })) => true,
                TrustError::Client(tuf::client::ClientError::Tuf(tuf::Error::Root {
                    msg, ..
                })) => msg.contains("certificate expired"),
                _ => false,
            };
            return RepoStatus {
                status: if expired {
                    Level::Expired
                } else {
                    Level::Unreadable
                },
                ..unreadable(e.to_string())
            };
        }
    };
    let server_holds = |role: &str, keys: &[PublicKey]| -> Option<bool> {
        let k = repo.remote.server_key(role).ok()?;
        Some(keys.iter().any(|r| r.id() == k.id()))
    };
    from_view(
        repo.gun.as_str(),
        &view,
        &server_holds,
        &ctx.now(),
        warn_days,
    )
}

/// Print the status of `repos` (every cached repository when empty); the worst level.
pub fn status(
    ctx: &Context,
    out: &mut dyn Write,
    repos: &[String],
    opts: &StatusOptions,
) -> Result<Level> {
    let names: Vec<String> = if repos.is_empty() {
        cached_repositories(&ctx.config.trust_dir().join("tuf"))
    } else {
        repos.to_vec()
    };
    let all: Vec<RepoStatus> = names
        .iter()
        .map(|n| repo_status(ctx, n, opts.warn_days))
        .collect();
    print(out, &all, opts.json)
}

/// Write `all` as text or JSON; the worst level.
fn print(out: &mut dyn Write, all: &[RepoStatus], json: bool) -> Result<Level> {
    let worst = all.iter().map(|r| r.status).max().unwrap_or(Level::Ok);
    let io = |e: std::io::Error| TrustError::Other(e.to_string());
    if json {
        let v = serde_json::json!({ "status": worst, "repositories": all });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        )
        .map_err(io)?;
        return Ok(worst);
    }
    if all.is_empty() {
        writeln!(out, "No repositories in the local trust cache.").map_err(io)?;
    }
    for (i, r) in all.iter().enumerate() {
        if i > 0 {
            writeln!(out).map_err(io)?;
        }
        writeln!(out, "{}: {}", r.name, label(r.status)).map_err(io)?;
        if !r.roles.is_empty() {
            writeln!(
                out,
                "  {:<24} {:>7}  {:<20}  {:>9}  {:>9}  {:<10}  STATUS",
                "ROLE", "VERSION", "EXPIRES", "DAYS LEFT", "THRESHOLD", "SERVER KEY"
            )
            .map_err(io)?;
        }
        for role in &r.roles {
            let held = match role.server_holds_key {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            writeln!(
                out,
                "  {:<24} {:>7}  {:<20}  {:>9}  {:>9}  {:<10}  {}",
                role.role,
                role.version,
                to_seconds(&role.expires),
                role.days_left,
                format!("{} of {}", role.threshold, role.keys.len()),
                held,
                label(role.status)
            )
            .map_err(io)?;
            for k in role.keys.iter().filter(|k| k.certificate_expires.is_some()) {
                writeln!(
                    out,
                    "    key {}: certificate until {} ({} days)",
                    k.id,
                    k.certificate_expires.as_deref().unwrap_or(""),
                    k.certificate_days_left.unwrap_or(0)
                )
                .map_err(io)?;
            }
        }
        for p in &r.problems {
            writeln!(out, "  ! {p}").map_err(io)?;
        }
    }
    Ok(worst)
}

/// An RFC 3339 time without its fraction of a second (for the table).
fn to_seconds(t: &str) -> String {
    match t.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => t.to_owned(),
    }
}

fn label(l: Level) -> &'static str {
    match l {
        Level::Ok => "ok",
        Level::Warning => "WARNING",
        Level::Expired => "EXPIRED",
        Level::Unreadable => "UNREADABLE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_days_left() {
        let now = DateTime::from_unix_secs(1_800_000_000);
        assert_eq!(Level::of(&now, &now.plus_days(120), 90), Level::Ok);
        assert_eq!(Level::of(&now, &now.plus_days(30), 90), Level::Warning);
        assert_eq!(Level::of(&now, &now.plus_days(-1), 90), Level::Expired);
        assert_eq!(Level::of(&now, &now, 90), Level::Expired);
        assert_eq!(days_left(&now, &now.plus_days(-1)), -1);
        assert_eq!(days_left(&now, &now.plus_secs(86_399)), 0);
        assert_eq!(
            [Level::Ok, Level::Warning, Level::Expired].map(Level::exit_code),
            [0, 1, 2]
        );
    }

    /// The view a client has of `files` at `now` (or why it has none).
    fn view_at(
        gun: &str,
        files: std::collections::BTreeMap<String, Vec<u8>>,
        now: DateTime,
    ) -> std::result::Result<View, String> {
        use notarium_testkit::memory::{MemoryCache, MemoryRemote};
        let (mut remote, mut cache) = (MemoryRemote(files), MemoryCache::default());
        let mut c =
            tuf::client::Client::new(tuf::Gun::new(gun).unwrap(), &mut remote, &mut cache, now);
        c.update(false).map_err(|e| e.to_string())?;
        let roles = c.all_roles().map_err(|e| e.to_string())?;
        Ok(View {
            root: c.root().unwrap().clone(),
            snapshot: c.snapshot().cloned(),
            timestamp: c.timestamp().cloned(),
            roles,
            warnings: c.warnings().to_vec(),
            paths: c.delegated_paths().clone(),
            invalid: Default::default(),
        })
    }

    /// A root (and its certificate) expiring in 30 days, everything else fresh: the
    /// client still reads the repository, status warns (exit 1) naming the root and its
    /// certificate; a day after the root's end the client refuses it (freeze).
    #[test]
    fn a_root_expiring_in_30_days_is_warned_about_and_refused_once_expired() {
        use notarium_testkit::evil::{EvilRepo, Spec};
        let gun = "registry.example.com/status/root-30";
        let made = DateTime::from_unix_secs(1_800_000_000);
        let repo = EvilRepo::new(gun, made);
        let now = made.plus_days(3650 - 30);
        let view = view_at(gun, repo.files(&Spec::new(now)), now).unwrap();
        let st = from_view(gun, &view, &|_, _| Some(true), &now, 90);
        assert_eq!(st.status, Level::Warning);
        assert_eq!(st.status.exit_code(), 1);
        let root = st.roles.iter().find(|r| r.role == "root").unwrap();
        assert_eq!((root.days_left, root.status), (30, Level::Warning));
        assert_eq!(root.keys[0].certificate_days_left, Some(30));
        for r in st.roles.iter().filter(|r| r.role != "root") {
            assert_eq!(r.status, Level::Ok, "{}", r.role);
        }
        let expires = view.root.signed().expires;
        assert_eq!(
            st.problems,
            [
                format!("root expires in 30 days ({expires})"),
                format!(
                    "root key {}: certificate expires soon (30 days left)",
                    root.keys[0].id
                ),
            ]
        );
        // Outside a 20-day window: nothing to say.
        let quiet = from_view(gun, &view, &|_, _| Some(true), &now, 20);
        assert_eq!((quiet.status, quiet.problems.len()), (Level::Ok, 0));
        // A day past the root's end (other roles signed fresh): refused.
        let later = now.plus_days(31);
        let e = view_at(gun, repo.files(&Spec::new(later)), later)
            .err()
            .expect("an expired root was trusted");
        assert!(e.contains("root") && e.contains("expired"), "{e}");
    }

    /// A repository with an expiring key (its root certificate, 30 days left) and an
    /// expired one (a delegation key added as a certificate that ended yesterday; the
    /// delegation's other key still signs): exit code 2, every line of the text and the
    /// JSON as a user sees them.
    #[test]
    fn an_expiring_and_an_expired_key_are_reported_exactly() {
        use notarium_testkit::evil::{EvilRepo, Spec};
        use tuf::metadata::Metadata;
        use tuf::sign::SigningKey;
        let gun = "registry.example.com/status/keys";
        let made = DateTime::from_unix_secs(1_800_000_000);
        let repo = EvilRepo::new(gun, made);
        let now = made.plus_days(3650 - 30);
        let spec = Spec::new(now);
        // targets/releases: an old signer whose certificate ended yesterday, and the
        // current one.
        let old = keys::PrivateKey::generate(keys::Algorithm::Ecdsa).unwrap();
        let old_cert = keys::cert::root_certificate(
            &old,
            &tuf::Gun::new(gun).unwrap(),
            now.plus_days(-400),
            399,
        )
        .unwrap();
        let mut targets = tuf::Targets::new(spec.targets_expires, 1);
        tuf::edit::add_delegation(
            &mut targets,
            &tuf::RoleName::new("targets/releases").unwrap(),
            &[old_cert.clone(), repo.releases_key.public().clone()],
            1,
            &["".to_owned()],
        );
        let targets =
            Metadata::sign("targets", targets, &[SigningKey::plain(&repo.targets_key)]).unwrap();
        let releases = Metadata::sign(
            "targets/releases",
            repo.releases_body(&spec),
            &[SigningKey::plain(&repo.releases_key)],
        )
        .unwrap();
        let files = repo.assemble(&spec, targets.raw().to_vec(), releases.raw().to_vec());
        let view = view_at(gun, files, now).unwrap();
        let st = from_view(gun, &view, &|_, _| Some(true), &now, 90);
        let mut text = Vec::new();
        let level = print(&mut text, std::slice::from_ref(&st), false).unwrap();
        assert_eq!(level.exit_code(), 2);
        let text = String::from_utf8(text).unwrap();
        let t = |d: DateTime| to_seconds(&d.to_string());
        let root_id = repo.root_cert.id().to_string();
        let old_id = old_cert.id().to_string();
        let rel_id = repo.releases_key.public().id().to_string();
        let root_end = made.plus_days(3650);
        let old_end = now.plus_days(-1);
        let expected = format!(
            "{gun}: EXPIRED
  ROLE                     VERSION  EXPIRES               DAYS LEFT  THRESHOLD  SERVER KEY  STATUS
  root                           1  {root}         30     1 of 1  -           WARNING
    key {root_id}: certificate until {root_full} (30 days)
  targets                        1  {tgt}       1000     1 of 1  -           ok
  snapshot                       1  {snap}       1000     1 of 1  yes         ok
  timestamp                      1  {ts}         14     1 of 1  yes         ok
  targets/releases               1  {rel}       1000     1 of 2  -           EXPIRED
    key {old_id}: certificate until {old_full} (-1 days)
  ! root expires in 30 days ({root_full})
  ! root key {root_id}: certificate expires soon (30 days left)
  ! targets/releases key {old_id}: certificate expired (-1 days left)
",
            root = t(root_end),
            root_full = root_end,
            tgt = t(spec.targets_expires),
            snap = t(spec.snapshot_expires),
            ts = t(spec.timestamp_expires),
            rel = t(spec.releases_expires),
            old_full = old_end,
        );
        assert_eq!(text, expected);
        assert!(
            !text.contains(&rel_id),
            "a plain key has no certificate line"
        );

        let mut json = Vec::new();
        print(&mut json, std::slice::from_ref(&st), true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let cert = |id: &str, end: DateTime, days: i64| serde_json::json!({"id": id, "certificate_expires": end.to_string(), "certificate_days_left": days});
        let plain = |id: String| serde_json::json!({ "id": id });
        let role = |name: &str,
                    end: DateTime,
                    days: i64,
                    threshold: u64,
                    keys: Vec<serde_json::Value>,
                    held: Option<bool>,
                    status: &str| {
            let mut r = serde_json::json!({"role": name, "version": 1, "expires": end.to_string(),
                "days_left": days, "threshold": threshold, "keys": keys, "status": status});
            if let Some(h) = held {
                r["server_holds_key"] = h.into();
            }
            r
        };
        let expected = serde_json::json!({
            "status": "expired",
            "repositories": [{
                "name": gun,
                "status": "expired",
                "roles": [
                    role("root", root_end, 30, 1, vec![cert(&root_id, root_end, 30)], None, "warning"),
                    role("targets", spec.targets_expires, 1000, 1, vec![plain(repo.targets_key.public().id().to_string())], None, "ok"),
                    role("snapshot", spec.snapshot_expires, 1000, 1, vec![plain(repo.snapshot_key.public().id().to_string())], Some(true), "ok"),
                    role("timestamp", spec.timestamp_expires, 14, 1, vec![plain(repo.timestamp_key.public().id().to_string())], Some(true), "ok"),
                    role("targets/releases", spec.releases_expires, 1000, 1,
                        vec![cert(&old_id, old_end, -1), plain(rel_id.clone())], None, "expired"),
                ],
                "problems": [
                    format!("root expires in 30 days ({root_end})"),
                    format!("root key {root_id}: certificate expires soon (30 days left)"),
                    format!("targets/releases key {old_id}: certificate expired (-1 days left)"),
                ],
            }],
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn cached_repositories_are_found_at_any_depth() {
        let d = tempfile::tempdir().unwrap();
        for gun in [
            "reg.example.com/a/b",
            "reg.example.com/c",
            "localhost:5000/x/y/z",
        ] {
            let m = d.path().join(gun).join("metadata");
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("root.json"), b"{}").unwrap();
        }
        // A directory without trust data is not a repository.
        std::fs::create_dir_all(d.path().join("reg.example.com/empty/metadata")).unwrap();
        assert_eq!(
            cached_repositories(d.path()),
            [
                "localhost:5000/x/y/z",
                "reg.example.com/a/b",
                "reg.example.com/c"
            ]
        );
    }
}
