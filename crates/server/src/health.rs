//! Whether the server can write: a write that fails for lack of space marks storage as
//! failing (the answer is 507, and until the mark is cleared the server takes no writes:
//! reads go on), and a probe (a small file written, synced and removed in the data
//! directory, every few seconds; every second while failing) clears the mark once space
//! is back. `/_notary_server/health` and `/healthz` report it.
//!
//! The data directory also holds a reserve file of [`RESERVE_BYTES`]: a server started on
//! a full disk deletes it, which gives SQLite the room it needs to open the databases
//! (their shared-memory index), and starts read-only; the reserve is made again, and
//! writes taken again, once there is space.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// An error that means the disk (or the database) is full.
pub trait OutOfSpace {
    fn out_of_space(&self) -> bool;
}

impl OutOfSpace for std::io::Error {
    fn out_of_space(&self) -> bool {
        let full = [
            rustix::io::Errno::NOSPC.raw_os_error(),
            rustix::io::Errno::DQUOT.raw_os_error(),
        ];
        self.raw_os_error().is_some_and(|c| full.contains(&c))
            || self.kind() == std::io::ErrorKind::StorageFull
    }
}

/// What the 507 answers say.
pub const NO_SPACE: &str =
    "no space left on the server's storage: writes fail until space is freed; reads go on";

/// The name of the probe's file in the data directory (never anything else's).
pub const PROBE_FILE: &str = ".notarium-write-probe";
/// The reserve, released to start on a full disk.
pub const RESERVE_FILE: &str = ".notarium-reserve";
pub const RESERVE_BYTES: u64 = 2 << 20;

pub struct Health {
    dir: PathBuf,
    failing: Mutex<Option<String>>,
    /// Wakes the probe when a write fails.
    pub changed: tokio::sync::Notify,
}

impl Health {
    pub fn new(data_dir: &Path) -> Health {
        Health {
            dir: data_dir.to_path_buf(),
            failing: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Before the databases are opened: probe, and on a full disk release the reserve
    /// (and start read-only). `false`: read-only.
    pub async fn prepare_start(&self) -> bool {
        if self.probe().await {
            return true;
        }
        let reserve = self.dir.join(RESERVE_FILE);
        if std::fs::remove_file(&reserve).is_ok() {
            tracing::warn!("released the {RESERVE_BYTES}-byte reserve to open the databases");
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark storage as failing (a write just failed for `why`).
    pub fn storage_failed(&self, why: &str) {
        let mut f = self.lock();
        if f.is_none() {
            tracing::error!("storage cannot be written ({why}); serving reads only until it can");
            self.changed.notify_one();
        }
        *f = Some(why.to_owned());
    }

    /// Why storage cannot be written, if it cannot.
    pub fn failing(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Write, sync and remove a small file, and make the reserve if it is missing; mark
    /// or clear the failure by the outcome.
    pub async fn probe(&self) -> bool {
        let path = self.dir.join(PROBE_FILE);
        let reserve = self.dir.join(RESERVE_FILE);
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&[0u8; 4096])?;
            f.sync_all()?;
            drop(f);
            std::fs::remove_file(&path)?;
            if !reserve.exists() {
                let f = std::fs::File::create(&reserve)?;
                // Blocks really taken (a file of that length could be sparse).
                let made = rustix::fs::fallocate(
                    &f,
                    rustix::fs::FallocateFlags::empty(),
                    0,
                    RESERVE_BYTES,
                )
                .map_err(std::io::Error::from)
                .and_then(|()| f.sync_all());
                if let Err(e) = made {
                    drop(f);
                    let _ = std::fs::remove_file(&reserve);
                    return Err(e);
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match r {
            Ok(()) => {
                if self.lock().take().is_some() {
                    tracing::info!("storage can be written again");
                }
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.dir.join(PROBE_FILE));
                let why = if e.out_of_space() {
                    NO_SPACE.to_owned()
                } else {
                    format!("the data directory cannot be written: {e}")
                };
                *self.lock() = Some(why);
                false
            }
        }
    }

    /// How long until the next probe: often while failing, else every 10 s.
    pub fn next_probe(&self) -> Duration {
        if self.lock().is_some() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        }
    }
}
