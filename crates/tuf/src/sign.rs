//! Producing signatures. The private key material lives in `notarium-keys` (or on the
//! server); this crate only needs something that can sign bytes.

use crate::error::{Error, Result};
use crate::key::{KeyId, PublicKey, SignatureMethod};
use crate::metadata::Signature;

/// Anything holding a private key.
pub trait Sign: Send + Sync {
    /// The plain public key (for x509-wrapped root keys, the key inside the certificate).
    fn public_key(&self) -> &PublicKey;
    /// The scheme this key signs with (ECDSA → `ecdsa`, ed25519 → `eddsa`, RSA → `rsapss`).
    fn method(&self) -> SignatureMethod;
    /// Sign the canonical bytes.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String>;
}

/// A key used to sign a role, with the ID under which metadata lists it.
pub struct SigningKey<'a> {
    pub listed_as: KeyId,
    pub signer: &'a dyn Sign,
}

impl<'a> SigningKey<'a> {
    /// A key listed as itself (every key but an x509-wrapped root key).
    pub fn plain(signer: &'a dyn Sign) -> Self {
        SigningKey {
            listed_as: signer.public_key().id().clone(),
            signer,
        }
    }

    /// A key listed under another public key, e.g. a root certificate wrapping it.
    pub fn listed(listed: &PublicKey, signer: &'a dyn Sign) -> Self {
        SigningKey {
            listed_as: listed.id().clone(),
            signer,
        }
    }

    pub(crate) fn sign(&self, role: &str, canonical: &[u8]) -> Result<Signature> {
        let sig = self.signer.sign(canonical).map_err(|msg| Error::Sign {
            role: role.to_owned(),
            keyid: self.listed_as.to_string(),
            msg,
        })?;
        Ok(Signature {
            keyid: self.listed_as.clone(),
            method: self.signer.method(),
            sig,
        })
    }
}
