//! Image manifests and indexes (OCI and Docker schema 2): what they reference, read
//! from their exact bytes. The bytes are what is stored, served and signed; this model is
//! only for following references.

use serde::Deserialize;

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type the registry stores.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A reference to content: its type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a manifest or index references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type: the document's own `mediaType`, else the one it was sent with.
    pub media_type: String,
    /// Image manifests: the config blob.
    pub config: Option<Descriptor>,
    /// Image manifests: the layer blobs.
    pub layers: Vec<Descriptor>,
    /// Indexes: the manifests they list.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    pub subject: Option<Descriptor>,
    /// OCI 1.1: `artifactType`, else (for a manifest) the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest invalid: {0}")]
pub struct ManifestError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    schema_version: Option<u64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Manifest {
    /// Read a manifest sent with `content_type` (may be empty). The document's
    /// `mediaType`, when present, must agree with it.
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<Manifest, ManifestError> {
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| ManifestError(e.to_string()))?;
        if w.schema_version != Some(2) {
            return Err(ManifestError(format!(
                "schemaVersion must be 2, not {}",
                w.schema_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "missing".into())
            )));
        }
        let content_type = content_type.split(';').next().unwrap_or("").trim();
        let media_type = match (&w.media_type, content_type) {
            (Some(m), ct) if !ct.is_empty() && m != ct => {
                return Err(ManifestError(format!(
                    "mediaType {m} does not match Content-Type {ct}"
                )))
            }
            (Some(m), _) => m.clone(),
            (None, ct) if !ct.is_empty() => ct.to_owned(),
            // OCI allows leaving it out: an index has manifests, an image a config.
            (None, _) if w.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, _) => OCI_MANIFEST.to_owned(),
        };
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(ManifestError(format!(
                "unsupported media type {media_type}"
            )));
        }
        let index = is_index_type(&media_type);
        if index && (w.config.is_some() || w.layers.is_some()) {
            return Err(ManifestError("an index has no config or layers".into()));
        }
        if !index && w.manifests.is_some() {
            return Err(ManifestError(
                "an image manifest has no manifests list".into(),
            ));
        }
        if !index && w.config.is_none() {
            return Err(ManifestError("an image manifest needs a config".into()));
        }
        if index && w.manifests.is_none() {
            return Err(ManifestError("an index needs manifests".into()));
        }
        let artifact_type = w
            .artifact_type
            .clone()
            .or_else(|| w.config.as_ref().map(|c| c.media_type.clone()));
        Ok(Manifest {
            media_type,
            config: w.config,
            layers: w.layers.unwrap_or_default(),
            manifests: w.manifests.unwrap_or_default(),
            subject: w.subject,
            artifact_type,
            annotations: w.annotations,
        })
    }

    pub fn is_index(&self) -> bool {
        is_index_type(&self.media_type)
    }

    /// Blobs this manifest needs: config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn reads_images_and_indexes() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":0}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{D}","size":0}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes(), OCI_MANIFEST).unwrap();
        assert_eq!(p.blobs().count(), 2);
        assert_eq!(p.artifact_type.as_deref(), Some(OCI_CONFIG));
        assert!(
            Manifest::parse(m.as_bytes(), OCI_INDEX).is_err(),
            "type mismatch"
        );
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        let p = Manifest::parse(i.as_bytes(), "").unwrap();
        assert!(p.is_index());
        assert_eq!(
            p.manifests[0].platform.as_ref().unwrap().architecture,
            "arm64"
        );
        for bad in [
            "{}",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","config":{}}"#,
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:nothex","size":1}}"#,
            "not json",
        ] {
            assert!(Manifest::parse(bad.as_bytes(), "").is_err(), "{bad}");
        }
    }
}
