//! Notary's TUF metadata: typed roles, the signed envelope, parsing and byte-exact
//! serialization (`notary-protocol.md` §2–§3).
//!
//! A file is parsed into [`Metadata<T>`]: the exact bytes received, the canonical bytes its
//! signatures cover, and the typed body. Nothing here says the signatures are good; only
//! [`crate::verify`] can turn a `Metadata<T>` into a [`crate::verify::Verified<T>`].

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::canonical::{self, write_str, Canonical, ObjectWriter};
use crate::error::{Error, Result};
use crate::hash::{sha256, sha512};
use crate::key::{KeyId, PublicKey, SignatureMethod};
use crate::names::{RoleName, TargetName};
use crate::target_map::TargetMap;
use crate::time::DateTime;

/// One signature in the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: KeyId,
    pub method: SignatureMethod,
    pub sig: Vec<u8>,
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire<'a> {
            keyid: KeyId,
            #[serde(borrow)]
            method: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            sig: std::borrow::Cow<'a, str>,
        }
        let w = Wire::deserialize(d)?;
        let sig = B64
            .decode(w.sig.as_bytes())
            .map_err(|e| D::Error::custom(format!("signature is not base64: {e}")))?;
        let method = SignatureMethod::parse(&w.method);
        if method.as_str().bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(D::Error::custom("signature method is not printable ASCII"));
        }
        Ok(Signature {
            keyid: w.keyid,
            method,
            sig,
        })
    }
}

/// Hashes by algorithm name. Only `sha256` and `sha512` are understood; other names are
/// kept so files round-trip. SHA-256 (all a docker target has) is stored inline: a
/// repository of 100,000 tags holds 100,000 of these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hashes {
    sha256: Option<[u8; 32]>,
    sha512: Option<Box<[u8; 64]>>,
    /// Other algorithms, sorted by name.
    other: Vec<(String, Vec<u8>)>,
}

impl Hashes {
    pub fn new() -> Self {
        Hashes::default()
    }

    /// Both SHA-256 and SHA-512 of `data` (what Notary writes for metadata files).
    pub fn of(data: &[u8]) -> Self {
        Hashes {
            sha256: Some(sha256(data)),
            sha512: Some(Box::new(sha512(data))),
            other: Vec::new(),
        }
    }

    /// Only SHA-256 (what Docker writes for image targets).
    pub fn sha256_only(digest: [u8; 32]) -> Self {
        Hashes {
            sha256: Some(digest),
            ..Hashes::default()
        }
    }

    pub fn sha256(&self) -> Option<&[u8]> {
        self.sha256.as_ref().map(|h| h.as_slice())
    }

    pub fn sha512(&self) -> Option<&[u8]> {
        self.sha512.as_deref().map(|h| h.as_slice())
    }

    /// Every hash, by algorithm name in byte order (as canonical JSON writes them).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut all: Vec<(&str, &[u8])> = self
            .other
            .iter()
            .map(|(a, h)| (a.as_str(), h.as_slice()))
            .collect();
        if let Some(h) = self.sha256() {
            all.push(("sha256", h));
        }
        if let Some(h) = self.sha512() {
            all.push(("sha512", h));
        }
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.sha512.is_none() && self.other.is_empty()
    }

    /// Check `data` against the strongest hash we can check fast: SHA-256 when present
    /// (finding other data with the same SHA-256 is as infeasible as with SHA-512), else
    /// SHA-512. Notary also re-checks SHA-512 when both are there; on a machine without
    /// SHA-512 instructions that doubles the cost of reading a large role for nothing.
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        if let Some(h) = self.sha256() {
            let actual = sha256(data);
            if h != actual {
                return Err(format!(
                    "sha256 {} does not match the data ({})",
                    hex::encode(h),
                    hex::encode(actual)
                ));
            }
            return Ok(());
        }
        if let Some(h) = self.sha512() {
            if h != sha512(data) {
                return Err("sha512 does not match the data".into());
            }
            return Ok(());
        }
        Err("no sha256 or sha512 hash to check".into())
    }
}

/// A string borrowed from the input when it has no escapes.
pub(crate) struct Text<'a>(pub(crate) std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Hashes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of base64 hashes")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Hashes, A::Error> {
                let mut out = Hashes::default();
                while let Some(alg) = m.next_key::<Text<'de>>()? {
                    let value = m.next_value::<Text<'de>>()?;
                    let (alg, value) = (alg.0, value.0);
                    let bad = |e: &dyn std::fmt::Display| {
                        A::Error::custom(format!("{alg} hash is not base64: {e}"))
                    };
                    let want = match alg.as_ref() {
                        "sha256" => 32,
                        "sha512" => 64,
                        other => {
                            let h = B64.decode(value.as_bytes()).map_err(|e| bad(&e))?;
                            match out.other.binary_search_by(|(a, _)| a.as_str().cmp(other)) {
                                Ok(i) => out.other[i].1 = h,
                                Err(i) => out.other.insert(i, (other.to_owned(), h)),
                            }
                            continue;
                        }
                    };
                    // Known digests decode on the stack.
                    let mut buf = [0u8; 66];
                    let n = match B64.decode_slice(value.as_bytes(), &mut buf) {
                        Ok(n) => n,
                        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                            B64.decode(value.as_bytes()).map_err(|e| bad(&e))?.len()
                        }
                        Err(e) => return Err(bad(&e)),
                    };
                    if n != want {
                        return Err(A::Error::custom(format!(
                            "{alg} hash is {n} bytes, expected {want}"
                        )));
                    }
                    if want == 32 {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(&buf[..32]);
                        out.sha256 = Some(h);
                    } else {
                        let mut h = Box::new([0u8; 64]);
                        h.copy_from_slice(&buf[..64]);
                        out.sha512 = Some(h);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl Canonical for Hashes {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        for (alg, h) in self.iter() {
            write_str(o.dynamic_field(alg), &B64.encode(h));
        }
        o.finish();
    }
}

/// Length, hashes and optional custom data of a target or a metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileMeta {
    /// Present when the file had `custom` (even `null`); always canonical.
    #[serde(default, deserialize_with = "present_value")]
    pub custom: Option<serde_json::Value>,
    pub hashes: Hashes,
    pub length: u64,
}

fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl FileMeta {
    /// The meta Notary records for a metadata file: length and SHA-256 + SHA-512.
    pub fn for_metadata(bytes: &[u8]) -> Self {
        FileMeta {
            custom: None,
            hashes: Hashes::of(bytes),
            length: bytes.len() as u64,
        }
    }

    /// Check `data` against this meta (length and hashes).
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        if data.len() as u64 != self.length {
            return Err(format!(
                "length {} does not match the recorded {}",
                data.len(),
                self.length
            ));
        }
        self.hashes.check(data)
    }
}

impl Canonical for FileMeta {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        if let Some(c) = &self.custom {
            c.write_canonical(o.field("custom"));
        }
        self.hashes.write_canonical(o.field("hashes"));
        self.length.write_canonical(o.field("length"));
        o.finish();
    }
}

/// Key IDs and threshold of a top-level role in root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RootRole {
    #[serde(deserialize_with = "null_as_empty")]
    pub keyids: Vec<KeyId>,
    pub threshold: u64,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Canonical for RootRole {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        self.keyids.write_canonical(o.field("keyids"));
        self.threshold.write_canonical(o.field("threshold"));
        o.finish();
    }
}

/// The body of every role file: what [`Metadata`] needs to know about it.
pub trait Role: Canonical + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The `_type` value (`Root`, `Targets`, `Snapshot`, `Timestamp`).
    const TYPE: &'static str;
    fn version(&self) -> u64;
    fn expires(&self) -> DateTime;
    /// Structural rules for this type (`role` is the name it is loaded as).
    fn check_structure(&self, role: &RoleName) -> Result<(), String>;

    /// Parse the body from `file[at]` (the `signed` of a file). A type may keep parts of
    /// the file unread, sharing its bytes.
    fn parse_signed(file: &Arc<[u8]>, at: std::ops::Range<usize>) -> serde_json::Result<Self> {
        serde_json::from_slice(&file[at])
    }
}

/// The `_type` field: checked on parse, written from [`Role::TYPE`], carries no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TypeTag;

macro_rules! type_tag {
    ($fn:ident, $name:literal) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<TypeTag, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            if s != $name {
                return Err(D::Error::custom(format!(
                    "_type is {:?}, expected {:?}",
                    s.chars().take(40).collect::<String>(),
                    $name
                )));
            }
            Ok(TypeTag)
        }
    };
}
type_tag!(root_type, "Root");
type_tag!(targets_type, "Targets");
type_tag!(snapshot_type, "Snapshot");
type_tag!(timestamp_type, "Timestamp");

/// `root.json`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Root {
    #[serde(rename = "_type", deserialize_with = "root_type")]
    type_tag: TypeTag,
    #[serde(default)]
    pub consistent_snapshot: bool,
    pub expires: DateTime,
    pub keys: BTreeMap<KeyId, PublicKey>,
    pub roles: BTreeMap<String, RootRole>,
    pub version: u64,
}

impl Root {
    pub fn new(expires: DateTime, version: u64) -> Self {
        Root {
            type_tag: TypeTag,
            consistent_snapshot: false,
            expires,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
            version,
        }
    }

    /// The keys and threshold of a top-level role.
    pub fn role_keys(&self, role: &str) -> Option<(&RootRole, Vec<&PublicKey>)> {
        let r = self.roles.get(role)?;
        Some((
            r,
            r.keyids.iter().filter_map(|id| self.keys.get(id)).collect(),
        ))
    }
}

impl Canonical for Root {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        write_str(o.field("_type"), Self::TYPE);
        self.consistent_snapshot
            .write_canonical(o.field("consistent_snapshot"));
        write_time(o.field("expires"), &self.expires);
        self.keys.write_canonical(o.field("keys"));
        self.roles.write_canonical(o.field("roles"));
        self.version.write_canonical(o.field("version"));
        o.finish();
    }
}

fn write_time(out: &mut Vec<u8>, t: &DateTime) {
    // Parsed and produced times are always in range; an out-of-range time cannot be
    // represented by the reference either, so it is written in UTC, clamped.
    let s = t
        .format()
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned());
    write_str(out, &s)
}

impl Role for Root {
    const TYPE: &'static str = "Root";
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> DateTime {
        self.expires
    }
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        check_version(self.version)?;
        for base in ["root", "targets", "snapshot", "timestamp"] {
            let r = self
                .roles
                .get(base)
                .ok_or_else(|| format!("root does not define the {base} role"))?;
            if r.threshold < 1 {
                return Err(format!("{base} role has threshold {}", r.threshold));
            }
            for id in &r.keyids {
                if !self.keys.contains_key(id) {
                    return Err(format!(
                        "{base} role lists key {id}, which root does not define"
                    ));
                }
            }
        }
        for (id, key) in &self.keys {
            if key.id() != id {
                return Err(format!("key listed as {id} has ID {}", key.id()));
            }
        }
        Ok(())
    }
}

/// A delegation entry in a targets role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRole {
    pub keyids: Vec<KeyId>,
    /// The reference writes `"keyids":null` after removing every key; kept for round-trips.
    pub keyids_null: bool,
    pub name: RoleName,
    /// Path prefixes (not globs); `""` allows everything; omitted from JSON when empty.
    pub paths: Vec<String>,
    pub threshold: u64,
}

impl<'de> Deserialize<'de> for DelegationRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            keyids: Option<Vec<KeyId>>,
            name: RoleName,
            #[serde(default, deserialize_with = "null_as_empty")]
            paths: Vec<String>,
            threshold: u64,
        }
        let w = Wire::deserialize(d)?;
        Ok(DelegationRole {
            keyids_null: w.keyids.is_none(),
            keyids: w.keyids.unwrap_or_default(),
            name: w.name,
            paths: w.paths,
            threshold: w.threshold,
        })
    }
}

impl DelegationRole {
    pub fn new(name: RoleName, keyids: Vec<KeyId>, threshold: u64, paths: Vec<String>) -> Self {
        DelegationRole {
            keyids,
            keyids_null: false,
            name,
            paths,
            threshold,
        }
    }

    /// Whether a target name is within this role's path prefixes.
    pub fn allows(&self, target: &str) -> bool {
        paths_allow(&self.paths, target)
    }

    /// This role's effective path prefixes: its own, kept only where they lie within its
    /// delegator's effective prefixes (`None`: the delegator is `targets`, unrestricted).
    pub fn effective_paths(&self, parent: Option<&[String]>) -> Vec<String> {
        match parent {
            None => self.paths.clone(),
            Some(pp) => self
                .paths
                .iter()
                .filter(|p| paths_allow(pp, p))
                .cloned()
                .collect(),
        }
    }
}

/// Whether `target` lies within one of the path prefixes `paths` (Notary's delegation rule).
pub fn paths_allow(paths: &[String], target: &str) -> bool {
    paths.iter().any(|p| target.starts_with(p.as_str()))
}

impl Canonical for DelegationRole {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        let k = o.field("keyids");
        if self.keyids_null && self.keyids.is_empty() {
            k.extend_from_slice(b"null");
        } else {
            self.keyids.write_canonical(k);
        }
        self.name.write_canonical(o.field("name"));
        if !self.paths.is_empty() {
            self.paths.write_canonical(o.field("paths"));
        }
        self.threshold.write_canonical(o.field("threshold"));
        o.finish();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Delegations {
    #[serde(default)]
    pub keys: BTreeMap<KeyId, PublicKey>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub roles: Vec<DelegationRole>,
}

impl Delegations {
    pub fn role(&self, name: &str) -> Option<&DelegationRole> {
        self.roles.iter().find(|r| r.name.as_str() == name)
    }
}

impl Canonical for Delegations {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        self.keys.write_canonical(o.field("keys"));
        self.roles.write_canonical(o.field("roles"));
        o.finish();
    }
}

/// The body of `targets.json` and of every delegation (`targets/…`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type", deserialize_with = "targets_type")]
    type_tag: TypeTag,
    #[serde(default)]
    pub delegations: Delegations,
    pub expires: DateTime,
    #[serde(default, deserialize_with = "target_map")]
    pub targets: TargetMap,
    pub version: u64,
}

/// `Targets` with its targets object left unread (see [`TargetMap`]).
#[derive(Deserialize)]
struct TargetsUnread<'a> {
    #[serde(rename = "_type", deserialize_with = "targets_type")]
    type_tag: TypeTag,
    #[serde(default)]
    delegations: Delegations,
    expires: DateTime,
    #[serde(borrow, default)]
    targets: Option<&'a RawValue>,
    version: u64,
}

/// The targets object, built in one pass: canonical JSON lists names in order, so the
/// map is built from a sorted list instead of by 100,000 searches. Duplicate names are
/// an error (a parser could take either).
fn target_map<'de, D: Deserializer<'de>>(d: D) -> Result<TargetMap, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = TargetMap;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of targets")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut list: Vec<(TargetName, FileMeta)> =
                Vec::with_capacity(m.size_hint().unwrap_or(0).min(1 << 16));
            let mut sorted = true;
            while let Some((name, meta)) = m.next_entry::<TargetName, FileMeta>()? {
                if let Some((last, _)) = list.last() {
                    sorted &= *last < name;
                }
                list.push((name, meta));
            }
            if !sorted {
                list.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(w) = list.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(A::Error::custom(format!(
                        "duplicate target {:?}",
                        w[0].0.as_str()
                    )));
                }
            }
            Ok(list.into_iter().collect())
        }
    }
    d.deserialize_map(V)
}

impl Targets {
    pub fn new(expires: DateTime, version: u64) -> Self {
        Targets {
            type_tag: TypeTag,
            delegations: Delegations::default(),
            expires,
            targets: TargetMap::new(),
            version,
        }
    }
}

impl Canonical for Targets {
    fn canonical_size_hint(&self) -> usize {
        self.targets.canonical_size_hint() + 512 + self.delegations.roles.len() * 512
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        write_str(o.field("_type"), Self::TYPE);
        self.delegations.write_canonical(o.field("delegations"));
        write_time(o.field("expires"), &self.expires);
        self.targets.write_canonical(o.field("targets"));
        self.version.write_canonical(o.field("version"));
        o.finish();
    }
}

impl Role for Targets {
    const TYPE: &'static str = "Targets";

    fn parse_signed(file: &Arc<[u8]>, at: std::ops::Range<usize>) -> serde_json::Result<Self> {
        let u: TargetsUnread<'_> = serde_json::from_slice(&file[at])?;
        let targets = match u.targets {
            None => TargetMap::new(),
            Some(raw) => {
                let b = raw.get().as_bytes();
                // `raw` borrows from `file`: its offset is the distance between them.
                let start = b.as_ptr() as usize - file.as_ptr() as usize;
                TargetMap::raw(file.clone(), start..start + b.len())
                    .map_err(serde_json::Error::custom)?
            }
        };
        Ok(Targets {
            type_tag: u.type_tag,
            delegations: u.delegations,
            expires: u.expires,
            targets,
            version: u.version,
        })
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> DateTime {
        self.expires
    }
    fn check_structure(&self, role: &RoleName) -> Result<(), String> {
        check_version(self.version)?;
        for d in &self.delegations.roles {
            if d.name.parent().as_ref() != Some(role) {
                return Err(format!(
                    "{} is not a direct child of {role} and cannot be delegated by it",
                    d.name
                ));
            }
            if d.threshold < 1 {
                return Err(format!(
                    "delegation {} has threshold {}",
                    d.name, d.threshold
                ));
            }
            for id in &d.keyids {
                if !self.delegations.keys.contains_key(id) {
                    return Err(format!(
                        "delegation {} lists key {id}, which is not among the delegation keys",
                        d.name
                    ));
                }
            }
        }
        let mut names: Vec<_> = self.delegations.roles.iter().map(|d| &d.name).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("a delegation is listed twice".into());
        }
        for (id, key) in &self.delegations.keys {
            if key.id() != id {
                return Err(format!("delegation key listed as {id} has ID {}", key.id()));
            }
        }
        Ok(())
    }
}

/// `snapshot.json`'s body: meta of root, targets and every delegation file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type", deserialize_with = "snapshot_type")]
    type_tag: TypeTag,
    pub expires: DateTime,
    pub meta: BTreeMap<RoleName, FileMeta>,
    pub version: u64,
}

impl Snapshot {
    pub fn new(expires: DateTime, version: u64) -> Self {
        Snapshot {
            type_tag: TypeTag,
            expires,
            meta: BTreeMap::new(),
            version,
        }
    }
}

impl Canonical for Snapshot {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        write_str(o.field("_type"), Self::TYPE);
        write_time(o.field("expires"), &self.expires);
        self.meta.write_canonical(o.field("meta"));
        self.version.write_canonical(o.field("version"));
        o.finish();
    }
}

impl Role for Snapshot {
    const TYPE: &'static str = "Snapshot";
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> DateTime {
        self.expires
    }
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        check_version(self.version)?;
        for r in ["root", "targets"] {
            let m = self
                .meta
                .get(r)
                .ok_or_else(|| format!("snapshot has no entry for {r}"))?;
            if m.hashes.sha256().is_none() {
                return Err(format!("snapshot entry for {r} has no sha256"));
            }
        }
        for (r, m) in &self.meta {
            if m.hashes.sha256().is_none() && m.hashes.sha512().is_none() {
                return Err(format!("snapshot entry for {r} has no usable hash"));
            }
        }
        Ok(())
    }
}

/// `timestamp.json`'s body: meta of the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type", deserialize_with = "timestamp_type")]
    type_tag: TypeTag,
    pub expires: DateTime,
    pub meta: BTreeMap<RoleName, FileMeta>,
    pub version: u64,
}

impl Timestamp {
    pub fn new(expires: DateTime, version: u64, snapshot: FileMeta) -> Self {
        let mut meta = BTreeMap::new();
        meta.insert(RoleName::snapshot(), snapshot);
        Timestamp {
            type_tag: TypeTag,
            expires,
            meta,
            version,
        }
    }

    pub fn snapshot_meta(&self) -> Option<&FileMeta> {
        self.meta.get("snapshot")
    }
}

impl Canonical for Timestamp {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        write_str(o.field("_type"), Self::TYPE);
        write_time(o.field("expires"), &self.expires);
        self.meta.write_canonical(o.field("meta"));
        self.version.write_canonical(o.field("version"));
        o.finish();
    }
}

impl Role for Timestamp {
    const TYPE: &'static str = "Timestamp";
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> DateTime {
        self.expires
    }
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        check_version(self.version)?;
        let m = self
            .snapshot_meta()
            .ok_or("timestamp has no entry for snapshot")?;
        if m.hashes.sha256().is_none() {
            return Err("timestamp entry for snapshot has no sha256".into());
        }
        Ok(())
    }
}

/// Versions are 64-bit, at least 1, and fit a signed 64-bit database column.
fn check_version(v: u64) -> Result<(), String> {
    if v < 1 {
        return Err("version must be at least 1".into());
    }
    if v > i64::MAX as u64 {
        return Err(format!("version {v} is out of range"));
    }
    Ok(())
}

/// A parsed metadata file: exact bytes, signatures, and the typed body parsed from the
/// very bytes of `signed` in the file.
///
/// Parsing checks syntax and types only. Signatures, thresholds, expiry and versions are
/// checked by [`crate::verify`], over the bytes of `signed` as they are in the file and,
/// when those are not what was signed, over their canonical form (computed once, when
/// first needed: a file in canonical form, which is every file Notary and notarium
/// write, is never re-encoded).
#[derive(Clone)]
pub struct Metadata<T> {
    signed: T,
    signatures: Vec<Signature>,
    raw: Arc<[u8]>,
    /// Where `signed` lies in `raw`.
    signed_at: std::ops::Range<usize>,
    canonical: std::sync::OnceLock<std::result::Result<Arc<[u8]>, canonical::CanonicalError>>,
    role: Arc<str>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Metadata<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("signed", &self.signed)
            .field("signatures", &self.signatures)
            .field("len", &self.raw.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn<'a> {
    #[serde(borrow)]
    signed: &'a RawValue,
    signatures: Option<Vec<Signature>>,
}

const ENVELOPE_HEAD: &[u8] = b"{\"signed\":";
const ENVELOPE_SIGNATURES: &[u8] = b",\"signatures\":";

/// The layout every Notary file has, `{"signed":…,"signatures":[…]}`, found without
/// parsing `signed` twice: where `signed` lies, and the signatures' bytes. The caller
/// parses both parts completely, so a file that only looks like this (a field more, a
/// signature value that contains the separator) fails there and is parsed the long way.
fn split_envelope(raw: &[u8]) -> Option<(std::ops::Range<usize>, &[u8])> {
    if !raw.starts_with(ENVELOPE_HEAD) || raw.last() != Some(&b'}') {
        return None;
    }
    let at = raw
        .windows(ENVELOPE_SIGNATURES.len())
        .rposition(|w| w == ENVELOPE_SIGNATURES)?;
    if at <= ENVELOPE_HEAD.len() {
        return None;
    }
    Some((
        ENVELOPE_HEAD.len()..at,
        &raw[at + ENVELOPE_SIGNATURES.len()..raw.len() - 1],
    ))
}

fn json_error(role: &str) -> impl Fn(serde_json::Error) -> Error + '_ {
    move |e| Error::Json {
        role: role.to_owned(),
        msg: e.to_string(),
    }
}

impl<T: Role> Metadata<T> {
    /// Parse a file. `role` names the role in errors.
    pub fn parse(role: &str, bytes: impl Into<Arc<[u8]>>) -> Result<Self> {
        let raw: Arc<[u8]> = bytes.into();
        let fast = split_envelope(&raw).and_then(|(at, sigs)| {
            let signatures = serde_json::from_slice::<Option<Vec<Signature>>>(sigs).ok()?;
            let signed = T::parse_signed(&raw, at.clone()).ok()?;
            Some((signed, signatures, at))
        });
        let (signed, signatures, signed_at) = match fast {
            Some(parts) => parts,
            None => {
                let env: EnvelopeIn<'_> = serde_json::from_slice(&raw).map_err(json_error(role))?;
                let bytes = env.signed.get().as_bytes();
                // `signed` borrows from `raw`: its offset is the distance between them.
                let start = bytes.as_ptr() as usize - raw.as_ptr() as usize;
                let at = start..start + bytes.len();
                let signed = T::parse_signed(&raw, at.clone()).map_err(|e| Error::Json {
                    role: role.to_owned(),
                    msg: format!("in \"signed\": {e}"),
                })?;
                (signed, env.signatures, at)
            }
        };
        Ok(Metadata {
            signed,
            signatures: signatures.unwrap_or_default(),
            raw,
            signed_at,
            canonical: std::sync::OnceLock::new(),
            role: role.into(),
        })
    }

    /// Sign `signed` with every key given. Each signature is named by the key ID under
    /// which its key is listed in metadata (for root, the certificate's ID).
    pub fn sign(role: &str, signed: T, keys: &[crate::sign::SigningKey<'_>]) -> Result<Self> {
        let canonical = signed.to_canonical();
        // Never sign what no one could read back: a float or a control character in
        // `custom` data, say. One pass over the bytes.
        canonical::check_written(&canonical).map_err(|source| Error::Canonical {
            role: role.to_owned(),
            source,
        })?;
        debug_assert_eq!(
            canonical::canonicalize(&canonical).as_ref(),
            Ok(&canonical),
            "typed serialization is canonical"
        );
        let mut signatures = Vec::with_capacity(keys.len());
        for k in keys {
            signatures.push(k.sign(role, &canonical)?);
        }
        Ok(Self::assemble(role.into(), signed, signatures, &canonical))
    }

    /// The file for a body whose canonical form is known. The canonical bytes are not
    /// kept (they are the file's own `signed` unless it needed HTML escapes, and are
    /// recomputed if ever asked for): a 10 MB role is held once, as its file.
    fn assemble(role: Arc<str>, signed: T, signatures: Vec<Signature>, canonical: &[u8]) -> Self {
        let (raw, signed_at) = envelope_shared(canonical, &signatures);
        Metadata {
            signed,
            signatures,
            signed_at,
            raw,
            canonical: std::sync::OnceLock::new(),
            role,
        }
    }

    /// Add signatures over the same body (co-signing toward a threshold). Existing
    /// signatures by the same key IDs are replaced.
    pub fn add_signatures(&self, role: &str, keys: &[crate::sign::SigningKey<'_>]) -> Result<Self> {
        let canonical = self.canonical_shared()?;
        let mut signatures = Vec::with_capacity(self.signatures.len() + keys.len());
        for k in keys {
            signatures.push(k.sign(role, &canonical)?);
        }
        for s in &self.signatures {
            if !signatures.iter().any(|n| n.keyid == s.keyid) {
                signatures.push(s.clone());
            }
        }
        Ok(Self::assemble(
            role.into(),
            self.signed.clone(),
            signatures,
            &canonical,
        ))
    }

    /// Whether the file is exactly what notarium (and Go) would write for its content:
    /// no whitespace, no unknown fields, normalized times and numbers.
    pub fn is_normalized(&self) -> bool {
        let Ok(canonical) = self.canonical() else {
            return false;
        };
        let mut canon = Vec::with_capacity(canonical.len());
        self.signed.write_canonical(&mut canon);
        canon == canonical && envelope(&canon, &self.signatures) == *self.raw
    }
}

impl<T> Metadata<T> {
    pub fn signed(&self) -> &T {
        &self.signed
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes of `signed` exactly as they are in the file.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[self.signed_at.clone()]
    }

    /// The canonical form of `signed` (what Notary signs). An error when the file's
    /// `signed` has no canonical form: a float, an invalid escape, a duplicate key.
    pub fn canonical(&self) -> Result<&[u8]> {
        self.canonical_cell().map(|c| &c[..])
    }

    fn canonical_shared(&self) -> Result<Arc<[u8]>> {
        self.canonical_cell().cloned()
    }

    fn canonical_cell(&self) -> Result<&Arc<[u8]>> {
        self.canonical
            .get_or_init(|| canonical::canonicalize(self.signed_bytes()).map(Into::into))
            .as_ref()
            .map_err(|source| Error::Canonical {
                role: self.role.to_string(),
                source: source.clone(),
            })
    }

    /// The file's exact bytes (what is stored, served and hashed).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn raw_shared(&self) -> Arc<[u8]> {
        self.raw.clone()
    }

    pub fn into_signed(self) -> T {
        self.signed
    }
}

/// `{"signed":<canonical, HTML-escaped>,"signatures":[…]}`: the exact file bytes.
pub fn envelope(canonical: &[u8], signatures: &[Signature]) -> Vec<u8> {
    envelope_at(canonical, signatures).0
}

/// The envelope as shared bytes, and where `signed` lies in it, in one allocation of its
/// exact size when the canonical bytes need no HTML escape (the usual case).
fn envelope_shared(
    canonical: &[u8],
    signatures: &[Signature],
) -> (Arc<[u8]>, std::ops::Range<usize>) {
    if canonical
        .iter()
        .any(|&b| matches!(b, b'<' | b'>' | b'&' | 0xE2))
    {
        let (v, at) = envelope_at(canonical, signatures);
        return (v.into(), at);
    }
    let (frame, _) = envelope_at(b"", signatures);
    let tail = &frame[ENVELOPE_HEAD.len()..];
    let at = ENVELOPE_HEAD.len()..ENVELOPE_HEAD.len() + canonical.len();
    let mut raw: Arc<[u8]> = std::iter::repeat_n(0u8, at.end + tail.len()).collect();
    if let Some(buf) = Arc::get_mut(&mut raw) {
        buf[..at.start].copy_from_slice(ENVELOPE_HEAD);
        buf[at.clone()].copy_from_slice(canonical);
        buf[at.end..].copy_from_slice(tail);
        return (raw, at);
    }
    let (v, at) = envelope_at(canonical, signatures);
    (v.into(), at)
}

/// The envelope, and where `signed` lies in it.
fn envelope_at(canonical: &[u8], signatures: &[Signature]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut out = Vec::with_capacity(canonical.len() + 64 + signatures.len() * 180);
    out.extend_from_slice(ENVELOPE_HEAD);
    canonical::html_escape_into(canonical, &mut out);
    let signed_at = ENVELOPE_HEAD.len()..out.len();
    out.extend_from_slice(b",\"signatures\":[");
    for (i, s) in signatures.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"keyid\":");
        write_str(&mut out, s.keyid.as_str());
        out.extend_from_slice(b",\"method\":");
        let mut m = Vec::new();
        write_str(&mut m, s.method.as_str());
        canonical::html_escape_into(&m, &mut out);
        out.extend_from_slice(b",\"sig\":");
        write_str(&mut out, &B64.encode(&s.sig));
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    (out, signed_at)
}
