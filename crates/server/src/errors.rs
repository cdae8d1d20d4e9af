//! The Notary error envelope (`{"errors":[{"code","message","detail"}]}` + newline) and
//! every code the trust API returns, with the reference's statuses and messages.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::Value;
use tuf::upload::{Invalid, UploadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoFilename,
    InvalidRole,
    MalformedJson,
    Updating,
    Version,
    MetadataNotFound,
    InvalidUpdate,
    MalformedUpload,
    InvalidGun,
    InvalidParameters,
    Unauthorized,
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoFilename => "NO_FILENAME",
            Code::InvalidRole => "INVALID_ROLE",
            Code::MalformedJson => "MALFORMED_JSON",
            Code::Updating => "UPDATING",
            Code::Version => "VERSION",
            Code::MetadataNotFound => "METADATA_NOT_FOUND",
            Code::InvalidUpdate => "INVALID_UPDATE",
            Code::MalformedUpload => "MALFORMED_UPLOAD",
            Code::InvalidGun => "INVALID_GUN",
            Code::InvalidParameters => "INVALID_PARAMETERS",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Code::NoFilename => "No file/role name provided.",
            Code::InvalidRole => "The role you are attempting to operate on is invalid.",
            Code::MalformedJson => "JSON sent by the client could not be parsed by the server",
            Code::Updating => "An error has occurred while updating the TUF repository.",
            Code::Version => "A newer version of metadata is already available.",
            Code::MetadataNotFound => "You have requested metadata that does not exist.",
            Code::InvalidUpdate => "Update sent by the client is invalid.",
            Code::MalformedUpload => "The body of your request is malformed.",
            Code::InvalidGun => "The server does not support actions on images of this name.",
            Code::InvalidParameters => "The parameters provided are not valid.",
            Code::Unauthorized => "authentication required",
            Code::Unavailable => "The server is busy; try again shortly.",
            Code::Unknown => "unknown error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::MetadataNotFound => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Updating | Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An API error: a code, an optional `detail`, and optionally a different status.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub detail: Option<Value>,
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(code: Code) -> Self {
        ApiError {
            code,
            detail: None,
            status: None,
        }
    }

    pub fn with_detail(code: Code, detail: Value) -> Self {
        ApiError {
            code,
            detail: Some(detail),
            status: None,
        }
    }

    /// 404 on the metadata routes, which carries `"detail":{}` like the reference.
    pub fn not_found() -> Self {
        Self::with_detail(Code::MetadataNotFound, Value::Object(Default::default()))
    }

    /// 404 of the catch-all route (no detail).
    pub fn no_route() -> Self {
        Self::new(Code::MetadataNotFound)
    }

    /// 507: a write failed for lack of space (reads go on).
    pub fn no_space() -> Self {
        ApiError {
            code: Code::Updating,
            detail: Some(Value::String(crate::health::NO_SPACE.into())),
            status: Some(StatusCode::INSUFFICIENT_STORAGE),
        }
    }

    /// An internal failure; the cause is logged, never sent.
    pub fn internal(code: Code, cause: impl std::fmt::Display) -> Self {
        tracing::error!(code = code.as_str(), "{cause}");
        Self::new(code)
    }

    pub fn body(&self) -> Vec<u8> {
        // Key order as the reference writes it: code, message, detail.
        let mut out = String::from("{\"errors\":[{\"code\":");
        out.push_str(&Value::String(self.code.as_str().into()).to_string());
        out.push_str(",\"message\":");
        out.push_str(&Value::String(self.code.message().into()).to_string());
        if let Some(d) = &self.detail {
            out.push_str(",\"detail\":");
            out.push_str(&d.to_string());
        }
        out.push_str("}]}\n");
        out.into_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(self.code.status());
        let mut r = (status, self.body()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if self.code == Code::Unavailable {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Validation details the Go client decodes: `{"Name":"ErrBadRoot","Error":{"Msg":…}}`.
pub fn invalid_detail(inv: &Invalid) -> Value {
    // Keep the detail under the 1 KiB the Go client reads.
    let msg: String = inv.msg().chars().take(700).collect();
    let error = match inv {
        Invalid::BadHierarchy { missing, .. } => {
            serde_json::json!({"Missing": missing, "Msg": msg})
        }
        _ => serde_json::json!({"Msg": msg}),
    };
    serde_json::json!({"Name": inv.name(), "Error": error})
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::InvalidRole(r) => {
                ApiError::with_detail(Code::InvalidRole, Value::String(r))
            }
            UploadError::MalformedJson(m) => ApiError::with_detail(
                Code::MalformedJson,
                Value::String(m.chars().take(700).collect()),
            ),
            UploadError::Version { .. } => {
                ApiError::with_detail(Code::Version, Value::Object(Default::default()))
            }
            UploadError::Invalid(inv) => {
                ApiError::with_detail(Code::InvalidUpdate, invalid_detail(&inv))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_byte_for_byte_the_reference() {
        let want = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/notary-0.7/error-metadata-not-found.json"
        ))
        .unwrap();
        assert_eq!(ApiError::not_found().body(), want);
        assert_eq!(ApiError::not_found().code.status().as_u16(), 404);
    }
}
