//! `trust key rotate REPO ROLE`: replace a top-level role's key (docker has no such command;
//! notary's `key rotate` does the same on the wire). Root is re-signed with the old and the
//! new keys, so clients that trust the old root accept the new one.
//!
//! For root the default is a renewal: a new ten-year certificate for the same root key
//! (the way out of an expiring or expired root certificate, which every client that
//! cached an earlier root walks to); `--new-key` replaces the key itself.

use std::io::Write;

use keys::PrivateKey;
use registry::Reference;
use tuf::edit;
use tuf::metadata::{FileMeta, Metadata};
use tuf::sign::SigningKey;
use tuf::RoleName;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::repo::{self, Repo};

pub fn rotate(
    ctx: &mut Context,
    out: &mut dyn Write,
    image: &str,
    role: &str,
    server_managed: bool,
    new_key: bool,
    key_algorithm: Option<&str>,
) -> Result<()> {
    if !matches!(role, "root" | "targets" | "snapshot" | "timestamp") {
        return Err(TrustError::Usage(format!(
            "cannot rotate {role:?}: choose root, targets, snapshot or timestamp"
        )));
    }
    if new_key && role != "root" {
        return Err(TrustError::Usage(
            "--new-key is for root (every other rotation makes a new key)".into(),
        ));
    }
    if let Some(a) = key_algorithm {
        if !(role == "timestamp" || role == "snapshot" && server_managed) {
            return Err(TrustError::Usage(
                "--key-algorithm chooses the algorithm of a key the server holds (timestamp, or snapshot with --server)".into(),
            ));
        }
        if !matches!(a, "ecdsa" | "ed25519") {
            return Err(TrustError::Usage(format!(
                "key algorithm {a:?}: expected ecdsa or ed25519"
            )));
        }
    }
    if matches!(role, "root" | "targets") && server_managed {
        return Err(TrustError::Usage(format!(
            "the {role} key cannot be held by the server"
        )));
    }
    let mut r = Reference::parse(image).map_err(|e| TrustError::Usage(e.to_string()))?;
    r.tag = None;
    let (repo, view) = Repo::existing_to_renew(ctx, &r)?;
    let keyring = Keyring::new(&ctx.config);
    // The current root keys sign the new root.
    let old_root = view.root_role_keys("root");
    let mut signers: Vec<(tuf::PublicKey, PrivateKey)> = Vec::new();
    for listed in &old_root {
        if let Some(k) = keyring.open(&mut ctx.passphrases, listed)? {
            signers.push((listed.clone(), k));
        }
    }
    if signers.is_empty() {
        return Err(TrustError::NoSigningKey {
            ids: old_root
                .iter()
                .map(|k| k.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let now = ctx.now();
    let mut root = view.root.signed().clone();
    let mut parts = Vec::new();
    // A snapshot moving to a local key must be uploaded signed by it, over the new root.
    let mut local_snapshot: Option<(PrivateKey, tuf::Snapshot)> = None;
    match role {
        "root" => {
            // A renewal certifies the root key this client holds again; --new-key makes one.
            let key = if new_key {
                keyring.generate(&mut ctx.passphrases, "root", None)?
            } else {
                // The same key again (it signs under its old and its new certificate).
                PrivateKey::from_pkcs8_der(&signers[0].1.to_pkcs8_der())?
            };
            let cert =
                keys::cert::root_certificate(&key, &repo.gun, now, keys::cert::ROOT_CERT_DAYS)?;
            edit::set_root_role(&mut root, "root", std::slice::from_ref(&cert), 1);
            signers.push((cert, key));
        }
        "targets" => {
            let key = keyring.generate(&mut ctx.passphrases, "targets", Some(&repo.gun))?;
            edit::set_root_role(&mut root, "targets", std::slice::from_ref(key.public()), 1);
            let (body, v) = repo::current_or_new(&view, &RoleName::targets(), ctx);
            parts.push((
                RoleName::targets(),
                repo::sign_targets(&RoleName::targets(), body, v, &[&key], ctx)?,
            ));
        }
        "snapshot" if server_managed => {
            let k = repo.remote.rotate_server_key("snapshot", key_algorithm)?;
            edit::set_root_role(&mut root, "snapshot", &[k], 1);
        }
        "snapshot" => {
            let key = keyring.generate(&mut ctx.passphrases, "snapshot", Some(&repo.gun))?;
            edit::set_root_role(&mut root, "snapshot", std::slice::from_ref(key.public()), 1);
            let snap = view
                .snapshot
                .as_ref()
                .map(|s| s.signed().clone())
                .ok_or_else(|| TrustError::Other("no snapshot to continue from".into()))?;
            local_snapshot = Some((key, snap));
        }
        _ => {
            // The timestamp key always lives on the server.
            let k = repo.remote.rotate_server_key("timestamp", key_algorithm)?;
            edit::set_root_role(&mut root, "timestamp", &[k], 1);
        }
    }
    let v = root.version;
    let keys: Vec<SigningKey<'_>> = signers
        .iter()
        .map(|(listed, k)| SigningKey::listed(listed, k))
        .collect();
    let signed: Metadata<tuf::Root> = edit::resign(
        "root",
        root,
        v,
        now.plus_days(edit::ROOT_EXPIRY_DAYS),
        &keys,
    )?;
    let root_bytes = signed.raw().to_vec();
    parts.insert(0, (RoleName::root(), root_bytes.clone().into()));
    if let Some((key, mut snap)) = local_snapshot {
        snap.meta
            .insert(RoleName::root(), FileMeta::for_metadata(&root_bytes));
        let v = snap.version;
        let m = edit::resign(
            "snapshot",
            snap,
            v,
            now.plus_days(edit::TARGETS_EXPIRY_DAYS),
            &[SigningKey::plain(&key)],
        )?;
        parts.push((RoleName::snapshot(), m.raw_shared()));
    }
    if role == "snapshot" {
        // Signed here when moving to a local key; the server signs it when moving back.
        repo.publish(&parts)?;
    } else {
        repo.publish_update(ctx, view, &parts)?;
    }
    let where_ = if server_managed || role == "timestamp" {
        " (held by the server)"
    } else {
        ""
    };
    if role == "root" && !new_key {
        let _ = writeln!(
            out,
            "Successfully renewed the root certificate for repository {} (same root key)",
            repo.gun
        );
    } else {
        let _ = writeln!(
            out,
            "Successfully rotated {role} key for repository {}{where_}",
            repo.gun
        );
    }
    Ok(())
}
