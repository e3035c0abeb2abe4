//! The coordinator's internal RPC endpoints (`/v1/internal/raft/*`), called by other nodes'
//! coordinators with the admin token. Bodies are openraft's own request and result types as
//! JSON. While the coordinator is starting they answer 503 with the API's error body, which the
//! calling node's transport (`peers::raft_network`) reads as "unreachable for now".

use crate::coordinator::types::{NodeId, Request, Response, TypeConfig};
use crate::coordinator::{Coordinator, Hop};
use crate::error::ApiError;
use crate::peers::HOP_HEADER;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use std::sync::Arc;

type RaftResult<T, E = openraft::error::Infallible> = Json<Result<T, RaftError<NodeId, E>>>;

fn coordinator(state: &AppState) -> Result<Arc<Coordinator>, ApiError> {
    state.coordinator.get().cloned().ok_or_else(|| ApiError::Unavailable("the coordinator is starting".into()))
}

pub async fn append(
    State(state): State<AppState>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Result<RaftResult<AppendEntriesResponse<NodeId>>, ApiError> {
    let c = coordinator(&state)?;
    Ok(Json(c.raft.append_entries(req).await))
}

pub async fn vote(
    State(state): State<AppState>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Result<RaftResult<VoteResponse<NodeId>>, ApiError> {
    let c = coordinator(&state)?;
    Ok(Json(c.raft.vote(req).await))
}

pub async fn snapshot(
    State(state): State<AppState>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, ApiError> {
    let c = coordinator(&state)?;
    Ok(Json(c.raft.install_snapshot(req).await))
}

/// A client write forwarded to this node: by a follower to its leader (applied here or
/// refused), or by a node that knows no leader (passed on to the leader this node knows, never
/// to other peers) — the hop header says which.
pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<Request>,
) -> Result<Json<Result<Response, String>>, ApiError> {
    let c = coordinator(&state)?;
    let hop = Hop::received(headers.get(HOP_HEADER).and_then(|v| v.to_str().ok()));
    // The refusal crosses to the other node as its message (the wire keeps it a string).
    Ok(Json(c.write_via(req, hop).await.map_err(|e| e.to_string())))
}
