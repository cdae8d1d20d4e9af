//! The TUF core's hot paths, next to the raw crypto and a plain-serde baseline measured in
//! the same run:
//!
//! * canonicalize + hash a targets file of 100,000 targets (what verifying and storing a
//!   large targets file costs), against `serde_json` parse + serialize + SHA-256;
//! * verify one ed25519 and one ECDSA P-256 signature through `PublicKey::verify`, against
//!   aws-lc-rs verifying the same signature directly;
//! * decrypt one docker key file.
//!
//! Run: `cargo bench --bench core`. Results go in BENCHMARKS.md.

#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keys::{file, Algorithm, PrivateKey};
use tuf::canonical::{canonicalize, Canonical};
use tuf::sign::{Sign, SigningKey};
use tuf::{DateTime, FileMeta, Hashes, Metadata, TargetName, Targets};

/// A targets file like docker's: one sha256 per tag, signed by one ECDSA key.
fn targets_file(n: usize) -> Vec<u8> {
    let mut t = Targets::new(DateTime::parse("2029-11-24T01:47:08.6440161Z").unwrap(), 7);
    for i in 0..n {
        let name = TargetName::new(&format!("v1.{}.{}-build{}", i / 1000, i % 1000, i)).unwrap();
        let digest = tuf::hash::sha256(name.as_str().as_bytes());
        t.targets.make_mut().unwrap().insert(
            name,
            FileMeta {
                custom: None,
                hashes: Hashes::sha256_only(digest),
                length: 528 + (i as u64 % 4096),
            },
        );
    }
    let key = PrivateKey::generate(Algorithm::Ecdsa).unwrap();
    Metadata::sign("targets", t, &[SigningKey::plain(&key)])
        .unwrap()
        .raw()
        .to_vec()
}

fn signed_part(file: &[u8]) -> &[u8] {
    // {"signed":<here>,"signatures":[...]}
    let start = b"{\"signed\":".len();
    let end = file
        .windows(16)
        .rposition(|w| w == b",\"signatures\":[{")
        .unwrap();
    &file[start..end]
}

fn bench_canonical(c: &mut Criterion) {
    let n = 100_000;
    let file = targets_file(n);
    let mut g = c.benchmark_group("targets_100k");
    g.sample_size(20);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("canonicalize_and_hash", |b| {
        b.iter(|| {
            let canon = canonicalize(black_box(signed_part(&file))).unwrap();
            let h = tuf::hash::sha256(black_box(&file));
            (canon.len(), h)
        })
    });
    g.bench_function("serde_parse_serialize_hash_baseline", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&file)).unwrap();
            let out = serde_json::to_vec(&v).unwrap();
            tuf::hash::sha256(&out)
        })
    });
    g.bench_function("parse_typed", |b| {
        b.iter(|| {
            Metadata::<Targets>::parse("targets", black_box(file.clone()))
                .unwrap()
                .signed()
                .targets
                .to_map()
                .unwrap()
                .len()
        })
    });
    // What a pull or `trust verify` does: parse, then find one tag.
    g.bench_function("parse_and_lookup_one", |b| {
        b.iter(|| {
            Metadata::<Targets>::parse("targets", black_box(file.clone()))
                .unwrap()
                .signed()
                .targets
                .get("v1.50.0-build50000")
                .unwrap()
                .unwrap()
                .length
        })
    });
    // What `trust inspect` does: every entry, one at a time.
    g.bench_function("parse_and_visit_all", |b| {
        b.iter(|| {
            let m = Metadata::<Targets>::parse("targets", black_box(file.clone())).unwrap();
            let mut n = 0u64;
            m.signed()
                .targets
                .visit(|_, meta| {
                    n += meta.length;
                    std::ops::ControlFlow::Continue(())
                })
                .unwrap();
            n
        })
    });
    let parsed = Metadata::<Targets>::parse("targets", file.clone()).unwrap();
    // The typed writer over a map in memory (a role being built)…
    let mut built = parsed.signed().clone();
    built.targets.make_mut().unwrap();
    g.bench_function("serialize_typed", |b| {
        b.iter(|| black_box(&built).to_canonical().len())
    });
    // …and over a role as read from a file, entries read as they are written (signing
    // one more tag into a large role).
    g.bench_function("reserialize_read_role", |b| {
        b.iter(|| black_box(parsed.signed()).to_canonical().len())
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
    let msg = canonicalize(signed_part(&targets_file(3))).unwrap();
    let mut g = c.benchmark_group("verify");
    for (alg, name, raw_alg) in [
        (
            Algorithm::Ed25519,
            "ed25519",
            &ED25519 as &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
        ),
        (Algorithm::Ecdsa, "ecdsa_p256", &ECDSA_P256_SHA256_FIXED),
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        let sig = key.sign(&msg).unwrap();
        let public = key.public().clone();
        let method = key.method();
        public.verify(&method, &msg, &sig).unwrap();
        // The raw key bytes aws-lc-rs wants: the 32-byte ed25519 key, or the EC point.
        let raw_key = match alg {
            Algorithm::Ed25519 => public.public_bytes().to_vec(),
            Algorithm::Ecdsa => {
                tuf::x509::parse_spki(public.public_bytes())
                    .unwrap()
                    .key_bits
            }
        };
        g.bench_with_input(BenchmarkId::new("notarium", name), &(), |b, _| {
            b.iter(|| {
                public
                    .verify(black_box(&method), black_box(&msg), black_box(&sig))
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("raw_aws_lc_rs", name), &(), |b, _| {
            b.iter(|| {
                UnparsedPublicKey::new(raw_alg, black_box(&raw_key))
                    .verify(black_box(&msg), black_box(&sig))
                    .unwrap()
            })
        });
        let parsed = aws_lc_rs::signature::ParsedPublicKey::new(raw_alg, &raw_key).unwrap();
        g.bench_with_input(
            BenchmarkId::new("raw_aws_lc_rs_parsed_key", name),
            &(),
            |b, _| b.iter(|| parsed.verify_sig(black_box(&msg), black_box(&sig)).unwrap()),
        );
    }
    g.finish();
}

fn bench_keyfile(c: &mut Criterion) {
    let text = std::fs::read(
        "tests/fixtures/docker-28/docker-private-keys/204276eb449a126877a3a4c9abf67015b9c819117bf67ca1af90cd517c09d89b.key",
    )
    .unwrap();
    c.bench_function("decrypt_docker_key_file", |b| {
        b.iter(|| {
            file::read(black_box(&text), Some("docker-repo-pass"))
                .unwrap()
                .key
                .id()
                .clone()
        })
    });
}

criterion_group!(benches, bench_canonical, bench_verify, bench_keyfile);
criterion_main!(benches);
