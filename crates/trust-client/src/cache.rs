//! The TUF cache docker keeps: `<config>/trust/tuf/<gun>/metadata/<role>.json` (delegations
//! in subdirectories), directories 0700, files 0600, written atomically. Docker also
//! creates `changelist/` beside it, even for reads; so does notarium.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tuf::client::Local;
use tuf::RoleName;

#[derive(Clone)]
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

/// A file read straight into shared memory: one allocation of its size (a cached role
/// can be 10 MB; reading into a `Vec` and copying would allocate it twice).
fn read_shared(path: &Path) -> std::io::Result<Arc<[u8]>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    let mut bytes: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
    let Some(buf) = Arc::get_mut(&mut bytes) else {
        return Err(std::io::Error::other("shared buffer"));
    };
    f.read_exact(buf)?;
    // Changed while read: read it whole instead.
    if f.read(&mut [0u8; 1])? != 0 {
        return std::fs::read(path).map(Into::into);
    }
    Ok(bytes)
}

impl Local for FileCache {
    fn load(&self, role: &RoleName) -> Option<Arc<[u8]>> {
        read_shared(&self.path(role)).ok().filter(|b| !b.is_empty())
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
