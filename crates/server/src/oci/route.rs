//! The registry's URL grammar under `/v2/` (after the trust API took `/_trust/` paths):
//! the last segments say what is asked for, everything before them is the repository
//! name, which must then be valid.

use registry::reference::{valid_repository, valid_tag};
use registry::Digest;

use super::errors::{OciCode, OciError};

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciRoute {
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest(String, ManifestRef),
    /// `/v2/<name>/manifests/<reference>` with a reference that is neither a tag nor a
    /// digest: unknown to a read (404 `MANIFEST_UNKNOWN`, as distribution), this error
    /// to a write.
    BadManifestRef(String, OciError),
    /// `/v2/<name>/blobs/<digest>`
    Blob(String, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(String),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(String, String),
    /// `/v2/<name>/tags/list`
    Tags(String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(String, Digest),
}

/// Parse the path after `/v2/` (percent-decoded). `Ok(None)`: no registry route.
pub fn parse(rest: &str) -> Result<Option<OciRoute>, OciError> {
    if rest == "_catalog" {
        return Ok(Some(OciRoute::Catalog));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| -> Result<String, OciError> {
        let name = segs[..n - k].join("/");
        if valid_repository(&name) {
            Ok(name)
        } else {
            Err(OciError::detail(
                OciCode::NameInvalid,
                format!("invalid repository name {:?}", trim(&name)),
            ))
        }
    };
    let digest = |s: &str| {
        Digest::parse(s).map_err(|e| OciError::detail(OciCode::DigestInvalid, e.to_string()))
    };
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        return Ok(Some(if segs[n - 1].is_empty() {
            OciRoute::Uploads(name(3)?)
        } else {
            OciRoute::Upload(name(3)?, segs[n - 1].to_owned())
        }));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Ok(Some(OciRoute::Uploads(name(2)?)));
    }
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Some(OciRoute::Tags(name(2)?)));
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        let name = name(2)?;
        return Ok(Some(OciRoute::Blob(name, digest(segs[n - 1])?)));
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        let name = name(2)?;
        let r = segs[n - 1];
        let reference = if r.contains(':') {
            digest(r).map(ManifestRef::Digest)
        } else if valid_tag(r) {
            Ok(ManifestRef::Tag(r.to_owned()))
        } else {
            Err(OciError::detail(
                OciCode::ManifestInvalid,
                format!("invalid tag {:?}", trim(r)),
            ))
        };
        return Ok(Some(match reference {
            Ok(reference) => OciRoute::Manifest(name, reference),
            Err(e) => OciRoute::BadManifestRef(name, e),
        }));
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        let name = name(2)?;
        return Ok(Some(OciRoute::Referrers(name, digest(segs[n - 1])?)));
    }
    Ok(None)
}

fn trim(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(parse("_catalog").unwrap(), Some(OciRoute::Catalog));
        assert_eq!(
            parse("a/b/manifests/v1").unwrap(),
            Some(OciRoute::Manifest(
                "a/b".into(),
                ManifestRef::Tag("v1".into())
            ))
        );
        assert_eq!(
            parse(&format!("a/manifests/{D}")).unwrap(),
            Some(OciRoute::Manifest(
                "a".into(),
                ManifestRef::Digest(d.clone())
            ))
        );
        // A repository may be called "blobs" or "manifests".
        assert_eq!(
            parse(&format!("blobs/manifests/blobs/{D}")).unwrap(),
            Some(OciRoute::Blob("blobs/manifests".into(), d.clone()))
        );
        assert_eq!(
            parse("a/blobs/uploads/").unwrap(),
            Some(OciRoute::Uploads("a".into()))
        );
        assert_eq!(
            parse("a/blobs/uploads").unwrap(),
            Some(OciRoute::Uploads("a".into()))
        );
        assert_eq!(
            parse("a/blobs/uploads/abc").unwrap(),
            Some(OciRoute::Upload("a".into(), "abc".into()))
        );
        assert_eq!(
            parse("a/tags/list").unwrap(),
            Some(OciRoute::Tags("a".into()))
        );
        assert_eq!(
            parse(&format!("a/referrers/{D}")).unwrap(),
            Some(OciRoute::Referrers("a".into(), d))
        );
        assert_eq!(parse("a/b").unwrap(), None);
        for (bad, code) in [
            ("../../etc/manifests/v1", OciCode::NameInvalid),
            ("A/manifests/v1", OciCode::NameInvalid),
            ("a//b/manifests/v1", OciCode::NameInvalid),
            ("_trust/manifests/v1", OciCode::NameInvalid),
            ("a/blobs/sha256:abc", OciCode::DigestInvalid),
        ] {
            assert_eq!(parse(bad).unwrap_err().code, code, "{bad}");
        }
        for (bad, code) in [
            ("a/manifests/-bad", OciCode::ManifestInvalid),
            ("a/manifests/sha256:abc", OciCode::DigestInvalid),
        ] {
            match parse(bad).unwrap() {
                Some(OciRoute::BadManifestRef(name, e)) => {
                    assert_eq!((name.as_str(), e.code), ("a", code), "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
