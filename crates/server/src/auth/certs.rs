//! Certificates that sign tokens: the trusted bundle (`rootcertbundle`), the `x5c` chain in
//! a token's header, and the libtrust key IDs (`kid`) distribution names keys by.
//!
//! A chain is checked the way distribution checks it (Go's `x509.Verify` with any key
//! usage): the leaf is trusted when it is itself in the bundle, or when each certificate
//! is signed by the next (`x5c` intermediates, which must be CAs) up to a bundle
//! certificate; every certificate must be valid now. Signatures are checked with aws-lc.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

/// A public key's type, as far as token signatures go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    P521,
    Rsa,
    Ed25519,
}

/// A certificate's public key: its type and the bits aws-lc verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    pub kind: KeyKind,
    pub bits: Vec<u8>,
    /// The DER `SubjectPublicKeyInfo`, which the libtrust key ID hashes.
    pub spki: Vec<u8>,
}

impl CertKey {
    /// Verify a signature made with one of the JWS algorithms (`ES256`, `RS256`, …). An
    /// algorithm that does not fit the key is refused.
    pub fn verify_jws(&self, alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        let a: &'static dyn VerificationAlgorithm = match (alg, self.kind) {
            ("ES256", KeyKind::P256) => &signature::ECDSA_P256_SHA256_FIXED,
            ("ES384", KeyKind::P384) => &signature::ECDSA_P384_SHA384_FIXED,
            ("ES512", KeyKind::P521) => &signature::ECDSA_P521_SHA512_FIXED,
            ("RS256", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
            ("RS384", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
            ("RS512", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA512,
            ("PS256", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA256,
            ("PS384", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA384,
            ("PS512", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA512,
            ("EdDSA", KeyKind::Ed25519) => &signature::ED25519,
            (alg, kind) => return Err(format!("algorithm {alg:?} does not fit a {kind:?} key")),
        };
        UnparsedPublicKey::new(a, &self.bits)
            .verify(msg, sig)
            .map_err(|_| "the signature does not verify".to_owned())
    }

    /// distribution's (libtrust's) key ID: the first 240 bits of SHA-256 over the DER
    /// public key, in base32, in groups of four joined by `:`.
    pub fn libtrust_kid(&self) -> String {
        let digest = tuf::hash::sha256(&self.spki);
        let b32 = base32(&digest[..30]);
        b32.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// RFC 4648 base32, no padding (30 bytes give exactly 48 characters).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// What a chain check needs of one certificate.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    pub key: CertKey,
    not_before: i64,
    not_after: i64,
    is_ca: bool,
    tbs: Vec<u8>,
    sig_alg: String,
    sig: Vec<u8>,
}

impl Cert {
    pub fn parse(der: &[u8]) -> Result<Cert, String> {
        let (rest, c) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not a certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("data after the certificate".into());
        }
        let spki = c.public_key();
        let kind = match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => KeyKind::P256,
                    Some("1.3.132.0.34") => KeyKind::P384,
                    Some("1.3.132.0.35") => KeyKind::P521,
                    _ => return Err("an EC key on an unsupported curve".into()),
                }
            }
            "1.2.840.113549.1.1.1" => KeyKind::Rsa,
            "1.3.101.112" => KeyKind::Ed25519,
            other => return Err(format!("unsupported public key algorithm {other}")),
        };
        let is_ca = c
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        Ok(Cert {
            der: der.to_vec(),
            subject: c.tbs_certificate.subject.as_raw().to_vec(),
            issuer: c.tbs_certificate.issuer.as_raw().to_vec(),
            key: CertKey {
                kind,
                bits: spki.subject_public_key.data.to_vec(),
                spki: spki.raw.to_vec(),
            },
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            is_ca,
            tbs: c.tbs_certificate.as_ref().to_vec(),
            sig_alg: c.signature_algorithm.algorithm.to_id_string(),
            sig: c.signature_value.data.to_vec(),
        })
    }

    /// Every certificate of a PEM file.
    pub fn read_pem_bundle(text: &[u8]) -> Result<Vec<Cert>, String> {
        let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
        let certs: Vec<Cert> = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Cert::parse(b.contents()))
            .collect::<Result<_, _>>()?;
        if certs.is_empty() {
            return Err("no CERTIFICATE in it".into());
        }
        Ok(certs)
    }

    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether the certificate names itself as its issuer.
    pub fn is_self_signed(&self) -> bool {
        self.subject == self.issuer
    }

    /// Valid now and for at least `days` more.
    pub fn valid_for_days(&self, now: i64, days: i64) -> bool {
        self.valid_at(now) && self.not_after - now >= days * 86_400
    }

    /// Whether `issuer`'s key signed this certificate.
    fn signed_by(&self, issuer: &CertKey) -> bool {
        use signature::*;
        let a: &'static dyn VerificationAlgorithm = match (self.sig_alg.as_str(), issuer.kind) {
            ("1.2.840.10045.4.3.2", KeyKind::P256) => &ECDSA_P256_SHA256_ASN1,
            ("1.2.840.10045.4.3.3", KeyKind::P256) => &ECDSA_P256_SHA384_ASN1,
            ("1.2.840.10045.4.3.2", KeyKind::P384) => &ECDSA_P384_SHA256_ASN1,
            ("1.2.840.10045.4.3.3", KeyKind::P384) => &ECDSA_P384_SHA384_ASN1,
            ("1.2.840.10045.4.3.4", KeyKind::P521) => &ECDSA_P521_SHA512_ASN1,
            ("1.2.840.113549.1.1.11", KeyKind::Rsa) => &RSA_PKCS1_2048_8192_SHA256,
            ("1.2.840.113549.1.1.12", KeyKind::Rsa) => &RSA_PKCS1_2048_8192_SHA384,
            ("1.2.840.113549.1.1.13", KeyKind::Rsa) => &RSA_PKCS1_2048_8192_SHA512,
            ("1.3.101.112", KeyKind::Ed25519) => &ED25519,
            _ => return false,
        };
        UnparsedPublicKey::new(a, &issuer.bits)
            .verify(&self.tbs, &self.sig)
            .is_ok()
    }
}

/// Longest chain accepted (leaf, intermediates, root).
const MAX_DEPTH: usize = 5;

/// The key of `chain[0]` (a token's `x5c`), if the chain leads to one of `roots`.
pub fn verify_chain<'a>(
    chain: &'a [Cert],
    roots: &[Cert],
    now: i64,
) -> Result<&'a CertKey, String> {
    let leaf = chain.first().ok_or("x5c is empty")?;
    if chain.len() > MAX_DEPTH {
        return Err(format!("x5c holds more than {MAX_DEPTH} certificates"));
    }
    for c in chain {
        if !c.valid_at(now) {
            return Err("a certificate in x5c is expired or not yet valid".into());
        }
    }
    if roots.iter().any(|r| r.der == leaf.der) {
        return Ok(&leaf.key);
    }
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        if roots
            .iter()
            .any(|r| r.subject == current.issuer && r.valid_at(now) && current.signed_by(&r.key))
        {
            return Ok(&leaf.key);
        }
        match chain[1..].iter().find(|c| {
            c.is_ca
                && c.subject == current.issuer
                && !std::ptr::eq(*c, current)
                && current.signed_by(&c.key)
        }) {
            Some(next) => current = next,
            None => break,
        }
    }
    Err("the x5c chain does not lead to a trusted certificate".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_like_go() {
        // RFC 4648 test vectors (without padding).
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    fn issue(
        cn: &str,
        ca: bool,
        by: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let kp = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = if ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        let cert = match by {
            Some((c, k)) => p.signed_by(&kp, c, k).unwrap(),
            None => p.self_signed(&kp).unwrap(),
        };
        (cert, kp)
    }

    fn parsed(c: &rcgen::Certificate) -> Cert {
        Cert::parse(c.der()).unwrap()
    }

    #[test]
    fn chains() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (root, root_kp) = issue("root", true, None);
        let (inter, inter_kp) = issue("intermediate", true, Some((&root, &root_kp)));
        let (leaf, _) = issue("leaf", false, Some((&inter, &inter_kp)));
        let (direct, _) = issue("direct", false, Some((&root, &root_kp)));
        let (stranger, _) = issue("stranger", false, None);
        let (not_ca, not_ca_kp) = issue("not a CA", false, Some((&root, &root_kp)));
        let (under_not_ca, _) = issue("under a non-CA", false, Some((&not_ca, &not_ca_kp)));
        let roots = [parsed(&root)];
        let ok = |chain: &[&rcgen::Certificate], roots: &[Cert], at: i64| {
            let chain: Vec<Cert> = chain.iter().map(|c| parsed(c)).collect();
            verify_chain(&chain, roots, at).is_ok()
        };
        assert!(ok(&[&direct], &roots, now));
        assert!(ok(&[&leaf, &inter], &roots, now));
        assert!(!ok(&[&leaf], &roots, now), "the intermediate is missing");
        assert!(
            !ok(&[&under_not_ca, &not_ca], &roots, now),
            "an intermediate must be a CA"
        );
        assert!(!ok(&[&stranger], &roots, now));
        // A self-signed leaf that is itself in the bundle (distribution's usual setup).
        assert!(ok(&[&stranger], &[parsed(&stranger)], now));
        // Time: rcgen certificates run from 1975 to 4096.
        assert!(!ok(&[&direct], &roots, 0));
        assert!(!ok(&[], &roots, now));
        assert_eq!(parsed(&direct).key.libtrust_kid().len(), 48 + 11);
    }
}
