//! The error body of every failed request: `{"error":{"code","message"}}`.
//!
//! `code` is a stable machine-readable word (`invalid_key`, `not_master`, `unavailable`, …);
//! `message` says what was wrong in words and, for a 5xx, whether retrying is safe. WebSocket
//! error messages carry the same [`ErrorBody`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_key`, `not_found`, `unavailable`.
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// The JSON body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

impl ErrorResponse {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse { error: ErrorBody { code: code.into(), message: message.into() } }
    }
}

/// The message of a caught panic (`std::panic::catch_unwind`, tower's panic layer), for the log
/// line and the error that replace it: a panic payload is a `&str` or a `String`, or, rarely,
/// anything else (then `None`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
