//! The agent API's error type: every 4xx/5xx carries `ErrorBody { reason, message }` and
//! never echoes anything from the request.

use crate::store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sb_core::protocol::{ErrorBody, ErrorReason};

/// An error answer of the agent API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: ErrorReason,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: ErrorReason, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into() }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorReason::Unauthenticated, message)
    }

    pub fn malformed(what: &str, error: &serde_json::Error) -> Self {
        // serde_json's messages can quote the offending input ("invalid type: string \"…\""),
        // which may be a value: report only the category and position.
        let category = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "is not valid JSON",
            serde_json::error::Category::Data => "does not have the expected fields and types",
            serde_json::error::Category::Io => "could not be read",
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorReason::MalformedRequest,
            format!("the body {category} for {what} (line {}, column {})", error.line(), error.column()),
        )
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorReason::InvalidField, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::new(StatusCode::NOT_FOUND, ErrorReason::NotFound, "no such job"),
            StoreError::Forbidden => {
                Self::new(StatusCode::FORBIDDEN, ErrorReason::Forbidden, "the job belongs to another agent")
            }
            StoreError::StaleLease => Self::new(
                StatusCode::CONFLICT,
                ErrorReason::StaleLease,
                "the lease token is not the job's current lease; the job may have been handed to another claim",
            ),
            StoreError::AlreadyCompleted => Self::new(
                StatusCode::CONFLICT,
                ErrorReason::AlreadyCompleted,
                "the job was already completed under another lease",
            ),
            StoreError::InvalidOutcome(message) => Self::invalid_field(message),
            StoreError::Database(ref inner) => {
                tracing::error!(error = %inner, "store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorReason::Unavailable, "the store is unavailable; retry")
            }
            StoreError::Kms(ref inner) => {
                tracing::error!(error = %inner, "key manager unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorReason::Unavailable,
                    "the key manager is unavailable; retry",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorReason::Internal, "internal error; retry")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ErrorBody { reason: self.reason, message: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("SB-Agent-Signature"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
