//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is the machine's PostgreSQL at 127.0.0.1:5432 (user `postgres`, trust auth),
//! or `NOTARIUM_TEST_POSTGRES` (a URL without the database name's path, e.g.
//! `postgres://postgres@127.0.0.1:5432`). A test that cannot reach it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub struct TestDb {
    name: String,
    base: String,
}

fn base() -> String {
    std::env::var("NOTARIUM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn psql(base: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(format!("{base}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql])
        .output()
        .map_err(|e| format!("psql (Debian package postgresql-client) is needed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Drop the test databases of test processes that are gone (killed before they could).
fn sweep(base: &str) {
    let Ok(names) = psql(
        base,
        "SELECT datname FROM pg_database WHERE datname LIKE 'notarium\\_test\\_%'",
    ) else {
        return;
    };
    for name in names.lines() {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = psql(
                    base,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                );
            }
        }
    }
}

/// Databases of data directories a test chose itself: kept for the whole test process,
/// so every server the test starts on that directory finds the same data (dropped by the
/// next run's sweep, or by `scripts/test`).
static BY_DIR: Mutex<Option<HashMap<PathBuf, Arc<TestDb>>>> = Mutex::new(None);

impl TestDb {
    /// Create a database no other test uses.
    pub fn create() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "notarium_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let base = base();
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep(&base));
        psql(&base, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is needed by this test: {e}"));
        TestDb { name, base }
    }

    /// The database of the servers a test starts on `dir`.
    pub fn for_dir(dir: &Path) -> Arc<TestDb> {
        let mut map = BY_DIR.lock().unwrap_or_else(|e| e.into_inner());
        map.get_or_insert_with(HashMap::new)
            .entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(TestDb::create()))
            .clone()
    }

    /// `postgres://…/<this database>`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("dropping the test database: {e}");
        }
    }
}
