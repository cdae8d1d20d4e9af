//! Image references as the docker CLI reads them: `[host[:port]/]path[:tag][@digest]`,
//! normalized (`alpine` → `docker.io/library/alpine`).

use std::fmt;

use tuf::Gun;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host and port: `registry.example.com`, `127.0.0.1:5000`, `docker.io`.
    pub domain: String,
    /// Repository path: `foo/bar`, `library/alpine`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference format: {0}")]
pub struct ReferenceError(pub String);

pub const DEFAULT_DOMAIN: &str = "docker.io";

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' => {
                if !b
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                {
                    return false;
                }
                i += 1
            }
            b'_' => {
                if b.get(i + 1) == Some(&b'_') {
                    i += 1;
                }
                if !b
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                {
                    return false;
                }
                i += 1;
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
                if !b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// A repository name as the distribution spec allows it: slash-separated components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, 255 characters at most. No component can be `.`
/// or `..` or start with `_`, so a valid name is safe in a path and never collides with
/// the trust API's `/_trust/`.
pub fn valid_repository(path: &str) -> bool {
    !path.is_empty() && path.len() <= 255 && path.split('/').all(valid_component)
}

pub fn valid_tag(t: &str) -> bool {
    // [\w][\w.-]{0,127}
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = || ReferenceError(s.chars().take(200).collect());
        if s.is_empty() || s.len() > 1024 {
            return Err(err());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(err());
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(err());
                }
                (&rest[..last_slash + i], Some(t.to_owned()))
            }
            None => (rest, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_owned()
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.len() > 255 || !path.split('/').all(valid_component) {
            return Err(err());
        }
        if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(err());
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The repository without tag or digest: `registry.example.com/foo/bar`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The Globally Unique Name of the repository's trust data.
    pub fn gun(&self) -> Result<Gun, tuf::NameError> {
        Gun::new(&self.name())
    }

    /// Whether the registry is on this machine (docker then skips TLS verification of the
    /// trust server, and allows plain HTTP to the registry).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.domain)
    }

    /// The reference the user typed, normalized (docker.io/library/… shortened back).
    pub fn familiar(&self) -> String {
        let name = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.name()
        };
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// `localhost`, `127.x.x.x`, `::1` (with or without a port).
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host_port)
    };
    if host == "localhost" {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn normalizes_like_docker() {
        let r = p("alpine");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("docker.io", "library/alpine", None)
        );
        assert_eq!(p("alpine:3.20").tag.as_deref(), Some("3.20"));
        assert_eq!(p("user/app:v1").path, "user/app");
        let r = p("registry.example.com/foo/bar:v1");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("registry.example.com", "foo/bar")
        );
        assert_eq!(r.gun().unwrap().as_str(), "registry.example.com/foo/bar");
        let r = p("127.0.0.1:5000/foo/bar:v1");
        assert_eq!(
            (r.domain.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", Some("v1"))
        );
        assert!(r.is_loopback());
        let r = p("localhost:5000/foo");
        assert_eq!(r.domain, "localhost:5000");
        assert!(r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("registry.example.com/foo@{d}"));
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        assert!(!p("registry.example.com/foo").is_loopback());
        assert_eq!(p("alpine:3").familiar(), "alpine:3");
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Foo/bar",
            "foo/Bar",
            "foo//bar",
            "foo/bar:",
            "foo/bar:-x",
            "foo@sha256:abc",
            "foo/bar:a/b",
            "-foo",
            "foo/bar baz",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
