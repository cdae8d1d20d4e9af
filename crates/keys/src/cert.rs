//! Root keys are wrapped in self-signed certificates, as docker and notary make them:
//! subject CN = GUN, random 128-bit serial, valid from now for 10 years, key usage
//! digitalSignature + keyEncipherment, extended key usage codeSigning, CA:FALSE.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tuf::key::{KeyType, PublicKey};
use tuf::{DateTime, Gun};

use crate::error::{KeyError, Result};
use crate::private::PrivateKey;

/// Ten years, as Notary counts them (3650 days).
pub const ROOT_CERT_DAYS: i64 = 3650;

/// A root key (`ecdsa-x509`) for `gun`: a certificate over `key`, signed by it.
pub fn root_certificate(
    key: &PrivateKey,
    gun: &Gun,
    now: DateTime,
    days: i64,
) -> Result<PublicKey> {
    let der = self_signed(key, gun.as_str(), now, days, true)?;
    let pem = tuf::x509::go_pem("CERTIFICATE", &[], &der);
    Ok(PublicKey::new(KeyType::EcdsaX509, pem.into_bytes()))
}

/// A self-signed certificate (DER) over an ECDSA `key`: subject CN = `common_name`, a
/// random 128-bit serial, valid from `now` for `days`, digitalSignature +
/// keyEncipherment, CA:FALSE, and extended key usage codeSigning when `code_signing`.
pub fn self_signed(
    key: &PrivateKey,
    common_name: &str,
    now: DateTime,
    days: i64,
    code_signing: bool,
) -> Result<Vec<u8>> {
    let pkcs8 = key.to_pkcs8_v1_for_certs()?;
    let kp =
        KeyPair::try_from(pkcs8.as_slice()).map_err(|e| KeyError::Certificate(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let to_time = |t: DateTime| {
        time::OffsetDateTime::from_unix_timestamp(t.unix_secs())
            .map_err(|e| KeyError::Certificate(e.to_string()))
    };
    params.not_before = to_time(now)?;
    params.not_after = to_time(now.plus_days(days))?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| KeyError::Certificate("no randomness".into()))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if code_signing {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = false;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    Ok(cert.der().to_vec())
}

/// A public key file as `docker trust key generate` writes it (`NAME.pub`): PEM
/// `PUBLIC KEY` with a `role: NAME` header.
pub fn public_key_pem(key: &PublicKey, role: &str) -> String {
    tuf::x509::go_pem("PUBLIC KEY", &[("role", role)], key.public_bytes())
}

/// A signer's public key, as `docker trust signer add --key` accepts it: PEM `PUBLIC KEY`
/// (ECDSA or RSA) or `CERTIFICATE` (which must be valid now).
pub fn read_public_key(text: &[u8], now: DateTime) -> Result<PublicKey> {
    let p = pem::parse(text).map_err(|e| KeyError::NotPem(e.to_string()))?;
    match p.tag() {
        "PUBLIC KEY" => {
            let spki = tuf::x509::parse_spki(p.contents()).map_err(KeyError::Malformed)?;
            let kt = match spki.algorithm {
                tuf::x509::KeyAlgorithm::Ecdsa if spki.p256 => KeyType::Ecdsa,
                tuf::x509::KeyAlgorithm::Rsa if spki.rsa_bits >= 2048 => KeyType::Rsa,
                _ => {
                    return Err(KeyError::Unsupported(
                        "public keys must be ECDSA P-256 or RSA ≥ 2048 bits".into(),
                    ))
                }
            };
            Ok(PublicKey::new(kt, p.contents().to_vec()))
        }
        "CERTIFICATE" => {
            let c = tuf::x509::parse_cert(p.contents()).map_err(KeyError::Certificate)?;
            if c.not_after < now.unix_secs() || c.not_before > now.unix_secs() {
                return Err(KeyError::Certificate(
                    "certificate is expired or not yet valid".into(),
                ));
            }
            let kt = match c.key_algorithm {
                tuf::x509::KeyAlgorithm::Ecdsa => KeyType::EcdsaX509,
                tuf::x509::KeyAlgorithm::Rsa => KeyType::RsaX509,
                tuf::x509::KeyAlgorithm::Other => {
                    return Err(KeyError::Unsupported("certificate key type".into()))
                }
            };
            Ok(PublicKey::new(
                kt,
                tuf::x509::go_pem("CERTIFICATE", &[], p.contents()).into_bytes(),
            ))
        }
        "ENCRYPTED PRIVATE KEY" | "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => Err(
            KeyError::Other("this is a private key; give the signer's public key".into()),
        ),
        other => Err(KeyError::UnsupportedPemType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::Algorithm;

    #[test]
    fn root_certificates_pass_notarys_root_rules() {
        let k = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let gun = Gun::new("registry.example.com/a/b").unwrap();
        let now = DateTime::from_unix_secs(1_800_000_000);
        let cert = root_certificate(&k, &gun, now, ROOT_CERT_DAYS).unwrap();
        assert_eq!(cert.keytype(), &KeyType::EcdsaX509);
        // The certificate wraps the key: its canonical ID names the private key file.
        assert_eq!(&cert.canonical_id().unwrap(), k.id());
        tuf::verify::check_root_cert(&cert, &gun, Some(now)).unwrap();
        tuf::verify::check_root_cert(&cert, &gun, Some(now.plus_days(3649))).unwrap();
        assert!(tuf::verify::check_root_cert(&cert, &gun, Some(now.plus_days(3651))).is_err());
        let other = Gun::new("registry.example.com/a/c").unwrap();
        assert!(tuf::verify::check_root_cert(&cert, &other, Some(now)).is_err());
        let info = tuf::x509::parse_pem_chain(cert.public_bytes()).unwrap();
        assert!(!info[0].is_ca);
        assert_eq!(info[0].not_after - info[0].not_before, 3650 * 86400);
    }

    #[test]
    fn public_key_files() {
        let k = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        let text = public_key_pem(k.public(), "alice");
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\nrole: alice\n\n"));
        let back = read_public_key(text.as_bytes(), DateTime::from_unix_secs(0)).unwrap();
        assert_eq!(back.id(), k.id());
    }
}
