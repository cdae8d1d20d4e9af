//! `trust renew REPO`: fresh expiries for everything this client can sign, before it
//! expires. Root, when its key is here, gets a new certificate for the same key and a new
//! ten-year expiry (as `trust key rotate REPO root`); every targets role whose threshold
//! of keys is here is signed again, unchanged but for a fresh three-year expiry. What the
//! server holds (timestamp, and a server-held snapshot) it signs anew with every update,
//! so that is renewed too.

use std::io::Write;

use keys::PrivateKey;
use registry::Reference;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::remote::Part;
use crate::repo::{self, Repo};

pub fn renew(ctx: &mut Context, out: &mut dyn Write, image: &str) -> Result<()> {
    let mut r = Reference::parse(image).map_err(|e| TrustError::Usage(e.to_string()))?;
    r.tag = None;
    // Root first (its own update): renewed when its key is here, left alone if not.
    let root_renewed = match crate::ops::rotate::rotate(
        ctx,
        &mut std::io::sink(),
        image,
        "root",
        false,
        false,
        None,
    ) {
        Ok(()) => true,
        Err(TrustError::NoSigningKey { .. }) => false,
        Err(e) => return Err(e),
    };
    let keyring = Keyring::new(&ctx.config);
    let (repo, mut view) = Repo::existing_to_renew(ctx, &r)?;
    let gun = repo.gun.clone();
    let mut parts: Vec<Part> = Vec::new();
    // Who may sign each role, read before any role is taken out of the view.
    let mut signable = Vec::new();
    for (role, _) in &view.roles {
        let (listed, threshold) = crate::ops::staged::listed_keys(&view, role)?;
        signable.push((role.clone(), listed, threshold));
    }
    let mut renewed = Vec::new();
    for (role, listed, threshold) in signable {
        let here: Vec<_> = listed
            .iter()
            .filter(|k| keyring.holds(k))
            .cloned()
            .collect();
        if (here.len() as u64) < threshold.max(1) {
            continue;
        }
        let keys: Vec<PrivateKey> = repo::open_keys(ctx, &keyring, &here)?;
        if (keys.len() as u64) < threshold.max(1) {
            continue;
        }
        let (body, v) = repo::take_current_or_new(&mut view, &role, ctx);
        let refs: Vec<&PrivateKey> = keys.iter().collect();
        parts.push((
            role.clone(),
            repo::sign_targets(&role, body, v, &refs, ctx)?,
        ));
        renewed.push(role.to_string());
    }
    if !parts.is_empty() {
        repo.publish_update(ctx, view, &parts)?;
    } else if !root_renewed {
        return Err(TrustError::Usage(format!(
            "{gun}: none of its roles can be signed with the keys here"
        )));
    }
    if root_renewed {
        let _ = writeln!(
            out,
            "Renewed root of {gun} (a new certificate for the same key)"
        );
    }
    for role in &renewed {
        let _ = writeln!(out, "Renewed {role} of {gun}");
    }
    let _ = writeln!(out, "Successfully renewed {gun}");
    Ok(())
}
