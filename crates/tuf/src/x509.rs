//! The parts of X.509 Notary uses: root keys are self-signed certificates (CN = GUN), and
//! every key's SubjectPublicKeyInfo must be read to verify with it.

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const SHA1_SIGNATURES: [&str; 3] = [
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ecdsa,
    Rsa,
    Other,
}

/// A SubjectPublicKeyInfo, taken apart.
#[derive(Debug, Clone)]
pub struct Spki {
    pub algorithm: KeyAlgorithm,
    /// The BIT STRING contents: an EC point, or a PKCS#1 RSAPublicKey.
    pub key_bits: Vec<u8>,
    pub p256: bool,
    pub rsa_bits: usize,
}

pub fn parse_spki(der: &[u8]) -> Result<Spki, String> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| format!("bad SubjectPublicKeyInfo: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after SubjectPublicKeyInfo".into());
    }
    Ok(spki_parts(&spki))
}

fn spki_parts(spki: &SubjectPublicKeyInfo<'_>) -> Spki {
    let oid = spki.algorithm.algorithm.to_id_string();
    let algorithm = match oid.as_str() {
        OID_EC_PUBLIC_KEY => KeyAlgorithm::Ecdsa,
        OID_RSA => KeyAlgorithm::Rsa,
        _ => KeyAlgorithm::Other,
    };
    let p256 = algorithm == KeyAlgorithm::Ecdsa
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|o| o.to_id_string() == OID_P256);
    let rsa_bits = match spki.parsed() {
        Ok(ParsedKey::RSA(k)) => k.key_size(),
        _ => 0,
    };
    Spki {
        algorithm,
        key_bits: spki.subject_public_key.data.to_vec(),
        p256,
        rsa_bits,
    }
}

/// What root validation needs to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub sha1_signed: bool,
    pub key_algorithm: KeyAlgorithm,
    pub spki_der: Vec<u8>,
    pub rsa_bits: usize,
}

pub fn parse_cert(der: &[u8]) -> Result<CertInfo, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after certificate".into());
    }
    let spki = cert.public_key();
    let parts = spki_parts(spki);
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        der: der.to_vec(),
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        sha1_signed: SHA1_SIGNATURES
            .contains(&cert.signature_algorithm.algorithm.to_id_string().as_str()),
        key_algorithm: parts.algorithm,
        spki_der: spki.raw.to_vec(),
        rsa_bits: parts.rsa_bits,
    })
}

/// Whether certificate `der` carries a valid signature by the key of certificate
/// `issuer_der` (ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1 v1.5 with SHA-256/384/512;
/// SHA-1 is never accepted), and `issuer_der` is a CA certificate.
pub fn signed_by(der: &[u8], issuer_der: &[u8]) -> bool {
    use aws_lc_rs::signature as sig;
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(der),
        X509Certificate::from_der(issuer_der),
    ) else {
        return false;
    };
    if !issuer.is_ca() || cert.issuer() != issuer.subject() {
        return false;
    }
    let alg: &dyn sig::VerificationAlgorithm =
        match cert.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.4.3.2" => &sig::ECDSA_P256_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &sig::ECDSA_P384_SHA384_ASN1,
            "1.2.840.113549.1.1.11" => &sig::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &sig::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &sig::RSA_PKCS1_2048_8192_SHA512,
            _ => return false,
        };
    let key = &issuer.public_key().subject_public_key.data;
    sig::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

/// Parse a PEM bundle that must hold only `CERTIFICATE` blocks.
pub fn parse_pem_chain(pem_text: &[u8]) -> Result<Vec<CertInfo>, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("bad certificate PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no certificate in PEM data".into());
    }
    blocks
        .iter()
        .map(|b| {
            if b.tag() != "CERTIFICATE" {
                return Err(format!(
                    "PEM block {:?} where a CERTIFICATE was expected",
                    b.tag()
                ));
            }
            parse_cert(b.contents())
        })
        .collect()
}

/// PEM exactly as Go's `pem.EncodeToMemory` writes it: 64-column base64, `\n` line ends,
/// headers in sorted order followed by a blank line, trailing newline.
pub fn go_pem(tag: &str, headers: &[(&str, &str)], der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {tag}-----\n");
    let mut hs: Vec<_> = headers.to_vec();
    hs.sort();
    for (k, v) in &hs {
        s.push_str(&format!("{k}: {v}\n"));
    }
    if !hs.is_empty() {
        s.push('\n');
    }
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {tag}-----\n"));
    s
}

/// The bundle re-encoded the way Notary re-encodes certificate chains before it computes
/// root key IDs. A root key whose PEM differs from this gets a different ID in Go.
pub fn go_pem_chain(certs: &[CertInfo]) -> String {
    certs
        .iter()
        .map(|c| go_pem("CERTIFICATE", &[], &c.der))
        .collect()
}
