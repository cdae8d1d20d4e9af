//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and hashing a stream into one.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn aws(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Algorithm::Sha256 => &aws_lc_rs::digest::SHA256,
            Algorithm::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }
}

/// A validated digest: a known algorithm and lower-case hex of the right length. Safe to
/// use in a file path (`<algorithm>/<hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 hex> or sha512:<128 hex>")]
pub struct DigestError(pub String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let err = || DigestError(s.chars().take(150).collect());
        let (alg, hex) = s.split_once(':').ok_or_else(err)?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err()),
        };
        if hex.len() != alg.hex_len()
            || !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(err());
        }
        Ok(Digest {
            alg,
            hex: hex.to_owned(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The raw SHA-256 bytes (for trust targets), when it is one.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        if self.alg != Algorithm::Sha256 {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.hex, &mut out).ok()?;
        Some(out)
    }

    /// A hasher for data that should have this digest.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.alg)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes a stream of bytes into a [`Digest`]; can be cloned to checkpoint an upload.
#[derive(Clone)]
pub struct Hasher {
    alg: Algorithm,
    ctx: aws_lc_rs::digest::Context,
    len: u64,
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Self {
        Hasher {
            alg,
            ctx: aws_lc_rs::digest::Context::new(alg.aws()),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest {
            alg: self.alg,
            hex: hex::encode(self.ctx.finish().as_ref()),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({}, {} bytes)", self.alg.as_str(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_hash() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        for bad in [
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:abc",
            "sha256",
            "",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.len(), 3);
        assert!(h.finish().to_string().starts_with("sha512:ddaf35a1"));
    }
}
