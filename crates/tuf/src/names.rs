//! Validated names. A name is checked once, where it enters the program; afterwards the
//! type proves it is safe to use in URLs, file paths and database keys.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct NameError {
    pub what: &'static str,
    /// The offending input, cut to 300 characters and shown escaped.
    pub input: String,
    pub reason: &'static str,
}

fn name_error(what: &'static str, input: &str, reason: &'static str) -> NameError {
    NameError {
        what,
        input: input.chars().take(300).collect(),
        reason,
    }
}

macro_rules! name_type {
    ($(#[$m:meta])* $t:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $t(String);

        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $t::new(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $t::new(&s).map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl crate::canonical::Canonical for $t {
            fn write_canonical(&self, out: &mut Vec<u8>) {
                crate::canonical::write_str(out, &self.0)
            }
        }
    };
}

name_type!(
    /// A Globally Unique Name: the repository a set of TUF metadata belongs to, e.g.
    /// `registry.example.com/foo/bar` or `127.0.0.1:5000/library/alpine`.
    ///
    /// Grammar: 1–255 bytes; `/`-separated segments, none empty, `.` or `..`; the first
    /// segment is a host (`[A-Za-z0-9.-]`, optional `:port`, or a bracketed IPv6 address);
    /// the others start with a letter or digit and use `[A-Za-z0-9._-]`. Segments starting
    /// with `_` are reserved for API routes (`_trust`, `_catalog`), so a GUN can never make
    /// a route ambiguous.
    Gun
);

name_type!(
    /// A TUF role: `root`, `targets`, `snapshot`, `timestamp`, or a delegation
    /// `targets/<name>[/<name>…]` of `[-a-z0-9_]` segments (Notary's grammar), under 256 bytes.
    RoleName
);

name_type!(
    /// The name of a signed target: a tag for Docker, any path-like string for Notary.
    ///
    /// 1–1024 bytes of UTF-8 with no control characters; when it contains `/`, no segment
    /// may be empty, `.` or `..`.
    TargetName
);

pub const MAX_GUN_LEN: usize = 255;
pub const MAX_TARGET_NAME_LEN: usize = 1024;

impl Gun {
    pub fn new(s: &str) -> Result<Gun, NameError> {
        let bad = |reason| Err(name_error("repository name", s, reason));
        if s.is_empty() {
            return bad("empty");
        }
        if s.len() > MAX_GUN_LEN {
            return bad("longer than 255 bytes");
        }
        for (i, seg) in s.split('/').enumerate() {
            if seg.is_empty() {
                return bad("empty path segment");
            }
            if seg == "." || seg == ".." {
                return bad("'.' or '..' path segment");
            }
            if seg.starts_with('_') {
                return bad("segments starting with '_' are reserved");
            }
            let ok = if i == 0 {
                valid_host(seg)
            } else {
                seg.as_bytes()[0].is_ascii_alphanumeric()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            };
            if !ok {
                return bad(if i == 0 {
                    "first segment must be a host name, an IP address or host:port"
                } else {
                    "path segments use letters, digits, '.', '_' and '-' and start with a letter or digit"
                });
            }
        }
        Ok(Gun(s.to_owned()))
    }

    /// The registry host part (`host[:port]`).
    pub fn host(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The repository path below the host (empty for a one-segment GUN).
    pub fn path(&self) -> &str {
        self.0.split_once('/').map(|(_, p)| p).unwrap_or("")
    }
}

fn valid_host(seg: &str) -> bool {
    let (host, port) = if let Some(rest) = seg.strip_prefix('[') {
        // [ipv6]:port or [ipv6]
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", port),
                None => return false,
            },
        }
    } else {
        match seg.split_once(':') {
            Some((h, p)) => (h, p),
            None => (seg, "1"),
        }
    };
    let host_ok = !host.is_empty()
        && host.as_bytes()[0].is_ascii_alphanumeric()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65535);
    host_ok && port_ok
}

impl RoleName {
    pub const ROOT: &'static str = "root";
    pub const TARGETS: &'static str = "targets";
    pub const SNAPSHOT: &'static str = "snapshot";
    pub const TIMESTAMP: &'static str = "timestamp";

    pub fn new(s: &str) -> Result<RoleName, NameError> {
        let bad = |reason| Err(name_error("role name", s, reason));
        if matches!(s, "root" | "targets" | "snapshot" | "timestamp") {
            return Ok(RoleName(s.to_owned()));
        }
        let Some(rest) = s.strip_prefix("targets/") else {
            return bad("must be root, targets, snapshot, timestamp or targets/<name>");
        };
        if s.len() >= 256 {
            return bad("256 bytes or longer");
        }
        if !rest.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'/')
        }) {
            return bad("delegation names use lower-case letters, digits, '-', '_' and '/'");
        }
        if rest.split('/').any(str::is_empty) {
            return bad("empty path segment");
        }
        Ok(RoleName(s.to_owned()))
    }

    pub fn root() -> Self {
        RoleName("root".into())
    }
    pub fn targets() -> Self {
        RoleName("targets".into())
    }
    pub fn snapshot() -> Self {
        RoleName("snapshot".into())
    }
    pub fn timestamp() -> Self {
        RoleName("timestamp".into())
    }

    pub fn is_delegation(&self) -> bool {
        self.0.starts_with("targets/")
    }

    /// `targets` or a delegation: a role whose metadata has type `Targets`.
    pub fn is_targets_like(&self) -> bool {
        self.0 == "targets" || self.is_delegation()
    }

    /// The delegating role (`targets/a/b` → `targets/a`); `None` for base roles.
    pub fn parent(&self) -> Option<RoleName> {
        if !self.is_delegation() {
            return None;
        }
        self.0.rsplit_once('/').map(|(p, _)| RoleName(p.to_owned()))
    }

    /// Number of `/`-separated segments (parents sort before children).
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }
}

impl TargetName {
    pub fn new(s: &str) -> Result<TargetName, NameError> {
        let bad = |reason| Err(name_error("target name", s, reason));
        if s.is_empty() {
            return bad("empty");
        }
        if s.len() > MAX_TARGET_NAME_LEN {
            return bad("longer than 1024 bytes");
        }
        if s.chars().any(char::is_control) {
            return bad("control character");
        }
        if s.contains('/')
            && s.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return bad("empty, '.' or '..' path segment");
        }
        Ok(TargetName(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guns() {
        for ok in [
            "registry.example.com/foo/bar",
            "127.0.0.1:5000/foo/bar",
            "localhost:5000/a",
            "docker.io/library/alpine",
            "example.com/vectors/app",
            "docker.com/notary0.3/tst",
            "[::1]:5000/foo",
            "alpine",
            "Registry.Example.com/Foo_bar/x-y.z",
        ] {
            assert!(Gun::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/foo",
            "foo/",
            "foo//bar",
            "../../../../tmp/x",
            "foo/../bar",
            "foo/./bar",
            "foo/_trust/bar",
            "foo/bar\n",
            "foo/b\u{0}r",
            "foo/b ar",
            "foo/bar:tag",
            "foo/bar@sha256",
            "foo:99999/bar",
            "-foo/bar",
            "foo/-bar",
            "foo/bär",
            "foo/b*r",
            "[zz]/a",
        ] {
            assert!(Gun::new(bad).is_err(), "{bad:?}");
        }
        assert!(Gun::new(&format!("h/{}", "a".repeat(253))).is_ok());
        assert!(Gun::new(&format!("h/{}", "a".repeat(254))).is_err());
        let g = Gun::new("127.0.0.1:5000/foo/bar").unwrap();
        assert_eq!((g.host(), g.path()), ("127.0.0.1:5000", "foo/bar"));
    }

    #[test]
    fn roles() {
        for ok in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
            "targets/a/b-c_d9",
        ] {
            assert!(RoleName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Root",
            "targets/",
            "targets//a",
            "targets/a/",
            "targets/A",
            "targets/..",
            "targets/a.b",
            "releases",
            "targets/*",
            "snapshot/x",
            &format!("targets/{}", "a".repeat(248)),
        ] {
            assert!(RoleName::new(bad).is_err(), "{bad}");
        }
        let r = RoleName::new("targets/a/b").unwrap();
        assert_eq!(r.parent().unwrap().as_str(), "targets/a");
        assert_eq!(r.parent().unwrap().parent().unwrap().as_str(), "targets");
        assert_eq!(RoleName::targets().parent(), None);
    }

    #[test]
    fn targets() {
        for ok in [
            "v1",
            "latest",
            "weird<tag>&\"q\"",
            "ünïcode-☃",
            "a/b/c.txt",
            "..x",
        ] {
            assert!(TargetName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a\nb",
            "a\u{7f}",
            "/abs",
            "a//b",
            "a/../b",
            "../x",
            "a/",
            &"x".repeat(1025),
        ] {
            assert!(TargetName::new(bad).is_err(), "{bad:?}");
        }
    }
}
