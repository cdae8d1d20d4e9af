//! `trust key generate` and `trust key load`.

use std::io::Write;
use std::path::{Path, PathBuf};

use keys::file;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::keyring::Keyring;
use crate::ops::signer::check_name;

/// `trust key generate NAME [--dir DIR]`: a new ECDSA key in the store, its public key in
/// `DIR/NAME.pub`.
pub fn generate(
    ctx: &mut Context,
    out: &mut dyn Write,
    name: &str,
    dir: Option<&Path>,
) -> Result<PathBuf> {
    check_name(name)?;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().map_err(|e| TrustError::Other(e.to_string()))?,
    };
    if !dir.is_dir() {
        return Err(TrustError::Usage(format!(
            "public key path does not exist: \"{}\"",
            dir.display()
        )));
    }
    let pub_path = clean_join(&dir, &format!("{name}.pub"));
    if pub_path.exists() {
        return Err(TrustError::Usage(format!(
            "public key file already exists: \"{}\"",
            pub_path.display()
        )));
    }
    let _ = writeln!(out, "Generating key for {name}...");
    let keyring = Keyring::new(&ctx.config);
    let key = keyring
        .generate(&mut ctx.passphrases, name, None)
        .map_err(|e| TrustError::Usage(format!("failed to generate key for {name}: {e}")))?;
    let pem = keys::cert::public_key_pem(key.public(), name);
    keys::store::write_private_file(&pub_path, pem.as_bytes())?;
    let _ = writeln!(
        out,
        "Successfully generated and loaded private key. Corresponding public key available: {}",
        pub_path.display()
    );
    Ok(pub_path)
}

/// `filepath.Join(dir, file)` with Go's cleaning of `.` segments.
fn clean_join(dir: &Path, file: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.components() {
        if c != std::path::Component::CurDir {
            out.push(c);
        }
    }
    out.push(file);
    out
}

/// `trust key load FILE [--name NAME]`: import a private key (encrypted PKCS#8 too —
/// docker 28 silently drops those), re-encrypted with a new passphrase.
pub fn load(ctx: &mut Context, out: &mut dyn Write, path: &Path, name: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    check_name(name)?;
    let f = path.display().to_string();
    let _ = writeln!(out, "Loading key from \"{f}\"...");
    let meta = std::fs::metadata(path)
        .map_err(|e| TrustError::Usage(format!("refusing to load key from {f}: {e}")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(TrustError::Usage(format!(
            "refusing to load key from {f}: private key file {f} must not be readable or writable by others"
        )));
    }
    let text = std::fs::read(path)
        .map_err(|e| TrustError::Usage(format!("refusing to load key from {f}: {e}")))?;
    let info = match file::inspect(&text) {
        Ok(i) => i,
        Err(keys::KeyError::PublicKeyOnly) => {
            return Err(TrustError::Usage(format!(
                "error importing key from {f}: provided file {f} is not a supported private key - to add a signer's public key use docker trust signer add"
            )))
        }
        Err(e) => return Err(TrustError::Usage(format!("error importing key from {f}: {e}"))),
    };
    let key = if info.encrypted {
        // docker asks under the alias "encrypted" (the repository passphrase variable).
        let mut attempt = 0;
        loop {
            let (p, _) = ctx
                .passphrases
                .existing("encrypted", "", attempt)
                .map_err(|e| TrustError::Usage(format!("error importing key from {f}: {e}")))?;
            match file::read(&text, Some(&p)) {
                Ok(k) => break k.key,
                Err(keys::KeyError::WrongPassphrase) => attempt += 1,
                Err(e) => {
                    return Err(TrustError::Usage(format!(
                        "error importing key from {f}: {e}"
                    )))
                }
            }
        }
    } else {
        file::read(&text, None)
            .map_err(|e| TrustError::Usage(format!("error importing key from {f}: {e}")))?
            .key
    };
    let role = info.role.clone().unwrap_or_else(|| name.to_owned());
    let gun = match role.as_str() {
        "targets" | "snapshot" | "timestamp" => {
            info.gun.as_deref().map(tuf::Gun::new).transpose()?
        }
        _ => None,
    };
    let keyring = Keyring::new(&ctx.config);
    keyring
        .import(&mut ctx.passphrases, &key, &role, gun.as_ref())
        .map_err(|e| TrustError::Usage(format!("error importing key from {f}: {e}")))?;
    let _ = writeln!(out, "Successfully imported key from {f}");
    Ok(())
}
