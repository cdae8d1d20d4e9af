//! Admission: which images may run, by their trust data. `/verify` answers, for image
//! references, the digest the trust data vouches for or why there is none; the
//! Kubernetes webhooks (`review`) allow or deny a workload's images (validating) and pin
//! them to their signed digests (mutating).
//!
//! The rules (`policy`) are by repository pattern: required signers and a threshold,
//! pinned root keys, or `allow`. Without a matching rule an image must be signed in
//! `targets/releases` or `targets`, as docker's trusted pull required. The trust data of
//! each repository is verified by the TUF client, kept in memory (`verifier`) and
//! refreshed in the background, so answers come from memory.

pub mod policy;
pub mod review;
pub mod verifier;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::repo::View;

/// What a repository's verified trust data says: role → tag → `sha256:<hex>`, and the
/// IDs of its root keys (certificate IDs and the canonical IDs of the keys inside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    pub roles: BTreeMap<String, BTreeMap<String, String>>,
    pub root_keys: Vec<String>,
}

impl Signed {
    pub fn from_view(view: &View) -> Result<Signed> {
        let mut roles = BTreeMap::new();
        for (name, m) in &view.roles {
            let mut tags = BTreeMap::new();
            let all = m
                .signed()
                .targets
                .to_map()
                .map_err(|e| crate::error::TrustError::Other(format!("{name}: {e}")))?;
            for (tag, fm) in all {
                if let Some(d) = fm.hashes.sha256() {
                    tags.insert(tag.to_string(), format!("sha256:{}", hex::encode(d)));
                }
            }
            roles.insert(name.to_string(), tags);
        }
        let mut root_keys = Vec::new();
        for k in view.root_role_keys("root") {
            root_keys.push(k.id().to_string());
            if let Ok(c) = k.canonical_id() {
                root_keys.push(c.to_string());
            }
        }
        Ok(Signed { roles, root_keys })
    }

    fn tag_in(&self, role: &str, tag: &str) -> Option<&str> {
        self.roles.get(role)?.get(tag).map(String::as_str)
    }
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub image: String,
    pub allowed: bool,
    /// The digest the trust data vouches for (`sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it is refused (or, for an allowed one, why without a signature check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    pub fn allow(image: &str, digest: Option<String>, reason: Option<String>) -> Verdict {
        Verdict {
            image: image.to_owned(),
            allowed: true,
            digest,
            reason,
        }
    }

    pub fn deny(image: &str, reason: impl Into<String>) -> Verdict {
        Verdict {
            image: image.to_owned(),
            allowed: false,
            digest: None,
            reason: Some(reason.into()),
        }
    }
}
