//! `trust inspect [--pretty]`: the same data, the same JSON and the same tables as
//! `docker trust inspect` (docker/cli `cli/command/trust/{inspect,inspect_pretty,common,
//! formatter}.go`, reimplemented).

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;

use registry::Reference;
use serde::Serialize;
use tuf::RoleName;

use crate::context::Context;
use crate::error::{Result, TrustError};
use crate::repo::{Load, Repo, View};

/// What docker shows for a signed tag signed only by the repository's admin.
pub const REPO_ADMIN: &str = "Repo Admin";

/// A released tag: its digest and who signed it. Names are borrowed from the trust data
/// (a repository of 100,000 tags is not copied to be shown).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignedTag<'a> {
    #[serde(rename = "SignedTag")]
    pub tag: Cow<'a, str>,
    #[serde(rename = "Digest", serialize_with = "hex_digest")]
    pub digest: Option<[u8; 32]>,
    #[serde(rename = "Signers")]
    pub signers: Vec<&'a str>,
}

fn hex_digest<S: serde::Serializer>(
    d: &Option<[u8; 32]>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&hex::encode(d)),
        None => s.serialize_str(""),
    }
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
pub struct TrustInfo<'a> {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "SignedTags")]
    pub signed_tags: Vec<SignedTag<'a>>,
    #[serde(rename = "Signers")]
    pub signers: Vec<Signer>,
    #[serde(rename = "AdministrativeKeys")]
    pub admin: Vec<Signer>,
}

fn signer_name(role: &RoleName) -> &str {
    role.as_str()
        .strip_prefix("targets/")
        .unwrap_or(role.as_str())
}

fn is_released(role: &RoleName) -> bool {
    matches!(role.as_str(), "targets" | "targets/releases")
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
            out.insert(signer_name(&r.name).to_owned(), ids);
        }
    }
    out
}

/// The trust data of one argument, loaded (what [`trust_info`] reads).
pub fn load(ctx: &mut Context, arg: &str) -> Result<(Reference, View)> {
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
    Ok((r, view))
}

/// What `inspect` shows for one argument: released tags (in `targets` or
/// `targets/releases`) with every other role that signed the same digest, the signers
/// and their keys, the administrative keys.
pub fn trust_info<'a>(arg: &str, r: &Reference, view: &'a View) -> Result<TrustInfo<'a>> {
    let fail = |role: &RoleName, msg: String| {
        TrustError::Usage(format!(
            "no signatures or cannot access {arg}: {}",
            crate::repo::unreadable(role.as_str(), msg)
        ))
    };
    let wanted = |role: &RoleName, name: &str| {
        r.tag.as_deref().is_none_or(|t| t == name) && view.allows(role, name)
    };
    let digest = |meta: &tuf::FileMeta| {
        meta.hashes
            .sha256()
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
    };
    // Released tags, one row per (tag, digest), kept sorted by that pair so the other
    // roles' signatures are found by binary search (no second index of 100,000 tags).
    let mut signed_tags: Vec<SignedTag<'a>> = Vec::new();
    for (role, m) in view.roles.iter().filter(|(r, _)| is_released(r)) {
        m.signed()
            .targets
            .visit(|name, meta| {
                if wanted(role, &name) {
                    signed_tags.push(SignedTag {
                        tag: name,
                        digest: digest(&meta),
                        signers: Vec::new(),
                    });
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| fail(role, e))?;
    }
    signed_tags.sort_by(|a, b| (a.tag.as_ref(), a.digest).cmp(&(b.tag.as_ref(), b.digest)));
    signed_tags.dedup_by(|a, b| a.tag == b.tag && a.digest == b.digest);
    for (role, m) in view.roles.iter().filter(|(r, _)| !is_released(r)) {
        m.signed()
            .targets
            .visit(|name, meta| {
                if wanted(role, &name) {
                    let d = digest(&meta);
                    if let Ok(i) = signed_tags
                        .binary_search_by(|t| (t.tag.as_ref(), t.digest).cmp(&(name.as_ref(), d)))
                    {
                        signed_tags[i].signers.push(signer_name(role));
                    }
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| fail(role, e))?;
    }
    for t in &mut signed_tags {
        if t.signers.is_empty() {
            t.signers.push(REPO_ADMIN);
        }
    }
    signed_tags.sort_by(|a, b| natural_cmp(&a.tag, &b.tag));
    let mut signer_list: Vec<Signer> = signers(view)
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

/// `trust inspect ARG...` as JSON, written as each repository is read (one repository's
/// data in memory at a time). Arguments that fail are left out; their errors are
/// returned together after the output is written.
pub fn inspect_json(ctx: &mut Context, out: &mut dyn Write, args: &[String]) -> Result<()> {
    /// The array of infos, each loaded while it is serialized.
    struct Infos<'c> {
        ctx: RefCell<&'c mut Context>,
        args: &'c [String],
        errors: RefCell<Vec<String>>,
    }
    impl Serialize for Infos<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq as _;
            let mut seq = s.serialize_seq(None)?;
            for a in self.args {
                let loaded = load(&mut self.ctx.borrow_mut(), a);
                let info = loaded.and_then(|(r, view)| {
                    trust_info(a, &r, &view).map(|i| seq.serialize_element(&i))
                });
                match info {
                    Ok(written) => written?,
                    Err(e) => self.errors.borrow_mut().push(e.to_string()),
                }
            }
            seq.end()
        }
    }
    let infos = Infos {
        ctx: RefCell::new(ctx),
        args,
        errors: RefCell::new(Vec::new()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 16, HtmlEscaping(out));
    write_go_indent_json(&mut w, &infos)?;
    let _ = writeln!(w);
    let _ = w.flush();
    let errors = infos.errors.into_inner();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TrustError::Usage(errors.join("\n")))
    }
}

/// Escapes `<`, `>` and `&` as Go's JSON encoder does (they only occur in strings).
struct HtmlEscaping<'w>(&'w mut dyn Write);

impl Write for HtmlEscaping<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut start = 0;
        for (i, b) in buf.iter().enumerate() {
            let esc: &[u8] = match b {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                b'&' => b"\\u0026",
                _ => continue,
            };
            self.0.write_all(&buf[start..i])?;
            self.0.write_all(esc)?;
            start = i + 1;
        }
        self.0.write_all(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// JSON as Go's `json.MarshalIndent(…, "", "    ")` writes it.
fn write_go_indent_json<T: Serialize>(w: &mut dyn Write, v: &T) -> Result<()> {
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(w, fmt);
    v.serialize(&mut ser)
        .map_err(|e| TrustError::Other(e.to_string()))
}

/// `trust inspect --pretty ARG...`.
pub fn inspect_pretty(ctx: &mut Context, out: &mut dyn Write, args: &[String]) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
    for (i, a) in args.iter().enumerate() {
        let (r, view) = load(ctx, a)?;
        let info = trust_info(a, &r, &view)?;
        let _ = pretty(&mut w, &info);
        if i + 1 < args.len() {
            let _ = write!(w, "\n\n");
        }
    }
    let _ = w.flush();
    Ok(())
}

/// The `--pretty` text of one repository.
pub fn pretty(w: &mut dyn Write, info: &TrustInfo<'_>) -> std::io::Result<()> {
    let name = &info.name;
    if info.signed_tags.is_empty() {
        write!(w, "\nNo signatures for {name}\n\n")?;
    } else {
        write!(w, "\nSignatures for {name}\n\n")?;
        let signers_of = |t: &SignedTag<'_>| {
            let mut s: Vec<&str> = t
                .signers
                .iter()
                .copied()
                .filter(|s| *s != REPO_ADMIN)
                .collect();
            s.sort();
            if s.is_empty() {
                format!("({REPO_ADMIN})")
            } else {
                s.join(", ")
            }
        };
        let digest = |t: &SignedTag<'_>| t.digest.map(hex::encode).unwrap_or_default();
        let header = ["SIGNED TAG", "DIGEST", "SIGNERS"];
        let widths = [
            column_width(
                std::iter::once(header[0].chars().count())
                    .chain(info.signed_tags.iter().map(|t| t.tag.chars().count())),
            ),
            column_width(
                std::iter::once(header[1].len()).chain(info.signed_tags.iter().map(|t| {
                    if t.digest.is_some() {
                        64
                    } else {
                        0
                    }
                })),
            ),
        ];
        write_row(w, &widths, &header)?;
        for t in &info.signed_tags {
            write_row(w, &widths, &[&t.tag, &digest(t), &signers_of(t)])?;
        }
    }
    if !info.signers.is_empty() {
        write!(w, "\nList of signers and their keys for {name}\n\n")?;
        let mut signers = info.signers.clone();
        signers.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        let mut rows = vec![vec!["SIGNER".to_owned(), "KEYS".to_owned()]];
        for sg in &signers {
            let mut ids: Vec<&str> = sg.keys.iter().map(|k| k.id.as_str()).collect();
            ids.sort();
            let short: Vec<&str> = ids.iter().map(|i| &i[..i.len().min(12)]).collect();
            rows.push(vec![sg.name.clone(), short.join(", ")]);
        }
        w.write_all(table(&rows).as_bytes())?;
    }
    write!(w, "\nAdministrative keys for {name}\n\n")?;
    for (label, admin) in [("Repository Key", "Repository"), ("Root Key", "Root")] {
        if let Some(a) = info.admin.iter().find(|a| a.name == admin) {
            let mut ids: Vec<&str> = a.keys.iter().map(|k| k.id.as_str()).collect();
            ids.sort();
            writeln!(w, "  {label}:\t{}", ids.join(", "))?;
        }
    }
    Ok(())
}

/// A tabwriter column's width (as docker configures it: minimum 10, padding 3) from the
/// widths of its cells.
fn column_width(cells: impl Iterator<Item = usize>) -> usize {
    cells.map(|c| (c + 3).max(10)).max().unwrap_or(10)
}

/// One tabwriter row: every cell but the last padded to its column's width.
fn write_row(w: &mut dyn Write, widths: &[usize], cells: &[&str]) -> std::io::Result<()> {
    for (i, c) in cells.iter().enumerate() {
        w.write_all(c.as_bytes())?;
        if i + 1 < cells.len() {
            let pad = widths[i].saturating_sub(c.chars().count());
            write!(w, "{:pad$}", "")?;
        }
    }
    w.write_all(b"\n")
}

/// Go's `tabwriter` as docker configures it: minimum width 10, padding 3, spaces; the last
/// column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols.saturating_sub(1))
        .map(|i| {
            column_width(
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count()),
            )
        })
        .collect();
    let mut out = Vec::new();
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        let _ = write_row(&mut out, &widths, &cells);
    }
    String::from_utf8(out).unwrap_or_default()
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
