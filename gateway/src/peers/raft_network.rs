//! Raft RPCs between nodes: JSON over the nodes' own HTTP servers
//! (`POST /v1/internal/raft/{append,vote,snapshot}`, with the admin token), so the coordinator
//! needs no port or protocol of its own.
//!
//! A peer that is down is said once, at WARN, and again at most every [`WARN_EVERY`] while it
//! stays down (openraft's own per-attempt replication errors are silenced by the default log
//! filter: a peer down for a minute used to log thousands of ERROR lines). A peer that answers
//! with an error body (a node still starting answers 503) is unreachable for the moment, not a
//! protocol failure.

use lightkeeper_api::error::ErrorResponse;
use lightkeeper_coordinator::types::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// How often a peer that stays unreachable is reported again.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    token: String,
    /// Peers found unreachable → when that was last reported.
    down: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Network {
    pub fn new(client: reqwest::Client, token: Option<String>) -> Network {
        Network { client, token: token.unwrap_or_default(), down: Arc::default() }
    }
}

pub struct Connection {
    client: reqwest::Client,
    token: String,
    target: NodeId,
    url: String,
    down: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            client: self.client.clone(),
            token: self.token.clone(),
            target,
            url: node.addr.clone(),
            down: self.down.clone(),
        }
    }
}

impl Connection {
    /// Reports the peer unreachable: once, then at most every [`WARN_EVERY`].
    fn unreachable(&self, why: &str) {
        let mut down = self.down.lock();
        let due = down.get(&self.target).is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            let again = down.contains_key(&self.target);
            down.insert(self.target, Instant::now());
            if again {
                tracing::warn!(peer = %self.url, reason = why, "coordinator peer still unreachable");
            } else {
                tracing::warn!(peer = %self.url, reason = why, "coordinator peer unreachable; retrying every heartbeat");
            }
        }
    }

    fn reachable(&self) {
        if self.down.lock().remove(&self.target).is_some() {
            tracing::info!(peer = %self.url, "coordinator peer reachable again");
        }
    }

    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let resp = self
            .client
            .post(format!("{}/v1/internal/raft/{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    self.unreachable(&e.to_string());
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            // An error body, not a Raft answer: the peer is starting (503), or refuses the token.
            let body = resp.text().await.unwrap_or_default();
            let why = match serde_json::from_str::<ErrorResponse>(&body) {
                Ok(r) => format!("{status} {}: {}", r.error.code, r.error.message),
                Err(_) => format!("{status}"),
            };
            self.unreachable(&why);
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why))));
        }
        self.reachable();
        let result: Result<Resp, RaftError<NodeId, E>> =
            resp.json().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    /// How long replication to an unreachable member pauses (openraft's default: 500 ms). A
    /// restarting node is unreachable until it serves; with the default it then heard no
    /// heartbeat for up to half a second, started an election, and took the leadership away just
    /// when a failover might need it. Retrying every heartbeat costs one refused connection.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(
            lightkeeper_coordinator::ELECTION.0 / 3,
        )))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
