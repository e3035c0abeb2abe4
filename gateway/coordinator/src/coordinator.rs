//! The coordinator: an openraft group embedded in every node.
//!
//! It replicates a small state machine — the nodes with their addresses, liveness and whether
//! they are leaving, and the table partition → replicas (preferred master first), master, epoch
//! — through Raft, with its log, vote and state persisted in `data_dir/raft` (`store.rs`) and its
//! RPCs carried by the nodes' own HTTP servers (`network.rs`). One node alone is a valid cluster
//! (the embedded default initializes itself).
//!
//! **Forming and joining.** Every configured peer that finds its Raft store empty initializes
//! the group with the same voters — the first five peers by id — which openraft allows (the vote
//! decides; only *different* initial memberships could split the group). So a new cluster forms
//! as soon as a majority of those voters is up, whichever they are. A node not among the peers
//! never initializes: it registers through the peers, and the leader adds it as a learner and
//! promotes learners to voters while there are fewer than the odd number of voters the cluster
//! supports (at most five). A decommissioned (leaving) node is removed from the group once it
//! hosts no replica: a voter is replaced by a caught-up learner in one membership change.
//!
//! **What it drives**: replica placement (`placement.rs`: seeded from configuration, rebalanced
//! as nodes join and leave), failure detection, automatic failover and the return of masters to
//! their preferred replicas (`failover.rs`). Each node hosts exactly the partitions the table
//! places on it (`crate::replicas`). The changelog's epoch markers remain the authority over
//! who may write; the table's `master` mirrors them (each master records its epoch).

mod failover;
mod network;
pub mod placement;
pub mod store;
pub mod types;

use crate::config::Config;
use anyhow::Context;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use types::{ClusterState, NodeId, Raft, Request, Response};

/// How far a forwarded coordinator write has come (the `x-lightkeeper-raft-hop` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Proposed on this node.
    Origin,
    /// Handed to a peer by a node that knew no leader: the peer may pass it to its leader.
    ViaPeer,
    /// Sent to the leader: applied there or refused.
    ToLeader,
}

pub const HOP_HEADER: &str = "x-lightkeeper-raft-hop";

impl Hop {
    pub fn as_str(self) -> &'static str {
        match self {
            Hop::Origin => "origin",
            Hop::ViaPeer => "via-peer",
            Hop::ToLeader => "to-leader",
        }
    }

    /// The hop of a write received over HTTP: one without the header is treated as sent to
    /// the leader, so it is never passed on (a received write is never `Origin`).
    pub fn received(header: Option<&str>) -> Hop {
        match header {
            Some("via-peer") => Hop::ViaPeer,
            _ => Hop::ToLeader,
        }
    }
}

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
    /// This node's name.
    name: String,
    /// The configured peers (node name → URL): the founding members, and the seeds a joining
    /// node registers through.
    peers: BTreeMap<String, String>,
    /// The cluster section of the configuration: replica placement, promotion bound, rebalance.
    cluster: crate::config::Cluster,
    /// Partitions of the input topic.
    partitions: u32,
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
    /// Starts this node's Raft member; a configured peer initializes the group if its store is
    /// empty (see the module doc).
    pub async fn start(config: &Config, partitions: u32) -> anyhow::Result<Arc<Coordinator>> {
        let single = config.cluster.is_single_node();
        let peers: BTreeMap<String, String> = if single {
            [(config.node_id.clone(), format!("http://{}", config.listen))].into()
        } else {
            config.cluster.peers.clone()
        };
        let mut names: BTreeSet<&String> = peers.keys().collect();
        names.insert(&config.node_id);
        let distinct: BTreeSet<NodeId> = names.iter().map(|n| raft_id(n)).collect();
        anyhow::ensure!(
            distinct.len() == names.len(),
            "configuration field `cluster.peers`: two node ids hash to the same coordinator id; rename one"
        );
        let id = raft_id(&config.node_id);
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
        let c = Arc::new(Coordinator {
            raft,
            machine,
            id,
            name: config.node_id.clone(),
            peers,
            cluster: config.cluster.clone(),
            partitions,
            client,
            token,
        });
        // Only the initial voters initialize: openraft refuses a membership without the caller.
        let initial_voter = c.peers.keys().take(MAX_VOTERS).any(|n| *n == config.node_id);
        if initial_voter && !c.raft.is_initialized().await? && !c.group_exists().await {
            // Every founding peer proposes the same voters, so any majority of them forms the group.
            let voters: BTreeMap<NodeId, BasicNode> =
                c.peers.iter().take(MAX_VOTERS).map(|(n, url)| (raft_id(n), BasicNode { addr: url.clone() })).collect();
            match c.raft.initialize(voters).await {
                Ok(()) => tracing::info!(voters = MAX_VOTERS.min(c.peers.len()), "coordinator group initialized"),
                // Another peer's leader reached this node first: it is a member already.
                Err(RaftError::APIError(e)) => tracing::debug!(error = %e, "coordinator group already initialized"),
                Err(e) => return Err(e).context("initializing the coordinator group"),
            }
        }
        Ok(c)
    }

    /// Whether another configured peer already belongs to an initialized group. A founding
    /// peer whose store is empty then joins it instead of initializing: its store was wiped, or
    /// the peers list was edited after the cluster formed — initializing then could propose
    /// voters that differ from the group's. (Peers not up yet count as not initialized; at a
    /// first bring-up every peer proposes the same voters, which is safe.)
    async fn group_exists(&self) -> bool {
        let probes = self.peers.iter().filter(|(n, _)| **n != self.name).map(|(_, url)| {
            let call = self.client.get(format!("{url}/v1/cluster")).timeout(Duration::from_millis(500)).send();
            async move {
                let Ok(resp) = call.await else { return false };
                let view: serde_json::Value = resp.json().await.unwrap_or_default();
                view["coordinator"]["voters"].as_array().is_some_and(|v| !v.is_empty())
            }
        });
        let found = futures::future::join_all(probes).await.into_iter().any(|b| b);
        if found {
            tracing::info!("a coordinator group exists already: joining it rather than initializing one");
        }
        found
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    fn name_of(&self, id: NodeId) -> String {
        self.machine.read(|state| {
            std::iter::once(&self.name)
                .chain(self.peers.keys())
                .chain(state.nodes.keys())
                .find(|n| raft_id(n) == id)
                .map_or_else(|| format!("raft-{id}"), Clone::clone)
        })
    }

    /// The replicated state as applied on this node (a copy; see [`Coordinator::read`]).
    pub fn state(&self) -> ClusterState {
        self.machine.state()
    }

    /// Reads the replicated state in place, without copying it.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.machine.read(f)
    }

    /// Node `name`'s base URL: as registered, else as configured.
    pub fn url_of(&self, name: &str) -> Option<String> {
        self.machine.read(|s| s.nodes.get(name).map(|n| n.url.clone())).or_else(|| self.peers.get(name).cloned())
    }

    /// Every node to watch and route to: the registered ones (except those that have left:
    /// leaving and hosting nothing) and the configured peers.
    pub fn nodes(&self) -> BTreeMap<String, String> {
        self.machine.read(|state| {
            let mut nodes = self.peers.clone();
            for (name, info) in &state.nodes {
                nodes.insert(name.clone(), info.url.clone());
            }
            nodes.retain(|n, _| !state.has_left(n));
            nodes
        })
    }

    /// The nodes hosting `partition`, preferred master first: the table's placement, or the
    /// configured one until the table has it.
    pub fn replicas_of(&self, partition: u32) -> Vec<String> {
        let placed = self.machine.read(|s| s.partitions.get(&partition).map(|p| p.replicas.clone()));
        match placed {
            Some(replicas) if !replicas.is_empty() => replicas,
            _ => self.cluster.replicas(partition),
        }
    }

    /// Nodes that may hold replicas: configured peers and registered nodes, except those leaving.
    pub fn members(&self, state: &ClusterState) -> BTreeSet<String> {
        self.peers
            .keys()
            .chain(state.nodes.keys())
            .filter(|n| !state.nodes.get(*n).is_some_and(|i| i.leaving))
            .cloned()
            .collect()
    }

    /// The master of `partition` as the replicated table names it.
    pub fn master_of(&self, partition: u32) -> Option<String> {
        self.machine.read(|s| s.partitions.get(&partition).map(|p| p.master.clone()))
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

    /// Proposes `req`: on the leader directly, else forwarded to the leader over HTTP. A node
    /// that knows no leader (one joining the cluster) hands it to the configured peers, which
    /// pass it to the leader they know — a write makes at most two hops and never loops.
    pub async fn write(&self, req: Request) -> Result<Response, String> {
        self.write_via(req, Hop::Origin).await
    }

    /// [`Coordinator::write`] for a write that arrived over HTTP with `hop`.
    pub async fn write_via(&self, req: Request, hop: Hop) -> Result<Response, String> {
        match self.raft.client_write(req.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let targets: Vec<(String, Hop)> = match (f.leader_node, hop) {
                    (_, Hop::ToLeader) => return Err("not the coordinator leader (any more)".into()),
                    (Some(node), _) => vec![(node.addr, Hop::ToLeader)],
                    (None, Hop::Origin) => self
                        .peers
                        .iter()
                        .filter(|(n, _)| **n != self.name)
                        .map(|(_, u)| (u.clone(), Hop::ViaPeer))
                        .collect(),
                    (None, Hop::ViaPeer) => return Err("no coordinator leader known here either".into()),
                };
                let mut last = "no coordinator leader yet".to_owned();
                for (url, hop) in targets {
                    match self.forward_write(&url, &req, hop).await {
                        Ok(r) => return r,
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A write only the leader may make (placement): applied here or dropped, never forwarded,
    /// so a member that has just lost the leadership cannot overwrite the new leader's steps.
    pub async fn write_as_leader(&self, req: Request) -> Result<Response, String> {
        self.raft.client_write(req).await.map(|r| r.data).map_err(|e| e.to_string())
    }

    async fn forward_write(&self, url: &str, req: &Request, hop: Hop) -> Result<Result<Response, String>, String> {
        let resp = self
            .client
            .post(format!("{url}/v1/internal/raft/write"))
            .bearer_auth(&self.token)
            .header(HOP_HEADER, hop.as_str())
            .timeout(Duration::from_secs(5))
            .json(req)
            .send()
            .await
            .map_err(|e| format!("forwarding to {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("forwarding to {url}: {status} {}", resp.text().await.unwrap_or_default()));
        }
        resp.json().await.map_err(|e| format!("forwarding to {url}: {e}"))
    }

    /// Leader duty: Raft membership follows the node table. Missing nodes join as learners;
    /// learners are promoted while the group has fewer voters than it should; a leaving node
    /// that hosts nothing is removed. One membership change per call.
    async fn reconcile_membership(&self) {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let in_group: BTreeSet<NodeId> = membership.nodes().map(|(i, _)| *i).collect();
        let state = self.state();
        let members = self.members(&state);
        for name in &members {
            let id = raft_id(name);
            if in_group.contains(&id) {
                continue;
            }
            let Some(url) = self.url_of(name) else { continue };
            match self.raft.add_learner(id, BasicNode { addr: url }, false).await {
                Ok(_) => tracing::info!(node = %name, "added to the coordinator group as a learner"),
                Err(e) => tracing::warn!(node = %name, error = %e, "could not add a learner"),
            }
        }
        // A learner that is registered, alive, not leaving and caught up may vote.
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let promotable = state
            .nodes
            .iter()
            .filter(|(_, info)| info.alive && !info.leaving)
            .map(|(name, _)| (name, raft_id(name)))
            .find(|(_, id)| {
                in_group.contains(id)
                    && !voters.contains(id)
                    && matched.get(id).copied().flatten().is_some_and(|l| l.index + 16 >= last)
            });
        let leaving: Vec<(&String, NodeId)> = state
            .nodes
            .iter()
            .filter(|(name, info)| info.leaving && !state.hosts_any(name))
            .map(|(name, _)| (name, raft_id(name)))
            .filter(|(_, id)| in_group.contains(id))
            .collect();
        // A change of voters commits only with a majority of the old *and* the new voters (joint
        // consensus), and nothing else commits until it has: propose none that the live nodes
        // could not complete.
        let alive = |id: &NodeId| *id == self.id || state.nodes.iter().any(|(n, info)| info.alive && raft_id(n) == *id);
        let quorate = |set: &BTreeSet<NodeId>| set.iter().filter(|v| alive(v)).count() * 2 > set.len();
        let change = if let Some((name, id)) = leaving.first() {
            if voters.contains(id) {
                // Replace the voter in one change when a learner can take its place. The
                // leader may remove itself: it steps down once the change is committed.
                let mut next: BTreeSet<NodeId> = voters.iter().copied().filter(|v| v != id).collect();
                if let Some((_, l)) = promotable {
                    next.insert(l);
                }
                if next.is_empty() || !quorate(&next) || !quorate(&voters) {
                    tracing::debug!(node = %name, "a leaving voter stays until a live majority would remain");
                    None
                } else {
                    Some((format!("{name} leaves the voters"), ChangeMembers::ReplaceAllVoters(next)))
                }
            } else {
                Some((format!("{name} leaves the group"), ChangeMembers::RemoveNodes([*id].into())))
            }
        } else {
            // An odd number of voters: a fourth tolerates no more failures than three.
            let eligible = members.iter().filter(|n| in_group.contains(&raft_id(n))).count().min(MAX_VOTERS);
            let wanted = if eligible % 2 == 0 { eligible.saturating_sub(1) } else { eligible };
            match promotable {
                Some((name, id)) if voters.len() < wanted && quorate(&voters.iter().copied().chain([id]).collect()) => {
                    Some((format!("{name} becomes a voter"), ChangeMembers::AddVoterIds([id].into())))
                }
                _ => None,
            }
        };
        if let Some((what, change)) = change {
            // Bounded: the duties after this one (registration, epoch records) must not wait on it.
            match tokio::time::timeout(Duration::from_secs(5), self.raft.change_membership(change, false)).await {
                Ok(Ok(_)) => tracing::info!("coordinator membership: {what}"),
                Ok(Err(e)) => tracing::warn!(error = %e, "coordinator membership: {what} failed"),
                Err(_) => tracing::warn!("coordinator membership: {what} did not commit within 5 s"),
            }
        }
    }

    /// Background duties until `stop`: register this node, record the partitions it masters,
    /// and (on the leader) keep the Raft membership in line with the node table.
    pub async fn run(
        self: Arc<Self>,
        name: String,
        url: String,
        mastered: impl Fn() -> Vec<(u32, u64)> + Send + 'static,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut registered = false;
        let mut unregistered_since = std::time::Instant::now();
        let watcher = tokio::spawn(failover::watch(self.clone(), stop.clone()));
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    watcher.abort();
                    return;
                }
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            self.reconcile_membership().await;
            let state = self.state();
            // Once registered, again only if the table holds another address (a joining node
            // does not see its own entry until the leader has added it and sent it the log).
            if !registered || state.nodes.get(&name).is_some_and(|n| n.url != url) {
                match self.write(Request::RegisterNode { name: name.clone(), url: url.clone() }).await {
                    Ok(_) => registered = true,
                    Err(e) => {
                        registered = false;
                        if unregistered_since.elapsed() > Duration::from_secs(10) {
                            // A lone joining node, say, whose peers are all unreachable.
                            tracing::warn!(error = %e, "could not register with the coordinator yet; retrying");
                            unregistered_since = std::time::Instant::now();
                        }
                    }
                }
            }
            for (partition, epoch) in mastered() {
                let known = state.partitions.get(&partition);
                if known.is_none_or(|k| k.epoch < epoch) {
                    let req = Request::SetPartition { partition, master: name.clone(), epoch };
                    if let Err(e) = self.write(req).await {
                        tracing::debug!(partition, error = %e, "could not record the partition's master yet");
                    }
                }
            }
        }
    }
}
