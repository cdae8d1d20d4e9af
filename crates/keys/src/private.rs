//! Private keys: ECDSA P-256 (what docker and notary generate), ed25519 (server keys) and
//! imported RSA. Secret bytes are kept in `Zeroizing` buffers and never printed.

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PSS_SHA256,
};
use tuf::key::{KeyId, KeyType, PublicKey, SignatureMethod};
use tuf::sign::Sign;
use zeroize::Zeroizing;

use crate::der::{self, Reader};
use crate::error::{KeyError, Result};

/// Key algorithms notarium can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ecdsa,
    Ed25519,
}

enum Inner {
    Ecdsa {
        kp: EcdsaKeyPair,
        scalar: Zeroizing<Vec<u8>>,
    },
    Ed25519 {
        kp: Ed25519KeyPair,
        seed: Zeroizing<Vec<u8>>,
    },
    Rsa {
        kp: RsaKeyPair,
        pkcs1: Zeroizing<Vec<u8>>,
    },
}

/// A private key and its plain public key (`ecdsa`, `ed25519` or `rsa`).
pub struct PrivateKey {
    inner: Inner,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PrivateKey({} {})",
            self.public.keytype().as_str(),
            self.public.id()
        )
    }
}

fn rejected(what: &str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> KeyError + '_ {
    move |e| KeyError::Malformed(format!("{what}: {e}"))
}

impl PrivateKey {
    pub fn generate(alg: Algorithm) -> Result<Self> {
        match alg {
            Algorithm::Ecdsa => {
                let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyError::Generate("ECDSA P-256".into()))?;
                Self::from_ecdsa(kp)
            }
            Algorithm::Ed25519 => {
                let kp =
                    Ed25519KeyPair::generate().map_err(|_| KeyError::Generate("ed25519".into()))?;
                let seed = kp
                    .seed()
                    .and_then(|s| s.as_be_bytes())
                    .map_err(|_| KeyError::Generate("ed25519 seed".into()))?;
                Self::ed25519_from_seed(seed.as_ref(), None)
            }
        }
    }

    fn from_ecdsa(kp: EcdsaKeyPair) -> Result<Self> {
        let scalar = kp
            .private_key()
            .as_be_bytes()
            .map_err(|_| KeyError::Malformed("ECDSA private scalar".into()))?;
        let spki = kp
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Malformed("ECDSA public key".into()))?;
        let public = PublicKey::new(KeyType::Ecdsa, spki.as_ref().to_vec());
        Ok(PrivateKey {
            inner: Inner::Ecdsa {
                scalar: Zeroizing::new(scalar.as_ref().to_vec()),
                kp,
            },
            public,
        })
    }

    /// A SEC1 `ECPrivateKey` (with or without parameters and public key).
    pub fn from_sec1_der(der: &[u8]) -> Result<Self> {
        let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(rejected("EC private key (only P-256 is supported)"))?;
        Self::from_ecdsa(kp)
    }

    /// A PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let kp = RsaKeyPair::from_der(der).map_err(rejected("RSA private key"))?;
        if kp.public_modulus_len() < 256 {
            return Err(KeyError::Unsupported("RSA keys under 2048 bits".into()));
        }
        let spki = kp
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Malformed("RSA public key".into()))?;
        let public = PublicKey::new(KeyType::Rsa, spki.as_ref().to_vec());
        Ok(PrivateKey {
            inner: Inner::Rsa {
                kp,
                pkcs1: Zeroizing::new(der.to_vec()),
            },
            public,
        })
    }

    /// An ed25519 key from its 32-byte seed, checked against `public` when given.
    pub fn ed25519_from_seed(seed: &[u8], public: Option<&[u8]>) -> Result<Self> {
        let kp = match public {
            Some(p) => Ed25519KeyPair::from_seed_and_public_key(seed, p),
            None => Ed25519KeyPair::from_seed_unchecked(seed),
        }
        .map_err(rejected("ed25519 private key"))?;
        let public = PublicKey::new(KeyType::Ed25519, kp.public_key().as_ref().to_vec());
        Ok(PrivateKey {
            inner: Inner::Ed25519 {
                kp,
                seed: Zeroizing::new(seed.to_vec()),
            },
            public,
        })
    }

    /// Notary's ed25519 private key bytes: `public(32) ‖ seed(32) ‖ public(32)`, or the
    /// 64-byte `seed ‖ public` of Go's `ed25519.PrivateKey`, or a bare 32-byte seed.
    pub fn from_notary_ed25519(bytes: &[u8]) -> Result<Self> {
        match bytes.len() {
            96 => Self::ed25519_from_seed(&bytes[32..64], Some(&bytes[64..96])),
            64 => Self::ed25519_from_seed(&bytes[..32], Some(&bytes[32..])),
            32 => Self::ed25519_from_seed(bytes, None),
            n => Err(KeyError::Malformed(format!(
                "ed25519 private key of {n} bytes"
            ))),
        }
    }

    /// A PKCS#8 `PrivateKeyInfo` (version 0 or 1, with or without a public key field), as
    /// docker, notary, Go and OpenSSL write it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(der);
        let body = outer.expect(der::SEQUENCE)?;
        if !outer.is_empty() {
            return Err(KeyError::Malformed("trailing data after PKCS#8".into()));
        }
        let mut r = Reader::new(body);
        let version = r.small_int()?;
        if version > 1 {
            return Err(KeyError::Malformed(format!("PKCS#8 version {version}")));
        }
        let mut alg = Reader::new(r.expect(der::SEQUENCE)?);
        let oid = alg.expect(der::OID)?;
        let params = if alg.is_empty() {
            None
        } else {
            Some(alg.read()?)
        };
        let private = r.expect(der::OCTET_STRING)?;
        match oid {
            der::OID_EC_PUBLIC_KEY => {
                match params {
                    Some((der::OID, der::OID_P256)) => {}
                    _ => {
                        return Err(KeyError::Unsupported(
                            "EC keys on curves other than P-256".into(),
                        ))
                    }
                }
                Self::from_sec1_der(private)
            }
            der::OID_RSA => {
                if !matches!(params, None | Some((der::NULL, []))) {
                    return Err(KeyError::Malformed("RSA algorithm parameters".into()));
                }
                Self::from_pkcs1_der(private)
            }
            der::OID_NOTARY_ED25519 => Self::from_notary_ed25519(private),
            der::OID_ED25519 => {
                let mut inner = Reader::new(private);
                Self::ed25519_from_seed(inner.expect(der::OCTET_STRING)?, None)
            }
            _ => Err(KeyError::Unsupported(
                "private key algorithm (expected ECDSA, RSA or ed25519)".into(),
            )),
        }
    }

    /// PKCS#8 exactly as notary writes it (the plaintext inside docker's encrypted files):
    /// ECDSA as version 1 with a full SEC1 key, RSA as version 0 without NULL parameters,
    /// ed25519 with notary's OID and 96-byte form.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let (version, alg, private): (u8, Vec<u8>, Zeroizing<Vec<u8>>) = match &self.inner {
            Inner::Ecdsa { scalar, .. } => {
                let point = ec_point(&self.public);
                let mut bits = vec![0u8];
                bits.extend_from_slice(&point);
                let sec1 = Zeroizing::new(der::seq(&[
                    &der::tlv(der::INTEGER, &[1]),
                    &der::tlv(der::OCTET_STRING, scalar),
                    &der::tlv(0xa0, &der::tlv(der::OID, der::OID_P256)),
                    &der::tlv(0xa1, &der::tlv(der::BIT_STRING, &bits)),
                ]));
                (
                    1,
                    der::seq(&[
                        &der::tlv(der::OID, der::OID_EC_PUBLIC_KEY),
                        &der::tlv(der::OID, der::OID_P256),
                    ]),
                    sec1,
                )
            }
            Inner::Rsa { pkcs1, .. } => (
                0,
                der::seq(&[&der::tlv(der::OID, der::OID_RSA)]),
                pkcs1.clone(),
            ),
            Inner::Ed25519 { seed, .. } => {
                let p = self.public.public_bytes();
                let mut b = Zeroizing::new(Vec::with_capacity(96));
                b.extend_from_slice(p);
                b.extend_from_slice(seed);
                b.extend_from_slice(p);
                (
                    0,
                    der::seq(&[&der::tlv(der::OID, der::OID_NOTARY_ED25519)]),
                    b,
                )
            }
        };
        let octets = Zeroizing::new(der::tlv(der::OCTET_STRING, &private));
        Zeroizing::new(der::seq(&[
            &der::tlv(der::INTEGER, &[version]),
            &alg,
            &octets,
        ]))
    }

    /// A PKCS#8 v1 document (version 0, public key inside SEC1) as ring-style APIs expect.
    pub(crate) fn to_pkcs8_v1_for_certs(&self) -> Result<Zeroizing<Vec<u8>>> {
        match &self.inner {
            Inner::Ecdsa { kp, .. } => kp
                .to_pkcs8v1()
                .map(|d| Zeroizing::new(d.as_ref().to_vec()))
                .map_err(|_| KeyError::Malformed("ECDSA key export".into())),
            _ => Err(KeyError::Unsupported(
                "root certificates need an ECDSA key".into(),
            )),
        }
    }

    /// The plain public key; its ID is the key's canonical ID (the key file's name).
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn id(&self) -> &KeyId {
        self.public.id()
    }

    pub fn algorithm_name(&self) -> &'static str {
        match self.inner {
            Inner::Ecdsa { .. } => "ecdsa",
            Inner::Ed25519 { .. } => "ed25519",
            Inner::Rsa { .. } => "rsa",
        }
    }

    pub fn is_ecdsa(&self) -> bool {
        matches!(self.inner, Inner::Ecdsa { .. })
    }

    /// The algorithm, when it is one notarium generates (an RSA key is not).
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.inner {
            Inner::Ecdsa { .. } => Some(Algorithm::Ecdsa),
            Inner::Ed25519 { .. } => Some(Algorithm::Ed25519),
            Inner::Rsa { .. } => None,
        }
    }
}

/// The uncompressed EC point inside an ECDSA SPKI.
fn ec_point(public: &PublicKey) -> Vec<u8> {
    tuf::x509::parse_spki(public.public_bytes())
        .map(|s| s.key_bits)
        .unwrap_or_default()
}

impl Sign for PrivateKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn method(&self) -> SignatureMethod {
        match self.inner {
            Inner::Ecdsa { .. } => SignatureMethod::Ecdsa,
            Inner::Ed25519 { .. } => SignatureMethod::Eddsa,
            Inner::Rsa { .. } => SignatureMethod::RsaPss,
        }
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, String> {
        match &self.inner {
            Inner::Ecdsa { kp, .. } => kp
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_owned()),
            Inner::Ed25519 { kp, .. } => Ok(kp.sign(msg).as_ref().to_vec()),
            Inner::Rsa { kp, .. } => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PSS_SHA256, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| "RSA signing failed".to_owned())?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_round_trip_pkcs8() {
        for alg in [Algorithm::Ecdsa, Algorithm::Ed25519] {
            let k = PrivateKey::generate(alg).unwrap();
            let sig = k.sign(b"hello").unwrap();
            k.public().verify(&k.method(), b"hello", &sig).unwrap();
            assert!(k.public().verify(&k.method(), b"hellO", &sig).is_err());
            let again = PrivateKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap();
            assert_eq!(again.id(), k.id());
        }
    }

    #[test]
    fn ecdsa_signatures_are_raw_r_s() {
        let k = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
        assert_eq!(k.sign(b"m").unwrap().len(), 64);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x05", b"\x30\x80"] {
            assert!(PrivateKey::from_pkcs8_der(bad).is_err());
        }
    }
}
