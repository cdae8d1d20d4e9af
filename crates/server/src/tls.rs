//! TLS for the server: the operator's certificate, or a CA and a server certificate that
//! notarium makes on first start under `<data-dir>/tls/` and reuses afterwards.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the generated (or given) TLS material is.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA clients must trust (`None` when the operator supplied the certificate).
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// SANs every generated server certificate carries.
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn san(name: &str) -> Result<SanType, TlsError> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            name.try_into()
                .map_err(|_| TlsError::Invalid(format!("bad TLS SAN {name:?}")))?,
        ),
    })
}

fn write_file(path: &Path, data: &str, private: bool) -> Result<(), TlsError> {
    if private {
        keys::store::write_private_file(path, data.as_bytes())
            .map_err(|e| TlsError::Invalid(e.to_string()))
    } else {
        std::fs::write(path, data).map_err(io(path))
    }
}

/// Make (first start) or reuse the CA and server certificate under `dir`. The server
/// certificate is re-issued by the same CA when `extra_sans` asks for names it lacks.
pub fn ensure_generated(dir: &Path, extra_sans: &[String]) -> Result<TlsFiles, TlsError> {
    keys::store::create_private_dir(dir).map_err(|e| TlsError::Invalid(e.to_string()))?;
    let ca_crt = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let crt = dir.join("server.crt");
    let key = dir.join("server.key");
    let sans: Vec<String> = DEFAULT_SANS
        .iter()
        .map(|s| s.to_string())
        .chain(extra_sans.iter().cloned())
        .collect();

    let (ca_cert, ca_kp) = if ca_crt.exists() && ca_key.exists() {
        let kp = KeyPair::from_pem(&std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?)?;
        let params = CertificateParams::from_ca_cert_pem(
            &std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?,
        )?;
        (params.self_signed(&kp)?, kp)
    } else {
        let kp = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut suffix = [0u8; 4];
        aws_lc_rs::rand::fill(&mut suffix)
            .map_err(|_| TlsError::Invalid("no randomness".into()))?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("notarium CA {}", hex::encode(suffix)),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = params.self_signed(&kp)?;
        write_file(&ca_key, &kp.serialize_pem(), true)?;
        write_file(&ca_crt, &cert.pem(), false)?;
        // A new CA invalidates any old server certificate.
        let _ = std::fs::remove_file(&crt);
        (cert, kp)
    };

    // Re-issued too when it expires within RENEW_BEFORE_DAYS (the server holds the CA).
    let covered = crt.exists() && key.exists() && {
        let pem = std::fs::read(&crt).map_err(io(&crt))?;
        let have = cert_sans(&pem);
        let fresh = cert_not_after(&pem).is_some_and(|t| {
            t - time::OffsetDateTime::now_utc() > time::Duration::days(RENEW_BEFORE_DAYS)
        });
        fresh && sans.iter().all(|s| have.contains(&normalize_san(s)))
    };
    if !covered {
        let kp = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "notarium");
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(SERVER_CERT_DAYS);
        let cert = params.signed_by(&kp, &ca_cert, &ca_kp)?;
        write_file(&key, &kp.serialize_pem(), true)?;
        write_file(&crt, &cert.pem(), false)?;
    }
    Ok(TlsFiles {
        ca: Some(ca_crt),
        cert: crt,
        key,
    })
}

fn normalize_san(s: &str) -> String {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| s.to_ascii_lowercase())
}

/// Days a generated server certificate is valid (what browsers and Apple accept).
pub const SERVER_CERT_DAYS: i64 = 825;

/// A generated server certificate this close to its end is issued again at start.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// When a PEM certificate (the first of a chain) stops being valid.
pub fn cert_not_after(pem_text: &[u8]) -> Option<time::OffsetDateTime> {
    let p = pem::parse(pem_text).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(p.contents()).ok()?;
    time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()
}

/// Days until the certificate in `path` expires (negative once expired); `None` when it
/// cannot be read.
pub fn days_left(path: &Path) -> Option<i64> {
    let t = cert_not_after(&std::fs::read(path).ok()?)?;
    Some((t - time::OffsetDateTime::now_utc()).whole_days())
}

/// The DNS names and IP addresses a PEM certificate is valid for.
fn cert_sans(pem_text: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(p) = pem::parse(pem_text) else {
        return Vec::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(p.contents()) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The certificate being served, swapped in place while the server runs: a generated one
/// is issued again near its end ([`RENEW_BEFORE_DAYS`]), a configured one is loaded again
/// when its files change (an operator's renewal). Handshakes already under way keep the
/// certificate they started with; the next one gets the new one.
pub struct Served {
    files: TlsFiles,
    /// The generated certificate's extra names (`None`: the operator's files).
    generated: Option<Vec<String>>,
    current: std::sync::RwLock<Loaded>,
}

struct Loaded {
    /// The files' bytes as loaded (a change means a reload).
    pem: (Vec<u8>, Vec<u8>),
    key: Arc<rustls::sign::CertifiedKey>,
    not_after: Option<i64>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("files", &self.files)
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let cert_pem = std::fs::read(&files.cert).map_err(io(&files.cert))?;
    let key_pem = std::fs::read(&files.key).map_err(io(&files.key))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(io(&files.cert))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate",
            files.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(io(&files.key))?
        .ok_or_else(|| TlsError::Invalid(format!("{}: no private key", files.key.display())))?;
    let key = rustls::sign::CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Invalid(format!("certificate and key: {e}")))?;
    let not_after = cert_not_after(&cert_pem).map(|t| t.unix_timestamp());
    Ok(Loaded {
        pem: (cert_pem, key_pem),
        key: Arc::new(key),
        not_after,
    })
}

impl Served {
    /// Load `files`; `generated`: they are this server's own (under its CA), made with
    /// these extra names.
    pub fn load(files: TlsFiles, generated: Option<Vec<String>>) -> Result<Served, TlsError> {
        let current = std::sync::RwLock::new(load(&files)?);
        Ok(Served {
            files,
            generated,
            current,
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// When the served certificate stops being valid (unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        self.current.read().map(|c| c.not_after).unwrap_or(None)
    }

    /// Renew a generated certificate near its end, and load the files again when they
    /// changed. `Ok(true)`: another certificate is served from now on. A failure leaves
    /// the current one served.
    pub fn check(&self) -> Result<bool, TlsError> {
        if let (Some(sans), Some(ca)) = (&self.generated, &self.files.ca) {
            let dir = ca.parent().unwrap_or(Path::new("."));
            ensure_generated(dir, sans)?;
        }
        let cert = std::fs::read(&self.files.cert).map_err(io(&self.files.cert))?;
        let key = std::fs::read(&self.files.key).map_err(io(&self.files.key))?;
        let unchanged = self
            .current
            .read()
            .map(|c| c.pem.0 == cert && c.pem.1 == key)
            .unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let fresh = load(&self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(true)
    }
}

impl rustls::server::ResolvesServerCert for Served {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|c| c.key.clone())
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1) serving what
/// `served` holds.
pub fn server_config(served: Arc<Served>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(served);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Put a server certificate valid `days` more, from the directory's own CA, in place.
    fn issue_for(dir: &Path, days: i64) {
        let ca_kp =
            KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
        let ca = CertificateParams::from_ca_cert_pem(
            &std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        )
        .unwrap()
        .self_signed(&ca_kp)
        .unwrap();
        let kp = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = DEFAULT_SANS.iter().map(|s| san(s).unwrap()).collect();
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(800);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = p.signed_by(&kp, &ca, &ca_kp).unwrap();
        std::fs::write(dir.join("server.key"), kp.serialize_pem()).unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    }

    /// The server holds its CA: a generated certificate near its end is issued again when
    /// the server starts (by the same CA, so clients that trust it notice nothing); one
    /// with time left is kept.
    #[test]
    fn a_generated_certificate_near_its_end_is_renewed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        ensure_generated(dir, &[]).unwrap();
        let ca = std::fs::read(dir.join("ca.crt")).unwrap();
        let left = days_left(&dir.join("server.crt")).unwrap();
        assert!(
            (SERVER_CERT_DAYS - 1..=SERVER_CERT_DAYS).contains(&left),
            "{left}"
        );

        issue_for(dir, 100);
        let kept = std::fs::read(dir.join("server.crt")).unwrap();
        ensure_generated(dir, &[]).unwrap();
        assert_eq!(
            std::fs::read(dir.join("server.crt")).unwrap(),
            kept,
            "100 days left: kept"
        );

        issue_for(dir, 10);
        ensure_generated(dir, &[]).unwrap();
        let left = days_left(&dir.join("server.crt")).unwrap();
        assert!(left >= SERVER_CERT_DAYS - 1, "renewed: {left} days left");
        assert_eq!(
            std::fs::read(dir.join("ca.crt")).unwrap(),
            ca,
            "by the same CA"
        );
        // Expired already: renewed as well.
        issue_for(dir, -3);
        ensure_generated(dir, &[]).unwrap();
        assert!(days_left(&dir.join("server.crt")).unwrap() >= SERVER_CERT_DAYS - 1);
    }
}
