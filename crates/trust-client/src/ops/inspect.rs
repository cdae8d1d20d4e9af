//! `trust inspect [--pretty]`: the same data, the same JSON and the same tables as
//! `docker trust inspect` (docker/cli `cli/command/trust/{inspect,inspect_pretty,common,
//! formatter}.go`, reimplemented).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;

use registry::Reference;
use serde::Serialize;
use tuf::RoleName;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::repo::{Load, Repo, View};

/// What docker shows for a signed tag signed only by the repository's admin.
pub const REPO_ADMIN: &str = "Repo Admin";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignedTag {
    #[serde(rename = "SignedTag")]
    pub tag: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Signers")]
    pub signers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Key {
    #[serde(rename = "ID")]
    pub id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Signer {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Keys")]
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrustInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "SignedTags")]
    pub signed_tags: Vec<SignedTag>,
    #[serde(rename = "Signers")]
    pub signers: Vec<Signer>,
    #[serde(rename = "AdministrativeKeys")]
    pub admin: Vec<Signer>,
}

/// A signed target found in a role, in walk order.
struct Found {
    role: RoleName,
    tag: String,
    digest: String,
}

fn signer_name(role: &RoleName) -> String {
    role.as_str()
        .strip_prefix("targets/")
        .unwrap_or(role.as_str())
        .to_owned()
}

fn is_released(role: &RoleName) -> bool {
    matches!(role.as_str(), "targets" | "targets/releases")
}

/// Released tags (in `targets` or `targets/releases`) and who else signed the same digest.
fn released_rows(found: &[Found]) -> Vec<SignedTag> {
    let mut rows: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in found.iter().filter(|f| is_released(&f.role)) {
        rows.entry((f.tag.clone(), f.digest.clone())).or_default();
    }
    for f in found.iter().filter(|f| !is_released(&f.role)) {
        if let Some(s) = rows.get_mut(&(f.tag.clone(), f.digest.clone())) {
            s.push(signer_name(&f.role));
        }
    }
    let mut out: Vec<SignedTag> = rows
        .into_iter()
        .map(|((tag, digest), signers)| SignedTag {
            tag,
            digest,
            signers,
        })
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.tag, &b.tag));
    out
}

/// Every delegation (but releases) with its keys' canonical IDs.
fn signers(view: &View) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (_, m) in &view.roles {
        let d = &m.signed().delegations;
        for r in &d.roles {
            if r.name.as_str() == "targets/releases" {
                continue;
            }
            let ids: Vec<String> = r
                .keyids
                .iter()
                .map(|id| {
                    d.keys
                        .get(id)
                        .and_then(|k| k.canonical_id().ok())
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| id.to_string())
                })
                .collect();
            out.insert(signer_name(&r.name), ids);
        }
    }
    out
}

/// Collect what `inspect` shows for one argument.
pub fn trust_info(ctx: &mut Context, arg: &str) -> Result<TrustInfo> {
    let generic = || TrustError::Usage(format!("no signatures or cannot access {arg}"));
    let r = Reference::parse(arg).map_err(|_| generic())?;
    let mut repo = Repo::open(ctx, &r, false)
        .map_err(|e| TrustError::Usage(format!("no signatures or cannot access {arg}: {e}")))?;
    let view = match repo.view(ctx, false, Load::All) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(TrustError::Usage(format!(
                "no signatures or cannot access {arg}: {} does not have trust data for {}",
                repo.host, repo.gun
            )))
        }
        Err(e) => {
            return Err(TrustError::Usage(format!(
                "no signatures or cannot access {arg}: {e}"
            )))
        }
    };
    for w in &view.warnings {
        eprintln!("warning: {w}");
    }
    let mut found = Vec::new();
    for (role, m) in &view.roles {
        for (name, meta) in &m.signed().targets {
            if r.tag.as_deref().is_some_and(|t| t != name.as_str())
                || !view.allows(role, name.as_str())
            {
                continue;
            }
            let digest = meta.hashes.sha256().map(hex::encode).unwrap_or_default();
            found.push(Found {
                role: role.clone(),
                tag: name.to_string(),
                digest,
            });
        }
    }
    let mut signed_tags = released_rows(&found);
    for row in &mut signed_tags {
        if row.signers.is_empty() {
            row.signers.push(REPO_ADMIN.into());
        }
    }
    let mut signer_list: Vec<Signer> = signers(&view)
        .into_iter()
        .map(|(name, ids)| Signer {
            name,
            keys: ids.into_iter().map(|id| Key { id }).collect(),
        })
        .collect();
    signer_list.sort_by(|a, b| b.name.cmp(&a.name));
    let ids = |role: &str| -> Vec<Key> {
        view.root
            .signed()
            .roles
            .get(role)
            .map(|r| r.keyids.iter().map(|k| Key { id: k.to_string() }).collect())
            .unwrap_or_default()
    };
    let admin = vec![
        Signer {
            name: "Root".into(),
            keys: ids("root"),
        },
        Signer {
            name: "Repository".into(),
            keys: ids("targets"),
        },
    ];
    Ok(TrustInfo {
        name: arg.to_owned(),
        signed_tags,
        signers: signer_list,
        admin,
    })
}

/// `trust inspect ARG...` as JSON. Arguments that fail are left out; their errors are
/// returned together after the output is written.
pub fn inspect_json(ctx: &mut Context, out: &mut dyn Write, args: &[String]) -> Result<()> {
    let mut infos = Vec::new();
    let mut errors = Vec::new();
    for a in args {
        match trust_info(ctx, a) {
            Ok(i) => infos.push(i),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let text = go_indent_json(&infos)?;
    let _ = writeln!(out, "{text}");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TrustError::Usage(errors.join("\n")))
    }
}

/// JSON as Go's `json.MarshalIndent(…, "", "    ")` writes it (HTML characters escaped).
pub fn go_indent_json<T: Serialize>(v: &T) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)
        .map_err(|e| TrustError::Other(e.to_string()))?;
    let s = String::from_utf8(buf).map_err(|e| TrustError::Other(e.to_string()))?;
    Ok(s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// `trust inspect --pretty ARG...`.
pub fn inspect_pretty(ctx: &mut Context, out: &mut dyn Write, args: &[String]) -> Result<()> {
    for (i, a) in args.iter().enumerate() {
        let info = trust_info(ctx, a)?;
        let _ = write!(out, "{}", pretty(&info));
        if i + 1 < args.len() {
            let _ = write!(out, "\n\n");
        }
    }
    Ok(())
}

/// The `--pretty` text of one repository.
pub fn pretty(info: &TrustInfo) -> String {
    let mut s = String::new();
    let name = &info.name;
    if info.signed_tags.is_empty() {
        s.push_str(&format!("\nNo signatures for {name}\n\n"));
    } else {
        s.push_str(&format!("\nSignatures for {name}\n\n"));
        let mut rows = vec![vec![
            "SIGNED TAG".to_owned(),
            "DIGEST".to_owned(),
            "SIGNERS".to_owned(),
        ]];
        for t in &info.signed_tags {
            let mut signers: Vec<String> = t
                .signers
                .iter()
                .filter(|s| *s != REPO_ADMIN)
                .cloned()
                .collect();
            signers.sort();
            let signers = if signers.is_empty() {
                format!("({REPO_ADMIN})")
            } else {
                signers.join(", ")
            };
            rows.push(vec![t.tag.clone(), t.digest.clone(), signers]);
        }
        s.push_str(&table(&rows));
    }
    if !info.signers.is_empty() {
        s.push_str(&format!("\nList of signers and their keys for {name}\n\n"));
        let mut signers = info.signers.clone();
        signers.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        let mut rows = vec![vec!["SIGNER".to_owned(), "KEYS".to_owned()]];
        for sg in &signers {
            let mut ids: Vec<&str> = sg.keys.iter().map(|k| k.id.as_str()).collect();
            ids.sort();
            let short: Vec<&str> = ids.iter().map(|i| &i[..i.len().min(12)]).collect();
            rows.push(vec![sg.name.clone(), short.join(", ")]);
        }
        s.push_str(&table(&rows));
    }
    s.push_str(&format!("\nAdministrative keys for {name}\n\n"));
    for (label, admin) in [("Repository Key", "Repository"), ("Root Key", "Root")] {
        if let Some(a) = info.admin.iter().find(|a| a.name == admin) {
            let mut ids: Vec<&str> = a.keys.iter().map(|k| k.id.as_str()).collect();
            ids.sort();
            s.push_str(&format!("  {label}:\t{}\n", ids.join(", ")));
        }
    }
    s
}

/// Go's `tabwriter` as docker configures it: minimum width 10, padding 3, spaces; the last
/// column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols.saturating_sub(1)) {
            widths[i] = widths[i].max((c.chars().count() + 3).max(10));
        }
    }
    let mut s = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            s.push_str(c);
            if i + 1 < r.len() {
                s.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        s.push('\n');
    }
    s
}

/// Natural order: digit runs compare as numbers (`v2` < `v10`), digits before other
/// characters, fewer leading zeros first on a tie.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if !da {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz_a, nz_b) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (la, lb) = (i - nz_a, j - nz_b);
        if la != lb {
            return la.cmp(&lb);
        }
        match a[nz_a..i].cmp(&b[nz_b..j]) {
            Ordering::Equal => {}
            o => return o,
        }
        if nz_a != nz_b {
            return nz_a.cmp(&nz_b);
        }
    }
    // Identical so far and one ended: the longer sorts last.
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["v10", "v2", "v1", "latest", "1.0", "1.10", "1.9", "v02"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["1.0", "1.9", "1.10", "latest", "v1", "v2", "v02", "v10"]
        );
    }

    #[test]
    fn tables_like_tabwriter() {
        let t = table(&[
            vec!["SIGNER".into(), "KEYS".into()],
            vec!["alice".into(), "204276eb449a".into()],
        ]);
        assert_eq!(t, "SIGNER    KEYS\nalice     204276eb449a\n");
    }
}
