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
/// kept so files round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hashes(BTreeMap<String, Vec<u8>>);

impl Hashes {
    pub fn new() -> Self {
        Hashes::default()
    }

    /// Both SHA-256 and SHA-512 of `data` (what Notary writes for metadata files).
    pub fn of(data: &[u8]) -> Self {
        let mut h = Hashes::new();
        h.0.insert("sha256".into(), sha256(data).to_vec());
        h.0.insert("sha512".into(), sha512(data).to_vec());
        h
    }

    /// Only SHA-256 (what Docker writes for image targets).
    pub fn sha256_only(digest: [u8; 32]) -> Self {
        let mut h = Hashes::new();
        h.0.insert("sha256".into(), digest.to_vec());
        h
    }

    pub fn sha256(&self) -> Option<&[u8]> {
        self.0.get("sha256").map(Vec::as_slice)
    }

    pub fn sha512(&self) -> Option<&[u8]> {
        self.0.get("sha512").map(Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Notary's rule: at least one known algorithm, and every known one present must match.
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        let mut known = 0;
        if let Some(h) = self.sha256() {
            known += 1;
            if h != sha256(data) {
                return Err(format!(
                    "sha256 {} does not match the data ({})",
                    hex::encode(h),
                    hex::encode(sha256(data))
                ));
            }
        }
        if let Some(h) = self.sha512() {
            known += 1;
            if h != sha512(data) {
                return Err("sha512 does not match the data".into());
            }
        }
        if known == 0 {
            return Err("no sha256 or sha512 hash to check".into());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (alg, v) in m {
            let bytes = B64
                .decode(v.as_bytes())
                .map_err(|e| D::Error::custom(format!("{alg} hash is not base64: {e}")))?;
            let want = match alg.as_str() {
                "sha256" => Some(32),
                "sha512" => Some(64),
                _ => None,
            };
            if let Some(n) = want {
                if bytes.len() != n {
                    return Err(D::Error::custom(format!(
                        "{alg} hash is {} bytes, expected {n}",
                        bytes.len()
                    )));
                }
            }
            out.insert(alg, bytes);
        }
        Ok(Hashes(out))
    }
}

impl Canonical for Hashes {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        for (alg, h) in &self.0 {
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
        self.paths.iter().any(|p| target.starts_with(p.as_str()))
    }
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
    #[serde(default)]
    pub targets: BTreeMap<TargetName, FileMeta>,
    pub version: u64,
}

impl Targets {
    pub fn new(expires: DateTime, version: u64) -> Self {
        Targets {
            type_tag: TypeTag,
            delegations: Delegations::default(),
            expires,
            targets: BTreeMap::new(),
            version,
        }
    }
}

impl Canonical for Targets {
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

/// A parsed metadata file: exact bytes, signatures, canonical signed bytes, typed body.
///
/// Parsing checks syntax and types only. Signatures, thresholds, expiry and versions are
/// checked by [`crate::verify`].
#[derive(Clone)]
pub struct Metadata<T> {
    signed: T,
    signatures: Vec<Signature>,
    canonical: Arc<[u8]>,
    raw: Arc<[u8]>,
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

impl<T: Role> Metadata<T> {
    /// Parse a file. `role` names the role in errors.
    pub fn parse(role: &str, bytes: impl Into<Arc<[u8]>>) -> Result<Self> {
        let raw: Arc<[u8]> = bytes.into();
        let env: EnvelopeIn<'_> = serde_json::from_slice(&raw).map_err(|e| Error::Json {
            role: role.to_owned(),
            msg: e.to_string(),
        })?;
        let canonical = canonical::canonicalize(env.signed.get().as_bytes()).map_err(|source| {
            Error::Canonical {
                role: role.to_owned(),
                source,
            }
        })?;
        let signed: T = serde_json::from_slice(&canonical).map_err(|e| Error::Json {
            role: role.to_owned(),
            msg: format!("in \"signed\": {e}"),
        })?;
        let signatures = env.signatures.unwrap_or_default();
        Ok(Metadata {
            signed,
            signatures,
            canonical: canonical.into(),
            raw,
        })
    }

    /// Sign `signed` with every key given. Each signature is named by the key ID under
    /// which its key is listed in metadata (for root, the certificate's ID).
    pub fn sign(role: &str, signed: T, keys: &[crate::sign::SigningKey<'_>]) -> Result<Self> {
        let canonical = signed.to_canonical();
        // Never sign what no one could read back: a float or a control character in
        // `custom` data, say. One pass over the bytes.
        let check = canonical::canonicalize(&canonical).map_err(|source| Error::Canonical {
            role: role.to_owned(),
            source,
        })?;
        debug_assert_eq!(check, canonical, "typed serialization is canonical");
        let canonical: Arc<[u8]> = canonical.into();
        let mut signatures = Vec::with_capacity(keys.len());
        for k in keys {
            signatures.push(k.sign(role, &canonical)?);
        }
        let raw = envelope(&canonical, &signatures).into();
        Ok(Metadata {
            signed,
            signatures,
            canonical,
            raw,
        })
    }

    /// Add signatures over the same body (co-signing toward a threshold). Existing
    /// signatures by the same key IDs are replaced.
    pub fn add_signatures(&self, role: &str, keys: &[crate::sign::SigningKey<'_>]) -> Result<Self> {
        let mut signatures = Vec::with_capacity(self.signatures.len() + keys.len());
        for k in keys {
            signatures.push(k.sign(role, &self.canonical)?);
        }
        for s in &self.signatures {
            if !signatures.iter().any(|n| n.keyid == s.keyid) {
                signatures.push(s.clone());
            }
        }
        let raw = envelope(&self.canonical, &signatures).into();
        Ok(Metadata {
            signed: self.signed.clone(),
            signatures,
            canonical: self.canonical.clone(),
            raw,
        })
    }

    /// Whether the file is exactly what notarium (and Go) would write for its content:
    /// no whitespace, no unknown fields, normalized times and numbers.
    pub fn is_normalized(&self) -> bool {
        let mut canon = Vec::with_capacity(self.canonical.len());
        self.signed.write_canonical(&mut canon);
        canon == *self.canonical && envelope(&canon, &self.signatures) == *self.raw
    }
}

impl<T> Metadata<T> {
    pub fn signed(&self) -> &T {
        &self.signed
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes signatures cover.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
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
    let mut out = Vec::with_capacity(canonical.len() + 64 + signatures.len() * 180);
    out.extend_from_slice(b"{\"signed\":");
    canonical::html_escape_into(canonical, &mut out);
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
    out
}
