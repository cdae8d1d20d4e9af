//! TLS for client connections, by docker's rules: the system's CA certificates plus every
//! `*.crt` in `<config>/tls/<host:port>/`; a client certificate from a `*.cert` with the
//! `*.key` of the same name; verification skipped only where docker skips it (the trust
//! server of a loopback registry).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::NetError;

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `<config>/tls/<host:port>/`, read when it exists.
    pub cert_dir: Option<std::path::PathBuf>,
    pub insecure_skip_verify: bool,
}

/// The system's CA certificates: `SSL_CERT_FILE`/`SSL_CERT_DIR` when set, else the
/// distribution's bundle file (as Go finds it), else whatever the platform probe finds.
/// The bundle holds every certificate of `/etc/ssl/certs`; reading it instead of the
/// directory's ~300 files saves a few milliseconds on every command.
fn system_roots() -> Vec<CertificateDer<'static>> {
    const BUNDLES: [&str; 6] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let from_env = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !from_env {
        if let Some(bundle) = BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            let found = rustls_native_certs::load_certs_from_paths(Some(bundle), None);
            if !found.certs.is_empty() {
                return found.certs;
            }
        }
    }
    rustls_native_certs::load_native_certs().certs
}

pub fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, NetError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| NetError::Config(e.to_string()))?;
    // CA certificates from the TLS directory; the system's are added (lazily) below.
    let mut roots = rustls::RootCertStore::empty();
    let mut client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> = None;
    if let Some(dir) = &opts.cert_dir {
        if dir.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| NetError::Config(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in &entries {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Some(stem) = name.strip_suffix(".crt") {
                    let _ = stem;
                    for c in read_certs(p)? {
                        roots
                            .add(c)
                            .map_err(|e| NetError::Config(format!("{}: {e}", p.display())))?;
                    }
                } else if let Some(stem) = name.strip_suffix(".cert") {
                    let key = dir.join(format!("{stem}.key"));
                    if !key.exists() {
                        return Err(NetError::Config(format!(
                            "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                            key.display(),
                            p.display()
                        )));
                    }
                    let certs = read_certs(p)?;
                    let k = read_key(&key)?;
                    client_auth = Some((certs, k));
                } else if let Some(stem) = name.strip_suffix(".key") {
                    if !dir.join(format!("{stem}.cert")).exists() {
                        return Err(NetError::Config(format!(
                            "missing client certificate {stem}.cert for key {}",
                            p.display()
                        )));
                    }
                }
            }
        }
    }
    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else if roots.is_empty() {
        let mut system = rustls::RootCertStore::empty();
        system.add_parsable_certificates(system_roots());
        builder.with_root_certificates(system)
    } else {
        let verifier = DirThenSystem::new(roots, provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut cfg = match client_auth {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| NetError::Config(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn read_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let data = std::fs::read(p).map_err(|e| NetError::Config(format!("{}: {e}", p.display())))?;
    rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Config(format!("{}: {e}", p.display())))
}

fn read_key(p: &Path) -> Result<PrivateKeyDer<'static>, NetError> {
    let data = std::fs::read(p).map_err(|e| NetError::Config(format!("{}: {e}", p.display())))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| NetError::Config(format!("{}: {e}", p.display())))?
        .ok_or_else(|| NetError::Config(format!("{}: no private key", p.display())))
}

/// Docker trusts the system's CAs plus the TLS directory's. A chain that ends at a
/// directory CA (a private trust server: the common case) is verified without reading
/// the system's ~150 certificates; any other is verified against those, read then.
/// Either way the chain is accepted exactly when it ends at one of the two sets.
#[derive(Debug)]
struct DirThenSystem {
    dir: Arc<rustls::client::WebPkiServerVerifier>,
    system: std::sync::OnceLock<Result<Arc<rustls::client::WebPkiServerVerifier>, String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DirThenSystem {
    fn new(
        dir: rustls::RootCertStore,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, NetError> {
        let dir = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(dir),
            provider.clone(),
        )
        .build()
        .map_err(|e| NetError::Config(e.to_string()))?;
        Ok(DirThenSystem {
            dir,
            system: std::sync::OnceLock::new(),
            provider,
        })
    }

    fn system(&self) -> Result<&Arc<rustls::client::WebPkiServerVerifier>, rustls::Error> {
        self.system
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(system_roots());
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl ServerCertVerifier for DirThenSystem {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .dir
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => self
                .system()?
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.dir.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.dir.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.dir.supported_verify_schemes()
    }
}

/// Docker's InsecureSkipVerify: the handshake still happens, the certificate is not checked.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
