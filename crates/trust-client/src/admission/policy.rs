//! `[admission]` in the server's config: where trust data is read from, how often it is
//! refreshed, and the rules by repository pattern (the most specific match wins).
//!
//! ```toml
//! [admission]
//! docker_config = "/etc/notarium/admission"  # trust cache, CA certificates, notarium.toml
//! refresh_secs = 60
//! fetch_timeout_secs = 5
//! on_error = "deny"                           # trust data unreadable: deny (default) or allow
//! max_body_bytes = 3145728                    # a review or /verify request, at most
//! max_images = 1000                           # images in one /verify request, at most
//!
//! [[admission.policy]]
//! pattern = "registry.example.com/prod/**"
//! signers = ["alice", "bob"]                  # delegations targets/alice, targets/bob
//! threshold = 2                               # how many of them must sign the same digest
//! root_keys = ["<root key ID>"]               # as `docker trust inspect` prints them
//!
//! [[admission.policy]]
//! pattern = "registry.example.com/scratch/**"
//! allow = true
//! ```

use std::path::PathBuf;

use registry::pattern::Pattern;
use registry::Reference;
use serde::Deserialize;

use super::{Signed, Verdict};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Deny,
    Allow,
}

/// One `[[admission.policy]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub pattern: String,
    #[serde(default)]
    pub signers: Vec<String>,
    pub threshold: Option<u64>,
    #[serde(default)]
    pub root_keys: Vec<String>,
    #[serde(default)]
    pub allow: bool,
    pub on_error: Option<OnError>,
}

/// `[admission]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    pub docker_config: Option<PathBuf>,
    pub refresh_secs: Option<u64>,
    pub fetch_timeout_secs: Option<u64>,
    pub on_error: Option<OnError>,
    /// Largest request body (default 3 MiB).
    pub max_body_bytes: Option<usize>,
    /// Most images in one `/verify` request (default 1000).
    pub max_images: Option<usize>,
    #[serde(default)]
    pub policy: Vec<RuleFile>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Pattern,
    /// Delegation names (`alice` for `targets/alice`); empty: docker's rule.
    pub signers: Vec<String>,
    pub threshold: u64,
    pub root_keys: Vec<String>,
    pub allow: bool,
    pub on_error: OnError,
}

/// The rules, checked when the config is read.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    on_error: OnError,
}

impl Policy {
    pub fn from_file(f: &AdmissionFile) -> Result<Policy, String> {
        let on_error = f.on_error.unwrap_or_default();
        let mut rules = Vec::new();
        for r in &f.policy {
            let pattern = Pattern::new(&r.pattern)?;
            let signers: Vec<String> = r
                .signers
                .iter()
                .map(|s| s.strip_prefix("targets/").unwrap_or(s).to_owned())
                .collect();
            let threshold = r.threshold.unwrap_or(1);
            if r.threshold.is_some() && signers.is_empty() {
                return Err(format!(
                    "[[admission.policy]] {}: a threshold needs signers",
                    r.pattern
                ));
            }
            if threshold == 0 || threshold > signers.len().max(1) as u64 {
                return Err(format!(
                    "[[admission.policy]] {}: threshold {threshold} of {} signers",
                    r.pattern,
                    signers.len()
                ));
            }
            if r.allow && (!signers.is_empty() || !r.root_keys.is_empty()) {
                return Err(format!(
                    "[[admission.policy]] {}: allow = true takes no signers or root keys",
                    r.pattern
                ));
            }
            rules.push(Rule {
                pattern,
                signers,
                threshold,
                root_keys: r.root_keys.iter().map(|k| k.to_ascii_lowercase()).collect(),
                allow: r.allow,
                on_error: r.on_error.unwrap_or(on_error),
            });
        }
        Ok(Policy { rules, on_error })
    }

    /// The most specific rule for a repository (`None`: docker's rule).
    pub fn rule_for(&self, repository: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.pattern.matches(repository))
            .max_by_key(|r| r.pattern.specificity())
    }

    pub fn on_error_for(&self, repository: &str) -> OnError {
        self.rule_for(repository)
            .map(|r| r.on_error)
            .unwrap_or(self.on_error)
    }
}

/// The digest `tag` is signed with under `rule`, or why there is none.
fn signed_digest(signed: &Signed, rule: Option<&Rule>, tag: &str) -> Result<String, String> {
    let Some(rule) = rule.filter(|r| !r.signers.is_empty()) else {
        return ["targets/releases", "targets"]
            .iter()
            .find_map(|role| signed.tag_in(role, tag))
            .map(str::to_owned)
            .ok_or_else(|| format!("No valid trust data for {tag}"));
    };
    // Each required signer's digest for the tag; the one enough of them agree on.
    let mut votes: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for s in &rule.signers {
        if let Some(d) = signed.tag_in(&format!("targets/{s}"), tag) {
            votes.entry(d).or_default().push(s);
        }
    }
    if let Some((d, _)) = votes
        .iter()
        .find(|(_, who)| who.len() as u64 >= rule.threshold)
    {
        return Ok((*d).to_owned());
    }
    let signed_by: usize = votes.values().map(Vec::len).max().unwrap_or(0);
    if signed_by > 0 {
        return Err(format!(
            "{tag} is signed by {signed_by} of the required signers ({}), the threshold is {}",
            rule.signers.join(", "),
            rule.threshold
        ));
    }
    let others: Vec<&str> = signed
        .roles
        .iter()
        // targets/releases is every signer's shared role, not a signer.
        .filter(|(role, tags)| {
            tags.contains_key(tag) && role.starts_with("targets/") && *role != "targets/releases"
        })
        .map(|(role, _)| role.trim_start_matches("targets/"))
        .collect();
    Err(if others.is_empty() {
        format!("No valid trust data for {tag}")
    } else {
        format!(
            "{tag} is not signed by a required signer ({}); signed by {}",
            rule.signers.join(", "),
            others.join(", ")
        )
    })
}

/// The verdict for `image` (as written), its repository's trust data in hand.
pub fn decide(
    policy: &Policy,
    image: &str,
    reference: &Reference,
    signed: Result<&Signed, &str>,
) -> Verdict {
    let repository = reference.name();
    let rule = policy.rule_for(&repository);
    if let Some(r) = rule.filter(|r| r.allow) {
        return Verdict::allow(
            image,
            None,
            Some(format!(
                "allowed without a signature by policy {}",
                r.pattern.as_str()
            )),
        );
    }
    let signed = match signed {
        Ok(s) => s,
        Err(e) => {
            let why = format!("trust data for {repository}: {e}");
            return match policy.on_error_for(&repository) {
                OnError::Deny => Verdict::deny(image, why),
                OnError::Allow => {
                    Verdict::allow(image, None, Some(format!("{why} (on_error = allow)")))
                }
            };
        }
    };
    if let Some(r) = rule.filter(|r| !r.root_keys.is_empty()) {
        if !signed.root_keys.iter().any(|k| r.root_keys.contains(k)) {
            return Verdict::deny(
                image,
                format!(
                    "the root of {repository} carries none of the root keys pinned by policy {}",
                    r.pattern.as_str()
                ),
            );
        }
    }
    let given = reference.digest.as_ref().map(|d| d.to_string());
    match (&reference.tag, given) {
        (Some(tag), given) => match signed_digest(signed, rule, tag) {
            Ok(d) => match given {
                Some(g) if g != d => {
                    Verdict::deny(image, format!("{g} is not what {tag} is signed as ({d})"))
                }
                _ => Verdict::allow(image, Some(d), None),
            },
            Err(e) => Verdict::deny(image, e),
        },
        (None, Some(g)) => {
            // A digest alone: allowed when some tag is signed as it.
            let tags: Vec<&String> = signed
                .roles
                .values()
                .flat_map(|t| t.iter().filter(|(_, d)| **d == g).map(|(t, _)| t))
                .collect();
            if tags
                .iter()
                .any(|t| signed_digest(signed, rule, t).as_deref() == Ok(g.as_str()))
            {
                Verdict::allow(image, Some(g), None)
            } else {
                Verdict::deny(image, format!("no tag of {repository} is signed as {g}"))
            }
        }
        (None, None) => match signed_digest(signed, rule, "latest") {
            Ok(d) => Verdict::allow(image, Some(d), None),
            Err(e) => Verdict::deny(image, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> Signed {
        let mut s = Signed {
            root_keys: vec!["aa11".into(), "bb22".into()],
            ..Default::default()
        };
        s.roles
            .entry("targets/releases".into())
            .or_default()
            .insert("v1".into(), d(1));
        s
    }

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn policy(rules: Vec<RuleFile>) -> Result<Policy, String> {
        Policy::from_file(&AdmissionFile {
            policy: rules,
            ..Default::default()
        })
    }

    fn rule(pattern: &str) -> RuleFile {
        RuleFile {
            pattern: pattern.into(),
            ..Default::default()
        }
    }

    fn decide_for(p: &Policy, image: &str) -> Verdict {
        decide(p, image, &Reference::parse(image).unwrap(), Ok(&signed()))
    }

    #[test]
    fn a_pinned_root_key_is_matched_whatever_its_case_and_the_most_specific_rule_wins() {
        let mut pinned = rule("reg.example.com/a/**");
        pinned.root_keys = vec!["BB22".into()];
        let mut wrong = rule("reg.example.com/a/b/**");
        wrong.root_keys = vec!["cc33".into()];
        let p = policy(vec![pinned, wrong]).unwrap();
        let v = decide_for(&p, "reg.example.com/a/app:v1");
        assert_eq!((v.allowed, v.digest), (true, Some(d(1))));
        let v = decide_for(&p, "reg.example.com/a/b/app:v1");
        assert!(!v.allowed);
        assert!(v.reason.unwrap().contains("reg.example.com/a/b/**"));
    }

    #[test]
    fn a_digest_alone_is_allowed_only_when_a_tag_is_signed_as_it() {
        let p = Policy::default();
        assert!(decide_for(&p, &format!("reg.example.com/x@{}", d(1))).allowed);
        let v = decide_for(&p, &format!("reg.example.com/x@{}", d(2)));
        assert_eq!(
            v.reason,
            Some(format!("no tag of reg.example.com/x is signed as {}", d(2)))
        );
        let v = decide_for(&p, &format!("reg.example.com/x:v1@{}", d(2)));
        assert_eq!(
            v.reason,
            Some(format!("{} is not what v1 is signed as ({})", d(2), d(1)))
        );
    }

    #[test]
    fn rules_that_cannot_be_met_are_refused_when_read() {
        let mut r = rule("a/**");
        r.threshold = Some(2);
        assert!(policy(vec![r.clone()])
            .unwrap_err()
            .contains("a threshold needs signers"));
        r.signers = vec!["alice".into()];
        assert!(policy(vec![r.clone()])
            .unwrap_err()
            .contains("threshold 2 of 1"));
        let mut a = rule("a/**");
        a.allow = true;
        a.signers = vec!["alice".into()];
        assert!(policy(vec![a]).unwrap_err().contains("allow = true"));
        assert!(policy(vec![rule("a/***")]).is_err());
    }
}
