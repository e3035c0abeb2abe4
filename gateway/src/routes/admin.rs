//! Operator endpoints: promote a standby (a graceful handover when its master answers, a
//! failover when it does not) and drain a master. Both need `Authorization: Bearer <token>`
//! with `cluster.admin_token`.
//!
//! `POST /v1/admin/partitions/{p}/promote`, on the node whose standby should take over:
//! 1. ask the current master (the node named by the newest epoch marker this replica has
//!    applied) to drain: it finishes its in-flight batch, becomes a standby and answers with its
//!    last acknowledged changelog offset;
//! 2. promote the local replica, which refuses to start below that offset, reads the changelog
//!    to its true end, starts a new epoch and resumes the input from the recorded offset.
//!
//! If the master cannot be reached (it crashed, or is partitioned away), step 2 runs without an
//! offset to check: the new epoch fences whatever the old master may still write.
//!
//! `POST /v1/admin/nodes/{id}/drain` (any node; it is passed to node `id`): hands every master
//! of that node to its most caught-up standby by the handover above, and marks the node
//! drained, so `/readyz` answers 503 and load balancers stop sending to it. The node can then
//! be stopped, upgraded and restarted; it rejoins as a standby of every partition it hosts.
//!
//! `POST /v1/admin/nodes/{id}/decommission` (any node; `?cancel=true` undoes it): marks node
//! `id` as leaving in the coordinator's table. Placement then moves its replicas to the other
//! nodes — each new replica caught up before the old one stops, mastership handed off
//! gracefully — and once it hosts nothing the leader removes it from the Raft group. Watch
//! `/v1/cluster`: the node is gone from `coordinator.voters`/`learners` and hosts nothing; it
//! can then be stopped for good.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use lightkeeper_partition::worker::{Command, Drained, Promoted, ReplicaHandle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use utoipa::ToSchema;

/// How long a promotion waits for the old master to drain before treating it as dead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command waits for the replica thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = state.cluster.admin_token.as_deref() else {
        return Err(ApiError::Conflict {
            code: "admin_disabled",
            message: "admin calls are disabled: no cluster.admin_token is configured".into(),
        });
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::Unauthorized("admin calls need an `Authorization: Bearer <token>` header".into())),
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("the admin token is wrong".into())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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

async fn command<T>(
    r: &ReplicaHandle,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
) -> Result<Result<T, String>, ApiError> {
    let (tx, rx) = oneshot::channel();
    r.send(make(tx)).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(_)) => Err(ApiError::Unavailable("the replica stopped".into())),
        Err(_) => Err(ApiError::Unavailable(format!("the replica did not answer within {COMMAND_TIMEOUT:?}"))),
    }
}

#[derive(Serialize, ToSchema)]
pub struct PromoteReport {
    #[schema(value_type = Object)]
    pub promoted: Promoted,
    /// The old master's drain answer, when it could be reached.
    #[schema(value_type = Option<Object>)]
    pub drained: Option<Drained>,
    /// Why the old master was not drained (it is then fenced by the new epoch instead).
    pub drain_error: Option<String>,
    /// Time of the drain call, in ms.
    pub drain_ms: f64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteParams {
    /// The caller knows the old master is down (the coordinator's failover): do not wait for a
    /// drain that cannot answer — a paused process would hold it for the whole drain timeout;
    /// the new epoch fences the old master anyway.
    #[serde(default)]
    pub skip_drain: bool,
}

#[utoipa::path(post, path = "/v1/admin/partitions/{partition}/promote",
    params(("partition" = u32, Path), ("skip_drain" = Option<bool>, Query, description = "do not try to drain the old master (known to be down)")),
    responses((status = 200, body = PromoteReport), (status = 401), (status = 404, description = "partition not hosted here"),
        (status = 409, description = "the promotion was refused; the message says why")))]
pub async fn promote(
    State(state): State<AppState>,
    partition: Result<Path<u32>, PathRejection>,
    params: Result<Query<PromoteParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<PromoteReport>, ApiError> {
    authorize(&state, &headers)?;
    let Path(partition) = partition?;
    let Query(params) = params?;
    let r = replica(&state, partition)?;
    let started = Instant::now();
    let master = r.status.master();
    let (mut drained, mut drain_error) = (None, None);
    let drain_started = Instant::now();
    if params.skip_drain {
        drain_error = Some("skipped: the caller reported the old master down".to_owned());
    } else if !r.status.is_serving_master() && !master.is_empty() && master != state.node_id {
        match drain_remote(&state, &master, partition).await {
            Ok(d) => drained = Some(d),
            Err(e) => {
                tracing::warn!(partition, master = %master, error = %e, "old master not drained; promoting anyway (the new epoch fences it)");
                drain_error = Some(e);
            }
        }
    }
    let drain_ms = drain_started.elapsed().as_secs_f64() * 1e3;
    let through = drained.as_ref().map(|d| d.changelog_next);
    let promoted = command(&r, |reply| Command::Promote { through, reply }).await?.map_err(|e| {
        let after_drain = if drained.is_some() {
            "; the old master was drained and is a standby now: promote a replica again"
        } else {
            ""
        };
        ApiError::Conflict { code: "promotion_failed", message: format!("{e}{after_drain}") }
    })?;
    Ok(Json(PromoteReport {
        promoted,
        drained,
        drain_error,
        drain_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}

async fn drain_remote(state: &AppState, master: &str, partition: u32) -> Result<Drained, String> {
    let url = state.peer_url(master).ok_or_else(|| format!("master {master:?} is not a known node"))?;
    let token = state.cluster.admin_token.as_deref().unwrap_or_default();
    let resp = state
        .peer_client
        .post(format!("{url}/v1/admin/partitions/{partition}/drain"))
        .bearer_auth(token)
        .timeout(DRAIN_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("drain call to {master} at {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("{master} refused the drain ({status}): {body}"));
    }
    resp.json::<Drained>().await.map_err(|e| format!("drain answer of {master}: {e}"))
}

#[utoipa::path(post, path = "/v1/admin/partitions/{partition}/drain", params(("partition" = u32, Path)),
    responses((status = 200, description = "now a standby; the body has the last acknowledged changelog offset"),
        (status = 401), (status = 404), (status = 409, description = "not the master")))]
pub async fn drain(
    State(state): State<AppState>,
    partition: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Drained>, ApiError> {
    authorize(&state, &headers)?;
    let Path(partition) = partition?;
    let r = replica(&state, partition)?;
    let drained = command(&r, |reply| Command::Drain { reply })
        .await?
        .map_err(|message| ApiError::Conflict { code: "not_master", message })?;
    tracing::info!(partition, changelog_next = drained.changelog_next, "drained for a handover");
    Ok(Json(drained))
}

/// One partition's handover in a node drain.
#[derive(Serialize, ToSchema)]
pub struct NodeHandover {
    pub partition: u32,
    /// The standby chosen (least changelog lag among the reachable ready standbys).
    pub to: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct NodeDrainReport {
    pub node: String,
    /// True when no partition is mastered on the node any more.
    pub complete: bool,
    pub handovers: Vec<NodeHandover>,
    pub elapsed_ms: u64,
}

#[utoipa::path(post, path = "/v1/admin/nodes/{id}/drain", params(("id" = String, Path)),
    responses((status = 200, body = NodeDrainReport), (status = 401), (status = 404, description = "no such node"),
        (status = 409, description = "some masters could not be handed over; the report says which")))]
pub async fn drain_node(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    authorize(&state, &headers)?;
    let Path(id) = id?;
    if id != state.node_id {
        let url = state.peer_url(&id).ok_or_else(|| ApiError::NotFound {
            code: "no_such_node",
            message: format!("node {id:?} is not a known node"),
        })?;
        let resp = state
            .peer_client
            .post(format!("{url}/v1/admin/nodes/{id}/drain"))
            .bearer_auth(state.cluster.admin_token.as_deref().unwrap_or_default())
            .timeout(COMMAND_TIMEOUT)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("node {id} at {url}: {e}")))?;
        let status =
            axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        let body: Value = resp.json().await.map_err(|e| ApiError::Unavailable(format!("node {id}: {e}")))?;
        return Ok((status, Json(body)).into_response());
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
        let t = Instant::now();
        let (to, result) = match choose_standby(&state, p).await {
            Ok(to) => {
                let r = promote_remote(&state, &to, p).await;
                (Some(to), r)
            }
            Err(e) => (None, Err(e)),
        };
        if let Err(e) = &result {
            tracing::warn!(partition = p, error = %e, "node drain: partition not handed over");
        }
        handovers.push(NodeHandover {
            partition: p,
            to,
            ok: result.is_ok(),
            error: result.err(),
            elapsed_ms: t.elapsed().as_millis() as u64,
        });
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecommissionParams {
    /// Undo a decommission: the node becomes a member again and gets replicas back.
    #[serde(default)]
    pub cancel: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DecommissionReport {
    pub node: String,
    pub leaving: bool,
    /// Partitions the coordinator's table still places on the node (placement empties this).
    pub hosts: Vec<u32>,
    /// The nodes that keep (or get) replicas.
    pub members: Vec<String>,
}

#[utoipa::path(post, path = "/v1/admin/nodes/{id}/decommission",
    params(("id" = String, Path), ("cancel" = Option<bool>, Query, description = "undo the decommission")),
    responses((status = 202, body = DecommissionReport, description = "recorded; replicas move off the node in the background"),
        (status = 401), (status = 404, description = "no such node registered"),
        (status = 409, description = "too few nodes would remain for the replication factor"),
        (status = 503, description = "the coordinator has no leader")))]
pub async fn decommission(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DecommissionParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<(axum::http::StatusCode, Json<DecommissionReport>), ApiError> {
    authorize(&state, &headers)?;
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

/// The reachable, ready standby of `partition` with the least changelog lag (within
/// `cluster.max_promotion_lag`; the promotion then catches up the rest before taking input).
async fn choose_standby(state: &AppState, partition: u32) -> Result<String, String> {
    let mut best: Option<(u64, String)> = None;
    let mut seen = Vec::new();
    for node in state.placement(partition) {
        if node == state.node_id {
            continue;
        }
        let Some(url) = state.peer_url(&node) else { continue };
        let view: Result<Value, String> = async {
            let r = state
                .peer_client
                .get(format!("{url}/v1/cluster"))
                .timeout(DRAIN_TIMEOUT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            r.json::<Value>().await.map_err(|e| e.to_string())
        }
        .await;
        let entry = view.as_ref().ok().and_then(|v| {
            v["partitions"].as_array()?.iter().find(|e| e["partition"].as_u64() == Some(u64::from(partition))).cloned()
        });
        match entry {
            Some(e) if e["role"] == "standby" && e["ready"] == true => {
                let lag = e["changelog_lag"].as_u64().unwrap_or(u64::MAX);
                seen.push(format!("{node}: lag {lag}"));
                if lag <= state.cluster.max_promotion_lag && best.as_ref().is_none_or(|(l, _)| lag < *l) {
                    best = Some((lag, node));
                }
            }
            Some(e) => seen.push(format!("{node}: {} (ready {})", e["role"], e["ready"])),
            None => seen.push(format!("{node}: unreachable ({})", view.err().unwrap_or_default())),
        }
    }
    best.map(|(_, n)| n).ok_or_else(|| format!("no caught-up standby of partition {partition}: {}", seen.join("; ")))
}

async fn promote_remote(state: &AppState, node: &str, partition: u32) -> Result<(), String> {
    let url = state.peer_url(node).ok_or_else(|| format!("{node} is not a known node"))?;
    let resp = state
        .peer_client
        .post(format!("{url}/v1/admin/partitions/{partition}/promote"))
        .bearer_auth(state.cluster.admin_token.as_deref().unwrap_or_default())
        .timeout(COMMAND_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("promote on {node}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let status = resp.status();
        Err(format!("promote on {node}: {status} {}", resp.text().await.unwrap_or_default()))
    }
}
