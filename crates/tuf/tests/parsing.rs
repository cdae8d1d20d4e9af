//! How files are read: signatures checked over the bytes of `signed` as they are in the
//! file, else over their canonical form; envelopes that only look like Notary's; targets
//! read lazily (one entry, every entry, a map) with the same answer every way, including
//! for duplicates, bad entries and names out of order; hashes; delegated paths.

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use notarium_tuf::metadata::{envelope, Metadata};
use notarium_tuf::sign::{Sign, SigningKey};
use notarium_tuf::verify::{self, Checks, RoleKeys};
use notarium_tuf::{
    DateTime, FileMeta, Hashes, KeyType, PublicKey, RoleName, Signature, SignatureMethod,
    TargetName, Targets,
};

struct Ed(Ed25519KeyPair, PublicKey);

impl Ed {
    fn new() -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let k = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let p = PublicKey::new(KeyType::Ed25519, k.public_key().as_ref().to_vec());
        Ed(k, p)
    }

    fn sig(&self, msg: &[u8]) -> Signature {
        Signature {
            keyid: self.1.id().clone(),
            method: SignatureMethod::Eddsa,
            sig: self.0.sign(msg).as_ref().to_vec(),
        }
    }
}

impl Sign for Ed {
    fn public_key(&self) -> &PublicKey {
        &self.1
    }
    fn method(&self) -> SignatureMethod {
        SignatureMethod::Eddsa
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

fn now() -> DateTime {
    DateTime::parse("2026-01-01T00:00:00Z").unwrap()
}

fn targets(tags: &[&str]) -> Targets {
    let mut t = Targets::new(DateTime::parse("2030-01-01T00:00:00Z").unwrap(), 3);
    for (i, tag) in tags.iter().enumerate() {
        t.targets.make_mut().unwrap().insert(
            TargetName::new(tag).unwrap(),
            FileMeta {
                custom: None,
                hashes: Hashes::sha256_only([i as u8; 32]),
                length: 100 + i as u64,
            },
        );
    }
    t
}

fn verifies(m: Metadata<Targets>, key: &Ed) -> Result<(), notarium_tuf::Error> {
    let keys = [(key.1.id().clone(), key.1.clone())].into_iter().collect();
    let ids = [key.1.id().clone()];
    let rk = RoleKeys {
        keys: &keys,
        keyids: &ids,
        threshold: 1,
    };
    verify::verify(m, &RoleName::targets(), rk, Checks::at(now())).map(|_| ())
}

/// A signed object as JSON text with `signed` replaced by `body` (bytes as given).
fn file_with(body: &str, sigs: &[Signature]) -> Vec<u8> {
    let tail = String::from_utf8(envelope(b"{}", sigs)).unwrap();
    let tail = tail.strip_prefix("{\"signed\":{}").unwrap();
    format!("{{\"signed\":{body}{tail}").into_bytes()
}

#[test]
fn pretty_printed_file_verifies_through_its_canonical_form() {
    let key = Ed::new();
    let m = Metadata::sign(
        "targets",
        targets(&["v1", "v2"]),
        &[SigningKey::plain(&key)],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(m.raw()).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    let parsed = Metadata::<Targets>::parse("targets", pretty).unwrap();
    assert_ne!(parsed.signed_bytes(), parsed.canonical().unwrap());
    verifies(parsed.clone(), &key).unwrap();
    assert_eq!(parsed.signed(), m.signed());
    assert!(!parsed.is_normalized(), "whitespace is not Notary's form");
}

#[test]
fn a_signature_over_the_exact_bytes_verifies_without_re_encoding() {
    // Signed as written, though not canonical: what was signed is what is read.
    let key = Ed::new();
    let body =
        r#"{ "_type": "Targets", "expires": "2030-01-01T00:00:00Z", "targets": {}, "version": 1 }"#;
    let file = file_with(body, &[key.sig(body.as_bytes())]);
    let m = Metadata::<Targets>::parse("targets", file).unwrap();
    assert_eq!(m.signed_bytes(), body.as_bytes());
    verifies(m, &key).unwrap();
}

#[test]
fn a_forged_body_fails_both_ways() {
    let key = Ed::new();
    let good = Metadata::sign("targets", targets(&["v1"]), &[SigningKey::plain(&key)]).unwrap();
    let forged = String::from_utf8(good.raw().to_vec())
        .unwrap()
        .replace("\"length\":100", "\"length\":101");
    let m = Metadata::<Targets>::parse("targets", forged.into_bytes()).unwrap();
    let e = verifies(m, &key).unwrap_err();
    assert!(
        matches!(e, notarium_tuf::Error::Threshold { valid: 0, .. }),
        "{e}"
    );
}

#[test]
fn a_float_is_reported_when_nothing_verifies() {
    let key = Ed::new();
    let body = r#"{"_type":"Targets","expires":"2030-01-01T00:00:00Z","targets":{"v1":{"custom":{"x":1.5},"hashes":{"sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"length":1}},"version":1}"#;
    let file = file_with(body, &[key.sig(b"something else")]);
    let m = Metadata::<Targets>::parse("targets", file).unwrap();
    let e = verifies(m, &key).unwrap_err();
    assert!(e.to_string().contains("floating-point"), "{e}");
}

#[test]
fn envelope_lookalikes_are_parsed_the_long_way() {
    let key = Ed::new();
    let good = Metadata::sign("targets", targets(&["v1"]), &[SigningKey::plain(&key)]).unwrap();
    let text = String::from_utf8(good.raw().to_vec()).unwrap();
    // A field after the signatures: refused, naming it.
    let extra = format!("{},\"extra\":1}}", &text[..text.len() - 1]);
    let e = Metadata::<Targets>::parse("targets", extra.into_bytes()).unwrap_err();
    assert!(e.to_string().contains("extra"), "{e}");
    // A signature method that contains the separator the fast path looks for.
    let mut sig = key.sig(good.canonical().unwrap());
    sig.method = SignatureMethod::parse(",\"signatures\":[");
    let odd = envelope(good.canonical().unwrap(), &[sig]);
    let m = Metadata::<Targets>::parse("targets", odd).unwrap();
    assert_eq!(m.signatures()[0].method.as_str(), ",\"signatures\":[");
    assert_eq!(m.signed(), good.signed());
    // Signatures first, then signed.
    let sigs = serde_json::to_string(&serde_json::json!([{
        "keyid": key.1.id().as_str(), "method": "eddsa", "sig": "AAAA"
    }]))
    .unwrap();
    let body = String::from_utf8(good.canonical().unwrap().to_vec()).unwrap();
    let swapped = format!("{{\"signatures\":{sigs},\"signed\":{body}}}");
    let m = Metadata::<Targets>::parse("targets", swapped.into_bytes()).unwrap();
    assert_eq!(m.signed(), good.signed());
}

fn raw_targets(object: &str) -> Metadata<Targets> {
    let body = format!(
        r#"{{"_type":"Targets","expires":"2030-01-01T00:00:00Z","targets":{object},"version":1}}"#
    );
    Metadata::parse("targets", file_with(&body, &[])).unwrap()
}

const H: &str =
    r#"{"hashes":{"sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"length":1}"#;

fn visit_names(t: &Targets) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    t.targets.visit(|n, _| {
        v.push(n.into_owned());
        ControlFlow::Continue(())
    })?;
    Ok(v)
}

#[test]
fn duplicate_targets_are_an_error_whichever_way_they_are_read() {
    let m = raw_targets(&format!(r#"{{"v1":{H},"v2":{H},"v1":{H}}}"#));
    let t = m.signed();
    assert!(t
        .targets
        .get("v1")
        .unwrap_err()
        .contains("duplicate target \"v1\""));
    assert!(visit_names(t).unwrap_err().contains("duplicate target"));
    assert!(t.targets.to_map().unwrap_err().contains("duplicate target"));
    // A lookup of another name is not about the duplicate.
    assert!(t.targets.get("v2").unwrap().is_some());
}

#[test]
fn targets_out_of_order_are_visited_in_order() {
    let m = raw_targets(&format!(r#"{{"b":{H},"a":{H},"c":{H}}}"#));
    assert_eq!(visit_names(m.signed()).unwrap(), ["a", "b", "c"]);
    assert_eq!(m.signed().targets.count().unwrap(), 3);
}

#[test]
fn a_bad_entry_is_reported_for_its_tag_only_when_read() {
    let m = raw_targets(&format!(
        r#"{{"good":{H},"bad":{{"hashes":{{"sha256":"!!"}},"length":1}}}}"#
    ));
    let t = m.signed();
    assert!(t.targets.get("good").unwrap().is_some());
    let e = t.targets.get("bad").unwrap_err();
    assert!(e.contains("\"bad\"") && e.contains("base64"), "{e}");
    assert!(t.targets.check_all().is_err());
    // A name outside the grammar.
    let m = raw_targets(&format!(r#"{{"../escape":{H}}}"#));
    assert!(m.signed().targets.check_all().is_err());
    assert!(m.signed().targets.get("../escape").is_err());
    // Not an object at all: refused when the file is read.
    let body = r#"{"_type":"Targets","expires":"2030-01-01T00:00:00Z","targets":[],"version":1}"#;
    assert!(Metadata::<Targets>::parse("targets", file_with(body, &[])).is_err());
}

#[test]
fn read_and_built_targets_are_equal_and_write_the_same_bytes() {
    let key = Ed::new();
    let built = targets(&["v1", "v10", "v2"]);
    let m = Metadata::sign("targets", built.clone(), &[SigningKey::plain(&key)]).unwrap();
    let read = Metadata::<Targets>::parse("targets", m.raw().to_vec()).unwrap();
    assert_eq!(read.signed(), &built);
    assert!(read.is_normalized());
    let mut changed = read.signed().clone();
    notarium_tuf::edit::add_target(
        &mut changed,
        TargetName::new("v3").unwrap(),
        FileMeta {
            custom: None,
            hashes: Hashes::sha256_only([9; 32]),
            length: 9,
        },
    )
    .unwrap();
    assert_eq!(changed.targets.count().unwrap(), 4);
    assert_ne!(&changed, read.signed());
}

#[test]
fn hashes_keep_unknown_algorithms_and_check_lengths() {
    let meta: FileMeta = serde_json::from_str(
        r#"{"hashes":{"sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","md5":"AAAAAAAAAAAAAAAAAAAAAA=="},"length":1}"#,
    )
    .unwrap();
    let algs: Vec<&str> = meta.hashes.iter().map(|(a, _)| a).collect();
    assert_eq!(algs, ["md5", "sha256"]);
    use notarium_tuf::canonical::Canonical as _;
    assert_eq!(
        String::from_utf8(meta.to_canonical()).unwrap(),
        r#"{"hashes":{"md5":"AAAAAAAAAAAAAAAAAAAAAA==","sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"length":1}"#
    );
    for (bad, want) in [
        (
            r#"{"sha256":"AAAA"}"#,
            "sha256 hash is 3 bytes, expected 32",
        ),
        (
            &*format!(r#"{{"sha512":"{}"}}"#, "A".repeat(200)),
            "sha512 hash is 150 bytes, expected 64",
        ),
        (r#"{"sha256":"not base64!"}"#, "sha256 hash is not base64"),
    ] {
        let e = serde_json::from_str::<Hashes>(bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
    // The check uses SHA-256 when there is one.
    let data = b"content";
    let mut h = Hashes::of(data);
    h.check(data).unwrap();
    assert!(h.check(b"other").unwrap_err().contains("sha256"));
    h = serde_json::from_str(&format!(
        r#"{{"sha512":"{}"}}"#,
        base64_of(&notarium_tuf::hash::sha512(data))
    ))
    .unwrap();
    h.check(data).unwrap();
    assert!(h.check(b"other").is_err());
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn changes_to_read_targets_merge_in_order_and_write_like_a_map() {
    let key = Ed::new();
    let m = Metadata::sign(
        "targets",
        targets(&["b", "d", "f"]),
        &[SigningKey::plain(&key)],
    )
    .unwrap();
    let read = Metadata::<Targets>::parse("targets", m.raw().to_vec()).unwrap();
    let mut lazy = read.signed().clone();
    let meta = |n: u8| FileMeta {
        custom: None,
        hashes: Hashes::sha256_only([n; 32]),
        length: n as u64,
    };
    let name = |s: &str| TargetName::new(s).unwrap();
    assert!(lazy.targets.insert(name("a"), meta(1)).unwrap());
    assert!(lazy.targets.insert(name("e"), meta(2)).unwrap());
    assert!(lazy.targets.insert(name("z"), meta(3)).unwrap());
    assert!(lazy.targets.insert(name("d"), meta(4)).unwrap(), "replaced");
    assert!(lazy.targets.remove("b").unwrap());
    assert!(!lazy.targets.remove("nope").unwrap());
    let same = lazy.targets.get("f").unwrap().unwrap();
    assert!(!lazy.targets.insert(name("f"), same).unwrap(), "no change");
    assert_eq!(visit_names(&lazy).unwrap(), ["a", "d", "e", "f", "z"]);
    assert_eq!(lazy.targets.get("d").unwrap().unwrap().length, 4);
    assert!(lazy.targets.get("b").unwrap().is_none());
    // The same changes to a map give the same bytes.
    let mut eager = read.signed().clone();
    let map = eager.targets.make_mut().unwrap();
    map.insert(name("a"), meta(1));
    map.insert(name("e"), meta(2));
    map.insert(name("z"), meta(3));
    map.insert(name("d"), meta(4));
    map.remove("b");
    use notarium_tuf::canonical::Canonical as _;
    assert_eq!(lazy.to_canonical(), eager.to_canonical());
    assert_eq!(lazy, eager);
    assert_eq!(lazy.targets.count().unwrap(), 5);
    // Stopping early stops.
    let mut first = Vec::new();
    lazy.targets
        .visit(|n, _| {
            first.push(n.into_owned());
            if first.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(first, ["a", "d"]);
}

#[test]
fn signing_refuses_what_has_no_canonical_form() {
    let key = Ed::new();
    // A control character in a delegated path.
    let mut t = targets(&["v1"]);
    notarium_tuf::edit::add_delegation(
        &mut t,
        &RoleName::new("targets/alice").unwrap(),
        std::slice::from_ref(&key.1),
        1,
        &["bad\u{1}path".to_owned()],
    );
    let e = Metadata::sign("targets", t, &[SigningKey::plain(&key)]).unwrap_err();
    assert!(e.to_string().contains("control character"), "{e}");
    // A float in a target's custom data.
    let mut t = targets(&["v1"]);
    t.targets
        .insert(
            TargetName::new("v2").unwrap(),
            FileMeta {
                custom: Some(serde_json::json!({"ratio": 0.5})),
                hashes: Hashes::sha256_only([1; 32]),
                length: 1,
            },
        )
        .unwrap();
    let e = Metadata::sign("targets", t, &[SigningKey::plain(&key)]).unwrap_err();
    assert!(e.to_string().contains("floating-point"), "{e}");
}

#[test]
fn delegated_paths_are_narrowed_by_the_delegator() {
    use notarium_tuf::metadata::{paths_allow, DelegationRole};
    let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let role = DelegationRole::new(
        RoleName::new("targets/a/b").unwrap(),
        vec![],
        1,
        paths(&["team-a/x", "team-b/", "", "team-a/"]),
    );
    // Under `targets` the role's own paths stand.
    assert_eq!(role.effective_paths(None), role.paths);
    // Under a delegation to team-a/, only what lies inside team-a/ is kept: "" (all)
    // and team-b/ are not widened into the parent's space.
    let eff = role.effective_paths(Some(&paths(&["team-a/"])));
    assert_eq!(eff, paths(&["team-a/x", "team-a/"]));
    assert!(paths_allow(&eff, "team-a/x1"));
    assert!(paths_allow(&eff, "team-a/y"));
    assert!(!paths_allow(&eff, "team-b/app"));
    assert!(!paths_allow(&eff, "other"));
    // A delegator with no paths leaves nothing.
    assert!(role.effective_paths(Some(&[])).is_empty());
    // "" allows every name.
    assert!(paths_allow(&paths(&[""]), "anything"));
}
