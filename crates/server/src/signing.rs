//! The server's signing service: the timestamp and snapshot keys it holds per repository,
//! created on demand, persisted sealed, cached decrypted in memory (bounded).

use std::sync::Arc;

use keys::{Algorithm, PrivateKey};
use tuf::sign::Sign;
use tuf::upload::HeldKeys;
use tuf::{Gun, PublicKey, Root};

use crate::secrets::{MasterKey, SecretError};
use crate::storage::{KeyRecord, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum KeyServiceError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("key: {0}")]
    Key(#[from] keys::KeyError),
}

pub struct KeyService {
    storage: Arc<dyn Storage>,
    master: MasterKey,
    algorithm: Algorithm,
    cache: quick_cache::sync::Cache<String, Arc<PrivateKey>>,
    /// The keys held per repository (invalidated when one is created or deleted).
    held: quick_cache::sync::Cache<Gun, HeldKeys>,
    clock: Arc<dyn tuf::Clock>,
}

impl KeyService {
    pub fn new(
        storage: Arc<dyn Storage>,
        master: MasterKey,
        algorithm: Algorithm,
        cache_entries: usize,
        clock: Arc<dyn tuf::Clock>,
    ) -> Self {
        KeyService {
            storage,
            master,
            algorithm,
            cache: quick_cache::sync::Cache::new(cache_entries.max(16)),
            held: quick_cache::sync::Cache::new(cache_entries.max(16)),
            clock,
        }
    }

    async fn create(
        &self,
        gun: &Gun,
        role: &str,
        algorithm: keys::Algorithm,
    ) -> Result<Arc<PrivateKey>, KeyServiceError> {
        let key = PrivateKey::generate(algorithm)?;
        let id = key.id().to_string();
        let sealed = self.master.seal(&id, &key.to_pkcs8_der())?;
        self.storage
            .insert_key(&KeyRecord {
                key_id: id.clone(),
                gun: gun.to_string(),
                role: role.to_owned(),
                algorithm: key.algorithm_name().to_owned(),
                sealed,
                created_at: self.clock.now().unix_secs(),
            })
            .await?;
        let key = Arc::new(key);
        self.cache.insert(id, key.clone());
        self.held.remove(gun);
        Ok(key)
    }

    fn open(&self, rec: &KeyRecord) -> Result<Arc<PrivateKey>, KeyServiceError> {
        if let Some(k) = self.cache.get(&rec.key_id) {
            return Ok(k);
        }
        let der = self.master.open_sealed(&rec.key_id, &rec.sealed)?;
        let key = Arc::new(PrivateKey::from_pkcs8_der(&der)?);
        if key.id().as_str() != rec.key_id {
            return Err(SecretError::Corrupt.into());
        }
        self.cache.insert(rec.key_id.clone(), key.clone());
        Ok(key)
    }

    /// A key of this repository by ID, if the server holds it.
    async fn load(
        &self,
        gun: &Gun,
        key_id: &str,
    ) -> Result<Option<Arc<PrivateKey>>, KeyServiceError> {
        match self.storage.key(key_id).await? {
            Some(rec) if rec.gun == gun.as_str() => Ok(Some(self.open(&rec)?)),
            _ => Ok(None),
        }
    }

    /// Every key the server holds for a repository.
    pub async fn held(&self, gun: &Gun) -> Result<HeldKeys, KeyServiceError> {
        if let Some(h) = self.held.get(gun) {
            return Ok(h);
        }
        let mut out = HeldKeys::new();
        for rec in self.storage.keys_for(gun).await? {
            let k = self.open(&rec)?;
            out.insert(k.id().clone(), k as Arc<dyn Sign>);
        }
        self.held.insert(gun.clone(), out.clone());
        Ok(out)
    }

    /// `GET <role>.key`: the key the current root names for `role` when the server holds
    /// it, else the pending key (created once, the same on every call until root uses it).
    pub async fn current_or_pending(
        &self,
        gun: &Gun,
        role: &str,
        root: Option<&Root>,
    ) -> Result<PublicKey, KeyServiceError> {
        if let Some(r) = root.and_then(|r| r.roles.get(role)) {
            for id in &r.keyids {
                if let Some(k) = self.load(gun, id.as_str()).await? {
                    return Ok(k.public().clone());
                }
            }
        }
        self.pending(gun, role, root, None).await
    }

    /// `POST <role>.key`: a key to rotate to. The same pending key is returned until a root
    /// that lists it is published; then the next call makes a new one. `algorithm` (the
    /// server's default when `None`): a pending key of another algorithm is replaced.
    pub async fn pending(
        &self,
        gun: &Gun,
        role: &str,
        root: Option<&Root>,
        algorithm: Option<keys::Algorithm>,
    ) -> Result<PublicKey, KeyServiceError> {
        let in_root = |id: &str| {
            root.and_then(|r| r.roles.get(role))
                .is_some_and(|r| r.keyids.iter().any(|k| k.as_str() == id))
        };
        for _ in 0..8 {
            let current = self.storage.pending_key(gun, role).await?;
            if let Some(id) = &current {
                if !in_root(id) {
                    if let Some(k) = self.load(gun, id).await? {
                        if algorithm.is_none_or(|a| k.algorithm() == Some(a)) {
                            return Ok(k.public().clone());
                        }
                    }
                }
            }
            let k = self
                .create(gun, role, algorithm.unwrap_or(self.algorithm))
                .await?;
            if self
                .storage
                .set_pending_key(gun, role, current.as_deref(), k.id().as_str())
                .await?
            {
                return Ok(k.public().clone());
            }
            // Another request (or server) won the race: use its key, drop ours.
            self.storage.delete_key(k.id().as_str()).await?;
            self.cache.remove(k.id().as_str());
            self.held.remove(gun);
        }
        Err(StorageError::Conflict("pending key kept changing".into()).into())
    }

    /// Forget which keys a repository has (another server may have made some).
    pub fn refresh(&self, gun: &Gun) {
        self.held.remove(gun);
    }

    /// Forget cached keys of a deleted repository.
    pub fn forget(&self, gun: &Gun, ids: &[String]) {
        for id in ids {
            self.cache.remove(id);
        }
        self.held.remove(gun);
    }
}
