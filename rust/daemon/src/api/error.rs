//! Errors as the Docker API reports them: `{"message": "..."}` with the status that says whose fault it is.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::error::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn page_not_found() -> ApiError {
        ApiError::not_found("page not found")
    }
    pub fn no_such_image(name: &str) -> ApiError {
        ApiError::not_found(format!("No such image: {name}"))
    }
    pub fn shutting_down() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is shutting down")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::ImageNotFound(name) => ApiError::no_such_image(&name),
            Error::Conflict(_) | Error::Locked { .. } => ApiError::conflict(e.to_string()),
            Error::BadArchive(_)
            | Error::BadLayerEntry { .. }
            | Error::DigestMismatch { .. }
            | Error::BadDigest(_)
            | Error::BadReference(_)
            | Error::MissingBase(_)
            | Error::Unsupported(_) => ApiError::bad_request(e.to_string()),
            Error::Io { .. } | Error::Corrupt(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<distribution::Error> for ApiError {
    fn from(e: distribution::Error) -> ApiError {
        use distribution::Error as D;
        match e {
            D::Store(e) => e.into(),
            D::BadReference(_)
            | D::BadManifest(_)
            | D::DigestMismatch { .. }
            | D::NoMatchingPlatform(_)
            | D::Config(_)
            | D::Unsupported(_) => ApiError::bad_request(e.to_string()),
            D::ManifestUnknown(_) | D::NotFound(_) => ApiError::not_found(e.to_string()),
            D::Unauthorized(_) => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            D::Cancelled => ApiError::new(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), e.to_string()),
            D::Redirect(_) | D::Transient(_) | D::Registry(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            log::error!("{}", self.message);
        } else {
            log::debug!("{} {}", self.status.as_u16(), self.message);
        }
        let body = serde_json::json!({ "message": self.message }).to_string();
        (self.status, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
