//! Sealing server-held private keys at rest.
//!
//! One master key is derived from the operator's passphrase with PBKDF2-HMAC-SHA256 (salt
//! and iteration count are stored with the data, fixed when the data directory is created);
//! every private key is sealed with AES-256-GCM under it, with the key ID as associated
//! data, so a sealed blob cannot be moved to another key's row. A known value sealed at
//! creation tells a wrong passphrase apart from corrupt data at start-up.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::storage::Storage;

pub const DEFAULT_KDF_ITERATIONS: u32 = 600_000;
const CHECK_PLAINTEXT: &[u8] = b"notarium: this passphrase opens these keys";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key passphrase does not open the server keys stored in this data directory")]
    WrongPassphrase,
    #[error("sealed key data is corrupt or belongs to another key")]
    Corrupt,
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Crypto(&'static str),
}

pub struct MasterKey {
    key: LessSafeKey,
}

impl MasterKey {
    /// Derive the master key for the data in `storage`, creating salt and check value on
    /// first use. `iterations` only matters then; afterwards the stored count is used.
    pub async fn open(
        storage: &dyn Storage,
        passphrase: &str,
        iterations: u32,
    ) -> Result<Self, SecretError> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| SecretError::Crypto("no randomness"))?;
        let salt = storage.init_setting("kdf_salt", &salt).await?;
        let iters = storage
            .init_setting("kdf_iterations", iterations.to_string().as_bytes())
            .await?;
        let iters: u32 = std::str::from_utf8(&iters)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .ok_or(SecretError::Crypto("bad stored kdf_iterations"))?;
        let mut raw = Zeroizing::new([0u8; 32]);
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iters).ok_or(SecretError::Crypto("zero iterations"))?,
            &salt,
            passphrase.as_bytes(),
            &mut raw[..],
        );
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &raw[..]).map_err(|_| SecretError::Crypto("aes key"))?,
        );
        let mk = MasterKey { key };
        let check = mk.seal("check", CHECK_PLAINTEXT)?;
        let stored = storage.init_setting("kdf_check", &check).await?;
        match mk.open_sealed("check", &stored) {
            Ok(p) if p.as_slice() == CHECK_PLAINTEXT => Ok(mk),
            _ => Err(SecretError::WrongPassphrase),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretError::Crypto("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Crypto("seal"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open_sealed(&self, aad: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Corrupt)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Corrupt)?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}
