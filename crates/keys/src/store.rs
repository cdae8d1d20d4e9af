//! The private key directory docker uses: `<config>/trust/private/<keyid>.key`, flat,
//! directory 0700, files 0600, each written atomically (temp file, fsync, rename).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tuf::KeyId;

use crate::error::{KeyError, Result};
use crate::file::{self, KeyFileInfo};

#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

/// A key in the store, known by its file name and headers (not decrypted).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: KeyId,
    pub info: KeyFileInfo,
    pub path: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, id: &KeyId) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// Every readable key file, sorted by ID. Files that are not `<64 hex>.key` or not
    /// private keys are skipped.
    pub fn list(&self) -> Result<Vec<StoredKey>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io(&self.dir))?;
            let path = e.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|n| KeyId::new(n).ok())
            else {
                continue;
            };
            let Ok(text) = fs::read(&path) else { continue };
            if let Ok(info) = file::inspect(&text) {
                out.push(StoredKey { id, info, path });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn contains(&self, id: &KeyId) -> bool {
        self.path_of(id).is_file()
    }

    /// The key file's text (still encrypted).
    pub fn read(&self, id: &KeyId) -> Result<Vec<u8>> {
        let p = self.path_of(id);
        fs::read(&p).map_err(io(&p))
    }

    /// Store a key file under `id`, replacing any existing file atomically.
    pub fn save(&self, id: &KeyId, text: &str) -> Result<PathBuf> {
        create_private_dir(&self.dir)?;
        let path = self.path_of(id);
        write_private_file(&path, text.as_bytes())?;
        Ok(path)
    }

    pub fn remove(&self, id: &KeyId) -> Result<()> {
        let p = self.path_of(id);
        fs::remove_file(&p).map_err(io(&p))
    }
}

/// Create a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let mode = fs::metadata(dir).map_err(io(dir))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Write a file with mode 0600 atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves the old file or the new one, never a torn one.
pub fn write_private_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| KeyError::Other("no randomness".into()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        hex::encode(rnd)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, PrivateKey};

    #[test]
    fn saved_keys_are_private_and_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path().join("trust/private"));
        assert!(store.list().unwrap().is_empty());
        let k = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let text = file::write(&k, "alice", None, Some("passphrase")).unwrap();
        let path = store.save(k.id(), &text).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(store.dir().join("README"), "not a key").unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(&listed[0].id, k.id());
        assert_eq!(listed[0].info.role.as_deref(), Some("alice"));
        // No temp files left behind.
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 2);
        let back = file::read(&store.read(k.id()).unwrap(), Some("passphrase")).unwrap();
        assert_eq!(back.key.id(), k.id());
    }
}
