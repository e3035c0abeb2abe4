//! Liveness, readiness, metrics and the cluster view.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
pub use lightkeeper_api::cluster::{ClusterView, PartitionView};
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::health::{Health, Ready};
use std::sync::atomic::Ordering;

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Ready when the node knows what it hosts (a cluster node: the coordinator's placement has
/// reached it, and its table has this node) and every replica it started with has restored and
/// serves in its role. A replica added later by placement restores in the background: the node
/// keeps serving.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "ready: every replica this node started with serves in its role (`degraded` lists what is wrong without stopping it, such as logs that cannot be reached)", body = Ready),
        (status = 503, description = "`unavailable`: replicas still restoring, no placement yet, or the node is drained or decommissioned", body = ErrorResponse)
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable(format!("node {} is drained for a restart", state.node_id)));
    }
    if state.coordinator.get().is_some_and(|c| c.read(|s| s.has_left(&state.node_id))) {
        return Err(ApiError::Unavailable(format!(
            "node {} is decommissioned and hosts nothing; it can be stopped",
            state.node_id
        )));
    }
    // A cluster node is not part of the cluster until the coordinator's table has it: before
    // that, other nodes count it neither for routing nor as a live member (a decommission
    // checks that enough live members remain). A restarted node is in the table already.
    if !state.cluster.is_single_node()
        && !state.coordinator.get().is_some_and(|c| c.read(|s| s.nodes.contains_key(&state.node_id)))
    {
        return Err(ApiError::Unavailable(format!(
            "node {} is not registered with the coordinator yet",
            state.node_id
        )));
    }
    match state.replicas.ready() {
        Ok(replicas) => {
            let mut degraded: Vec<String> = state
                .replicas
                .snapshot()
                .iter()
                .flat_map(|(p, r)| {
                    let unreachable = r.status.log_trouble().map(|(for_how_long, why)| {
                        format!(
                            "partition {p} ({}): its logs cannot be reached (for {} s): {why}",
                            r.status.role(),
                            for_how_long.as_secs()
                        )
                    });
                    let behind = r.status.falling_behind().map(|b| {
                        format!(
                            "partition {p} ({}): falling behind its changelog for {} s ({} records to go, {:.0} more each second); this node may be overloaded, and gets no new replicas while it lasts",
                            r.status.role(),
                            b.since.elapsed().as_secs(),
                            b.lag,
                            b.growth_per_s
                        )
                    });
                    unreachable.into_iter().chain(behind)
                })
                .collect();
            degraded.extend(state.disk.degraded());
            Ok(Json(Ready { status: "ready".into(), replicas, degraded }))
        }
        Err(waiting) if waiting.is_empty() => {
            Err(ApiError::Unavailable("waiting for the coordinator's partition placement".into()))
        }
        Err(waiting) => {
            let hosted = state.replicas.snapshot();
            let behind: Vec<String> = waiting
                .iter()
                .filter_map(|p| {
                    let b = hosted.get(p)?.status.falling_behind()?;
                    Some(format!("partition {p} is falling behind ({} records to go)", b.lag))
                })
                .collect();
            let behind = if behind.is_empty() { String::new() } else { format!("; {}", behind.join("; ")) };
            Err(ApiError::Unavailable(format!("partitions {waiting:?} are still restoring{behind}")))
        }
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus metrics in the OpenMetrics text format", body = String,
            content_type = OPENMETRICS),
        (status = 500, description = "`internal`: the metrics could not be encoded", body = ErrorResponse)
    ))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], out).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "this node's view: nodes, and per partition its replicas, role, epoch and lag", body = ClusterView)))]
pub async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let hosted = state.replicas.snapshot();
    let partitions = (0..state.partition_count)
        .map(|p| {
            let replicas = state.placement(p);
            let Some(r) = hosted.get(&p) else {
                return PartitionView::not_hosted(p, replicas);
            };
            let s = &r.status;
            let input_next = s.input_next.load(Ordering::Relaxed);
            let input_end = s.input_end.load(Ordering::Relaxed).max(input_next);
            let applied = s.changelog_next.load(Ordering::Relaxed);
            PartitionView {
                partition: p,
                role: s.role(),
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
                // Every role but master has dropped its lease: 0 there.
                lease_ms: s.lease_left().as_millis() as u64,
                falling_behind_s: s.falling_behind().map_or(0, |b| b.since.elapsed().as_secs().max(1)),
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
