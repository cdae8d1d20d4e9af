//! Threshold signing in steps (m-of-n delegations): `trust sign --stage FILE IMAGE:TAG`
//! writes the signed change with this signer's signatures, `trust sign --add-signature
//! FILE` adds another signer's, and `trust sign --publish FILE` uploads it once every role
//! in it carries a threshold of signatures from its listed keys. The file holds the exact
//! bytes of each role (signatures over them stay valid as they travel); nothing in it is
//! secret.

use std::io::Write;
use std::path::Path;

use registry::Reference;
use serde::{Deserialize, Serialize};
use tuf::metadata::Metadata;
use tuf::sign::SigningKey;
use tuf::{KeyId, PublicKey, RoleName};

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::remote::Part;
use crate::repo::{self, Repo, View};

/// The most a staged file may be (it holds a few roles' metadata).
const MAX_FILE: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Staged {
    /// The repository (GUN) the change is for.
    gun: String,
    tag: String,
    parts: Vec<StagedPart>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StagedPart {
    role: String,
    /// The role's metadata, byte for byte (UTF-8 JSON).
    metadata: String,
}

/// A role's listed keys and threshold, from the role that delegates it (root for
/// `targets`).
pub fn listed_keys(view: &View, role: &RoleName) -> Result<(Vec<PublicKey>, u64)> {
    if role.as_str() == "targets" {
        let (r, ks) = view
            .root
            .signed()
            .role_keys("targets")
            .ok_or_else(|| TrustError::Other("root lists no targets keys".into()))?;
        return Ok((ks.into_iter().cloned().collect(), r.threshold));
    }
    let parent = role
        .parent()
        .and_then(|p| view.role(p.as_str()))
        .ok_or_else(|| TrustError::Other(format!("{role} is not delegated here")))?;
    let d = &parent.signed().delegations;
    let r = d
        .role(role.as_str())
        .ok_or_else(|| TrustError::Other(format!("{role} is not delegated here")))?;
    Ok((
        r.keyids
            .iter()
            .filter_map(|id| d.keys.get(id))
            .cloned()
            .collect(),
        r.threshold,
    ))
}

/// Distinct listed keys that signed `m` (signatures checked).
fn valid_signers(m: &Metadata<tuf::Targets>, role: &RoleName, listed: &[PublicKey]) -> Vec<KeyId> {
    let keys: std::collections::BTreeMap<KeyId, PublicKey> =
        listed.iter().map(|k| (k.id().clone(), k.clone())).collect();
    let mut ids: Vec<KeyId> = Vec::new();
    for k in listed {
        if ids.contains(k.id()) {
            continue;
        }
        // One key at a time: whether it alone signed the body.
        let one = tuf::verify::RoleKeys {
            keys: &keys,
            keyids: std::slice::from_ref(k.id()),
            threshold: 1,
        };
        if tuf::verify::check_signatures(m, role.as_str(), one).is_ok() {
            ids.push(k.id().clone());
        }
    }
    ids
}

fn read(file: &Path) -> Result<Staged> {
    let usage = |m: String| TrustError::Usage(format!("{}: {m}", file.display()));
    let len = std::fs::metadata(file)
        .map_err(|e| usage(e.to_string()))?
        .len();
    if len > MAX_FILE {
        return Err(usage(format!("larger than {MAX_FILE} bytes")));
    }
    let text = std::fs::read(file).map_err(|e| usage(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| usage(format!("not a staged signature file: {e}")))
}

fn write(file: &Path, s: &Staged) -> Result<()> {
    let text = serde_json::to_vec_pretty(s).map_err(|e| TrustError::Other(e.to_string()))?;
    std::fs::write(file, text).map_err(|e| TrustError::Usage(format!("{}: {e}", file.display())))
}

/// Open the repository of a staged file and load its current state.
fn open(ctx: &Context, s: &Staged) -> Result<(Repo, View)> {
    let reference = Reference::parse(&s.gun).map_err(|e| TrustError::Usage(e.to_string()))?;
    Repo::existing(ctx, &reference)
}

/// Each part parsed, with its role, listed keys and threshold; every part must be the
/// next version of its role (a change staged against an older state is refused).
struct Checked {
    role: RoleName,
    meta: Metadata<tuf::Targets>,
    listed: Vec<PublicKey>,
    threshold: u64,
}

fn check(s: &Staged, view: &View) -> Result<Vec<Checked>> {
    let mut out = Vec::new();
    for p in &s.parts {
        let role = RoleName::new(&p.role)?;
        if !role.is_targets_like() {
            return Err(TrustError::Usage(format!(
                "{role}: only targets roles are signed in steps"
            )));
        }
        let meta = Metadata::<tuf::Targets>::parse(role.as_str(), p.metadata.as_bytes().to_vec())?;
        let current = view
            .role(role.as_str())
            .map(|m| m.signed().version)
            .unwrap_or(0);
        if meta.signed().version != current + 1 {
            return Err(TrustError::Usage(format!(
                "{role}: staged version {} but the repository is at version {current}; stage it again",
                meta.signed().version
            )));
        }
        let (listed, threshold) = listed_keys(view, &role)?;
        out.push(Checked {
            role,
            meta,
            listed,
            threshold,
        });
    }
    if out.is_empty() {
        return Err(TrustError::Usage("nothing staged".into()));
    }
    Ok(out)
}

fn report(out: &mut dyn Write, checked: &[Checked]) {
    for c in checked {
        let n = valid_signers(&c.meta, &c.role, &c.listed).len();
        let _ = writeln!(
            out,
            "{}: {n} of {} signatures needed ({} keys listed)",
            c.role,
            c.threshold,
            c.listed.len()
        );
    }
}

/// `sign --stage FILE`: what `sign` would upload, written to `file` instead, and how many
/// signatures each role has (`view`: the state it was signed against).
pub fn stage(
    out: &mut dyn Write,
    view: &View,
    gun: &str,
    tag: &str,
    parts: &[Part],
    file: &Path,
) -> Result<()> {
    let mut staged = Staged {
        gun: gun.to_owned(),
        tag: tag.to_owned(),
        parts: Vec::new(),
    };
    let mut checked = Vec::new();
    for (role, bytes) in parts {
        let meta = Metadata::<tuf::Targets>::parse(role.as_str(), bytes.to_vec())?;
        let (listed, threshold) = listed_keys(view, role)?;
        staged.parts.push(StagedPart {
            role: role.to_string(),
            metadata: String::from_utf8(bytes.to_vec())
                .map_err(|e| TrustError::Other(e.to_string()))?,
        });
        checked.push(Checked {
            role: role.clone(),
            meta,
            listed,
            threshold,
        });
    }
    write(file, &staged)?;
    let _ = writeln!(out, "Staged {gun}:{tag} in {}", file.display());
    report(out, &checked);
    Ok(())
}

/// `sign --add-signature FILE`: this signer's signatures join the staged ones.
pub fn add_signature(ctx: &mut Context, out: &mut dyn Write, file: &Path) -> Result<()> {
    let mut s = read(file)?;
    let (_, view) = open(ctx, &s)?;
    let checked = check(&s, &view)?;
    let keyring = Keyring::new(&ctx.config);
    let mut added = 0;
    for (c, part) in checked.iter().zip(s.parts.iter_mut()) {
        let already = valid_signers(&c.meta, &c.role, &c.listed);
        let mine: Vec<PublicKey> = c
            .listed
            .iter()
            .filter(|k| !already.contains(k.id()) && keyring.holds(k))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let keys = repo::open_keys(ctx, &keyring, &mine)?;
        let signers: Vec<SigningKey<'_>> = keys.iter().map(|k| SigningKey::plain(k)).collect();
        let m = c.meta.add_signatures(c.role.as_str(), &signers)?;
        added += keys.len();
        part.metadata =
            String::from_utf8(m.raw().to_vec()).map_err(|e| TrustError::Other(e.to_string()))?;
    }
    if added == 0 {
        return Err(TrustError::NoSigningKey {
            ids: checked
                .iter()
                .flat_map(|c| c.listed.iter().map(|k| k.id().to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    write(file, &s)?;
    let _ = writeln!(out, "Added {added} signature(s) to {}", file.display());
    report(out, &check(&s, &view)?);
    Ok(())
}

/// `sign --publish FILE`: upload once every role carries its threshold.
pub fn publish(ctx: &mut Context, out: &mut dyn Write, file: &Path) -> Result<()> {
    let s = read(file)?;
    let (repo, view) = open(ctx, &s)?;
    let checked = check(&s, &view)?;
    for c in &checked {
        let n = valid_signers(&c.meta, &c.role, &c.listed).len() as u64;
        if n < c.threshold {
            return Err(TrustError::Usage(format!(
                "{}: {n} of {} signatures; another signer adds theirs with `trust sign --add-signature {}`",
                c.role,
                c.threshold,
                file.display()
            )));
        }
    }
    let parts: Vec<Part> = checked
        .iter()
        .map(|c| (c.role.clone(), c.meta.raw_shared()))
        .collect();
    repo.publish_update(ctx, view, &parts)?;
    let _ = writeln!(out, "Successfully signed {}:{}", s.gun, s.tag);
    Ok(())
}
