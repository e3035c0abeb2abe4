//! The coordinator's internal RPC endpoints (`/v1/internal/raft/*`), called by other nodes'
//! coordinators with the admin token. Bodies are openraft's own request and result types as
//! JSON.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde_json::Value;

use crate::coordinator::types::{NodeId, Request, TypeConfig};

fn coordinator(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::coordinator::Coordinator>, ApiError> {
    super::admin::authorize(state, headers)?;
    state.coordinator.get().cloned().ok_or_else(|| ApiError::Unavailable("the coordinator is starting".into()))
}

fn to_json<T: serde::Serialize>(v: T) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(v).map(Json).map_err(ApiError::internal)
}

pub async fn append(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Result<Json<Value>, ApiError> {
    let c = coordinator(&state, &headers)?;
    to_json(c.raft.append_entries(req).await)
}

pub async fn vote(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Result<Json<Value>, ApiError> {
    let c = coordinator(&state, &headers)?;
    to_json(c.raft.vote(req).await)
}

pub async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<Json<Value>, ApiError> {
    let c = coordinator(&state, &headers)?;
    to_json(c.raft.install_snapshot(req).await)
}

/// A client write forwarded to this node: by a follower to its leader (applied here or
/// refused), or by a node that knows no leader (passed on to the leader this node knows, never
/// to other peers) — the hop header says which.
pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<Request>,
) -> Result<Json<Value>, ApiError> {
    use crate::coordinator::{Hop, HOP_HEADER};
    let c = coordinator(&state, &headers)?;
    to_json(c.write_via(req, Hop::received(headers.get(HOP_HEADER).and_then(|v| v.to_str().ok()))).await)
}
