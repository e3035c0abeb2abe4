//! The coordinator: an openraft group embedded in every node.
//!
//! It replicates a small state machine — the nodes with their addresses and liveness, and the
//! table partition → master, standbys, epoch — through Raft, with its log, vote and state persisted in
//! `data_dir/raft` (`store.rs`) and its RPCs carried by the nodes' own HTTP servers
//! (`network.rs`). One node alone is a valid cluster (the embedded default initializes itself).
//! In a configured cluster the first peer by id initializes the group with up to five voters;
//! the leader adds the other peers as learners.
//!
//! What it does: membership, leader election and failover of the coordinator itself, node
//! registration, a partition table that mirrors the changelog (each node records the
//! partitions it masters, by epoch), and failure detection, automatic failover and rebalancing
//! (`failover.rs`): every member watches every node; the leader, when a partition's master stops
//! answering, promotes its most caught-up standby by the slice-2 protocol, and hands masters back
//! to their preferred replicas. The changelog's epoch markers remain the authority over who may
//! write.

mod failover;
mod network;
pub mod store;
pub mod types;

use crate::config::Config;
use anyhow::Context;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use types::{ClusterState, NodeId, Raft, Request, Response};

/// Voters at most; further peers join as learners.
const MAX_VOTERS: usize = 5;
/// Election timeout range in ms (the heartbeat is a third of the minimum).
pub(crate) const ELECTION: (u64, u64) = (120, 200);

/// A node's Raft id, derived from its name alone (Kafka's murmur2 as unsigned, plus one), so adding
/// or removing a peer never renumbers the others: ids are persisted in the Raft membership.
pub fn raft_id(name: &str) -> NodeId {
    u64::from(lightkeeper_storage::partitioner::murmur2(name.as_bytes()) as u32) + 1
}

fn sorted(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names.collect();
    v.sort();
    v
}

pub struct Coordinator {
    pub raft: Raft,
    machine: store::StateMachine,
    pub id: NodeId,
    /// Node name → Raft id ([`raft_id`]).
    ids: BTreeMap<String, NodeId>,
    peers: BTreeMap<String, String>,
    /// The cluster section of the configuration: replica placement, promotion bound, rebalance.
    cluster: crate::config::Cluster,
    client: reqwest::Client,
    token: String,
}

/// What `/v1/cluster` shows of the coordinator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CoordinatorView {
    pub raft_id: NodeId,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub state: String,
    pub leader: Option<String>,
    pub term: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub last_applied: Option<u64>,
    #[schema(value_type = Object)]
    pub replicated: ClusterState,
}

impl Coordinator {
    /// Starts this node's Raft member; initializes the group if this node is the first peer and
    /// the group is new.
    pub async fn start(config: &Config) -> anyhow::Result<Arc<Coordinator>> {
        let single = config.cluster.is_single_node();
        let peers: BTreeMap<String, String> = if single {
            [(config.node_id.clone(), format!("http://{}", config.listen))].into()
        } else {
            config.cluster.peers.clone()
        };
        let ids: BTreeMap<String, NodeId> = peers.keys().map(|n| (n.clone(), raft_id(n))).collect();
        let distinct: BTreeSet<NodeId> = ids.values().copied().collect();
        anyhow::ensure!(
            distinct.len() == ids.len(),
            "configuration field `cluster.peers`: two node ids hash to the same coordinator id; rename one"
        );
        let id = ids[&config.node_id];
        let first = peers.keys().next().cloned().unwrap_or_default();
        let dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let (db, machine) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let db = store::open(&dir).context("opening the raft store")?;
            let machine = store::StateMachine::open(db.clone()).map_err(|e| anyhow::anyhow!("raft state: {e}"))?;
            Ok((db, machine))
        })
        .await??;
        let raft_config = openraft::Config {
            cluster_name: "lightkeeper".into(),
            // Failover of the coordinator itself sits inside the failover of a partition whose
            // master dies with the Raft leader: with 400–800 ms elections it took ~1.4 s, with
            // 250–500 ms ~1.0 s. A follower grants no vote until `election_timeout_max` after
            // the last heartbeat (openraft's leader lease), so that bounds an election from below.
            heartbeat_interval: ELECTION.0 / 3,
            election_timeout_min: ELECTION.0,
            election_timeout_max: ELECTION.1,
            ..Default::default()
        }
        .validate()?;
        let client = reqwest::Client::builder().connect_timeout(Duration::from_millis(300)).build()?;
        let token = config.cluster.admin_token.clone().unwrap_or_default();
        let network = network::Network { client: client.clone(), token: token.clone() };
        let raft = Raft::new(id, Arc::new(raft_config), network, store::LogStore::new(db), machine.clone()).await?;
        let cluster = config.cluster.clone();
        let c = Arc::new(Coordinator { raft, machine, id, ids, peers, cluster, client, token });
        if config.node_id == first && !c.raft.is_initialized().await? {
            let voters: BTreeMap<NodeId, BasicNode> =
                c.peers.iter().take(MAX_VOTERS).map(|(n, url)| (c.ids[n], BasicNode { addr: url.clone() })).collect();
            c.raft.initialize(voters).await.context("initializing the coordinator group")?;
            tracing::info!(voters = MAX_VOTERS.min(c.peers.len()), "coordinator group initialized");
        }
        Ok(c)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    fn name_of(&self, id: NodeId) -> String {
        self.ids.iter().find(|(_, i)| **i == id).map_or_else(|| format!("raft-{id}"), |(n, _)| n.clone())
    }

    /// The replicated state as applied on this node.
    pub fn state(&self) -> ClusterState {
        self.machine.state()
    }

    /// The master of `partition` as the replicated table names it.
    pub fn master_of(&self, partition: u32) -> Option<String> {
        self.machine.master_of(partition)
    }

    pub fn view(&self) -> CoordinatorView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        CoordinatorView {
            raft_id: self.id,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            leader: m.current_leader.map(|l| self.name_of(l)),
            term: m.current_term,
            voters: sorted(membership.voter_ids().map(|i| self.name_of(i))),
            learners: sorted(membership.learner_ids().map(|i| self.name_of(i))),
            last_applied: m.last_applied.map(|l| l.index),
            replicated: self.state(),
        }
    }

    /// Proposes `req`: on the leader directly, else forwarded to the leader over HTTP.
    pub async fn write(&self, req: Request) -> Result<Response, String> {
        match self.raft.client_write(req.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let node = f.leader_node.ok_or("no coordinator leader yet")?;
                let resp = self
                    .client
                    .post(format!("{}/v1/internal/raft/write", node.addr))
                    .bearer_auth(&self.token)
                    .timeout(Duration::from_secs(5))
                    .json(&req)
                    .send()
                    .await
                    .map_err(|e| format!("forwarding to the coordinator leader: {e}"))?;
                let r: Result<Response, String> = resp.json().await.map_err(|e| e.to_string())?;
                r
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Leader duty: every configured peer is a member (learners beyond the voters).
    async fn add_missing_members(&self) {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return;
        }
        let members: BTreeSet<NodeId> = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config.membership().nodes().map(|(i, _)| *i).collect()
        };
        for (name, url) in &self.peers {
            let id = self.ids[name];
            if !members.contains(&id) {
                match self.raft.add_learner(id, BasicNode { addr: url.clone() }, false).await {
                    Ok(_) => tracing::info!(node = %name, "added to the coordinator group as a learner"),
                    Err(e) => tracing::warn!(node = %name, error = %e, "could not add a learner"),
                }
            }
        }
    }

    /// Background duties until `stop`: register this node, record the partitions it masters,
    /// and (on the leader) add missing members.
    pub async fn run(
        self: Arc<Self>,
        name: String,
        url: String,
        mastered: impl Fn() -> Vec<(u32, u64)> + Send + 'static,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut registered = false;
        let watcher = tokio::spawn(failover::watch(self.clone(), stop.clone()));
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    watcher.abort();
                    return;
                }
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            self.add_missing_members().await;
            let state = self.state();
            if !registered || state.nodes.get(&name).is_none_or(|n| n.url != url) {
                registered = self.write(Request::RegisterNode { name: name.clone(), url: url.clone() }).await.is_ok();
            }
            for (partition, epoch) in mastered() {
                let known = state.partitions.get(&partition);
                if known.is_none_or(|k| k.epoch < epoch) {
                    let standbys = self.cluster.replicas(partition).into_iter().filter(|r| *r != name).collect();
                    let req = Request::SetPartition { partition, master: name.clone(), epoch, standbys };
                    if let Err(e) = self.write(req).await {
                        tracing::debug!(partition, error = %e, "could not record the partition's master yet");
                    }
                }
            }
        }
    }
}
