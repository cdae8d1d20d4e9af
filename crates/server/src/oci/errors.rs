//! The distribution spec's error envelope (`{"errors":[{"code","message","detail"}]}`) and
//! its codes, with the statuses the spec and the CNCF registry use.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    RangeInvalid,
    Unsupported,
    Unauthorized,
    Denied,
    TooManyRequests,
    Unavailable,
    PaginationNumberInvalid,
    TagInvalid,
    Unknown,
}

impl OciCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "BLOB_UNKNOWN",
            OciCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            OciCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            OciCode::DigestInvalid => "DIGEST_INVALID",
            OciCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciCode::ManifestInvalid => "MANIFEST_INVALID",
            OciCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciCode::NameInvalid => "NAME_INVALID",
            OciCode::NameUnknown => "NAME_UNKNOWN",
            OciCode::SizeInvalid => "SIZE_INVALID",
            OciCode::RangeInvalid => "RANGE_INVALID",
            OciCode::Unsupported => "UNSUPPORTED",
            OciCode::Unauthorized => "UNAUTHORIZED",
            OciCode::Denied => "DENIED",
            OciCode::TooManyRequests => "TOOMANYREQUESTS",
            OciCode::Unavailable => "UNAVAILABLE",
            OciCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            OciCode::TagInvalid => "TAG_INVALID",
            OciCode::Unknown => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "blob unknown to registry",
            OciCode::BlobUploadInvalid => "blob upload invalid",
            OciCode::BlobUploadUnknown => "blob upload unknown to registry",
            OciCode::DigestInvalid => "provided digest did not match uploaded content",
            OciCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            OciCode::ManifestInvalid => "manifest invalid",
            OciCode::ManifestUnknown => "manifest unknown to registry",
            OciCode::NameInvalid => "invalid repository name",
            OciCode::NameUnknown => "repository name not known to registry",
            OciCode::SizeInvalid => "provided length did not match content length",
            OciCode::RangeInvalid => "invalid content range",
            OciCode::Unsupported => "the operation is unsupported",
            OciCode::Unauthorized => "authentication required",
            OciCode::Denied => "requested access to the resource is denied",
            OciCode::TooManyRequests => "too many requests",
            OciCode::Unavailable => "service unavailable",
            OciCode::PaginationNumberInvalid => "invalid number of results requested",
            OciCode::TagInvalid => "manifest tag did not match URI",
            OciCode::Unknown => "unknown error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            OciCode::BlobUnknown
            | OciCode::BlobUploadUnknown
            | OciCode::ManifestUnknown
            | OciCode::NameUnknown => StatusCode::NOT_FOUND,
            OciCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            OciCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            OciCode::Unauthorized => StatusCode::UNAUTHORIZED,
            OciCode::Denied => StatusCode::FORBIDDEN,
            OciCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            OciCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OciCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A registry error: a code, a detail for the user, optionally another status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    pub code: OciCode,
    pub detail: Option<serde_json::Value>,
    pub status: Option<StatusCode>,
}

impl OciError {
    pub fn new(code: OciCode) -> Self {
        OciError {
            code,
            detail: None,
            status: None,
        }
    }

    pub fn detail(code: OciCode, detail: impl Into<String>) -> Self {
        OciError {
            code,
            detail: Some(serde_json::Value::String(detail.into())),
            status: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// A server-side failure (I/O, database): logged, answered without internals.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!("registry: {what}");
        OciError::new(OciCode::Unknown)
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut e = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.code.message(),
        });
        if let Some(d) = self.detail {
            e["detail"] = d;
        }
        let body = format!("{}\n", serde_json::json!({ "errors": [e] }));
        let mut r = (self.status.unwrap_or(self.code.status()), body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(self.code, OciCode::TooManyRequests | OciCode::Unavailable) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub type OciResult<T> = Result<T, OciError>;
