//! `trust signer add` and `trust signer remove` (which really removes, as docker 20.10 did).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use registry::Reference;
use tuf::edit;
use tuf::{PublicKey, RoleName};

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::repo::{self, Load, Repo};

pub const RELEASES: &str = "releases";

/// Docker's rule for signer and key names.
pub fn check_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
    if !ok {
        return Err(TrustError::Usage(format!(
            "key name \"{name}\" must start with lowercase alphanumeric characters and can include \"-\" or \"_\" after the first character"
        )));
    }
    Ok(())
}

/// `trust signer add --key PUB… NAME REPO…`.
pub fn add(
    ctx: &mut Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
    name: &str,
    key_files: &[PathBuf],
    repos: &[String],
    threshold: Option<u64>,
) -> Result<()> {
    check_name(name)?;
    if threshold == Some(0) {
        return Err(TrustError::Usage("a threshold is at least 1".into()));
    }
    if name == RELEASES {
        return Err(TrustError::Usage(
            "releases is a reserved keyword, use a different signer name".into(),
        ));
    }
    if key_files.is_empty() {
        return Err(TrustError::Usage(
            "path to a public key must be provided using the `--key` flag".into(),
        ));
    }
    let mut keys = Vec::new();
    for f in key_files {
        let text = std::fs::read(f).map_err(|e| {
            TrustError::Usage(format!(
                "unable to read public key from file: {}: {e}",
                f.display()
            ))
        })?;
        let k = keys::cert::read_public_key(&text, ctx.now())
            .map_err(|e| TrustError::Usage(format!("{}: {e}", f.display())))?;
        keys.push(k);
    }
    each_repo(repos, err, "failed to add signer to", |r| {
        let _ = writeln!(out, "Adding signer \"{name}\" to {r}...");
        add_one(ctx, out, name, &keys, r, threshold)?;
        let _ = writeln!(out, "Successfully added signer: {name} to {r}\n");
        Ok(())
    })
}

/// Run `one` on each repository as docker does: with one repository its error is the
/// whole story, on one line; with several, each error goes to `err` and the others still
/// run, then one error names those that failed.
fn each_repo(
    repos: &[String],
    err: &mut dyn Write,
    failed_to: &str,
    mut one: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let mut failed = Vec::new();
    for r in repos {
        match one(r) {
            Ok(()) => {}
            Err(e) if repos.len() == 1 => return Err(e),
            Err(e) => {
                let _ = writeln!(err, "{e}\n");
                failed.push(r.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(TrustError::Usage(format!(
            "{failed_to}: {}",
            failed.join(", ")
        )))
    }
}

fn add_one(
    ctx: &mut Context,
    out: &mut dyn Write,
    name: &str,
    keys: &[PublicKey],
    arg: &str,
    threshold: Option<u64>,
) -> Result<()> {
    let mut reference = Reference::parse(arg).map_err(|e| TrustError::Usage(e.to_string()))?;
    reference.tag = None;
    let mut repo = Repo::open(ctx, &reference, true)?;
    let keyring = Keyring::new(&ctx.config);
    let signer = RoleName::new(&format!("targets/{name}"))?;
    let releases = RoleName::new("targets/releases")?;
    let all = vec!["".to_owned()];
    match repo.view(ctx, true, Load::Roles(&["targets"]))? {
        None => {
            let _ = writeln!(out, "Initializing signed repository for {arg}...");
            let new = repo::initialize(ctx, &keyring, &repo)?;
            let _ = writeln!(out, "Successfully initialized \"{arg}\"");
            let mut body = new.targets;
            edit::add_delegation(&mut body, &signer, keys, 1, &all);
            edit::add_delegation(&mut body, &releases, keys, 1, &all);
            set_threshold(&mut body, &[&signer, &releases], threshold)?;
            let targets =
                repo::sign_targets(&RoleName::targets(), body, 0, &[&new.targets_key], ctx)?;
            repo.publish(&[
                (RoleName::root(), new.root.raw_shared()),
                (RoleName::targets(), targets),
            ])
        }
        Some(view) => {
            let tkeys = repo::targets_keys(ctx, &keyring, &view)?;
            let (mut body, v) = repo::current_or_new(&view, &RoleName::targets(), ctx);
            edit::add_delegation(&mut body, &signer, keys, 1, &all);
            edit::add_delegation(&mut body, &releases, keys, 1, &all);
            set_threshold(&mut body, &[&signer, &releases], threshold)?;
            let refs: Vec<&keys::PrivateKey> = tkeys.iter().collect();
            let targets = repo::sign_targets(&RoleName::targets(), body, v, &refs, ctx)?;
            repo.publish_update(ctx, view, &[(RoleName::targets(), targets)])
        }
    }
}

/// `--threshold N`: how many of their keys must sign each of `roles` (the signer's role
/// and releases). More than a role has keys would lock it: refused.
fn set_threshold(
    body: &mut tuf::Targets,
    roles: &[&RoleName],
    threshold: Option<u64>,
) -> Result<()> {
    let Some(n) = threshold else {
        return Ok(());
    };
    for role in roles {
        if let Some(d) = body.delegations.roles.iter_mut().find(|d| &&d.name == role) {
            if n > d.keyids.len() as u64 {
                return Err(TrustError::Usage(format!(
                    "threshold {n} is more than the {} keys of {role}",
                    d.keyids.len()
                )));
            }
            d.threshold = n;
        }
    }
    Ok(())
}

/// `trust signer remove [-f] NAME REPO…`.
pub fn remove(
    ctx: &mut Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
    input: &mut dyn BufRead,
    name: &str,
    repos: &[String],
    force: bool,
) -> Result<()> {
    if name == RELEASES {
        return Err(TrustError::Usage(
            "releases is a reserved keyword and cannot be removed".into(),
        ));
    }
    each_repo(repos, err, "error removing signer from", |r| {
        let _ = writeln!(out, "Removing signer \"{name}\" from {r}...");
        if remove_one(ctx, out, input, name, r, force)? {
            let _ = writeln!(out, "Successfully removed {name} from {r}\n");
        }
        Ok(())
    })
}

fn remove_one(
    ctx: &mut Context,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    name: &str,
    arg: &str,
    force: bool,
) -> Result<bool> {
    let mut reference = Reference::parse(arg).map_err(|e| TrustError::Usage(e.to_string()))?;
    reference.tag = None;
    let mut repo = Repo::open(ctx, &reference, true)?;
    let Some(view) = repo.view(ctx, true, Load::Roles(&["targets", "targets/releases"]))? else {
        return Err(TrustError::NotFound {
            gun: repo.gun.to_string(),
            host: repo.host.clone(),
        });
    };
    let signer = RoleName::new(&format!("targets/{name}"))?;
    let targets = view
        .role("targets")
        .ok_or_else(|| TrustError::Other("no targets metadata".into()))?;
    let Some(d) = targets.signed().delegations.role(signer.as_str()).cloned() else {
        return Err(TrustError::Usage(format!(
            "no signer {name} for repository {arg}"
        )));
    };
    // Would removing this signer leave the released tags without enough signatures?
    let releases = RoleName::new("targets/releases")?;
    if let Some(rel) = targets.signed().delegations.role(releases.as_str()) {
        let rel_meta = view.role("targets/releases");
        let sigs = rel_meta
            .map(|m| m.signatures().to_vec())
            .unwrap_or_default();
        if sigs.is_empty() && rel_meta.is_some() {
            return Err(TrustError::Usage(
                "all signed tags are currently revoked, use docker trust sign to fix".into(),
            ));
        }
        if let Some(m) = rel_meta {
            let others: Vec<_> = rel
                .keyids
                .iter()
                .filter(|k| !d.keyids.contains(k))
                .cloned()
                .collect();
            let left = tuf::verify::count_valid_signatures(
                m,
                "targets/releases",
                tuf::verify::RoleKeys {
                    keys: &targets.signed().delegations.keys,
                    keyids: &others,
                    threshold: rel.threshold,
                },
            )?;
            if (left as u64) < rel.threshold && !force {
                let _ = write!(
                    out,
                    "The signer \"{name}\" signed the last released version of {arg}. Removing this signer will make {arg} unpullable. Are you sure you want to continue? [y/N] "
                );
                let _ = out.flush();
                let mut answer = String::new();
                let _ = input.read_line(&mut answer);
                if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                    return Ok(false);
                }
            }
        }
    }
    let keyring = Keyring::new(&ctx.config);
    let tkeys = repo::targets_keys(ctx, &keyring, &view)?;
    let (mut body, v) = repo::current_or_new(&view, &RoleName::targets(), ctx);
    edit::remove_delegation_keys(&mut body, &releases, &d.keyids);
    edit::remove_delegation(&mut body, &signer);
    let refs: Vec<&keys::PrivateKey> = tkeys.iter().collect();
    let t = repo::sign_targets(&RoleName::targets(), body, v, &refs, ctx)?;
    repo.publish_update(ctx, view, &[(RoleName::targets(), t)])?;
    Ok(true)
}
