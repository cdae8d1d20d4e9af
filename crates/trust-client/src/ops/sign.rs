//! `trust sign`, `trust revoke` and `trust verify`.
//!
//! Signing needs no daemon: a tag that is not released yet is resolved through the
//! registry (the manifest's digest and size), and signed into the roles docker would use.

use std::io::{BufRead, Write};

use keys::PrivateKey;
use registry::client::oci;
use registry::Reference;
use tuf::edit;
use tuf::{FileMeta, RoleName, TargetName};

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::remote::Part;
use crate::repo::{self, Load, Repo, View};

/// What to sign: an image tag, or a digest with the tag to give it.
pub struct SignRequest {
    pub image: String,
    /// For `IMAGE@sha256:…`: the tag to sign the digest as.
    pub tag: Option<String>,
    /// What the tag is, when the caller knows (a trusted push just uploaded it): then
    /// the registry is not asked, and this is signed even over a released target.
    pub target: Option<FileMeta>,
    /// `--stage FILE`: write the signed change there instead of uploading it (threshold
    /// signing, see [`crate::ops::staged`]).
    pub stage: Option<std::path::PathBuf>,
}

/// The roles docker signs into: every direct child of `targets` whose key is here and whose
/// paths allow the tag; `targets` itself when there are no delegations.
fn signable_roles(
    ctx: &mut Context,
    keyring: &Keyring,
    view: &View,
    tag: &str,
) -> Result<Vec<(RoleName, Vec<PrivateKey>)>> {
    let targets = view
        .role("targets")
        .ok_or_else(|| TrustError::Other("no targets metadata".into()))?;
    let dels = &targets.signed().delegations;
    if dels.roles.is_empty() {
        let keys = repo::targets_keys(ctx, keyring, view)?;
        return Ok(vec![(RoleName::targets(), keys)]);
    }
    let mut out = Vec::new();
    for d in &dels.roles {
        if !d.allows(tag) {
            continue;
        }
        let listed: Vec<_> = d
            .keyids
            .iter()
            .filter_map(|id| dels.keys.get(id).cloned())
            .collect();
        if !listed.iter().any(|k| keyring.holds(k)) {
            continue;
        }
        let keys = repo::open_keys(ctx, keyring, &listed)?;
        if !keys.is_empty() {
            out.push((d.name.clone(), keys));
        }
    }
    if out.is_empty() {
        return Err(TrustError::NoDelegationKey);
    }
    Ok(out)
}

/// Sign `change` into each role; only roles that changed are uploaded.
fn apply(
    ctx: &Context,
    view: &mut View,
    roles: &[(RoleName, Vec<PrivateKey>)],
    mut change: impl FnMut(&mut tuf::Targets) -> tuf::Result<bool>,
) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    for (role, keys) in roles {
        let (mut body, v) = repo::take_current_or_new(view, role, ctx);
        let changed = change(&mut body).map_err(|e| match e {
            tuf::Error::Targets { msg } => repo::unreadable(role.as_str(), msg),
            e => e.into(),
        })?;
        if changed {
            let refs: Vec<&PrivateKey> = keys.iter().collect();
            parts.push((role.clone(), repo::sign_targets(role, body, v, &refs, ctx)?));
        }
    }
    Ok(parts)
}

/// Resolve a tag or digest through the registry: the target docker would sign.
fn resolve(ctx: &Context, r: &Reference) -> Result<FileMeta> {
    let session = oci::open(&ctx.config, &r.domain, &ctx.insecure_registries)?;
    let m = oci::resolve(&session, r)?
        .ok_or_else(|| TrustError::Usage(format!("no such manifest: {}", r.familiar())))?;
    Ok(edit::docker_target(m.sha256(), m.size))
}

/// Who else signed this tag with this digest (docker's "Existing signatures … from:").
fn existing_signers(view: &View, tag: &str, digest: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (r, _) in &view.roles {
        if !r.is_delegation() || r.as_str() == "targets/releases" {
            continue;
        }
        let signed = view.target(r.as_str(), tag)?;
        if signed.as_ref().and_then(|fm| fm.hashes.sha256()) == Some(digest) {
            out.push(r.as_str().trim_start_matches("targets/").to_owned());
        }
    }
    Ok(out)
}

pub fn sign(ctx: &mut Context, out: &mut dyn Write, req: &SignRequest) -> Result<()> {
    let r = Reference::parse(&req.image).map_err(|e| TrustError::Usage(e.to_string()))?;
    let tag = match (&r.digest, &r.tag, &req.tag) {
        (Some(_), _, Some(t)) => t.clone(),
        (Some(_), _, None) => {
            return Err(TrustError::Usage(format!(
                "cannot use a digest reference for IMAGE:TAG (give --tag to sign {} under a tag)",
                req.image
            )))
        }
        (None, Some(t), _) => t.clone(),
        (None, None, _) => {
            return Err(TrustError::Usage(format!(
                "no tag specified for {}",
                req.image
            )))
        }
    };
    if !registry::reference::valid_tag(&tag) {
        return Err(TrustError::Usage(format!("invalid tag {tag:?}")));
    }
    let name = TargetName::new(&tag)?;
    // As typed (docker prints the argument), or name:tag when signing a digest.
    let shown = if r.digest.is_some() {
        format!("{}:{tag}", r.name())
    } else {
        req.image.clone()
    };
    let mut repo_ref = r.clone();
    repo_ref.tag = None;
    repo_ref.digest = None;
    let mut repo = Repo::open(ctx, &repo_ref, true)?;
    let keyring = Keyring::new(&ctx.config);
    let view = repo.view(ctx, true, Load::All)?;
    let Some(mut view) = view else {
        if req.stage.is_some() {
            return Err(TrustError::Usage(format!(
                "{}: signing in steps needs an existing repository (add its signers first)",
                repo.gun
            )));
        }
        // A new repository: initialize it and sign in one update.
        let target = match &req.target {
            Some(t) => t.clone(),
            None => resolve(ctx, &r)?,
        };
        let new = repo::initialize(ctx, &keyring, &repo)?;
        let mut targets = new.targets;
        let mut parts: Vec<Part> = vec![(RoleName::root(), new.root.raw_shared())];
        let user = ctx
            .config
            .credentials(&r.domain)
            .map_err(TrustError::Other)?
            .map(|c| c.username().to_owned())
            .filter(|u| !u.is_empty() && crate::ops::signer::check_name(u).is_ok());
        match user {
            Some(user) => {
                // docker: a signer named after the registry user, in its role and releases.
                let key = keyring.generate(&mut ctx.passphrases, &user, None)?;
                let all = vec!["".to_owned()];
                for role in [format!("targets/{user}"), "targets/releases".to_owned()] {
                    let role = RoleName::new(&role)?;
                    edit::add_delegation(
                        &mut targets,
                        &role,
                        std::slice::from_ref(key.public()),
                        1,
                        &all,
                    );
                    let mut body = tuf::Targets::new(ctx.now(), 0);
                    edit::add_target(&mut body, name.clone(), target.clone())?;
                    parts.push((
                        role.clone(),
                        repo::sign_targets(&role, body, 0, &[&key], ctx)?,
                    ));
                }
                let _ = writeln!(out, "Created signer: {user}");
                parts.insert(
                    1,
                    (
                        RoleName::targets(),
                        repo::sign_targets(
                            &RoleName::targets(),
                            targets,
                            0,
                            &[&new.targets_key],
                            ctx,
                        )?,
                    ),
                );
            }
            None => {
                edit::add_target(&mut targets, name.clone(), target)?;
                parts.push((
                    RoleName::targets(),
                    repo::sign_targets(&RoleName::targets(), targets, 0, &[&new.targets_key], ctx)?,
                ));
            }
        }
        repo.publish(&parts)?;
        let _ = writeln!(
            out,
            "Finished initializing signed repository for {}",
            req.image
        );
        let _ = writeln!(out, "Successfully signed {}:{tag}", repo.gun);
        return Ok(());
    };
    for w in &view.warnings {
        eprintln!("warning: {w}");
    }
    let released = view
        .find_released(&tag)?
        .filter(|_| r.digest.is_none() && req.target.is_none());
    let target = match &released {
        Some((_, meta)) => {
            let digest = meta.hashes.sha256().unwrap_or_default().to_vec();
            let _ = writeln!(out, "Signing and pushing trust metadata for {shown}");
            let _ = writeln!(
                out,
                "Existing signatures for tag {tag} digest {} from:",
                hex::encode(&digest)
            );
            let _ = writeln!(
                out,
                "{}",
                existing_signers(&view, &tag, &digest)?.join(", ")
            );
            meta.clone()
        }
        None => {
            let t = match &req.target {
                Some(t) => t.clone(),
                None => resolve(ctx, &r)?,
            };
            let _ = writeln!(out, "Signing and pushing trust metadata for {shown}");
            t
        }
    };
    let roles =
        signable_roles(ctx, &keyring, &view, &tag).map_err(|e| sign_failed(&repo, &tag, e))?;
    let parts = apply(ctx, &mut view, &roles, |t| {
        edit::add_target(t, name.clone(), target.clone())
    })?;
    if let Some(file) = &req.stage {
        return crate::ops::staged::stage(out, &view, repo.gun.as_str(), &tag, &parts, file);
    }
    if !parts.is_empty() {
        repo.publish_update(ctx, view, &parts)
            .map_err(|e| sign_failed(&repo, &tag, e))?;
    }
    let _ = writeln!(out, "Successfully signed {}:{tag}", repo.gun);
    Ok(())
}

fn sign_failed(repo: &Repo, tag: &str, e: TrustError) -> TrustError {
    TrustError::Usage(format!("failed to sign {}:{tag}: {e}", repo.gun))
}

/// `trust revoke [-y] IMAGE[:TAG]`.
pub fn revoke(
    ctx: &mut Context,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    image: &str,
    yes: bool,
) -> Result<()> {
    let r = Reference::parse(image).map_err(|e| TrustError::Usage(e.to_string()))?;
    if r.digest.is_some() {
        return Err(TrustError::Usage(
            "cannot use a digest reference for IMAGE:TAG".into(),
        ));
    }
    if r.tag.is_none() && !yes {
        let _ = write!(
            out,
            "Confirm you would like to delete all signature data for {image}? [y/N] "
        );
        let _ = out.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let fail =
        |e: TrustError| TrustError::Usage(format!("could not remove signature for {image}: {e}"));
    let mut repo_ref = r.clone();
    repo_ref.tag = None;
    let mut repo = Repo::open(ctx, &repo_ref, true).map_err(fail)?;
    let mut view = repo
        .view(ctx, true, Load::All)
        .map_err(fail)?
        .ok_or_else(|| {
            fail(TrustError::NotFound {
                gun: repo.gun.to_string(),
                host: repo.host.clone(),
            })
        })?;
    let tags: Vec<String> = match &r.tag {
        Some(t) => {
            if view.find_released(t).map_err(fail)?.is_none() {
                return Err(fail(TrustError::NoSuchTag { tag: t.clone() }));
            }
            vec![t.clone()]
        }
        None => {
            let mut all: Vec<String> = Vec::new();
            for role in ["targets/releases", "targets"] {
                if let Some(m) = view.role(role) {
                    m.signed()
                        .targets
                        .visit(|name, _| {
                            all.push(name.into_owned());
                            std::ops::ControlFlow::Continue(())
                        })
                        .map_err(|msg| fail(repo::unreadable(role, msg)))?;
                }
            }
            all.sort();
            all.dedup();
            if all.is_empty() {
                return Err(fail(TrustError::Usage("no signed tags to remove".into())));
            }
            all
        }
    };
    let keyring = Keyring::new(&ctx.config);
    let roles = signable_roles(
        ctx,
        &keyring,
        &view,
        tags.first().map(String::as_str).unwrap_or(""),
    )
    .map_err(fail)?;
    let parts = apply(ctx, &mut view, &roles, |t| {
        let mut changed = false;
        for tag in &tags {
            changed |= edit::remove_target(t, tag)?;
        }
        Ok(changed)
    })
    .map_err(fail)?;
    if !parts.is_empty() {
        repo.publish_update(ctx, view, &parts).map_err(fail)?;
    }
    let _ = writeln!(out, "Successfully deleted signature for {image}");
    Ok(())
}

/// `trust verify IMAGE[:TAG]`: the digest the trust data vouches for, as a trusted pull
/// resolves it (`targets/releases`, then `targets`).
pub fn verify(ctx: &mut Context, image: &str) -> Result<(String, u64, RoleName)> {
    let r = Reference::parse(image).map_err(|e| TrustError::Usage(e.to_string()))?;
    if r.digest.is_some() {
        return Err(TrustError::Usage(
            "cannot verify a digest reference: a digest needs no trust lookup".into(),
        ));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let mut repo_ref = r.clone();
    repo_ref.tag = None;
    let mut repo = Repo::open(ctx, &repo_ref, false)?;
    let view = repo
        .view(ctx, false, Load::Roles(&["targets/releases", "targets"]))?
        .ok_or_else(|| TrustError::NotFound {
            gun: repo.gun.to_string(),
            host: repo.host.clone(),
        })?;
    // Delegations left out (not verifying) explain why a tag has no trust data.
    let (role, meta) = view
        .find_released(&tag)?
        .ok_or_else(|| TrustError::NoSuchTag {
            tag: if view.warnings.is_empty() {
                tag.clone()
            } else {
                format!("{tag} ({})", view.warnings.join("; "))
            },
        })?;
    let digest = meta
        .hashes
        .sha256()
        .map(|d| format!("sha256:{}", hex::encode(d)))
        .ok_or_else(|| TrustError::Other(format!("{role} signs {tag} without a sha256 digest")))?;
    Ok((digest, meta.length, role))
}
