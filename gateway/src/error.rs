//! The API error type and its one mapping to HTTP.
//!
//! Every failure a handler can produce becomes an [`ApiError`]; `IntoResponse` below is the only
//! place that picks a status code and writes the `{"error":{"code","message"}}` body. The message
//! says what was wrong and, for 5xx, whether retrying is safe. Logging happens in the request
//! middleware (see `routes::observe`), not here.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lightkeeper_api::error::{ErrorBody, ErrorResponse};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The thing existed but is no longer kept (a packet past the alert log's retention).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request took longer than {0} ms; it is safe to retry reads")]
    Timeout(u64),
    #[error("{0}; retry later")]
    Unavailable(String),
    /// A forwarded read reached a node that is not (or no longer) the partition's master.
    #[error("partition {partition} is not served by master on this node (master: {master:?}); retry through any node")]
    NotMaster { partition: u32, master: String },
    /// No credential where one is needed, or one this node does not know (`crate::access`).
    #[error("{0}")]
    Unauthorized(String),
    /// A known credential without the scope the route needs, or a WebSocket from a foreign origin.
    #[error("{0}")]
    Forbidden(String),
    /// The caller is over its rate (`access.per_token_per_sec`, `access.per_address_per_sec`);
    /// answered with `Retry-After`.
    #[error("{message}; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request was understood but what it names cannot be processed (an image that does
    /// not render).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// The node is over its disk budget (`crate::disk`) and takes no input.
    #[error("{0}; retry once space is freed or the budget raised")]
    InsufficientStorage(String),
    #[error("internal error: {0}; the request may be retried")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::NotFound { code, message: message.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::NotMaster { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Gone { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::NotMaster { .. } => "not_master",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "disk_budget_exceeded",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The error body, also used for WebSocket error messages.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code().to_owned(), message: self.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(ErrorResponse { error: self.body() })).into_response();
        self.add_headers(&mut resp);
        resp
    }
}

impl ApiError {
    /// The headers that go with this error's status (`Retry-After` for 429, `WWW-Authenticate`
    /// for 401), for every body format that carries it.
    pub fn add_headers(&self, resp: &mut Response) {
        match self {
            ApiError::RateLimited { retry_after_secs, .. } => {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, (*retry_after_secs).into());
            }
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", r.body_text())
    }
}

impl ApiError {
    /// Maps a body rejection, naming the configured limit when the body was too large.
    pub fn from_body(r: BytesRejection, limit: usize) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::bad_request("invalid_body", r.body_text())
        }
    }
}

impl From<lightkeeper_storage::state::StoreError> for ApiError {
    fn from(e: lightkeeper_storage::state::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}
