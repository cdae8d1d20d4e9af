//! Users in an htpasswd file, bcrypt only (`htpasswd -B`), as distribution reads it.
//!
//! The server re-reads the file when it changes (`notarium server user add` edits it while
//! the server runs); a file that stops parsing keeps the users read before, with an error
//! in the log. Credentials that verified are remembered for a while (as a keyed hash,
//! never the password), so a client that logs in for every command does not pay bcrypt
//! each time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("{path}:{line}: {msg}")]
    Line {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A user name the file and the rules can hold: 1–255 printable characters, no `:`, not
/// one of the rule words `*` and `anonymous`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("user name {name:?}: 1 to 255 characters"));
    }
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "user name {name:?}: no ':', spaces or control characters"
        ));
    }
    if name == "*" || name == "anonymous" {
        return Err(format!("user name {name:?} is reserved for access rules"));
    }
    Ok(())
}

/// What kind of hash a non-bcrypt entry holds, for the error.
fn hash_kind(h: &str) -> &'static str {
    if h.starts_with("$apr1$") {
        "an MD5 (apr1) hash"
    } else if h.starts_with("{SHA}") {
        "a SHA-1 hash"
    } else if h.starts_with("$5$") || h.starts_with("$6$") {
        "a SHA-crypt hash"
    } else if h.starts_with('$') {
        "an unsupported hash"
    } else {
        "a crypt(3) hash or a plain password"
    }
}

fn is_bcrypt(h: &str) -> bool {
    (h.starts_with("$2y$") || h.starts_with("$2b$") || h.starts_with("$2a$"))
        && h.parse::<bcrypt::HashParts>().is_ok()
}

/// The users of one file: name → bcrypt hash.
#[derive(Debug, Default, Clone)]
pub struct Users {
    hashes: HashMap<String, String>,
}

impl Users {
    pub fn parse(text: &str, path: &Path) -> Result<Users, HtpasswdError> {
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let err = |msg: String| HtpasswdError::Line {
                path: path.display().to_string(),
                line: i + 1,
                msg,
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| err("not NAME:HASH".into()))?;
            check_user_name(name).map_err(err)?;
            if !is_bcrypt(hash) {
                return Err(err(format!(
                    "user {name:?} has {}; only bcrypt entries are accepted (htpasswd -B)",
                    hash_kind(hash)
                )));
            }
            if hashes.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(err(format!("user {name:?} appears twice")));
            }
        }
        Ok(Users { hashes })
    }

    pub fn read(path: &Path) -> Result<Users, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Users::parse(&text, path)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn hash(&self, name: &str) -> Option<&str> {
        self.hashes.get(name).map(String::as_str)
    }
}

/// Size, modification time and inode: when any changes, the file is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, i128, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp(
        m.len(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        m.ino(),
    ))
}

struct Loaded {
    stamp: Option<Stamp>,
    users: Arc<Users>,
    /// Changes with every reload: remembered credentials of an older file do not count.
    generation: u64,
}

/// The htpasswd file of a running server.
pub struct UserDb {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    last_check: Mutex<Instant>,
    /// Keyed hashes of credentials that verified: HMAC(user, password) → (generation,
    /// when).
    verified: quick_cache::sync::Cache<[u8; 32], (u64, Instant)>,
    mac_key: aws_lc_rs::hmac::Key,
    /// bcrypt runs on blocking threads, a few at a time: a flood of logins waits here
    /// instead of taking every thread.
    bcrypt_slots: tokio::sync::Semaphore,
    remember: Duration,
    /// A hash of a random password at the file's cost, verified for unknown users so that
    /// their answer takes as long as a wrong password.
    dummy: String,
}

impl UserDb {
    /// Read the file (it must parse).
    pub fn open(path: &Path) -> Result<UserDb, HtpasswdError> {
        let users = Users::read(path)?;
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| HtpasswdError::Invalid("no randomness".into()))?;
        let cost = users
            .hashes
            .values()
            .next()
            .and_then(|h| h.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
        let dummy = bcrypt::hash(hex::encode(key), cost)
            .map_err(|e| HtpasswdError::Invalid(format!("bcrypt: {e}")))?;
        Ok(UserDb {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                stamp: stamp(path),
                users: Arc::new(users),
                generation: 0,
            }),
            last_check: Mutex::new(Instant::now()),
            verified: quick_cache::sync::Cache::new(10_000),
            mac_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
            bcrypt_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            remember: Duration::from_secs(300),
            dummy,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users now (the file re-read if it changed; checked at most every 100 ms).
    pub fn current(&self) -> (Arc<Users>, u64) {
        let check = {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_millis(100) {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if check {
            let now = stamp(&self.path);
            if now != l.stamp {
                match now.map(|_| Users::read(&self.path)) {
                    Some(Ok(users)) => {
                        tracing::info!(
                            "{}: {} users (file changed)",
                            self.path.display(),
                            users.len()
                        );
                        l.users = Arc::new(users);
                        l.generation += 1;
                        l.stamp = now;
                    }
                    Some(Err(e)) => {
                        tracing::error!("{e}; keeping the users read before");
                        l.stamp = now;
                    }
                    None => {
                        tracing::error!(
                            "{}: cannot be read; no user can log in until it is back",
                            self.path.display()
                        );
                        l.users = Arc::new(Users::default());
                        l.generation += 1;
                        l.stamp = None;
                    }
                }
            }
        }
        (l.users.clone(), l.generation)
    }

    /// Whether `user` exists and `password` is theirs.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let (users, generation) = self.current();
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.mac_key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        let tag: [u8; 32] = match ctx.sign().as_ref().try_into() {
            Ok(t) => t,
            Err(_) => return false,
        };
        if let Some((g, when)) = self.verified.get(&tag) {
            if g == generation && when.elapsed() < self.remember {
                return true;
            }
        }
        let (hash, known) = match users.hash(user) {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy.clone(), false),
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let password = Zeroizing::new(password.to_owned());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && known {
            self.verified.insert(tag, (generation, Instant::now()));
        }
        ok && known
    }

    /// The fingerprint of `user`'s hash now (`None`: no such user).
    pub fn current_fingerprint(&self, user: &str) -> Option<String> {
        let (users, _) = self.current();
        users.hash(user).map(fingerprint)
    }
}

/// A short fingerprint of a user's hash: refresh tokens carry it, so a new password or a
/// removed user ends them.
pub fn fingerprint(hash: &str) -> String {
    hex::encode(&tuf::hash::sha256(hash.as_bytes())[..12])
}

/// `notarium server user add`: set `name`'s password (adding the user), keeping every
/// other line. Returns whether the user was new.
pub fn set_password(
    path: &Path,
    name: &str,
    password: &str,
    cost: u32,
) -> Result<bool, HtpasswdError> {
    check_user_name(name).map_err(HtpasswdError::Invalid)?;
    if password.is_empty() {
        return Err(HtpasswdError::Invalid("the password is empty".into()));
    }
    let hash = bcrypt::hash(password, cost)
        .map_err(|e| HtpasswdError::Invalid(format!("bcrypt: {e}")))?
        // htpasswd -B writes $2y$; bcrypt's $2b$ is the same algorithm.
        .replacen("$2b$", "$2y$", 1);
    let text = read_or_empty(path)?;
    Users::parse(&text, path)?;
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match l.split_once(':') {
            Some((n, _)) if n == name => {
                found = true;
                format!("{name}:{hash}")
            }
            _ => l.to_owned(),
        })
        .collect();
    if !found {
        lines.push(format!("{name}:{hash}"));
    }
    write_lines(path, &lines)?;
    Ok(!found)
}

/// `notarium server user remove`: whether the user was there.
pub fn remove_user(path: &Path, name: &str) -> Result<bool, HtpasswdError> {
    let text = read_or_empty(path)?;
    Users::parse(&text, path)?;
    let before = text.lines().count();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.split_once(':').map(|(n, _)| n) != Some(name))
        .map(str::to_owned)
        .collect();
    if lines.len() == before {
        return Ok(false);
    }
    write_lines(path, &lines)?;
    Ok(true)
}

fn read_or_empty(path: &Path) -> Result<String, HtpasswdError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(HtpasswdError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Write the file whole and rename it into place (0600: it holds password hashes).
fn write_lines(path: &Path, lines: &[String]) -> Result<(), HtpasswdError> {
    let mut text = lines.join("\n");
    text.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| HtpasswdError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    keys::store::write_private_file(path, text.as_bytes())
        .map_err(|e| HtpasswdError::Invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_with_the_line_number() {
        let p = Path::new("users");
        let ok =
            "# comment\n\nalice:$2y$05$0jSx8oOtL6XpZuwq35b.qeyrBFQYvNTnRRXlaiP4okXtvPR3iBxlW\n";
        assert_eq!(Users::parse(ok, p).unwrap().len(), 1);
        for (text, want) in [
            (
                "a:$2y$05$0jSx8oOtL6XpZuwq35b.qeyrBFQYvNTnRRXlaiP4okXtvPR3iBxlW\nbob:$apr1$x$y\n",
                "users:2: user \"bob\" has an MD5 (apr1) hash",
            ),
            ("bob:{SHA}abc\n", "users:1: user \"bob\" has a SHA-1 hash"),
            (
                "\n\nbob:plain\n",
                "users:3: user \"bob\" has a crypt(3) hash or a plain password",
            ),
            ("bob\n", "users:1: not NAME:HASH"),
            (
                "bob:$2y$xx\n",
                "users:1: user \"bob\" has an unsupported hash",
            ),
        ] {
            let e = Users::parse(text, p).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn add_change_remove_keep_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth/htpasswd");
        assert!(set_password(&f, "alice", "pw1", 4).unwrap());
        assert!(set_password(&f, "bob", "pw2", 4).unwrap());
        assert!(!set_password(&f, "alice", "pw3", 4).unwrap());
        let users = Users::read(&f).unwrap();
        assert!(bcrypt::verify("pw3", users.hash("alice").unwrap()).unwrap());
        assert!(users.hash("alice").unwrap().starts_with("$2y$04$"));
        assert!(remove_user(&f, "alice").unwrap());
        assert!(!remove_user(&f, "alice").unwrap());
        let users = Users::read(&f).unwrap();
        assert!(users.hash("alice").is_none() && users.hash("bob").is_some());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(set_password(&f, "a:b", "x", 4).is_err());
        assert!(set_password(&f, "anonymous", "x", 4).is_err());
    }

    #[tokio::test]
    async fn verify_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("htpasswd");
        set_password(&f, "alice", "right", 4).unwrap();
        let db = UserDb::open(&f).unwrap();
        assert!(db.verify("alice", "right").await);
        assert!(db.verify("alice", "right").await, "remembered");
        assert!(!db.verify("alice", "wrong").await);
        assert!(!db.verify("nobody", "right").await);
        std::thread::sleep(Duration::from_millis(120));
        set_password(&f, "alice", "new", 4).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            !db.verify("alice", "right").await,
            "a changed password ends the old one"
        );
        assert!(db.verify("alice", "new").await);
    }
}
