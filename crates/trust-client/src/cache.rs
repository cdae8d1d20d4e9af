//! The TUF cache docker keeps: `<config>/trust/tuf/<gun>/metadata/<role>.json` (delegations
//! in subdirectories), directories 0700, files 0600, written atomically. Docker also
//! creates `changelist/` beside it, even for reads; so does notarium.

use std::path::PathBuf;

use tuf::client::Local;
use tuf::RoleName;

pub struct FileCache {
    dir: PathBuf,
}

impl FileCache {
    /// The cache of one repository (`<config>/trust/tuf/<gun>/`).
    pub fn new(repo_dir: PathBuf) -> Self {
        FileCache { dir: repo_dir }
    }

    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    pub fn path(&self, role: &RoleName) -> PathBuf {
        let mut p = self.metadata_dir();
        let mut segs = role.as_str().split('/').peekable();
        while let Some(s) = segs.next() {
            if segs.peek().is_some() {
                p = p.join(s);
            } else {
                p = p.join(format!("{s}.json"));
            }
        }
        p
    }

    /// Create `changelist/` and `metadata/` as docker does.
    pub fn prepare(&self) -> Result<(), String> {
        for d in [self.dir.join("changelist"), self.metadata_dir()] {
            keys::store::create_private_dir(&d).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Forget everything cached for the repository.
    pub fn clear(&self) -> Result<(), String> {
        match std::fs::remove_dir_all(self.metadata_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.metadata_dir().display())),
        }
    }
}

impl Local for FileCache {
    fn load(&self, role: &RoleName) -> Option<Vec<u8>> {
        std::fs::read(self.path(role))
            .ok()
            .filter(|b| !b.is_empty())
    }

    fn store(&mut self, role: &RoleName, bytes: &[u8]) -> Result<(), String> {
        let p = self.path(role);
        if let Some(parent) = p.parent() {
            keys::store::create_private_dir(parent).map_err(|e| e.to_string())?;
        }
        if std::fs::read(&p).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        keys::store::write_private_file(&p, bytes).map_err(|e| e.to_string())
    }

    fn remove(&mut self, role: &RoleName) {
        let _ = std::fs::remove_file(self.path(role));
    }
}
