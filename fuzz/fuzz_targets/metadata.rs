//! Metadata parsing: canonical JSON, the envelope and all four role types, and — when a
//! parse succeeds — re-serialization, which must give canonical bytes that parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuf::canonical::canonicalize;
use tuf::metadata::Role;
use tuf::{Metadata, Root, Snapshot, Targets, Timestamp};

fn check<T: Role + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = Metadata::<T>::parse("fuzz", data.to_vec()) {
        let canon = m.signed().to_canonical();
        assert_eq!(canonicalize(&canon).expect("own output is canonical"), canon);
        let file = tuf::metadata::envelope(&canon, m.signatures());
        let again = Metadata::<T>::parse("fuzz", file).expect("own output parses");
        assert_eq!(again.signed(), m.signed());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = canonicalize(data) {
        assert_eq!(canonicalize(&c).as_deref(), Ok(c.as_slice()), "canonicalization is idempotent");
    }
    check::<Root>(data);
    check::<Targets>(data);
    check::<Snapshot>(data);
    check::<Timestamp>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = tuf::Gun::new(s);
        let _ = tuf::RoleName::new(s);
        let _ = tuf::TargetName::new(s);
    }
});
