//! Private key material for notarium: the key files docker and notary write (encrypted
//! PKCS#8 PEM with `role:`/`gun:` headers), key generation, root certificates.
#![forbid(unsafe_code)]

pub mod cert;
pub(crate) mod der;
pub mod error;
pub mod file;
pub mod private;
pub mod store;

pub use error::{KeyError, Result};
pub use private::{Algorithm, PrivateKey};

/// For fuzzing: parse arbitrary bytes as every key format notarium reads.
pub fn fuzz_parse(data: &[u8]) {
    let _ = file::inspect(data);
    let _ = file::read(data, Some("fuzz-passphrase"));
    let _ = PrivateKey::from_pkcs8_der(data);
    let _ = PrivateKey::from_sec1_der(data);
    let _ = PrivateKey::from_pkcs1_der(data);
    let _ = PrivateKey::from_notary_ed25519(data);
    let _ = cert::read_public_key(data, tuf::DateTime::from_unix_secs(0));
}
