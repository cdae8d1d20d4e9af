//! A trust server and a client cache in memory, for the TUF client's rules on their own
//! (no network, no clock: the time is passed in).

use std::collections::BTreeMap;
use std::sync::Arc;

use tuf::client::{Client, ClientError, FetchError, Fetched, Local, Remote};
use tuf::{DateTime, Gun, RoleName};

/// A trust server that serves exactly these files (`root.json`, `3.root.json`,
/// `snapshot.<sha256>.json`, …), refusing what is over the client's limit.
#[derive(Default, Clone)]
pub struct MemoryRemote(pub BTreeMap<String, Vec<u8>>);

impl Remote for MemoryRemote {
    fn fetch(&mut self, file: &str, limit: u64) -> Result<Fetched, FetchError> {
        Ok(match self.0.get(file) {
            Some(b) if b.len() as u64 > limit => Fetched::TooLarge,
            Some(b) => Fetched::Found(Arc::from(b.as_slice())),
            None => Fetched::NotFound,
        })
    }
}

/// A client's cache of trusted metadata.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub struct MemoryCache(pub BTreeMap<RoleName, Arc<[u8]>>);

impl Local for MemoryCache {
    fn load(&self, role: &RoleName) -> Option<Arc<[u8]>> {
        self.0.get(role).cloned()
    }
    fn store(&mut self, role: &RoleName, bytes: &[u8]) -> Result<(), String> {
        self.0.insert(role.clone(), Arc::from(bytes));
        Ok(())
    }
    fn remove(&mut self, role: &RoleName) {
        self.0.remove(role);
    }
}

/// Update `cache` from `remote` at `now`; on success the cache holds the new state and
/// the trusted root version is returned.
pub fn update(
    gun: &str,
    remote: &mut MemoryRemote,
    cache: &mut MemoryCache,
    now: DateTime,
) -> Result<u64, ClientError> {
    let mut c = Client::new(Gun::new(gun).unwrap(), remote, cache, now);
    c.update(false)?;
    c.commit()?;
    Ok(c.root().unwrap().signed().version)
}

/// Docker's lookup of `tag` (`targets/releases`, then `targets`) after an update: the
/// sha256 of the signed digest, or why there is none. The cache changes only on success.
pub fn lookup(
    gun: &str,
    remote: &mut MemoryRemote,
    cache: &mut MemoryCache,
    now: DateTime,
    tag: &str,
) -> Result<[u8; 32], String> {
    let mut c = Client::new(Gun::new(gun).unwrap(), remote, cache, now);
    c.update(false).map_err(|e| e.to_string())?;
    let found = c.find_target(tag).map_err(|e| e.to_string())?;
    let Some((_, meta)) = found else {
        return Err(format!(
            "no valid trust data for {tag} ({})",
            c.warnings().join("; ")
        ));
    };
    c.commit().map_err(|e| e.to_string())?;
    Ok(meta.hashes.sha256().unwrap().try_into().unwrap())
}
