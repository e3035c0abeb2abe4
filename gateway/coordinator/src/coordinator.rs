//! The [`Coordinator`]: this node's member of the openraft group, its view of the replicated
//! table, and the writes it proposes (forwarded to the leader when it is not the leader).

use crate::config::Cluster;
use crate::peers::{CallError, Hop, Peers};
use crate::types::{NodeId, Raft, Request, Response, TypeConfig};
use crate::{failover, store};
use anyhow::Context;
use lightkeeper_api::cluster::{ClusterState, CoordinatorView, RaftState};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Voters at most; further peers join as learners.
pub(crate) const MAX_VOTERS: usize = 5;
/// Election timeout range in ms (the heartbeat is a third of the minimum).
pub const ELECTION: (u64, u64) = (120, 200);

/// A node's Raft id, derived from its name alone (Kafka's murmur2 as unsigned, plus one), so adding
/// or removing a peer never renumbers the others: ids are persisted in the Raft membership.
pub fn raft_id(name: &str) -> NodeId {
    u64::from(lightkeeper_api::partitioner::murmur2(name.as_bytes()) as u32) + 1
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
    pub(crate) name: String,
    /// The configured peers (node name → URL): the founding members, and the seeds a joining
    /// node registers through.
    pub(crate) peers: BTreeMap<String, String>,
    /// The cluster section of the configuration: replica placement, promotion bound, rebalance.
    pub(crate) cluster: Cluster,
    /// Partitions of the input topic.
    pub(crate) partitions: u32,
    /// How other nodes are reached.
    pub(crate) remote: Arc<dyn Peers>,
}

/// Why a coordinator write was not applied.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A write sent to this node as the leader, which it no longer is (the sender retries).
    #[error("not the coordinator leader (any more)")]
    NotLeader,
    /// Neither this node nor the peers it asked know a leader (an election, or no quorum).
    #[error("no coordinator leader known yet")]
    NoLeader,
    /// The member the write was forwarded to refused it; its words (they cross nodes as text).
    #[error("{url} refused the write: {message}")]
    Refused { url: String, message: String },
    /// The member the write was forwarded to could not be reached.
    #[error("forwarding the write: {0}")]
    Unreachable(#[source] CallError),
    /// Raft itself refused it here (shutting down, a membership change in progress…).
    #[error(transparent)]
    Raft(#[from] RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>),
}

/// What a node needs to start its coordinator.
pub struct Settings {
    /// This node's id.
    pub node_id: String,
    /// This node's base URL for the others.
    pub url: String,
    /// Where the Raft log, vote and state machine live (`data_dir/raft`).
    pub dir: PathBuf,
    pub cluster: Cluster,
    /// Partitions of the input topic.
    pub partitions: u32,
}

impl Coordinator {
    /// Starts this node's Raft member; a configured peer initializes the group if its store is
    /// empty (see the module doc).
    ///
    /// `remote` reaches the other nodes; `network` carries Raft's own RPCs.
    pub async fn start<N>(settings: Settings, remote: Arc<dyn Peers>, network: N) -> anyhow::Result<Arc<Coordinator>>
    where
        N: openraft::RaftNetworkFactory<TypeConfig>,
    {
        let Settings { node_id, url, dir, cluster, partitions } = settings;
        let single = cluster.is_single_node();
        let peers: BTreeMap<String, String> =
            if single { [(node_id.clone(), url)].into() } else { cluster.peers.clone() };
        let mut names: BTreeSet<&String> = peers.keys().collect();
        names.insert(&node_id);
        let distinct: BTreeSet<NodeId> = names.iter().map(|n| raft_id(n)).collect();
        anyhow::ensure!(
            distinct.len() == names.len(),
            "configuration field `cluster.peers`: two node ids hash to the same coordinator id; rename one"
        );
        let id = raft_id(&node_id);
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
        let raft = Raft::new(id, Arc::new(raft_config), network, store::LogStore::new(db), machine.clone()).await?;
        let c = Arc::new(Coordinator { raft, machine, id, name: node_id.clone(), peers, cluster, partitions, remote });
        // Only the initial voters initialize: openraft refuses a membership without the caller.
        let initial_voter = c.peers.keys().take(MAX_VOTERS).any(|n| *n == node_id);
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
            let call = self.remote.status(url, Duration::from_millis(500));
            async move {
                let Ok(view) = call.await else { return false };
                view.coordinator.is_some_and(|c| !c.voters.is_empty())
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
                ServerState::Leader => RaftState::Leader,
                ServerState::Follower => RaftState::Follower,
                ServerState::Candidate => RaftState::Candidate,
                ServerState::Learner => RaftState::Learner,
                ServerState::Shutdown => RaftState::Shutdown,
            },
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
    pub async fn write(&self, req: Request) -> Result<Response, WriteError> {
        self.write_via(req, Hop::Origin).await
    }

    /// [`Coordinator::write`] for a write that arrived from another node with `hop`.
    pub async fn write_via(&self, req: Request, hop: Hop) -> Result<Response, WriteError> {
        match self.raft.client_write(req.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let targets: Vec<(String, Hop)> = match (f.leader_node, hop) {
                    (_, Hop::ToLeader) => return Err(WriteError::NotLeader),
                    (Some(node), _) => vec![(node.addr, Hop::ToLeader)],
                    (None, Hop::Origin) => self
                        .peers
                        .iter()
                        .filter(|(n, _)| **n != self.name)
                        .map(|(_, u)| (u.clone(), Hop::ViaPeer))
                        .collect(),
                    (None, Hop::ViaPeer) => return Err(WriteError::NoLeader),
                };
                let mut last = WriteError::NoLeader;
                for (url, hop) in targets {
                    match self.remote.forward_write(&url, &req, hop).await {
                        Ok(answer) => return answer.map_err(|message| WriteError::Refused { url, message }),
                        Err(e) => last = WriteError::Unreachable(e),
                    }
                }
                Err(last)
            }
            Err(e) => Err(WriteError::Raft(e)),
        }
    }

    /// A write only the leader may make (placement): applied here or dropped, never forwarded,
    /// so a member that has just lost the leadership cannot overwrite the new leader's steps.
    pub async fn write_as_leader(&self, req: Request) -> Result<Response, WriteError> {
        self.raft.client_write(req).await.map(|r| r.data).map_err(WriteError::Raft)
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
        // The failure detector runs beside these duties in the same task, so whoever owns the
        // task owns both (dropping it stops both).
        let watcher = failover::watch(self.clone(), stop.clone());
        tokio::join!(watcher, self.register_and_record(name, url, mastered, stop));
    }

    async fn register_and_record(
        &self,
        name: String,
        url: String,
        mastered: impl Fn() -> Vec<(u32, u64)>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut registered = false;
        let mut unregistered_since = std::time::Instant::now();
        // At once, then every 250 ms; every 50 ms while this node is not registered yet, so a
        // node joins the table as soon as the group has a leader (it is not ready before).
        let mut pause = Duration::ZERO;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = Duration::from_millis(if registered { 250 } else { 50 });
            self.reconcile_membership().await;
            let state = self.state();
            // Once registered, again only if the table holds another address (a joining node
            // does not see its own entry until the leader has added it and sent it the log).
            if !registered || state.nodes.get(&name).is_some_and(|n| n.url != url) {
                match self.write(Request::RegisterNode { name: name.clone(), url: url.clone() }).await {
                    Ok(_) => {
                        registered = true;
                        pause = Duration::from_millis(250);
                    }
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
