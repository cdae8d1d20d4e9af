//! Digests used by metadata: SHA-256 everywhere, SHA-512 alongside it in snapshot/timestamp.

use aws_lc_rs::digest;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha512(data: &[u8]) -> [u8; 64] {
    let d = digest::digest(&digest::SHA512, data);
    let mut out = [0u8; 64];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}
