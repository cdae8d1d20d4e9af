//! The key that signs notarium's tokens and its certificate: generated under
//! `<data-dir>/auth/` on first start (the key encrypted with the server's key passphrase,
//! 0600), or the operator's (`token_key`, `token_cert`). Servers that share a database
//! share one generated key and certificate, kept in it ([`load_shared`]: the key sealed
//! like the servers' signing keys), so a token one of them issued is good at every other.
//! Either way the certificate (chain) is written to `<data-dir>/auth/token.crt`, the file a
//! registry's `auth.token.rootcertbundle` names.

use std::path::{Path, PathBuf};

use super::certs::Cert;
use super::AuthError;

pub struct TokenKey {
    pub key: keys::PrivateKey,
    /// Leaf first.
    pub chain: Vec<Cert>,
    pub cert_file: PathBuf,
}

/// Days a generated token certificate is valid.
pub const TOKEN_CERT_DAYS: i64 = 3650;

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuthError + '_ {
    move |e| AuthError::Config(format!("{}: {e}", path.display()))
}

/// The generated token key and certificate of servers that share `storage`: the first
/// server to start makes them, every other one (and every later start) reads them. The
/// key is sealed with the master key (a wrong passphrase is refused before this).
pub async fn load_shared(
    storage: &dyn crate::storage::Storage,
    master: &crate::secrets::MasterKey,
    data_dir: &Path,
    now: tuf::DateTime,
) -> Result<TokenKey, AuthError> {
    const KEY: &str = "token_key";
    const CERT: &str = "token_cert";
    let db = |e: crate::storage::StorageError| AuthError::Config(format!("token key: {e}"));
    let sealed = match storage.setting(KEY).await.map_err(db)? {
        Some(s) => s,
        None => {
            let key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa)
                .map_err(|e| AuthError::Config(format!("token key: {e}")))?;
            let sealed = master
                .seal(KEY, &key.to_pkcs8_der())
                .map_err(|e| AuthError::Config(format!("token key: {e}")))?;
            // Another server may have stored its key first: that one is kept.
            storage.init_setting(KEY, &sealed).await.map_err(db)?
        }
    };
    let der = master
        .open_sealed(KEY, &sealed)
        .map_err(|e| AuthError::Config(format!("the token key in the database: {e}")))?;
    let key = keys::PrivateKey::from_pkcs8_der(&der)
        .map_err(|e| AuthError::Config(format!("the token key in the database: {e}")))?;
    let pem = match storage.setting(CERT).await.map_err(db)? {
        Some(p) => p,
        None => {
            let der =
                keys::cert::self_signed(&key, "notarium token signer", now, TOKEN_CERT_DAYS, false)
                    .map_err(|e| AuthError::Config(format!("token certificate: {e}")))?;
            let pem = tuf::x509::go_pem("CERTIFICATE", &[], &der);
            storage
                .init_setting(CERT, pem.as_bytes())
                .await
                .map_err(db)?
        }
    };
    let chain = Cert::read_pem_bundle(&pem)
        .map_err(|e| AuthError::Config(format!("the token certificate in the database: {e}")))?;
    if !leaf_matches(&chain, &key) {
        return Err(AuthError::Config(
            "the token certificate in the database is not the token key's".into(),
        ));
    }
    if !chain[0].valid_for_days(now.unix_secs(), 30) {
        tracing::warn!(
            "the shared token certificate expires within 30 days: tokens stop working then"
        );
    }
    let dir = data_dir.join("auth");
    keys::store::create_private_dir(&dir)
        .map_err(|e| AuthError::Config(format!("{}: {e}", dir.display())))?;
    let cert_file = dir.join("token.crt");
    std::fs::write(&cert_file, &pem).map_err(io(&cert_file))?;
    Ok(TokenKey {
        key,
        chain,
        cert_file,
    })
}

fn leaf_matches(chain: &[Cert], key: &keys::PrivateKey) -> bool {
    chain
        .first()
        .is_some_and(|c| c.key.spki == key.public().public_bytes())
}

pub fn load(
    data_dir: &Path,
    given: Option<(&Path, &Path)>,
    passphrase: &str,
    now: tuf::DateTime,
) -> Result<TokenKey, AuthError> {
    let dir = data_dir.join("auth");
    keys::store::create_private_dir(&dir)
        .map_err(|e| AuthError::Config(format!("{}: {e}", dir.display())))?;
    let cert_file = dir.join("token.crt");
    if let Some((key_path, cert_path)) = given {
        let text = std::fs::read(key_path).map_err(io(key_path))?;
        let key = keys::file::read(&text, None)
            .map_err(|e| AuthError::Config(format!("{}: {e}", key_path.display())))?
            .key;
        let pem = std::fs::read(cert_path).map_err(io(cert_path))?;
        let chain = Cert::read_pem_bundle(&pem)
            .map_err(|e| AuthError::Config(format!("{}: {e}", cert_path.display())))?;
        if !key.is_ecdsa() || !leaf_matches(&chain, &key) {
            return Err(AuthError::Config(format!(
                "{} must be an ECDSA P-256 key and the first certificate of {} its certificate",
                key_path.display(),
                cert_path.display()
            )));
        }
        std::fs::write(&cert_file, &pem).map_err(io(&cert_file))?;
        return Ok(TokenKey {
            key,
            chain,
            cert_file,
        });
    }
    let key_file = dir.join("token.key");
    let key = if key_file.exists() {
        let text = std::fs::read(&key_file).map_err(io(&key_file))?;
        keys::file::read(&text, Some(passphrase))
            .map_err(|e| AuthError::Config(format!("{}: {e}", key_file.display())))?
            .key
    } else {
        let key = keys::PrivateKey::generate(keys::Algorithm::Ecdsa)
            .map_err(|e| AuthError::Config(format!("token key: {e}")))?;
        let pem = keys::file::write(&key, "token", None, Some(passphrase))
            .map_err(|e| AuthError::Config(format!("token key: {e}")))?;
        keys::store::write_private_file(&key_file, pem.as_bytes())
            .map_err(|e| AuthError::Config(format!("{}: {e}", key_file.display())))?;
        let _ = std::fs::remove_file(&cert_file);
        key
    };
    let existing = std::fs::read(&cert_file)
        .ok()
        .and_then(|pem| Cert::read_pem_bundle(&pem).ok())
        .filter(|chain| leaf_matches(chain, &key) && chain[0].valid_for_days(now.unix_secs(), 30));
    let chain = match existing {
        Some(c) => c,
        None => {
            let der =
                keys::cert::self_signed(&key, "notarium token signer", now, TOKEN_CERT_DAYS, false)
                    .map_err(|e| AuthError::Config(format!("token certificate: {e}")))?;
            let pem = tuf::x509::go_pem("CERTIFICATE", &[], &der);
            std::fs::write(&cert_file, pem).map_err(io(&cert_file))?;
            vec![Cert::parse(&der).map_err(AuthError::Config)?]
        }
    };
    Ok(TokenKey {
        key,
        chain,
        cert_file,
    })
}
