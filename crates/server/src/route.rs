//! The URL grammar of every route, parsed before dispatch: the Notary v1 API by hand (a
//! GUN contains slashes, a delegation role contains slashes, and `/_trust/` separates
//! them; GUN segments cannot start with `_`, so `/_trust/` occurs once and the parse is
//! unambiguous), then the registry's routes ([`crate::oci::route`]).
//!
//! [`Route::requirement`] says what each request needs: the scopes of
//! notary-protocol.md §1 for trust routes and distribution's for registry routes. This is
//! the one table the authorizer decides by.

use http::Method;
use tuf::{Gun, RoleName};

use crate::auth::scope::{Access, Action};
use crate::auth::{Need, Requirement, Surface};
use crate::oci::errors::OciError;
use crate::oci::route::OciRoute;

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
    /// `/verify`, `/admission/validate`, `/admission/mutate` (`[admission]`).
    Verify,
    AdmissionValidate,
    AdmissionMutate,
    /// `/auth/token` (builtin mode's token endpoint).
    Token,
    /// `/v2/<gun>/_trust/...` with a GUN that breaks the grammar.
    BadGun(String),
    /// A registry route under `/v2/`.
    Registry(OciRoute),
    /// A registry route with a bad name, digest or tag: answered with this error.
    RegistryInvalid(OciError),
    NotFound,
}

pub fn parse(raw_path: &str) -> Route {
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8();
    let Ok(path) = decoded else {
        return Route::NotFound;
    };
    match &*path {
        "/v2/" | "/v2" => return Route::Base,
        "/_notary_server/health" | "/healthz" => return Route::Health,
        "/metrics" => return Route::Metrics,
        "/verify" => return Route::Verify,
        "/admission/validate" => return Route::AdmissionValidate,
        "/admission/mutate" => return Route::AdmissionMutate,
        "/auth/token" => return Route::Token,
        "/v2/_trust/changefeed" => return Route::Changefeed(None),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound;
    };
    // Like the reference, the GUN extends to the last `/_trust/`; the grammar then refuses
    // a GUN that itself contains `_trust`.
    let Some((gun, tail)) = rest.rsplit_once("/_trust/") else {
        return match crate::oci::route::parse(rest) {
            Ok(Some(r)) => Route::Registry(r),
            // Registry paths answer in the registry's envelope.
            Ok(None) => Route::RegistryInvalid(
                OciError::detail(
                    crate::oci::errors::OciCode::Unsupported,
                    "no registry route has this path",
                )
                .with_status(http::StatusCode::NOT_FOUND),
            ),
            Err(e) => Route::RegistryInvalid(e),
        };
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

impl Route {
    /// What a request with `method` (and `query`) on this route needs.
    pub fn requirement(&self, method: &Method, query: Option<&str>) -> Requirement {
        use Action::{All, Delete, Pull, Push};
        let repo = |surface, name: &str, actions: &[Action]| Requirement {
            surface,
            need: Need::Access {
                access: Access::repository(name, actions),
                optional: None,
            },
            update: false,
        };
        let trust = |gun: &Gun, actions: &[Action], update: bool| Requirement {
            update,
            ..repo(Surface::Trust, gun.as_str(), actions)
        };
        let reg = |name: &str, actions: &[Action]| repo(Surface::Registry, name, actions);
        let catalog = |surface| Requirement {
            surface,
            need: Need::Access {
                access: Access::catalog(),
                optional: None,
            },
            update: false,
        };
        let m = method.clone();
        match (self, m) {
            (Route::Base, _) => Requirement {
                surface: Surface::Registry,
                need: Need::Authenticated,
                update: false,
            },
            (Route::Repository(g), Method::POST) => trust(g, &[Push, Pull], true),
            (Route::Repository(g), Method::DELETE) => trust(g, &[All], false),
            (Route::File(g, TufFile::Key(_)), Method::GET) => trust(g, &[Push, Pull], false),
            (Route::File(g, TufFile::Key(_)), Method::POST) => trust(g, &[All], false),
            (Route::File(g, _), Method::GET) => trust(g, &[Pull], false),
            (Route::Changefeed(Some(g)), Method::GET) => trust(g, &[Pull], false),
            (Route::Changefeed(None), Method::GET) => catalog(Surface::Trust),
            (Route::Registry(r), m) => match (r, m) {
                (OciRoute::Catalog, Method::GET) => catalog(Surface::Registry),
                (
                    OciRoute::Manifest(n, _)
                    | OciRoute::BadManifestRef(n, _)
                    | OciRoute::Blob(n, _)
                    | OciRoute::Tags(n)
                    | OciRoute::Referrers(n, _),
                    Method::GET | Method::HEAD,
                ) => reg(n, &[Pull]),
                (OciRoute::Manifest(n, _) | OciRoute::BadManifestRef(n, _), Method::PUT) => {
                    reg(n, &[Push])
                }
                (
                    OciRoute::Manifest(n, _)
                    | OciRoute::BadManifestRef(n, _)
                    | OciRoute::Blob(n, _),
                    Method::DELETE,
                ) => reg(n, &[Delete]),
                (OciRoute::Uploads(n), Method::POST) => {
                    let mut r = reg(n, &[Push]);
                    if let (Need::Access { optional, .. }, Some(from)) =
                        (&mut r.need, mount_source(query))
                    {
                        *optional = Some(Access::repository(&from, &[Pull]));
                    }
                    r
                }
                (OciRoute::Upload(n, _), _) => reg(n, &[Push]),
                _ => Requirement::open(Surface::Registry),
            },
            (Route::RegistryInvalid(_), _) => Requirement::open(Surface::Registry),
            (
                Route::Repository(_) | Route::File(..) | Route::Changefeed(_) | Route::BadGun(_),
                _,
            ) => Requirement::open(Surface::Trust),
            _ => Requirement::open(Surface::Other),
        }
    }

    /// A short name of the route for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Repository(_) => "trust.repository",
            Route::File(_, TufFile::Key(_)) => "trust.key",
            Route::File(..) => "trust.metadata",
            Route::Changefeed(_) => "trust.changefeed",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Verify => "admission.verify",
            Route::AdmissionValidate => "admission.validate",
            Route::AdmissionMutate => "admission.mutate",
            Route::Token => "token",
            Route::BadGun(_) => "trust.invalid",
            Route::Registry(r) => match r {
                OciRoute::Catalog => "registry.catalog",
                OciRoute::Manifest(..) | OciRoute::BadManifestRef(..) => "registry.manifest",
                OciRoute::Blob(..) => "registry.blob",
                OciRoute::Uploads(_) | OciRoute::Upload(..) => "registry.upload",
                OciRoute::Tags(_) => "registry.tags",
                OciRoute::Referrers(..) => "registry.referrers",
            },
            Route::RegistryInvalid(_) => "registry.invalid",
            Route::NotFound => "not_found",
        }
    }
}

/// The `from` of a cross-repository mount (`?mount=<digest>&from=<name>`), if valid.
fn mount_source(query: Option<&str>) -> Option<String> {
    let q = crate::http::form_pairs(query.unwrap_or(""));
    let has_mount = q.iter().any(|(k, _)| k == "mount");
    let from = q.into_iter().find(|(k, _)| k == "from").map(|(_, v)| v)?;
    (has_mount && registry::reference::valid_repository(&from)).then_some(from)
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
        assert_eq!(parse("/healthz"), Route::Health);
        assert_eq!(
            parse("/v2/foo/bar/manifests/latest"),
            Route::Registry(OciRoute::Manifest(
                "foo/bar".into(),
                crate::oci::route::ManifestRef::Tag("latest".into())
            ))
        );
        assert!(matches!(
            parse("/v2/Foo/manifests/latest"),
            Route::RegistryInvalid(_)
        ));
        assert!(matches!(
            parse("/v2/foo/manifests/-x"),
            Route::Registry(OciRoute::BadManifestRef(..))
        ));
        assert!(matches!(parse("/v2/foo/bar"), Route::RegistryInvalid(_)));
        assert_eq!(parse("/auth/token"), Route::Token);
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
