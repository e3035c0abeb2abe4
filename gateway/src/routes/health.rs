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

/// Ready when the node knows what it hosts (a cluster node: the coordinator's placement has
/// reached it) and every replica it started with has restored and serves in its role. A
/// replica added later by placement restores in the background: the node keeps serving.
#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503, description = "replicas still restoring, or the node is drained or decommissioned")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable(format!("node {} is drained for a restart", state.node_id)));
    }
    if state.coordinator.get().is_some_and(|c| c.read(|s| s.has_left(&state.node_id))) {
        return Err(ApiError::Unavailable(format!(
            "node {} is decommissioned and hosts nothing; it can be stopped",
            state.node_id
        )));
    }
    match state.replicas.ready() {
        Ok(hosted) => Ok(Json(json!({ "status": "ready", "replicas": hosted }))),
        Err(waiting) if waiting.is_empty() => {
            Err(ApiError::Unavailable("waiting for the coordinator's partition placement".into()))
        }
        Err(waiting) => Err(ApiError::Unavailable(format!("partitions {waiting:?} are still restoring"))),
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
    /// This node's replica: `master`, `standby`, `restoring`, or `not_hosted`.
    pub role: String,
    /// The master as the newest epoch marker applied here says (empty when not hosted).
    pub master: String,
    /// The nodes hosting the partition, preferred master first (the coordinator's placement).
    pub replicas: Vec<String>,
    pub epoch: u64,
    pub ready: bool,
    /// Next input offset the partition's master will consume (as recorded in the state).
    pub input_next: u64,
    /// End of the input partition when last seen by the master here.
    pub input_end: u64,
    /// Input records not yet materialized (as of the last end-of-partition seen).
    pub input_lag: u64,
    /// Next changelog offset to apply; everything before it is in this replica's store.
    pub applied_changelog_offset: u64,
    /// End of the changelog partition when last seen by this replica.
    pub changelog_end: u64,
    /// Changelog records not yet applied here: the staleness a `max_lag` read is checked against.
    pub changelog_lag: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    pub node: String,
    /// Node id → URL of every node known (empty for a single node).
    pub nodes: std::collections::BTreeMap<String, String>,
    pub partitions: Vec<PartitionView>,
    pub watched_objects: usize,
    /// Set by a node drain: the node is handing its masters off before a restart, and the
    /// coordinator moves no master onto it.
    pub draining: bool,
    /// The embedded coordinator (Raft) as this node sees it: its role, the leader, members, and
    /// the replicated node and partition tables.
    pub coordinator: Option<crate::coordinator::CoordinatorView>,
}

#[utoipa::path(get, path = "/v1/cluster", responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let hosted = state.replicas.snapshot();
    let partitions = (0..state.partition_count)
        .map(|p| {
            let replicas = state.placement(p);
            let Some(r) = hosted.get(&p) else {
                return PartitionView {
                    partition: p,
                    role: "not_hosted".into(),
                    master: String::new(),
                    replicas,
                    epoch: 0,
                    ready: false,
                    input_next: 0,
                    input_end: 0,
                    input_lag: 0,
                    applied_changelog_offset: 0,
                    changelog_end: 0,
                    changelog_lag: 0,
                };
            };
            let s = &r.status;
            let input_next = s.input_next.load(Ordering::Relaxed);
            let input_end = s.input_end.load(Ordering::Relaxed).max(input_next);
            let applied = s.changelog_next.load(Ordering::Relaxed);
            PartitionView {
                partition: p,
                role: s.role().as_str().to_owned(),
                master: s.master(),
                replicas,
                epoch: s.epoch.load(Ordering::Relaxed),
                ready: s.ready.load(Ordering::Acquire),
                input_next,
                input_end,
                input_lag: input_end - input_next,
                applied_changelog_offset: applied,
                changelog_end: s.changelog_end.load(Ordering::Relaxed).max(applied),
                changelog_lag: s.lag(),
            }
        })
        .collect();
    Json(ClusterView {
        node: state.node_id.clone(),
        nodes: if state.cluster.is_single_node() { Default::default() } else { state.known_nodes() },
        partitions,
        watched_objects: state.hub.watched_objects(),
        draining: state.draining.load(Ordering::Acquire),
        coordinator: state.coordinator.get().map(|c| c.view()),
    })
}
