//! Liveness, readiness, metrics and the cluster view.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when every partition of this node has restored its state and serves as master.
#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503, description = "partitions still restoring")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let waiting: Vec<u32> =
        state.partitions.iter().filter(|p| !p.ready.load(Ordering::Acquire)).map(|p| p.partition).collect();
    if waiting.is_empty() {
        Ok(Json(json!({ "status": "ready", "partitions": state.partitions.len() })))
    } else {
        Err(ApiError::Unavailable(format!("partitions {waiting:?} are still restoring")))
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            out,
        )
            .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct PartitionView {
    pub partition: u32,
    pub master: String,
    pub standbys: Vec<String>,
    pub epoch: u64,
    pub ready: bool,
    /// Next input offset the master will consume.
    pub input_next: u64,
    /// End of the input partition when last seen.
    pub input_end: u64,
    /// Input records not yet materialized (as of the last end-of-partition seen).
    pub lag: u64,
    /// Next changelog offset; everything before it is applied.
    pub applied_changelog_offset: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    pub nodes: Vec<String>,
    pub partitions: Vec<PartitionView>,
    pub watched_objects: usize,
}

#[utoipa::path(get, path = "/v1/cluster", responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let partitions = state
        .partitions
        .iter()
        .map(|p| {
            let input_next = p.input_next.load(Ordering::Relaxed);
            let input_end = p.input_end.load(Ordering::Relaxed).max(input_next);
            PartitionView {
                partition: p.partition,
                master: state.node_id.clone(),
                standbys: Vec::new(),
                epoch: p.epoch.load(Ordering::Relaxed),
                ready: p.ready.load(Ordering::Acquire),
                input_next,
                input_end,
                lag: input_end - input_next,
                applied_changelog_offset: p.changelog_next.load(Ordering::Relaxed),
            }
        })
        .collect();
    Json(ClusterView { nodes: vec![state.node_id.clone()], partitions, watched_objects: state.hub.watched_objects() })
}
