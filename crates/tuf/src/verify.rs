//! Signature, threshold, expiry and root-trust checks. The only place that can construct a
//! [`Verified`] value: trusted state is made of `Verified<T>`, so unverified metadata cannot
//! reach it by accident.

use std::collections::{BTreeMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::key::{KeyId, PublicKey};
use crate::metadata::{Metadata, Role, Root, Signature};
use crate::names::{Gun, RoleName};
use crate::time::DateTime;
use crate::x509::{self, CertInfo};

/// Metadata whose signatures met its role's threshold (and, unless explicitly allowed,
/// that had not expired) when it was checked.
#[derive(Debug)]
pub struct Verified<T> {
    meta: Arc<Metadata<T>>,
}

impl<T> Clone for Verified<T> {
    fn clone(&self) -> Self {
        Verified {
            meta: self.meta.clone(),
        }
    }
}

impl<T> Deref for Verified<T> {
    type Target = Metadata<T>;
    fn deref(&self) -> &Metadata<T> {
        &self.meta
    }
}

impl<T> Verified<T> {
    /// Give up the proof and keep the metadata.
    pub fn into_metadata(self) -> Arc<Metadata<T>> {
        self.meta
    }

    pub fn shared(&self) -> &Arc<Metadata<T>> {
        &self.meta
    }
}

/// The keys that may sign a role and how many must.
#[derive(Clone, Copy)]
pub struct RoleKeys<'a> {
    pub keys: &'a BTreeMap<KeyId, PublicKey>,
    pub keyids: &'a [KeyId],
    pub threshold: u64,
}

impl<'a> RoleKeys<'a> {
    /// A top-level role's keys, from a root.
    pub fn from_root(root: &'a Root, role: &str) -> Option<RoleKeys<'a>> {
        let r = root.roles.get(role)?;
        Some(RoleKeys {
            keys: &root.keys,
            keyids: &r.keyids,
            threshold: r.threshold,
        })
    }
}

/// How strictly to check.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    pub now: DateTime,
    /// Accept expired metadata (the previous trusted state, a server's stored parents).
    pub allow_expired: bool,
}

impl Checks {
    pub fn at(now: DateTime) -> Self {
        Checks {
            now,
            allow_expired: false,
        }
    }
}

/// Count valid signatures by distinct keys of `keys`. A signature whose named key does not
/// hash to its ID is a hard error; one that simply does not verify does not count.
///
/// Distinct means distinct key material: the same public key listed twice (say once plain,
/// once in a certificate) counts once.
pub fn count_valid_signatures<T>(
    meta: &Metadata<T>,
    role: &str,
    keys: RoleKeys<'_>,
) -> Result<usize> {
    let mut seen: HashSet<KeyId> = HashSet::new();
    // `signed` with no canonical form cannot be what a Notary client signed; that is
    // the reason to give if nothing verifies.
    let mut unreadable = None;
    for sig in meta.signatures() {
        if !keys.keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.keys.get(&sig.keyid) else {
            continue;
        };
        if key.id() != &sig.keyid {
            return Err(Error::KeyIdMismatch {
                role: role.to_owned(),
                keyid: sig.keyid.to_string(),
                actual: key.id().to_string(),
            });
        }
        let holds = match signature_holds(meta, key, sig) {
            Ok(h) => h,
            Err(e) => {
                unreadable = Some(e);
                false
            }
        };
        if holds {
            let material = key.canonical_id().unwrap_or_else(|_| key.id().clone());
            seen.insert(material);
        }
    }
    match unreadable {
        Some(e) if seen.is_empty() => Err(e),
        _ => Ok(seen.len()),
    }
}

/// Whether `sig` by `key` covers the file's `signed`: as its bytes are in the file (every
/// file in canonical form), else as its canonical form (a file re-encoded on the way, or
/// with HTML escapes in its strings).
fn signature_holds<T>(meta: &Metadata<T>, key: &PublicKey, sig: &Signature) -> Result<bool> {
    let raw = meta.signed_bytes();
    if key.verify(&sig.method, raw, &sig.sig).is_ok() {
        return Ok(true);
    }
    let canonical = meta.canonical()?;
    Ok(canonical != raw && key.verify(&sig.method, canonical, &sig.sig).is_ok())
}

/// Check signatures against a role's threshold.
pub fn check_signatures<T>(meta: &Metadata<T>, role: &str, keys: RoleKeys<'_>) -> Result<()> {
    if meta.signatures().is_empty() {
        return Err(Error::Unsigned {
            role: role.to_owned(),
        });
    }
    if keys.threshold < 1 {
        return Err(Error::Invalid {
            role: role.to_owned(),
            msg: "role threshold is 0".into(),
        });
    }
    let valid = count_valid_signatures(meta, role, keys)?;
    if (valid as u64) < keys.threshold {
        return Err(Error::Threshold {
            role: role.to_owned(),
            valid,
            threshold: keys.threshold,
        });
    }
    Ok(())
}

/// Verify a non-root role: structure, signatures against `keys`, and expiry.
pub fn verify<T: Role>(
    meta: impl Into<Arc<Metadata<T>>>,
    role: &RoleName,
    keys: RoleKeys<'_>,
    checks: Checks,
) -> Result<Verified<T>> {
    let meta: Arc<Metadata<T>> = meta.into();
    meta.signed()
        .check_structure(role)
        .map_err(|msg| Error::Invalid {
            role: role.to_string(),
            msg,
        })?;
    check_signatures(&meta, role.as_str(), keys)?;
    check_expiry(&meta, role.as_str(), checks)?;
    Ok(Verified { meta })
}

fn check_expiry<T: Role>(meta: &Metadata<T>, role: &str, checks: Checks) -> Result<()> {
    if !checks.allow_expired && meta.signed().expires() <= checks.now {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires: meta.signed().expires(),
        });
    }
    Ok(())
}

/// Root pinning: instead of trusting the first root seen, require its root certificates to
/// be among these key IDs. A root certificate key matches by its own ID (as root.json and
/// `docker trust inspect` name it) or by the ID of the plain key inside it, which stays
/// the same when the certificate is renewed for the same key.
///
/// Or by CA: a root certificate whose chain (the certificates of its key, leaf first)
/// leads by valid signatures to one of `ca_certs` (DER) is pinned.
#[derive(Debug, Clone, Default)]
pub struct Pinning {
    pub root_key_ids: Vec<KeyId>,
    pub ca_certs: Vec<Vec<u8>>,
}

impl Pinning {
    pub fn allows(&self, key: &PublicKey) -> bool {
        self.root_key_ids.contains(key.id())
            || key
                .canonical_id()
                .is_ok_and(|id| self.root_key_ids.contains(&id))
            || self.chains_to_a_ca(key)
    }

    fn chains_to_a_ca(&self, key: &PublicKey) -> bool {
        if self.ca_certs.is_empty() {
            return false;
        }
        let Ok(chain) = x509::parse_pem_chain(key.public_bytes()) else {
            return false;
        };
        // Up the chain while each certificate is signed by the next; any step that a
        // pinned CA signed ends it.
        for (i, c) in chain.iter().enumerate() {
            if self.ca_certs.iter().any(|ca| x509::signed_by(&c.der, ca)) {
                return true;
            }
            match chain.get(i + 1) {
                Some(next) if x509::signed_by(&c.der, &next.der) => {}
                _ => return false,
            }
        }
        false
    }
}

/// Options for [`verify_root`].
#[derive(Debug, Clone, Copy)]
pub struct RootChecks<'a> {
    pub checks: Checks,
    /// Skip the certificate validity-period checks (intermediate roots of a rotation chain).
    pub allow_expired_certs: bool,
    pub pinning: Option<&'a Pinning>,
}

/// A root certificate key that passed Notary's leaf-certificate rules.
struct RootCert<'a> {
    key: &'a PublicKey,
}

/// The keys of `root`'s root role that are valid root certificates for `gun`.
fn valid_root_certs<'a>(root: &'a Root, gun: &Gun, now: Option<DateTime>) -> Vec<RootCert<'a>> {
    let Some(role) = root.roles.get("root") else {
        return Vec::new();
    };
    role.keyids
        .iter()
        .filter_map(|id| root.keys.get(id))
        .filter(|key| check_root_cert(key, gun, now).is_ok())
        .map(|key| RootCert { key })
        .collect()
}

/// Notary's leaf rules for a root key: an x509 key whose PEM holds only certificates,
/// exactly one non-CA certificate which comes first, CN = GUN (or a `prefix*` wildcard that
/// matches), no SHA-1 signature, RSA ≥ 2048 bits, and (when `now` is given) valid now.
pub fn check_root_cert(key: &PublicKey, gun: &Gun, now: Option<DateTime>) -> Result<(), String> {
    if !key.keytype().is_x509() {
        return Err(format!(
            "root key {} is a {} key, not a certificate",
            key.id(),
            key.keytype().as_str()
        ));
    }
    let certs = x509::parse_pem_chain(key.public_bytes())?;
    if x509::go_pem_chain(&certs).as_bytes() != key.public_bytes() {
        return Err(format!(
            "root key {}: certificate PEM is not in canonical (Go) form",
            key.id()
        ));
    }
    let leaves: Vec<&CertInfo> = certs.iter().filter(|c| !c.is_ca).collect();
    if leaves.len() != 1 || certs[0].is_ca {
        return Err(format!(
            "root key {}: exactly one leaf certificate, first, is required",
            key.id()
        ));
    }
    let leaf = &certs[0];
    let cn = leaf.common_name.as_deref().unwrap_or("");
    let cn_ok = cn == gun.as_str()
        || cn
            .strip_suffix('*')
            .is_some_and(|p| gun.as_str().starts_with(p));
    if !cn_ok {
        return Err(format!(
            "root key {}: certificate CN {cn:?} does not match {gun}",
            key.id()
        ));
    }
    for c in &certs {
        if c.sha1_signed {
            return Err(format!("root key {}: SHA-1 signed certificate", key.id()));
        }
        if c.key_algorithm == x509::KeyAlgorithm::Rsa && c.rsa_bits < 2048 {
            return Err(format!("root key {}: RSA key under 2048 bits", key.id()));
        }
        if let Some(now) = now {
            if c.not_before > now.unix_secs() + 86_400 {
                return Err(format!("root key {}: certificate not valid yet", key.id()));
            }
            if c.not_after < now.unix_secs() {
                return Err(format!("root key {}: certificate expired", key.id()));
            }
        }
    }
    Ok(())
}

/// Verify a root for `gun` (`notary-protocol.md` §2.4).
///
/// * With `trusted` (the previous trusted root): the new root must also carry valid
///   signatures from a threshold of the previous root's root certificates (rotation rule),
///   and its version must not be lower.
/// * Its own root certificates must be valid leaf certificates for `gun` (and pinned, when
///   pinning is configured), and a threshold of them must have signed it.
pub fn verify_root(
    meta: impl Into<Arc<Metadata<Root>>>,
    gun: &Gun,
    trusted: Option<&Verified<Root>>,
    opts: RootChecks<'_>,
) -> Result<Verified<Root>> {
    let meta: Arc<Metadata<Root>> = meta.into();
    let role = "root";
    let err = |msg: String| Error::Root {
        role: role.to_owned(),
        msg,
    };
    meta.signed()
        .check_structure(&RoleName::root())
        .map_err(|msg| Error::Invalid {
            role: role.into(),
            msg,
        })?;
    if meta.signatures().is_empty() {
        return Err(Error::Unsigned { role: role.into() });
    }

    if let Some(prev) = trusted {
        if meta.signed().version < prev.signed().version {
            return Err(Error::Rollback {
                role: role.into(),
                found: meta.signed().version,
                trusted: prev.signed().version,
            });
        }
        // Previous root certificates are not checked for expiry (they may have expired,
        // which is why the root is being replaced).
        let prev_certs = valid_root_certs(prev.signed(), gun, None);
        let ids: Vec<KeyId> = prev_certs.iter().map(|c| c.key.id().clone()).collect();
        let keys: BTreeMap<KeyId, PublicKey> = prev_certs
            .iter()
            .map(|c| (c.key.id().clone(), c.key.clone()))
            .collect();
        let threshold = prev
            .signed()
            .roles
            .get("root")
            .map(|r| r.threshold)
            .unwrap_or(1);
        let valid = count_valid_signatures(
            &meta,
            role,
            RoleKeys {
                keys: &keys,
                keyids: &ids,
                threshold,
            },
        )?;
        if (valid as u64) < threshold {
            return Err(err(format!(
                "version {} is signed by {valid} of the previous root's keys, {threshold} needed (rotation not authorized)",
                meta.signed().version
            )));
        }
    }

    let now = (!opts.allow_expired_certs).then_some(opts.checks.now);
    let mut certs = valid_root_certs(meta.signed(), gun, now);
    if certs.is_empty() {
        let reasons: Vec<String> = meta
            .signed()
            .roles
            .get("root")
            .map(|r| r.keyids.iter().filter_map(|id| meta.signed().keys.get(id)))
            .into_iter()
            .flatten()
            .filter_map(|k| check_root_cert(k, gun, now).err())
            .collect();
        return Err(err(format!(
            "no valid root certificate for {gun}: {}",
            reasons.join("; ")
        )));
    }
    if let Some(pin) = opts.pinning {
        certs.retain(|c| pin.allows(c.key));
        if certs.is_empty() {
            return Err(err(format!("none of its root keys is pinned for {gun}")));
        }
    }
    let ids: Vec<KeyId> = certs.iter().map(|c| c.key.id().clone()).collect();
    let threshold = meta
        .signed()
        .roles
        .get("root")
        .map(|r| r.threshold)
        .unwrap_or(1);
    check_signatures(
        &meta,
        role,
        RoleKeys {
            keys: &meta.signed().keys,
            keyids: &ids,
            threshold,
        },
    )?;
    check_expiry(&meta, role, opts.checks)?;
    Ok(Verified { meta })
}

/// Reject a version lower than the trusted one (rollback).
pub fn check_not_rollback<T: Role>(role: &str, new: &T, trusted: Option<&T>) -> Result<()> {
    if let Some(t) = trusted {
        if new.version() < t.version() {
            return Err(Error::Rollback {
                role: role.to_owned(),
                found: new.version(),
                trusted: t.version(),
            });
        }
    }
    Ok(())
}

/// Reject a version below the trusted floor (the cached, verified version).
pub fn check_not_rollback_version(role: &str, found: u64, floor: Option<u64>) -> Result<()> {
    match floor {
        Some(trusted) if found < trusted => Err(Error::Rollback {
            role: role.to_owned(),
            found,
            trusted,
        }),
        _ => Ok(()),
    }
}
