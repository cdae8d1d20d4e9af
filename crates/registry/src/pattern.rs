//! Globs on repository names (`[[auth.access]]` rules, admission policies): `*` within a
//! path segment, `**` across segments; the most specific of several matching patterns is
//! the one with more literal characters, then fewer `**`, then fewer `*`.

#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    /// (literal characters, -`**` count, -`*` count): compared to find the most specific.
    specificity: (usize, isize, isize),
}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.is_empty() || text.len() > 256 {
            return Err(format!("repository pattern {text:?}: 1 to 256 characters"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("repository pattern {text:?}: no spaces"));
        }
        if text.contains("***") {
            return Err(format!("repository pattern {text:?}: `***` means nothing"));
        }
        let doubles = text.matches("**").count();
        let stars = text.matches('*').count() - 2 * doubles;
        let literal = text.len() - text.matches('*').count();
        Ok(Pattern {
            text: text.to_owned(),
            specificity: (literal, -(doubles as isize), -(stars as isize)),
        })
    }

    /// (literal characters, -`**` count, -`*` count): the larger, the more specific.
    pub fn specificity(&self) -> (usize, isize, isize) {
        self.specificity
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Glob match: `**` any characters, `*` any characters but `/`.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.text.as_bytes(), name.as_bytes())
    }
}

/// Glob matching by dynamic programming over (pattern position, name position):
/// O(|p|·|s|) whatever the pattern, so a hostile name cannot make it blow up.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (n, m) = (p.len(), s.len());
    let mut cur = vec![false; m + 1];
    cur[0] = true;
    let mut i = 0;
    while i < n {
        let mut next = vec![false; m + 1];
        if p[i] == b'*' {
            let double = i + 1 < n && p[i + 1] == b'*';
            // A star matches empty, or extends a match by one allowed character.
            for j in 0..=m {
                next[j] = cur[j] || (j > 0 && next[j - 1] && (double || s[j - 1] != b'/'));
            }
            i += if double { 2 } else { 1 };
        } else {
            for j in 1..=m {
                next[j] = cur[j - 1] && p[i] == s[j - 1];
            }
            i += 1;
        }
        cur = next;
    }
    cur[m]
}
