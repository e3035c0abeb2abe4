//! `/healthz` and `/readyz` answers (a 503 from `/readyz` carries an [`crate::error::ErrorResponse`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /healthz`: the process is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` when the node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// Replicas this node hosts.
    pub replicas: usize,
    /// What is wrong but does not stop the node serving: replicas whose logs cannot be reached
    /// (a broker outage; their masters answer reads marked `x-lightkeeper-stale`, and take
    /// input again by themselves when the broker returns). Empty when all is well.
    #[serde(default)]
    pub degraded: Vec<String>,
}
