//! Private key files exactly as docker and notary write them:
//!
//! ```text
//! -----BEGIN ENCRYPTED PRIVATE KEY-----
//! gun: registry.example.com/foo/bar
//! role: targets
//!
//! MIHuMEkGCSqGSIb3DQEFDTA8…
//! -----END ENCRYPTED PRIVATE KEY-----
//! ```
//!
//! PKCS#8 `EncryptedPrivateKeyInfo`, PBES2 with PBKDF2-HMAC-SHA1 (no PRF element), 2048
//! iterations, an 8-byte salt and AES-256-CBC with a 16-byte IV. Reading also accepts
//! OpenSSL 3's PRF HMAC-SHA256 and the unencrypted PEM types.

use pkcs5::pbes2;
use pkcs8::der::{Decode as _, Encode as _};
use pkcs8::EncryptedPrivateKeyInfo;
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::private::PrivateKey;

pub const PBKDF2_ITERATIONS: u32 = 2048;

/// What a key file says about itself, readable without its passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileInfo {
    pub pem_type: String,
    pub role: Option<String>,
    pub gun: Option<String>,
    pub encrypted: bool,
}

/// A decrypted key file.
#[derive(Debug)]
pub struct KeyFile {
    pub role: Option<String>,
    pub gun: Option<String>,
    pub key: PrivateKey,
}

const PRIVATE_TYPES: [&str; 5] = [
    "ENCRYPTED PRIVATE KEY",
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "ED25519 PRIVATE KEY",
];

fn parse_pem(text: &[u8]) -> Result<pem::Pem> {
    let p = pem::parse(text).map_err(|e| KeyError::NotPem(e.to_string()))?;
    if p.tag() == "PUBLIC KEY" || p.tag() == "CERTIFICATE" {
        return Err(KeyError::PublicKeyOnly);
    }
    if !PRIVATE_TYPES.contains(&p.tag()) {
        return Err(KeyError::UnsupportedPemType(p.tag().to_owned()));
    }
    Ok(p)
}

fn header(p: &pem::Pem, name: &str) -> Option<String> {
    p.headers().get(name).map(|v| v.trim().to_owned())
}

/// Read the PEM type and headers of a key file without decrypting it.
pub fn inspect(text: &[u8]) -> Result<KeyFileInfo> {
    let p = parse_pem(text)?;
    Ok(KeyFileInfo {
        pem_type: p.tag().to_owned(),
        role: header(&p, "role"),
        gun: header(&p, "gun"),
        encrypted: p.tag() == "ENCRYPTED PRIVATE KEY",
    })
}

/// Read and, when encrypted, decrypt a key file.
pub fn read(text: &[u8], passphrase: Option<&str>) -> Result<KeyFile> {
    let p = parse_pem(text)?;
    let key = match p.tag() {
        "ENCRYPTED PRIVATE KEY" => {
            let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
            let plain = decrypt_pkcs8(p.contents(), pass)?;
            // A wrong passphrase can, rarely, still give valid padding; the inner structure
            // then fails to parse, which means the same thing to the user.
            PrivateKey::from_pkcs8_der(&plain).map_err(|_| KeyError::WrongPassphrase)?
        }
        "PRIVATE KEY" => PrivateKey::from_pkcs8_der(p.contents())?,
        "EC PRIVATE KEY" => PrivateKey::from_sec1_der(p.contents())?,
        "RSA PRIVATE KEY" => PrivateKey::from_pkcs1_der(p.contents())?,
        "ED25519 PRIVATE KEY" => PrivateKey::from_notary_ed25519(p.contents())?,
        other => return Err(KeyError::UnsupportedPemType(other.to_owned())),
    };
    Ok(KeyFile {
        role: header(&p, "role"),
        gun: header(&p, "gun"),
        key,
    })
}

fn decrypt_pkcs8(der: &[u8], passphrase: &str) -> Result<Zeroizing<Vec<u8>>> {
    let info = EncryptedPrivateKeyInfo::from_der(der)
        .map_err(|e| KeyError::Malformed(format!("encrypted PKCS#8: {e}")))?;
    match &info.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(params) => {
            if !matches!(params.kdf, pbes2::Kdf::Pbkdf2(_)) {
                return Err(KeyError::UnsupportedEncryption(
                    "key derivation other than PBKDF2".into(),
                ));
            }
        }
        _ => return Err(KeyError::UnsupportedEncryption("PBES1".into())),
    }
    // Decrypt without parsing: garbage from a wrong passphrase must read as exactly that.
    let plain = info
        .encryption_algorithm
        .decrypt(passphrase.as_bytes(), info.encrypted_data)
        .map_err(|e| match e {
            // pkcs5 0.7 reports bad padding on decryption as `EncryptFailed`.
            pkcs5::Error::DecryptFailed | pkcs5::Error::EncryptFailed => KeyError::WrongPassphrase,
            pkcs5::Error::UnsupportedAlgorithm { oid } => {
                KeyError::UnsupportedEncryption(format!("algorithm {oid}"))
            }
            other => KeyError::Malformed(format!("encrypted PKCS#8: {other}")),
        })?;
    Ok(Zeroizing::new(plain))
}

/// Write a key file as docker does. `gun` is written only when given (docker: for
/// targets/snapshot/timestamp keys). Without a passphrase the file is an unencrypted
/// `PRIVATE KEY`, which docker itself never writes.
pub fn write(
    key: &PrivateKey,
    role: &str,
    gun: Option<&str>,
    passphrase: Option<&str>,
) -> Result<Zeroizing<String>> {
    let plain = key.to_pkcs8_der();
    let mut headers: Vec<(&str, &str)> = vec![("role", role)];
    if let Some(g) = gun {
        headers.push(("gun", g));
    }
    let pem = match passphrase {
        Some(pass) => {
            let der = encrypt_pkcs8(&plain, pass)?;
            tuf::x509::go_pem("ENCRYPTED PRIVATE KEY", &headers, &der)
        }
        None => tuf::x509::go_pem("PRIVATE KEY", &headers, &plain),
    };
    Ok(Zeroizing::new(pem))
}

fn encrypt_pkcs8(plain: &[u8], passphrase: &str) -> Result<Vec<u8>> {
    use aws_lc_rs::rand::SecureRandom as _;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut salt = [0u8; 8];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt)
        .and_then(|_| rng.fill(&mut iv))
        .map_err(|_| KeyError::Other("no randomness for key encryption".into()))?;
    let params = pbes2::Parameters {
        kdf: pbes2::Kdf::Pbkdf2(pbes2::Pbkdf2Params {
            salt: &salt,
            iteration_count: PBKDF2_ITERATIONS,
            key_length: None,
            prf: pbes2::Pbkdf2Prf::HmacWithSha1,
        }),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv },
    };
    let scheme = pkcs5::EncryptionScheme::Pbes2(params);
    let ct = scheme
        .encrypt(passphrase.as_bytes(), plain)
        .map_err(|e| KeyError::Other(format!("key encryption failed: {e}")))?;
    EncryptedPrivateKeyInfo {
        encryption_algorithm: scheme,
        encrypted_data: &ct,
    }
    .to_der()
    .map_err(|e| KeyError::Other(format!("key encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::Algorithm;

    #[test]
    fn write_then_read() {
        let k = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let text = write(&k, "targets", Some("example.com/a/b"), Some("passphrase1")).unwrap();
        assert!(text.starts_with(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: example.com/a/b\nrole: targets\n\n"
        ));
        let info = inspect(text.as_bytes()).unwrap();
        assert_eq!(info.role.as_deref(), Some("targets"));
        assert_eq!(info.gun.as_deref(), Some("example.com/a/b"));
        assert!(info.encrypted);
        let f = read(text.as_bytes(), Some("passphrase1")).unwrap();
        assert_eq!(f.key.id(), k.id());
        let e = read(text.as_bytes(), Some("wrong")).unwrap_err();
        assert!(matches!(e, KeyError::WrongPassphrase), "{e:?}");
        assert!(matches!(
            read(text.as_bytes(), None),
            Err(KeyError::PassphraseRequired)
        ));
    }

    #[test]
    fn unencrypted_and_refusals() {
        let k = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let text = write(&k, "timestamp", None, None).unwrap();
        assert_eq!(read(text.as_bytes(), None).unwrap().key.id(), k.id());
        assert!(matches!(read(b"not pem", None), Err(KeyError::NotPem(_))));
        let public = tuf::x509::go_pem("PUBLIC KEY", &[], k.public().public_bytes());
        assert!(matches!(
            read(public.as_bytes(), None),
            Err(KeyError::PublicKeyOnly)
        ));
        let other = tuf::x509::go_pem("DSA PRIVATE KEY", &[], b"x");
        assert!(matches!(
            read(other.as_bytes(), None),
            Err(KeyError::UnsupportedPemType(_))
        ));
    }
}
