//! The client's own configuration, `<config>/notarium.toml` (`<config>` = `DOCKER_CONFIG`
//! or `~/.docker`). Root pinning: instead of trusting the first root a trust server
//! sends, a pinned repository's root must carry one of the pinned root keys, on first use
//! and after every root rotation.
//!
//! ```toml
//! disable_tofu = true            # refuse any repository without a pin
//! [[pin]]
//! prefix = "registry.example.com/team"   # a registry host or repository prefix
//! root_keys = ["9a131c8e…"]              # as `docker trust inspect` lists them
//! [[pin]]
//! prefix = "registry.example.com/corp"
//! ca = "corp-root-ca.pem"                 # root certificates issued under this CA
//! ```
//!
//! The most specific prefix wins. A key ID matches a root key by its own ID or by the
//! ID of the plain key inside its certificate (the same across certificate renewals).
//!
//! The same file maps registries to their trust servers (`DOCKER_CONTENT_TRUST_SERVER`,
//! when set, still wins for every registry):
//!
//! ```toml
//! [trust_servers]
//! "registry.example.com" = "https://notary.example.com"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tuf::verify::Pinning;

/// The client's own configuration file, next to docker's `config.json`.
pub const FILE: &str = "notarium.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    disable_tofu: bool,
    #[serde(default)]
    pin: Vec<PinEntry>,
    #[serde(default)]
    trust_servers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinEntry {
    pub prefix: String,
    #[serde(default)]
    pub root_keys: Vec<String>,
    /// A PEM file of CA certificates (relative to the configuration directory): a root
    /// certificate issued under one of them is pinned.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(skip)]
    ca_certs: Vec<Vec<u8>>,
}

/// The pins of one configuration directory.
#[derive(Debug, Default)]
pub struct ClientConfig {
    pub path: PathBuf,
    pub disable_tofu: bool,
    entries: Vec<PinEntry>,
    /// `[trust_servers]`: registry host (`host[:port]`) → trust server URL (https).
    pub trust_servers: std::collections::BTreeMap<String, String>,
}

/// What a repository is held to.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The root must carry one of these keys.
    Pinned { prefix: String, pinning: Pinning },
    /// No pin: the first root seen is trusted (and the user told so).
    FirstUse,
    /// No pin, and `disable_tofu` forbids trusting on first use.
    Refused,
}

impl ClientConfig {
    /// Read `<config_dir>/notarium.toml`; no file: no pins.
    pub fn load(config_dir: &Path) -> Result<ClientConfig, String> {
        let path = config_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClientConfig {
                    path,
                    ..Default::default()
                })
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for p in &mut f.pin {
            if let Some(ca) = &p.ca {
                let file = config_dir.join(ca);
                let pem = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let certs = tuf::x509::parse_pem_chain(&pem)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                if let Some(c) = certs.iter().find(|c| !c.is_ca) {
                    return Err(format!(
                        "{}: {:?} is not a CA certificate",
                        file.display(),
                        c.common_name.as_deref().unwrap_or("")
                    ));
                }
                p.ca_certs = certs.into_iter().map(|c| c.der).collect();
            }
        }
        for p in &f.pin {
            if p.prefix.trim_matches('/').is_empty() {
                return Err(format!("{}: a [[pin]] needs a prefix", path.display()));
            }
            if p.root_keys.is_empty() && p.ca.is_none() {
                return Err(format!(
                    "{}: the [[pin]] for {} names no root_keys and no ca",
                    path.display(),
                    p.prefix
                ));
            }
            for id in &p.root_keys {
                if tuf::KeyId::new(&id.to_ascii_lowercase()).is_err() {
                    return Err(format!(
                        "{}: the [[pin]] for {}: {id:?} is not a key ID (64 hex digits)",
                        path.display(),
                        p.prefix
                    ));
                }
            }
        }
        for (host, url) in &f.trust_servers {
            let ok = url
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(format!(
                    "{}: [trust_servers] {host}: valid https URL required for trust server, got {url}",
                    path.display()
                ));
            }
        }
        Ok(ClientConfig {
            path,
            disable_tofu: f.disable_tofu,
            entries: f.pin,
            trust_servers: f.trust_servers,
        })
    }

    /// The most specific pin whose prefix covers `gun` (the whole GUN, or a leading part
    /// of it ending at a `/`).
    pub fn entry_for(&self, gun: &str) -> Option<&PinEntry> {
        self.entries
            .iter()
            .filter(|p| {
                let prefix = p.prefix.trim_end_matches('/');
                gun == prefix
                    || gun
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|p| p.prefix.trim_end_matches('/').len())
    }

    pub fn decide(&self, gun: &str) -> Decision {
        match self.entry_for(gun) {
            Some(p) => Decision::Pinned {
                prefix: p.prefix.clone(),
                pinning: Pinning {
                    root_key_ids: p
                        .root_keys
                        .iter()
                        // Checked when the file was read.
                        .filter_map(|id| tuf::KeyId::new(&id.to_ascii_lowercase()).ok())
                        .collect(),
                    ca_certs: p.ca_certs.clone(),
                },
            },
            None if self.disable_tofu => Decision::Refused,
            None => Decision::FirstUse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(toml: &str) -> Result<ClientConfig, String> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE), toml).unwrap();
        ClientConfig::load(d.path())
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn the_most_specific_prefix_wins_at_path_boundaries() {
        let p = pins(&format!(
            "[[pin]]\nprefix = \"reg.example.com\"\nroot_keys = [\"{A}\"]\n\
             [[pin]]\nprefix = \"reg.example.com/team/\"\nroot_keys = [\"{B}\"]\n"
        ))
        .unwrap();
        let key = |gun: &str| p.entry_for(gun).map(|e| e.root_keys[0].clone());
        assert_eq!(key("reg.example.com/app"), Some(A.into()));
        assert_eq!(key("reg.example.com/team/app"), Some(B.into()));
        assert_eq!(key("reg.example.com/teammate/app"), Some(A.into()));
        assert_eq!(key("reg.example.com.evil/app"), None);
        assert_eq!(key("other.example.com/app"), None);
        assert!(matches!(
            p.decide("other.example.com/app"),
            Decision::FirstUse
        ));
    }

    #[test]
    fn disable_tofu_refuses_the_unpinned_only() {
        let p = pins(&format!(
            "disable_tofu = true\n[[pin]]\nprefix = \"reg.example.com/app\"\nroot_keys = [\"{A}\"]\n"
        ))
        .unwrap();
        assert!(matches!(
            p.decide("reg.example.com/app"),
            Decision::Pinned { .. }
        ));
        assert!(matches!(
            p.decide("reg.example.com/other"),
            Decision::Refused
        ));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        assert!(pins("[[pin]]\nprefix = \"x\"\n")
            .unwrap_err()
            .contains("names no root_keys"));
        assert!(pins("[[pin]]\nprefix = \"x\"\nroot_keys = [\"abc\"]\n")
            .unwrap_err()
            .contains("not a key ID"));
        assert!(pins("disable_tofu = 1\n").is_err());
        assert!(
            pins("[trust_servers]\n\"reg.example.com\" = \"http://notary\"\n")
                .unwrap_err()
                .contains("valid https URL required")
        );
        let t =
            pins("[trust_servers]\n\"reg.example.com:5000\" = \"https://notary:4443\"\n").unwrap();
        assert_eq!(
            t.trust_servers["reg.example.com:5000"],
            "https://notary:4443"
        );
        assert!(
            pins("[[pin]]\nprefix = \"x\"\nroot_keys = []\nca = \"x.pem\"\nextra = 1\n").is_err()
        );
        let none = tempfile::tempdir().unwrap();
        assert!(matches!(
            ClientConfig::load(none.path()).unwrap().decide("a/b"),
            Decision::FirstUse
        ));
    }
}
