//! Property tests: canonical serialization round-trips arbitrary metadata, the streaming
//! canonicalizer agrees with the typed writer, and no input makes a parser panic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use notarium_tuf::canonical::{canonicalize, html_escape_into, Canonical};
use notarium_tuf::key::{KeyType, PublicKey};
use notarium_tuf::metadata::{envelope, Role};
use notarium_tuf::{
    DateTime, DelegationRole, FileMeta, Hashes, Metadata, RoleName, Root, RootRole, Signature,
    SignatureMethod, Snapshot, TargetName, Targets, Timestamp,
};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        // Any printable text, including what needs escaping and non-ASCII.
        "[ -~<>&\"\\\\üé☃\u{2028}\u{2029}😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[ -~é☃]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn time() -> impl Strategy<Value = DateTime> {
    // Any instant between 1970 and 2200, with nanoseconds and a whole-minute offset.
    (0i64..7_258_118_400, 0u32..1_000_000_000, -720i32..=840).prop_map(|(s, ns, off_min)| {
        let utc = DateTime::from_unix_nanos(s as i128 * 1_000_000_000 + ns as i128);
        // Build the offset form through the parser, as a file would carry it.
        let text = utc.format().unwrap();
        let t = DateTime::parse(&text).unwrap();
        if off_min == 0 {
            return t;
        }
        let sign = if off_min < 0 { '-' } else { '+' };
        let m = off_min.unsigned_abs();
        let local = DateTime::from_unix_nanos(t.unix_nanos() + off_min as i128 * 60_000_000_000);
        let local_text = local.format().unwrap();
        let with_zone = format!(
            "{}{sign}{:02}:{:02}",
            local_text.trim_end_matches('Z'),
            m / 60,
            m % 60
        );
        DateTime::parse(&with_zone).unwrap()
    })
}

fn hashes() -> impl Strategy<Value = Hashes> {
    (any::<[u8; 32]>(), any::<bool>()).prop_map(|(d, both)| {
        if both {
            Hashes::of(&d)
        } else {
            Hashes::sha256_only(d)
        }
    })
}

fn file_meta() -> impl Strategy<Value = FileMeta> {
    (hashes(), 0u64..u64::MAX / 2, prop::option::of(json_value())).prop_map(
        |(hashes, length, custom)| FileMeta {
            custom,
            hashes,
            length,
        },
    )
}

fn target_name() -> impl Strategy<Value = TargetName> {
    "[a-zA-Z0-9<>&\"._ü☃-]{1,20}(/[a-z0-9]{1,5}){0,2}"
        .prop_filter_map("valid", |s| TargetName::new(&s).ok())
}

fn key() -> impl Strategy<Value = PublicKey> {
    (
        prop_oneof![
            Just(KeyType::Ecdsa),
            Just(KeyType::Ed25519),
            Just(KeyType::Rsa)
        ],
        prop::collection::vec(any::<u8>(), 32..80),
    )
        .prop_map(|(t, b)| PublicKey::new(t, b))
}

fn targets() -> impl Strategy<Value = Targets> {
    (
        time(),
        1u64..1_000_000,
        prop::collection::btree_map(target_name(), file_meta(), 0..8),
        prop::collection::vec(key(), 0..4),
        prop::collection::vec(
            (
                "[a-z0-9_-]{1,10}",
                1u64..4,
                prop::collection::vec("[a-z0-9/]{0,6}", 0..3),
            ),
            0..4,
        ),
    )
        .prop_map(|(expires, version, targets, keys, roles)| {
            let mut t = Targets::new(expires, version);
            t.targets = targets.into();
            let ids: Vec<_> = keys.iter().map(|k| k.id().clone()).collect();
            t.delegations.keys = keys.into_iter().map(|k| (k.id().clone(), k)).collect();
            let mut seen = std::collections::BTreeSet::new();
            for (name, threshold, paths) in roles {
                if seen.insert(name.clone()) {
                    let role = RoleName::new(&format!("targets/{name}")).unwrap();
                    t.delegations.roles.push(DelegationRole::new(
                        role,
                        ids.clone(),
                        threshold,
                        paths,
                    ));
                }
            }
            t
        })
}

fn signatures() -> impl Strategy<Value = Vec<Signature>> {
    prop::collection::vec(
        (
            key(),
            prop::collection::vec(any::<u8>(), 64..65),
            prop_oneof![Just("ecdsa"), Just("eddsa"), Just("rsapss")],
        ),
        0..3,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(k, sig, m)| Signature {
                keyid: k.id().clone(),
                method: SignatureMethod::parse(m),
                sig,
            })
            .collect()
    })
}

/// Serialize typed metadata the way notarium writes files, parse it back, compare.
fn round_trip<T: Role + PartialEq + std::fmt::Debug>(role: &str, value: &T, sigs: &[Signature]) {
    let canonical = value.to_canonical();
    // The typed writer emits canonical bytes: canonicalizing them is the identity.
    assert_eq!(canonicalize(&canonical).unwrap(), canonical);
    let file = envelope(&canonical, sigs);
    let parsed = Metadata::<T>::parse(role, file.clone()).unwrap();
    assert_eq!(parsed.signed(), value);
    assert_eq!(parsed.signatures(), sigs);
    assert_eq!(parsed.canonical().unwrap(), canonical.as_slice());
    assert!(parsed.is_normalized());
    assert_eq!(parsed.raw(), file.as_slice());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn targets_round_trip(t in targets(), sigs in signatures()) {
        round_trip("targets", &t, &sigs);
    }

    #[test]
    fn snapshot_and_timestamp_round_trip(
        expires in time(), version in 1u64..i64::MAX as u64,
        meta in prop::collection::btree_map("(root|targets|targets/[a-z]{1,6})", file_meta(), 0..6),
        sigs in signatures(),
    ) {
        let mut s = Snapshot::new(expires, version);
        s.meta = meta.iter().map(|(k, v)| (RoleName::new(k).unwrap(), v.clone())).collect();
        round_trip("snapshot", &s, &sigs);
        let ts = Timestamp::new(expires, version, FileMeta::for_metadata(&s.to_canonical()));
        round_trip("timestamp", &ts, &sigs);
    }

    #[test]
    fn root_round_trips(expires in time(), version in 1u64..1000, keys in prop::collection::vec(key(), 1..5), consistent in any::<bool>()) {
        let mut r = Root::new(expires, version);
        r.consistent_snapshot = consistent;
        let ids: Vec<_> = keys.iter().map(|k| k.id().clone()).collect();
        r.keys = keys.into_iter().map(|k| (k.id().clone(), k)).collect::<BTreeMap<_, _>>();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            r.roles.insert(role.into(), RootRole { keyids: ids.clone(), threshold: 1 });
        }
        round_trip("root", &r, &[]);
    }

    /// The streaming canonicalizer and the typed writer are two implementations of the
    /// same dialect; on any JSON value they must agree, whatever the input's key order or
    /// whitespace.
    #[test]
    fn canonicalizer_agrees_with_writer(v in json_value()) {
        let expected = v.to_canonical();
        prop_assert_eq!(canonicalize(&serde_json::to_vec(&v).unwrap()).unwrap(), expected.clone());
        prop_assert_eq!(canonicalize(&serde_json::to_vec_pretty(&v).unwrap()).unwrap(), expected.clone());
        // And the envelope form (HTML-escaped) canonicalizes back to the same bytes.
        let mut env = Vec::new();
        html_escape_into(&expected, &mut env);
        prop_assert_eq!(canonicalize(&env).unwrap(), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = canonicalize(&data);
        let _ = Metadata::<Root>::parse("root", data.clone());
        let _ = Metadata::<Targets>::parse("targets", data.clone());
        let _ = Metadata::<Snapshot>::parse("snapshot", data.clone());
        let _ = Metadata::<Timestamp>::parse("timestamp", data);
    }

    /// Valid files with a few bytes changed: the parsers reject or accept, never panic.
    #[test]
    fn mutated_files_never_panic(t in targets(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut file = envelope(&t.to_canonical(), &[]);
        for (i, b) in edits {
            let at = i.index(file.len());
            file[at] = b;
        }
        let _ = Metadata::<Targets>::parse("targets", file.clone());
        let _ = Metadata::<Root>::parse("root", file);
    }
}
