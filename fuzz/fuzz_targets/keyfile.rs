//! Key file parsing: PEM, encrypted and plain PKCS#8, SEC1, PKCS#1, notary ed25519,
//! public keys and certificates. Must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keys::fuzz_parse(data);
});
