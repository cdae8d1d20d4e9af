//! Just enough DER to read and write the key structures docker and notary use
//! (PKCS#8 PrivateKeyInfo, SEC1 ECPrivateKey). Reading is bounds-checked everywhere:
//! malformed input is an error, never a panic.

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const BIT_STRING: u8 = 0x03;
pub const OID: u8 = 0x06;
pub const NULL: u8 = 0x05;

pub const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// Notary's private OID for its 96-byte ed25519 private key serialization.
pub const OID_NOTARY_ED25519: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];
/// RFC 8410 Ed25519.
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError(pub &'static str);

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Read one TLV, returning its tag and contents.
    pub fn read(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let tag = *self
            .data
            .get(self.pos)
            .ok_or(DerError("truncated: missing tag"))?;
        let first = *self
            .data
            .get(self.pos + 1)
            .ok_or(DerError("truncated: missing length"))?;
        let mut p = self.pos + 2;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(DerError("unsupported length encoding"));
            }
            let bytes = self
                .data
                .get(p..p + n)
                .ok_or(DerError("truncated length"))?;
            p += n;
            bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize)
        };
        let end = p.checked_add(len).ok_or(DerError("length overflow"))?;
        let content = self
            .data
            .get(p..end)
            .ok_or(DerError("truncated contents"))?;
        self.pos = end;
        Ok((tag, content))
    }

    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (t, c) = self.read()?;
        if t != tag {
            return Err(DerError("unexpected tag"));
        }
        Ok(c)
    }

    /// A small non-negative INTEGER (versions).
    pub fn small_int(&mut self) -> Result<u8, DerError> {
        match self.expect(INTEGER)? {
            [v] => Ok(*v),
            _ => Err(DerError("unexpected integer")),
        }
    }
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(items: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &items.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let data = vec![7u8; n];
            let enc = tlv(OCTET_STRING, &data);
            let mut r = Reader::new(&enc);
            assert_eq!(r.expect(OCTET_STRING).unwrap(), &data[..]);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 1],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(Reader::new(bad).read().is_err(), "{bad:?}");
        }
    }
}
