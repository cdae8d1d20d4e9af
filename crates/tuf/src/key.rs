//! Public keys as they appear in metadata, their IDs, and signature verification.
//!
//! The verification algorithm is chosen by the **trusted key's type**; a signature's `method`
//! may only pick between the schemes that key type allows (RSA: PSS or PKCS#1 v1.5). A method
//! that does not fit the key makes the signature invalid (NCC 2015 CS-DRNT15-1).

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, UnparsedPublicKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::canonical::{write_str, Canonical, ObjectWriter};
use crate::hash::sha256;

/// A key ID: lower-case hex SHA-256 of the key's canonical JSON.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(s: &str) -> Result<KeyId, String> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(format!(
                "invalid key ID {:?}: expected 64 lower-case hex digits",
                s.chars().take(80).collect::<String>()
            ))
        }
    }

    pub fn from_digest(digest: &[u8; 32]) -> KeyId {
        KeyId(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` characters, as the docker CLI shows IDs (7 in prompts, 12 in tables).
    pub fn short(&self, n: usize) -> &str {
        &self.0[..n.min(self.0.len())]
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeyId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Canonical for KeyId {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_str(out, &self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyType {
    Ed25519,
    Ecdsa,
    Rsa,
    EcdsaX509,
    RsaX509,
    /// A key type notarium does not know; kept so metadata round-trips, never verifies.
    Unknown(String),
}

impl KeyType {
    pub fn parse(s: &str) -> KeyType {
        match s {
            "ed25519" => KeyType::Ed25519,
            "ecdsa" => KeyType::Ecdsa,
            "rsa" => KeyType::Rsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "rsa-x509" => KeyType::RsaX509,
            other => KeyType::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::RsaX509 => "rsa-x509",
            KeyType::Unknown(s) => s,
        }
    }

    pub fn is_x509(&self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }
}

/// The signature schemes of Notary (`notary-protocol.md` §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignatureMethod {
    Ecdsa,
    Eddsa,
    RsaPss,
    RsaPkcs1v15,
    PycryptoPss,
    Unknown(String),
}

impl SignatureMethod {
    /// Methods are case-insensitive on the wire and re-emitted lower-case.
    pub fn parse(s: &str) -> SignatureMethod {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa" => SignatureMethod::Ecdsa,
            "eddsa" => SignatureMethod::Eddsa,
            "rsapss" => SignatureMethod::RsaPss,
            "rsapkcs1v15" => SignatureMethod::RsaPkcs1v15,
            "pycrypto-pkcs#1 pss" => SignatureMethod::PycryptoPss,
            other => SignatureMethod::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            SignatureMethod::Ecdsa => "ecdsa",
            SignatureMethod::Eddsa => "eddsa",
            SignatureMethod::RsaPss => "rsapss",
            SignatureMethod::RsaPkcs1v15 => "rsapkcs1v15",
            SignatureMethod::PycryptoPss => "pycrypto-pkcs#1 pss",
            SignatureMethod::Unknown(s) => s,
        }
    }
}

/// What a key's `public` bytes decode to, ready for verification.
enum Material {
    Ed25519(ParsedPublicKey),
    EcdsaP256(ParsedPublicKey),
    /// PKCS#1 `RSAPublicKey` DER (what aws-lc-rs verifies with) and the modulus size.
    Rsa {
        pss: ParsedPublicKey,
        pkcs1_der: Vec<u8>,
        pem_encoded: bool,
    },
    Unusable(String),
}

/// A public key as listed in `root.signed.keys` or `targets.signed.delegations.keys`.
#[derive(Clone)]
pub struct PublicKey {
    keytype: KeyType,
    public: Arc<[u8]>,
    id: KeyId,
    material: Arc<OnceLock<Material>>,
}

impl PublicKey {
    pub fn new(keytype: KeyType, public: Vec<u8>) -> PublicKey {
        let id = key_id(&keytype, &public);
        PublicKey {
            keytype,
            public: public.into(),
            id,
            material: Arc::new(OnceLock::new()),
        }
    }

    /// The TUF key ID (what `keyids` and signatures name).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn keytype(&self) -> &KeyType {
        &self.keytype
    }

    /// The decoded `keyval.public` bytes (DER SPKI, raw ed25519, or certificate PEM text).
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The ID under which the private key is stored: for x509 keys, the ID of the plain key
    /// inside the (first) certificate; otherwise the TUF ID.
    pub fn canonical_id(&self) -> Result<KeyId, String> {
        Ok(self.canonical_key()?.id)
    }

    /// The plain key inside an x509 key (identity for other key types).
    pub fn canonical_key(&self) -> Result<PublicKey, String> {
        if !self.keytype.is_x509() {
            return Ok(self.clone());
        }
        let certs = crate::x509::parse_pem_chain(&self.public)?;
        let leaf = certs.first().ok_or("no certificate in x509 key")?;
        let kt = match leaf.key_algorithm {
            crate::x509::KeyAlgorithm::Ecdsa => KeyType::Ecdsa,
            crate::x509::KeyAlgorithm::Rsa => KeyType::Rsa,
            crate::x509::KeyAlgorithm::Other => {
                return Err("certificate holds neither an ECDSA nor an RSA key".into())
            }
        };
        Ok(PublicKey::new(kt, leaf.spki_der.clone()))
    }

    /// Check a signature over `msg`. `Err` carries why it is invalid; the caller decides
    /// whether that is fatal or just a signature that does not count.
    pub fn verify(
        &self,
        method: &SignatureMethod,
        msg: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let material = self.material.get_or_init(|| self.parse_material());
        let ok = match (material, method) {
            (Material::Unusable(why), _) => return Err(why.clone()),
            (Material::Ed25519(k), SignatureMethod::Eddsa) => k.verify_sig(msg, signature),
            (Material::EcdsaP256(k), SignatureMethod::Ecdsa) => k.verify_sig(msg, signature),
            (
                Material::Rsa {
                    pss,
                    pem_encoded: false,
                    ..
                },
                SignatureMethod::RsaPss,
            ) => pss.verify_sig(msg, signature),
            (
                Material::Rsa {
                    pss,
                    pem_encoded: true,
                    ..
                },
                SignatureMethod::PycryptoPss,
            ) => pss.verify_sig(msg, signature),
            (
                Material::Rsa {
                    pkcs1_der,
                    pem_encoded: false,
                    ..
                },
                SignatureMethod::RsaPkcs1v15,
            ) => UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, pkcs1_der)
                .verify(msg, signature),
            (_, m) => {
                return Err(format!(
                    "signature method {:?} does not fit a {} key",
                    m.as_str(),
                    self.keytype.as_str()
                ))
            }
        };
        ok.map_err(|_| "signature does not verify".to_owned())
    }

    fn parse_material(&self) -> Material {
        match self.material_result() {
            Ok(m) => m,
            Err(e) => Material::Unusable(e),
        }
    }

    fn material_result(&self) -> Result<Material, String> {
        let reject = |e: aws_lc_rs::error::KeyRejected| {
            format!("unusable {} key: {e}", self.keytype.as_str())
        };
        match &self.keytype {
            KeyType::Ed25519 => {
                if self.public.len() != 32 {
                    return Err("ed25519 public key is not 32 bytes".into());
                }
                Ok(Material::Ed25519(
                    ParsedPublicKey::new(&sig::ED25519, &self.public).map_err(reject)?,
                ))
            }
            KeyType::Ecdsa | KeyType::Rsa => {
                let (der, pem_encoded) = if self.public.starts_with(b"-----BEGIN") {
                    // Legacy pycrypto RSA keys carry a PEM "PUBLIC KEY" in `public`.
                    let p = pem::parse(&*self.public)
                        .map_err(|e| format!("bad PEM public key: {e}"))?;
                    (p.contents().to_vec(), true)
                } else {
                    (self.public.to_vec(), false)
                };
                self.material_from_spki(&der, pem_encoded)
            }
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                let plain = self.canonical_key()?;
                self.material_from_spki(&plain.public, false)
            }
            KeyType::Unknown(t) => Err(format!("unsupported key type {t:?}")),
        }
    }

    fn material_from_spki(&self, spki_der: &[u8], pem_encoded: bool) -> Result<Material, String> {
        let spki = crate::x509::parse_spki(spki_der)?;
        let reject = |e: aws_lc_rs::error::KeyRejected| {
            format!("unusable {} key: {e}", self.keytype.as_str())
        };
        match (&self.keytype, spki.algorithm) {
            (KeyType::Ecdsa | KeyType::EcdsaX509, crate::x509::KeyAlgorithm::Ecdsa) => {
                if !spki.p256 {
                    return Err("only ECDSA P-256 keys are supported".into());
                }
                Ok(Material::EcdsaP256(
                    ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &spki.key_bits)
                        .map_err(reject)?,
                ))
            }
            (KeyType::Rsa | KeyType::RsaX509, crate::x509::KeyAlgorithm::Rsa) => {
                if spki.rsa_bits < 2048 {
                    return Err(format!("RSA key of {} bits (2048 at least)", spki.rsa_bits));
                }
                Ok(Material::Rsa {
                    pss: ParsedPublicKey::new(&sig::RSA_PSS_2048_8192_SHA256, &spki.key_bits)
                        .map_err(reject)?,
                    pkcs1_der: spki.key_bits,
                    pem_encoded,
                })
            }
            (kt, _) => Err(format!(
                "the {} key holds a different kind of key",
                kt.as_str()
            )),
        }
    }
}

/// TUF key ID: SHA-256 of `{"keytype":T,"keyval":{"private":null,"public":B64}}`.
pub fn key_id(keytype: &KeyType, public: &[u8]) -> KeyId {
    let mut buf = Vec::with_capacity(64 + public.len() * 4 / 3);
    write_key(&mut buf, keytype, public);
    KeyId::from_digest(&sha256(&buf))
}

fn write_key(out: &mut Vec<u8>, keytype: &KeyType, public: &[u8]) {
    let mut o = ObjectWriter::new(out);
    write_str(o.field("keytype"), keytype.as_str());
    {
        let v = o.field("keyval");
        let mut kv = ObjectWriter::new(v);
        kv.field("private").extend_from_slice(b"null");
        write_str(
            kv.field("public"),
            &base64::engine::general_purpose::STANDARD.encode(public),
        );
        kv.finish();
    }
    o.finish();
}

impl Canonical for PublicKey {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_key(out, &self.keytype, &self.public)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.keytype.as_str(), self.id)
    }
}

#[derive(Deserialize)]
struct KeyJson<'a> {
    #[serde(borrow)]
    keytype: std::borrow::Cow<'a, str>,
    keyval: KeyValJson<'a>,
}

#[derive(Deserialize)]
struct KeyValJson<'a> {
    #[serde(borrow)]
    public: std::borrow::Cow<'a, str>,
    #[serde(default)]
    private: Option<serde::de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let k = KeyJson::deserialize(d)?;
        if k.keyval.private.is_some() {
            return Err(D::Error::custom(
                "a key in metadata carries private key material (keyval.private must be null)",
            ));
        }
        let public = base64::engine::general_purpose::STANDARD
            .decode(k.keyval.public.as_bytes())
            .map_err(|e| D::Error::custom(format!("key public value is not base64: {e}")))?;
        Ok(PublicKey::new(KeyType::parse(&k.keytype), public))
    }
}

/// The shape the key endpoints return (`{"keytype":…,"keyval":{"public":…,"private":null}}`,
/// Go struct order, not canonical).
pub fn key_endpoint_json(key: &PublicKey) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"keytype\":");
    write_str(&mut out, key.keytype.as_str());
    out.extend_from_slice(b",\"keyval\":{\"public\":");
    write_str(
        &mut out,
        &base64::engine::general_purpose::STANDARD.encode(&key.public),
    );
    out.extend_from_slice(b",\"private\":null}}");
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_hash_of_canonical_form() {
        let k = PublicKey::new(KeyType::Ed25519, vec![1; 32]);
        let json = String::from_utf8(k.to_canonical()).unwrap();
        assert_eq!(
            json,
            r#"{"keytype":"ed25519","keyval":{"private":null,"public":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}"#
        );
        assert_eq!(k.id().as_str(), hex::encode(sha256(json.as_bytes())));
    }

    #[test]
    fn key_ids_are_strict() {
        assert!(KeyId::new(&"a".repeat(64)).is_ok());
        assert!(KeyId::new(&"A".repeat(64)).is_err());
        assert!(KeyId::new(&"a".repeat(63)).is_err());
        assert!(KeyId::new("../../etc/passwd").is_err());
    }

    #[test]
    fn the_algorithm_comes_from_the_key_not_the_signature() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
        let kp = Ed25519KeyPair::generate().unwrap();
        let k = PublicKey::new(KeyType::Ed25519, kp.public_key().as_ref().to_vec());
        let sig = kp.sign(b"m");
        assert!(k
            .verify(&SignatureMethod::Eddsa, b"m", sig.as_ref())
            .is_ok());
        // The same bytes claimed as another scheme are refused (CS-DRNT15-1).
        for other in [SignatureMethod::Ecdsa, SignatureMethod::RsaPss] {
            assert!(k.verify(&other, b"m", sig.as_ref()).is_err(), "{other:?}");
        }
    }

    #[test]
    fn unusable_keys_never_verify() {
        let k = PublicKey::new(KeyType::Ed25519, vec![1; 31]);
        assert!(k.verify(&SignatureMethod::Eddsa, b"m", &[0; 64]).is_err());
        let k = PublicKey::new(KeyType::Unknown("dsa".into()), vec![1; 31]);
        assert!(k.verify(&SignatureMethod::Eddsa, b"m", &[0; 64]).is_err());
        let k = PublicKey::new(KeyType::Ecdsa, b"not der".to_vec());
        assert!(k.verify(&SignatureMethod::Ecdsa, b"m", &[0; 64]).is_err());
    }
}
