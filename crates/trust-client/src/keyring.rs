//! Private keys in docker's store (`<config>/trust/private/<id>.key`), opened with the
//! passphrase rules of [`crate::passphrase`].

use keys::store::KeyStore;
use keys::{file, Algorithm, KeyError, PrivateKey};
use registry::client::DockerConfig;
use tuf::{Gun, KeyId, PublicKey};

use crate::error::{Result, TrustError};
use crate::passphrase::Passphrases;

pub struct Keyring {
    pub store: KeyStore,
}

impl Keyring {
    pub fn new(config: &DockerConfig) -> Self {
        Keyring {
            store: KeyStore::new(config.private_dir()),
        }
    }

    /// Whether the private half of a listed key is here (by its canonical ID).
    pub fn holds(&self, listed: &PublicKey) -> bool {
        listed
            .canonical_id()
            .is_ok_and(|id| self.store.contains(&id))
    }

    /// Open the private key of a listed public key, or `None` when it is not here.
    pub fn open(&self, pass: &mut Passphrases, listed: &PublicKey) -> Result<Option<PrivateKey>> {
        let Ok(id) = listed.canonical_id() else {
            return Ok(None);
        };
        if !self.store.contains(&id) {
            return Ok(None);
        }
        self.open_id(pass, &id).map(Some)
    }

    /// Open a stored key by ID, asking for its passphrase (docker's alias: the file's
    /// `role` header).
    pub fn open_id(&self, pass: &mut Passphrases, id: &KeyId) -> Result<PrivateKey> {
        let text = self.store.read(id)?;
        let info = file::inspect(&text)?;
        if !info.encrypted {
            return Ok(file::read(&text, None)?.key);
        }
        let alias = info.role.clone().unwrap_or_else(|| "default".into());
        let mut attempt = 0;
        loop {
            let (p, _source) = match pass.existing(&alias, id.as_str(), attempt) {
                Ok(x) => x,
                Err(crate::passphrase::PassphraseError::TooManyAttempts) => {
                    return Err(TrustError::WrongPassphrase {
                        role: crate::passphrase::display_alias(&alias).to_owned(),
                        id: id.short(7).to_owned(),
                    })
                }
                Err(e) => return Err(e.into()),
            };
            match file::read(&text, Some(&p)) {
                Ok(kf) => {
                    if kf.key.id() != id {
                        return Err(TrustError::Other(format!(
                            "{}: the key inside is {}, not {id}",
                            self.store.path_of(id).display(),
                            kf.key.id()
                        )));
                    }
                    pass.remember(&alias, &p);
                    return Ok(kf.key);
                }
                Err(KeyError::WrongPassphrase) => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// IDs of the root keys here, sorted (docker reuses the first).
    pub fn root_key_ids(&self) -> Result<Vec<KeyId>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .filter(|k| k.info.role.as_deref() == Some("root"))
            .map(|k| k.id)
            .collect())
    }

    /// A new ECDSA key, stored encrypted with a new passphrase under `role` (and `gun`).
    pub fn generate(
        &self,
        pass: &mut Passphrases,
        role: &str,
        gun: Option<&Gun>,
    ) -> Result<PrivateKey> {
        let key = PrivateKey::generate(Algorithm::Ecdsa)?;
        let p = pass.new_key(role, key.id().as_str())?;
        let text = file::write(&key, role, gun.map(|g| g.as_str()), Some(&p))?;
        self.store.save(key.id(), &text)?;
        Ok(key)
    }

    /// Store an existing key under `role`, encrypted with a new passphrase.
    pub fn import(
        &self,
        pass: &mut Passphrases,
        key: &PrivateKey,
        role: &str,
        gun: Option<&Gun>,
    ) -> Result<bool> {
        if self.store.contains(key.id()) {
            return Ok(false);
        }
        let p = pass.new_key(role, key.id().as_str())?;
        let text = file::write(key, role, gun.map(|g| g.as_str()), Some(&p))?;
        self.store.save(key.id(), &text)?;
        Ok(true)
    }
}
