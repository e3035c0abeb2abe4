//! `POST /v1/alerts`: where the packet was appended.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The packet is durably in the input log at `topic`/`partition`/`offset`; materialization
/// follows asynchronously.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub key: String,
    /// The alert's id (candid or alertId) as a string: 64-bit ids do not fit a JavaScript number.
    pub alert_id: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}
