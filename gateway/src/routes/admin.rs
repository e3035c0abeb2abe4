//! Operator endpoints: promote a standby (a graceful handover when its master answers, a
//! failover when it does not) and drain a master. Both need `Authorization: Bearer <token>`
//! with `cluster.admin_token`.
//!
//! `POST /v1/admin/partitions/{p}/promote`, on the node whose standby should take over: the
//! handover protocol (`coordinator::handover::take_over`: drain the old master, then promote
//! through its drained offset; a dead master is fenced by the new epoch instead). The
//! coordinator's failover and a node drain reach the same route.
//!
//! `POST /v1/admin/nodes/{id}/drain` (any node; it is passed to node `id`): hands every master
//! of that node to its most caught-up standby (`handover::hand_off`), and marks the node
//! drained, so `/readyz` answers 503 and load balancers stop sending to it. The node can then
//! be stopped, upgraded and restarted; it rejoins as a standby of every partition it hosts.
//!
//! `POST /v1/admin/nodes/{id}/decommission` (any node; `?cancel=true` undoes it): marks node
//! `id` as leaving in the coordinator's table. Placement then moves its replicas to the other
//! nodes — each new replica caught up before the old one stops, mastership handed off
//! gracefully — and once it hosts nothing the leader removes it from the Raft group. Watch
//! `/v1/cluster`: the node is gone from `coordinator.voters`/`learners` and hosts nothing; it
//! can then be stopped for good.

use crate::coordinator::handover::{self, LocalReplica, PromoteError, TakeOverError};
use crate::error::ApiError;
use crate::peers::PROMOTE_TIMEOUT;
use crate::state::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use futures::future::BoxFuture;
use lightkeeper_api::admin::{
    DecommissionParams, DecommissionReport, Drained, NodeDrainReport, PromoteParams, PromoteReport, Promoted,
};
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_partition::worker::{Command, ReplicaHandle};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The 409 of a node drain, for the OpenAPI document only: the drain's report when some masters
/// could not be handed over, or an error.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // never built: `drain_node` answers with one or the other
pub enum NodeDrainConflict {
    Report(NodeDrainReport),
    Error(ErrorResponse),
}

/// How long a command waits for the replica thread.
const COMMAND_TIMEOUT: Duration = PROMOTE_TIMEOUT;

fn replica(state: &AppState, partition: u32) -> Result<ReplicaHandle, ApiError> {
    if partition >= state.partition_count {
        return Err(ApiError::NotFound {
            code: "no_such_partition",
            message: format!("partition {partition} does not exist ({} partitions)", state.partition_count),
        });
    }
    state.replicas.get(partition).ok_or_else(|| ApiError::NotFound {
        code: "partition_not_hosted",
        message: format!(
            "node {} hosts no replica of partition {partition}; its replicas are {:?}",
            state.node_id,
            state.placement(partition)
        ),
    })
}

/// Sends a command to the replica's thread and waits for its answer (bounded). The outer error
/// says the replica could not be asked; the inner one is the replica's own refusal.
async fn command<T, E>(
    r: &ReplicaHandle,
    make: impl FnOnce(oneshot::Sender<Result<T, E>>) -> Command,
) -> Result<Result<T, E>, String> {
    let (tx, rx) = oneshot::channel();
    r.send(make(tx)).map_err(|e| e.to_string())?;
    match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(_)) => Err("the replica stopped".into()),
        Err(_) => Err(format!("the replica did not answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// A local replica as the handover protocol sees it.
struct Local<'a>(&'a ReplicaHandle);

impl LocalReplica for Local<'_> {
    fn master(&self) -> String {
        self.0.status.master()
    }

    fn is_serving_master(&self) -> bool {
        self.0.status.is_serving_master()
    }

    fn promote(&self, through: Option<u64>) -> BoxFuture<'_, Result<Promoted, PromoteError>> {
        Box::pin(async move {
            match command(self.0, |reply| Command::Promote { through, reply }).await {
                Ok(Ok(promoted)) => Ok(promoted),
                Ok(Err(refused)) => Err(PromoteError::Refused(refused.to_string())),
                Err(unavailable) => Err(PromoteError::Unavailable(unavailable)),
            }
        })
    }
}

#[utoipa::path(post, path = "/v1/admin/partitions/{partition}/promote", tag = "admin", security(("bearer" = [])),
    params(("partition" = u32, Path, description = "the partition whose standby on this node should become master"), PromoteParams),
    responses(
        (status = 200, description = "promoted; the old master was drained first when it answered", body = PromoteReport),
        (status = 400, description = "`invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no `Authorization: Bearer` header, or the token is wrong", body = ErrorResponse),
        (status = 404, description = "`no_such_partition`, or `partition_not_hosted` here", body = ErrorResponse),
        (status = 409, description = "`promotion_failed`: the replica refused, the message says why; or `admin_disabled`: no cluster.admin_token is configured", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the replica could not be asked; retry", body = ErrorResponse)
    ))]
pub async fn promote(
    State(state): State<AppState>,
    partition: Result<Path<u32>, PathRejection>,
    params: Result<Query<PromoteParams>, QueryRejection>,
) -> Result<Json<PromoteReport>, ApiError> {
    let Path(partition) = partition?;
    let Query(params) = params?;
    let r = replica(&state, partition)?;
    let url_of = |node: &str| state.peer_url(node);
    let report =
        handover::take_over(&Local(&r), &state.node_id, state.peers.as_ref(), url_of, partition, params.skip_drain)
            .await
            .map_err(|e| match e {
                TakeOverError::Refused { message } => ApiError::Conflict { code: "promotion_failed", message },
                TakeOverError::Unavailable(m) => ApiError::Unavailable(m),
            })?;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/v1/admin/partitions/{partition}/drain", tag = "admin", security(("bearer" = [])),
    params(("partition" = u32, Path, description = "a partition mastered on this node")),
    responses(
        (status = 200, description = "now a standby; the body has the last acknowledged changelog offset", body = Drained),
        (status = 400, description = "`invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no `Authorization: Bearer` header, or the token is wrong", body = ErrorResponse),
        (status = 404, description = "`no_such_partition`, or `partition_not_hosted` here", body = ErrorResponse),
        (status = 409, description = "`not_master`: the replica is not the master; or `admin_disabled`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the replica could not be asked; retry", body = ErrorResponse)
    ))]
pub async fn drain(
    State(state): State<AppState>,
    partition: Result<Path<u32>, PathRejection>,
) -> Result<Json<Drained>, ApiError> {
    let Path(partition) = partition?;
    let r = replica(&state, partition)?;
    let drained = command(&r, |reply| Command::Drain { reply })
        .await
        .map_err(ApiError::Unavailable)?
        .map_err(|e| ApiError::Conflict { code: "not_master", message: e.to_string() })?;
    tracing::info!(partition, changelog_next = drained.changelog_next, "drained for a handover");
    Ok(Json(drained))
}

#[utoipa::path(post, path = "/v1/admin/nodes/{id}/drain", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the node to drain; another node's drain is passed to it and its answer passed back")),
    responses(
        (status = 200, description = "every master of the node was handed over; /readyz now answers 503", body = NodeDrainReport),
        (status = 400, description = "`invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no `Authorization: Bearer` header, or the token is wrong", body = ErrorResponse),
        (status = 404, description = "`no_such_node`", body = ErrorResponse),
        (status = 409, description = "the report, when some masters could not be handed over (it says which); or an error: `single_node`, `admin_disabled`", body = NodeDrainConflict),
        (status = 503, description = "`unavailable`: the node could not be reached", body = ErrorResponse)
    ))]
pub async fn drain_node(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Path(id) = id?;
    if id != state.node_id {
        let url = state.peer_url(&id).ok_or_else(|| ApiError::NotFound {
            code: "no_such_node",
            message: format!("node {id:?} is not a known node"),
        })?;
        let resp = state
            .peer_client
            .post(format!("{url}/v1/admin/nodes/{id}/drain"))
            .bearer_auth(state.access.node_token())
            .timeout(COMMAND_TIMEOUT)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("node {id} at {url}: {e}")))?;
        // Passed on as the node answered: its report (200 or 409), or its error.
        let status =
            axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        let text = resp.text().await.map_err(|e| ApiError::Unavailable(format!("node {id}: {e}")))?;
        let passed = match serde_json::from_str::<NodeDrainReport>(&text) {
            Ok(report) => (status, Json(report)).into_response(),
            Err(_) => match serde_json::from_str::<ErrorResponse>(&text) {
                Ok(error) => (status, Json(error)).into_response(),
                Err(e) => return Err(ApiError::Unavailable(format!("node {id} answered something else: {e}"))),
            },
        };
        return Ok(passed);
    }
    if state.cluster.is_single_node() {
        return Err(ApiError::Conflict {
            code: "single_node",
            message: "a single node has no standbys to hand its partitions to".into(),
        });
    }
    let started = Instant::now();
    state.draining.store(true, Ordering::Release);
    let mut handovers = Vec::new();
    for (&p, r) in state.replicas.snapshot().iter() {
        if !r.status.is_serving_master() {
            continue;
        }
        let hosts: Vec<(String, String)> =
            state.placement(p).into_iter().filter_map(|n| Some((n.clone(), state.peer_url(&n)?))).collect();
        let max_lag = state.cluster.max_promotion_lag;
        handovers.push(handover::hand_off(state.peers.as_ref(), &state.node_id, &hosts, p, max_lag).await);
    }
    let complete = state.replicas.snapshot().values().all(|r| !r.status.is_serving_master());
    tracing::info!(complete, handed_over = handovers.len(), "node drained");
    let report = NodeDrainReport {
        node: state.node_id.clone(),
        complete,
        handovers,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    let status = if complete { axum::http::StatusCode::OK } else { axum::http::StatusCode::CONFLICT };
    Ok((status, Json(report)).into_response())
}

#[utoipa::path(post, path = "/v1/admin/nodes/{id}/decommission", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the node to decommission"), DecommissionParams),
    responses(
        (status = 202, description = "recorded; replicas move off the node in the background", body = DecommissionReport),
        (status = 400, description = "`invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no `Authorization: Bearer` header, or the token is wrong", body = ErrorResponse),
        (status = 404, description = "`no_such_node`: neither registered nor a configured peer", body = ErrorResponse),
        (status = 409, description = "`too_few_nodes` would remain for the replication factor, the node is `pinned` by cluster.assignment, `single_node`, or `admin_disabled`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the coordinator is starting or has no leader; retry", body = ErrorResponse)
    ))]
pub async fn decommission(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DecommissionParams>, QueryRejection>,
) -> Result<(axum::http::StatusCode, Json<DecommissionReport>), ApiError> {
    let Path(id) = id?;
    let Query(params) = params?;
    if state.cluster.is_single_node() {
        return Err(ApiError::Conflict {
            code: "single_node",
            message: "a single node cannot hand its partitions to anyone".into(),
        });
    }
    let c = state.coordinator.get().ok_or_else(|| ApiError::Unavailable("the coordinator is starting".into()))?;
    let table = c.state();
    // A configured peer that never started can be decommissioned too (it is recorded as down).
    let unregistered_peer = if table.nodes.contains_key(&id) { None } else { state.cluster.peers.get(&id).cloned() };
    if !table.nodes.contains_key(&id) && unregistered_peer.is_none() {
        return Err(ApiError::NotFound {
            code: "no_such_node",
            message: format!("node {id:?} is neither registered with the coordinator nor a configured peer"),
        });
    }
    let mut members = c.members(&table);
    if params.cancel {
        members.insert(id.clone());
    } else {
        members.remove(&id);
        if let Some(a) = state.cluster.assignment.iter().find(|a| a.replicas.contains(&id)) {
            return Err(ApiError::Conflict {
                code: "pinned",
                message: format!(
                    "{id} hosts partition {} by cluster.assignment, which placement never moves; change the assignment first",
                    a.partition
                ),
            });
        }
        // Replicas move only to live nodes.
        let live = members.iter().filter(|n| table.nodes.get(*n).is_some_and(|i| i.alive)).count();
        let needed = state.cluster.replication_factor.unwrap_or(1);
        if live < needed {
            return Err(ApiError::Conflict {
                code: "too_few_nodes",
                message: format!(
                    "decommissioning {id} would leave {live} live node(s) for cluster.replication_factor {needed}"
                ),
            });
        }
    }
    let req = crate::coordinator::types::Request::SetLeaving {
        name: id.clone(),
        leaving: !params.cancel,
        url: unregistered_peer,
    };
    c.write(req).await.map_err(|e| ApiError::Unavailable(format!("recording the decommission: {e}")))?;
    tracing::info!(node = %id, leaving = !params.cancel, "decommission recorded");
    let hosts = c.read(|s| s.partitions.iter().filter(|(_, p)| p.replicas.contains(&id)).map(|(p, _)| *p).collect());
    let report =
        DecommissionReport { node: id, leaving: !params.cancel, hosts, members: members.into_iter().collect() };
    Ok((axum::http::StatusCode::ACCEPTED, Json(report)))
}
