//! One JSON error shape for every API error:
//! `{"error": "<stable code>", "message": "<what is wrong>", "errors": [..]}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error: a status, a stable code and a message that says what is wrong.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Individual problems, when there are several.
    pub errors: Vec<String>,
    /// Seconds for a `Retry-After` header: the sender should come back.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds the individual problems.
    pub fn with_errors(mut self, errors: Vec<String>) -> Self {
        self.errors = errors;
        self
    }

    /// 400, the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401, the key or token is missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500; the message must not leak secrets.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tocsin\""),
            );
        }
        resp
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as E;
        match e {
            E::NotFound(_) => Self::not_found(e.to_string()),
            E::Refused(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::Store(crate::store::StoreError::Overloaded(m)) => {
                tracing::warn!(message = %m, "Overloaded: a write was refused; the sender is told to retry");
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", m);
                e.retry_after = Some(1);
                e
            }
            E::Store(_) => {
                tracing::error!(error = %e, "Storage failed; the request was not applied");
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the store could not record this; nothing was applied, retry later",
                );
                // A full disk or an unreachable database: worth a retry soon.
                e.retry_after = Some(5);
                e
            }
        }
    }
}

/// What a request whose body came too slowly is told.
pub(crate) const DEADLINE_MESSAGE: &str =
    "the request body did not arrive within [server] request_timeout; nothing was applied";

/// Whether the body failed because the request's deadline passed (a
/// [`super::RequestDeadline`] somewhere in the error chain).
pub(crate) fn deadline_passed(r: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source = std::error::Error::source(r);
    while let Some(e) = source {
        if e.is::<super::RequestDeadline>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status a body rejection answers: 408 when the deadline passed.
pub(crate) fn rejection_status(r: &axum::extract::rejection::BytesRejection) -> StatusCode {
    if deadline_passed(r) {
        StatusCode::REQUEST_TIMEOUT
    } else {
        r.status()
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let status = r.status();
        if deadline_passed(&r) {
            return Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                DEADLINE_MESSAGE,
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "payload_too_large",
                "the request body is larger than the server accepts ([server] max_body_bytes)",
            )
        } else {
            Self::new(status, "bad_body", r.body_text())
        }
    }
}
