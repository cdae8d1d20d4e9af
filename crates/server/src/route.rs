//! The URL grammar of the Notary v1 API, parsed by hand: a GUN contains slashes, a
//! delegation role contains slashes, and `/_trust/` separates them. GUN segments cannot
//! start with `_`, so `/_trust/` occurs once and the parse is unambiguous.

use tuf::{Gun, RoleName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TufFile {
    /// `<role>.json`
    Current(RoleName),
    /// `<role>.<sha256 hex>.json` (hex lower-cased)
    Checksum(RoleName, String),
    /// `<version>.<role>.json`
    Version(RoleName, u64),
    /// `timestamp.key` / `snapshot.key`
    Key(RoleName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/<gun>/_trust/tuf/` (POST update, DELETE repository)
    Repository(Gun),
    /// `/v2/<gun>/_trust/tuf/<file>`
    File(Gun, TufFile),
    /// `/v2/<gun>/_trust/changefeed`
    Changefeed(Option<Gun>),
    Health,
    Metrics,
    /// `/v2/<gun>/_trust/...` with a GUN that breaks the grammar.
    BadGun(String),
    /// Anything under `/v2/` that is not trust data (the registry's routes).
    Registry(String),
    NotFound,
}

pub fn parse(raw_path: &str) -> Route {
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8();
    let Ok(path) = decoded else {
        return Route::NotFound;
    };
    match &*path {
        "/v2/" | "/v2" => return Route::Base,
        "/_notary_server/health" => return Route::Health,
        "/metrics" => return Route::Metrics,
        "/v2/_trust/changefeed" => return Route::Changefeed(None),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound;
    };
    // Like the reference, the GUN extends to the last `/_trust/`; the grammar then refuses
    // a GUN that itself contains `_trust`.
    let Some((gun, tail)) = rest.rsplit_once("/_trust/") else {
        return Route::Registry(rest.to_owned());
    };
    let gun = match Gun::new(gun) {
        Ok(g) => g,
        Err(_) => return Route::BadGun(gun.to_owned()),
    };
    if tail == "changefeed" {
        return Route::Changefeed(Some(gun));
    }
    let Some(file) = tail.strip_prefix("tuf/") else {
        return Route::NotFound;
    };
    if file.is_empty() {
        return Route::Repository(gun);
    }
    match parse_file(file) {
        Some(f) => Route::File(gun, f),
        None => Route::NotFound,
    }
}

fn parse_file(file: &str) -> Option<TufFile> {
    if let Some(role) = file.strip_suffix(".key") {
        if !matches!(role, "timestamp" | "snapshot") {
            return None;
        }
        return RoleName::new(role).ok().map(TufFile::Key);
    }
    let stem = file.strip_suffix(".json")?;
    // Role names contain no '.', so the dots split the forms apart.
    let parts: Vec<&str> = stem.split('.').collect();
    match parts.as_slice() {
        [role] => Some(TufFile::Current(RoleName::new(role).ok()?)),
        [a, b] => {
            if a.bytes().all(|c| c.is_ascii_digit()) && !a.is_empty() {
                let v: u64 = a.parse().ok()?;
                Some(TufFile::Version(RoleName::new(b).ok()?, v))
            } else if matches!(b.len(), 64 | 96 | 128) && b.bytes().all(|c| c.is_ascii_hexdigit()) {
                Some(TufFile::Checksum(
                    RoleName::new(a).ok()?,
                    b.to_ascii_lowercase(),
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gun(s: &str) -> Gun {
        Gun::new(s).unwrap()
    }
    fn role(s: &str) -> RoleName {
        RoleName::new(s).unwrap()
    }

    #[test]
    fn routes() {
        let g = "registry.example.com/foo/bar";
        assert_eq!(parse("/v2/"), Route::Base);
        assert_eq!(
            parse(&format!("/v2/{g}/_trust/tuf/")),
            Route::Repository(gun(g))
        );
        assert_eq!(
            parse(&format!("/v2/{g}/_trust/tuf/targets/releases.json")),
            Route::File(gun(g), TufFile::Current(role("targets/releases")))
        );
        let h = "a".repeat(64);
        assert_eq!(
            parse(&format!(
                "/v2/{g}/_trust/tuf/targets/releases.{}.json",
                h.to_uppercase()
            )),
            Route::File(gun(g), TufFile::Checksum(role("targets/releases"), h))
        );
        assert_eq!(
            parse(&format!("/v2/{g}/_trust/tuf/3.root.json")),
            Route::File(gun(g), TufFile::Version(role("root"), 3))
        );
        assert_eq!(
            parse("/v2/127.0.0.1:5000/a/_trust/tuf/timestamp.key"),
            Route::File(gun("127.0.0.1:5000/a"), TufFile::Key(role("timestamp")))
        );
        assert_eq!(
            parse(&format!("/v2/{g}/_trust/changefeed")),
            Route::Changefeed(Some(gun(g)))
        );
        assert_eq!(parse("/v2/_trust/changefeed"), Route::Changefeed(None));
        assert_eq!(parse("/_notary_server/health"), Route::Health);
        assert_eq!(
            parse("/v2/foo/bar/manifests/latest"),
            Route::Registry("foo/bar/manifests/latest".into())
        );
    }

    #[test]
    fn hostile_paths() {
        assert!(matches!(
            parse("/v2/../../etc/_trust/tuf/root.json"),
            Route::BadGun(_)
        ));
        assert!(matches!(
            parse("/v2/a%2F..%2Fb/_trust/tuf/root.json"),
            Route::BadGun(_)
        ));
        assert_eq!(parse("/v2/a/b/_trust/tuf/root.key"), Route::NotFound);
        assert_eq!(parse("/v2/a/b/_trust/tuf/Root.json"), Route::NotFound);
        assert_eq!(
            parse("/v2/a/b/_trust/tuf/targets/../root.json"),
            Route::NotFound
        );
        assert_eq!(parse("/v2/a/b/_trust/tuf/root.abc.json"), Route::NotFound);
        assert_eq!(parse("/v2/a/b/_trust/tuf/1.2.root.json"), Route::NotFound);
        assert_eq!(
            parse("/v2/a/b/_trust/tuf/99999999999999999999999.root.json"),
            Route::NotFound
        );
        assert!(matches!(
            parse("/v2/a/_trust/b/_trust/tuf/root.json"),
            Route::BadGun(_)
        ));
        assert_eq!(parse("/v2/a/b/_trust/other"), Route::NotFound);
        assert_eq!(parse("/other"), Route::NotFound);
        assert_eq!(parse("/v2/%ff/_trust/tuf/root.json"), Route::NotFound);
    }
}
