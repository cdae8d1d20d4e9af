//! The trust data admission answers from: each repository's verified [`Signed`], kept in
//! memory, fetched once when first asked for (the caller bounds the wait) and refreshed in
//! the background ([`Verifier::refresh_all`]); a failed refresh keeps the last good data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use registry::Reference;

use super::policy::{self, Policy};
use super::{Signed, Verdict};
use crate::context::Context;
use crate::repo::{Load, Repo};

/// Where trust data (and, for the moved-tag check, what a registry serves) comes from.
pub trait Source: Send + Sync {
    /// The verified trust data of `repository` (a GUN).
    fn signed(&self, repository: &Reference) -> Result<Signed, String>;
    /// The digest the registry serves for `reference`'s tag now.
    fn served(&self, reference: &Reference) -> Result<Option<String>, String>;
}

/// Trust servers and registries reached as the docker CLI would, from a docker
/// configuration directory (trust cache, CA certificates, credentials, `notarium.toml`).
pub struct Remote {
    pub config_dir: std::path::PathBuf,
}

impl Source for Remote {
    fn signed(&self, repository: &Reference) -> Result<Signed, String> {
        let ctx = Context::at(&self.config_dir);
        let mut repo = Repo::open(&ctx, repository, false).map_err(|e| e.to_string())?;
        let view = repo
            .view(&ctx, false, Load::All)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} has no trust data", repository.name()))?;
        Signed::from_view(&view).map_err(|e| e.to_string())
    }

    fn served(&self, reference: &Reference) -> Result<Option<String>, String> {
        let ctx = Context::at(&self.config_dir);
        let session = registry::client::oci::open(&ctx.config, &reference.domain, &[])
            .map_err(|e| e.to_string())?;
        Ok(registry::client::oci::resolve(&session, reference)
            .map_err(|e| e.to_string())?
            .map(|m| format!("sha256:{}", hex::encode(m.sha256()))))
    }
}

type Entry = Result<Arc<Signed>, String>;

pub struct Verifier {
    pub policy: Policy,
    source: Arc<dyn Source>,
    cache: Mutex<HashMap<String, Entry>>,
    refresh_every: std::time::Duration,
}

impl Verifier {
    pub fn new(policy: Policy, source: Arc<dyn Source>) -> Verifier {
        Verifier {
            policy,
            source,
            cache: Mutex::new(HashMap::new()),
            refresh_every: std::time::Duration::from_secs(60),
        }
    }

    /// How often [`Verifier::refresh_all`] is to run (for a process serving only this).
    pub fn with_refresh(mut self, every: std::time::Duration) -> Self {
        self.refresh_every = every;
        self
    }

    pub fn refresh_every(&self) -> std::time::Duration {
        self.refresh_every
    }

    /// The repository of an image reference, its reference without tag or digest.
    fn repository(r: &Reference) -> Reference {
        let mut g = r.clone();
        g.tag = None;
        g.digest = None;
        g
    }

    /// What memory holds for `image`'s repository (`None`: never fetched).
    pub fn cached(&self, r: &Reference) -> Option<Entry> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&Self::repository(r).name()).cloned()
    }

    /// Fetch `r`'s repository now (blocking) and keep it; a failure replaces only what
    /// was never good.
    pub fn fetch(&self, r: &Reference) -> Entry {
        let repo = Self::repository(r);
        let got = self.source.signed(&repo).map(Arc::new);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let key = repo.name();
        match (&got, cache.get(&key)) {
            (Err(_), Some(Ok(good))) => return Ok(good.clone()),
            _ => {
                cache.insert(key, got.clone());
            }
        }
        got
    }

    /// Fetch every repository seen so far again (the background refresh).
    pub fn refresh_all(&self) -> usize {
        let names: Vec<String> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.keys().cloned().collect()
        };
        let mut n = 0;
        for name in names {
            if let Ok(r) = Reference::parse(&name) {
                n += usize::from(self.fetch(&r).is_ok());
            }
        }
        n
    }

    /// Forget a repository that failed to load in time (a later request tries again).
    pub fn note_timeout(&self, r: &Reference, waited: std::time::Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(Self::repository(r).name())
            .or_insert_with(|| Err(format!("no answer from its trust server in {waited:?}")));
    }

    /// The verdict for `image` from `entry` (its repository's data). `check_served`: also
    /// refuse a tag the registry no longer serves as signed (validating webhooks: the node
    /// would pull what the registry serves).
    pub fn verdict(&self, image: &str, entry: Option<Entry>, check_served: bool) -> Verdict {
        let r = match Reference::parse(image) {
            Ok(r) => r,
            Err(e) => return Verdict::deny(image, format!("not an image reference: {e}")),
        };
        let entry = entry.unwrap_or_else(|| Err("not fetched".into()));
        let signed = entry.as_deref().map_err(String::as_str);
        let v = policy::decide(&self.policy, image, &r, signed);
        if !(check_served && v.allowed && r.digest.is_none()) {
            return v;
        }
        let Some(signed) = v.digest.clone() else {
            return v;
        };
        match self.source.served(&r) {
            Ok(Some(d)) if d == signed => v,
            Ok(Some(d)) => Verdict::deny(
                image,
                format!(
                    "the tag was moved: the registry serves {d}, {} is signed as {signed}",
                    r.tag.as_deref().unwrap_or("latest")
                ),
            ),
            Ok(None) => Verdict::deny(image, "the registry does not serve this tag".to_owned()),
            Err(e) => match self.policy.on_error_for(&r.name()) {
                policy::OnError::Deny => Verdict::deny(image, format!("registry: {e}")),
                policy::OnError::Allow => v,
            },
        }
    }
}
