//! The coordinator's failover against in-process peers: a real one-member Raft group (RocksDB
//! store in a temp dir), and fake nodes behind the `Peers` trait — no sockets, no HTTP. The
//! partition's master stops answering (refused) while another partition is healthy; the leader
//! must promote the least-lagging placed standby of the orphaned partition, without a drain,
//! exactly once, and leave the healthy one alone.

use futures::future::BoxFuture;
use lightkeeper_api::admin::{Drained, PromoteReport, Promoted};
use lightkeeper_api::cluster::{ClusterView, PartitionView, Role};
use lightkeeper_coordinator::config::Cluster;
use lightkeeper_coordinator::types::{NodeId, Request, Response, TypeConfig};
use lightkeeper_coordinator::{CallError, Coordinator, Hop, Peers, Settings};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A one-member group never calls its network; every call fails if it does.
struct NoNetwork;
struct NoConnection;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no network in this test")))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoConnection;
    async fn new_client(&mut self, _: NodeId, _: &BasicNode) -> NoConnection {
        NoConnection
    }
}

impl RaftNetwork<TypeConfig> for NoConnection {
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _: VoteRequest<NodeId>,
        _: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

/// Fake nodes by URL: their status, and the promotions asked of them. A promotion makes the
/// target the master of a new epoch in every view, as a real one would.
#[derive(Default)]
struct FakeNodes {
    views: Mutex<BTreeMap<String, ClusterView>>,
    promotions: Mutex<Vec<(String, u32, bool)>>,
}

/// One replica as a node reports it: (partition, role, changelog lag, master, epoch).
type Replica = (u32, Role, u64, &'static str, u64);

fn view(node: &str, replicas: &[Replica]) -> ClusterView {
    ClusterView {
        node: node.into(),
        nodes: BTreeMap::new(),
        partitions: replicas
            .iter()
            .map(|&(p, role, lag, master, epoch)| PartitionView {
                role,
                ready: true,
                changelog_lag: lag,
                lease_ms: 0,
                falling_behind_s: 0,
                master: master.into(),
                epoch,
                ..PartitionView::not_hosted(p, vec![])
            })
            .collect(),
        watched_objects: 0,
        draining: false,
        coordinator: None,
    }
}

impl Peers for FakeNodes {
    fn status<'a>(&'a self, url: &'a str, _: Duration) -> BoxFuture<'a, Result<ClusterView, CallError>> {
        let v = self.views.lock().get(url).cloned().ok_or(CallError::Refused { url: url.into() });
        Box::pin(async move { v })
    }

    fn drain<'a>(&'a self, url: &'a str, _: u32) -> BoxFuture<'a, Result<Drained, CallError>> {
        Box::pin(async move { Err(CallError::Refused { url: url.into() }) })
    }

    fn promote<'a>(&'a self, url: &'a str, p: u32, skip: bool) -> BoxFuture<'a, Result<PromoteReport, CallError>> {
        self.promotions.lock().push((url.to_owned(), p, skip));
        let node = url.trim_start_matches("http://").to_owned();
        let mut views = self.views.lock();
        for (u, v) in views.iter_mut() {
            for part in v.partitions.iter_mut().filter(|r| r.partition == p) {
                (part.master, part.epoch) = (node.clone(), 2);
                if *u == url {
                    (part.role, part.changelog_lag) = (Role::Master, 0);
                }
            }
        }
        let promoted = Promoted {
            partition: p,
            epoch: 2,
            previous_master: "m".into(),
            marker_offset: 10,
            input_next: 5,
            caught_up: 2,
            catch_up_ms: 0.0,
            marker_append_ms: 0.0,
            marker_apply_ms: 0.0,
            changed: true,
        };
        let report = PromoteReport { promoted, drained: None, drain_error: None, drain_ms: 0.0, elapsed_ms: 1 };
        Box::pin(async move { Ok(report) })
    }

    fn forward_write<'a>(
        &'a self,
        url: &'a str,
        _: &'a Request,
        _: Hop,
    ) -> BoxFuture<'a, Result<Result<Response, String>, CallError>> {
        Box::pin(async move { Err(CallError::Refused { url: url.into() }) })
    }
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_is_replaced_by_the_least_lagging_placed_standby_without_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(FakeNodes::default());
    {
        let mut views = nodes.views.lock();
        views.insert("http://a".into(), view("a", &[]));
        // Partition 0 is healthy: b masters it. Partition 1's master m (epoch 1) is gone
        // (refused); b and c are ready standbys of it, and x is the least lagging of all but
        // not placed on it.
        views.insert("http://b".into(), view("b", &[(0, Role::Master, 0, "b", 1), (1, Role::Standby, 5, "m", 1)]));
        views.insert("http://c".into(), view("c", &[(0, Role::Standby, 0, "b", 1), (1, Role::Standby, 2, "m", 1)]));
        views.insert("http://x".into(), view("x", &[(1, Role::Standby, 0, "m", 1)]));
    }
    let settings = Settings {
        node_id: "a".into(),
        url: "http://a".into(),
        dir: dir.path().join("raft"),
        cluster: Cluster { rebalance: false, ..Cluster::default() },
        partitions: 2,
    };
    let c = Coordinator::start(settings, nodes.clone(), NoNetwork).await.unwrap();
    let leader = c.clone();
    wait_for("the single member to lead", Duration::from_secs(10), || leader.is_leader().then_some(())).await;
    for n in ["m", "b", "c", "x"] {
        c.write(Request::RegisterNode { name: n.into(), url: format!("http://{n}") }).await.unwrap();
    }
    let placed = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    c.write(Request::SetReplicas { partition: 0, replicas: placed(&["b", "c"]) }).await.unwrap();
    c.write(Request::SetReplicas { partition: 1, replicas: placed(&["m", "b", "c"]) }).await.unwrap();
    c.write(Request::SetPartition { partition: 0, master: "b".into(), epoch: 1 }).await.unwrap();
    c.write(Request::SetPartition { partition: 1, master: "m".into(), epoch: 1 }).await.unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn(c.clone().run("a".into(), "http://a".into(), Vec::new, stop.clone()));
    let promoted = nodes.clone();
    let first = wait_for("a promotion", Duration::from_secs(10), || promoted.promotions.lock().first().cloned()).await;
    assert_eq!(first, ("http://c".to_owned(), 1, true), "least lag among the placed standbys, no drain");
    // The new master serves: no second failover.
    let dead = c.clone();
    wait_for("m recorded dead", Duration::from_secs(10), || dead.read(|s| (!s.nodes["m"].alive).then_some(()))).await;
    let failovers: Vec<_> = nodes.promotions.lock().iter().filter(|(_, _, skip)| *skip).cloned().collect();
    assert_eq!(failovers, vec![("http://c".to_owned(), 1, true)], "exactly one failover, of partition 1 only");
    stop.cancel();
    task.await.unwrap();
    c.raft.shutdown().await.unwrap();
}

/// Decommissions `c` in a cluster where `x` is the least-loaded other member, and returns the
/// node placement picks for `c`'s replica of partition 0. `x_behind`: x reports its standby of
/// partition 3 as falling behind its changelog.
async fn replacement_for_a_leaving_node(x_behind: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(FakeNodes::default());
    {
        let mut views = nodes.views.lock();
        views.insert("http://a".into(), view("a", &[(1, Role::Master, 0, "a", 1), (2, Role::Master, 0, "a", 1)]));
        views.insert("http://b".into(), view("b", &[(0, Role::Master, 0, "b", 1), (1, Role::Standby, 0, "a", 1)]));
        views.insert("http://c".into(), view("c", &[(0, Role::Standby, 0, "b", 1)]));
        let mut x = view("x", &[(3, Role::Standby, 50_000, "y", 1)]);
        if x_behind {
            x.partitions[0].falling_behind_s = 90;
        }
        views.insert("http://x".into(), x);
        views.insert("http://y".into(), view("y", &[(2, Role::Standby, 0, "a", 1), (3, Role::Master, 0, "y", 1)]));
    }
    let settings = Settings {
        node_id: "a".into(),
        url: "http://a".into(),
        dir: dir.path().join("raft"),
        cluster: Cluster { rebalance: false, replication_factor: Some(2), ..Cluster::default() },
        partitions: 4,
    };
    let c = Coordinator::start(settings, nodes.clone(), NoNetwork).await.unwrap();
    let leader = c.clone();
    wait_for("the single member to lead", Duration::from_secs(10), || leader.is_leader().then_some(())).await;
    for n in ["a", "b", "c", "x", "y"] {
        c.write(Request::RegisterNode { name: n.into(), url: format!("http://{n}") }).await.unwrap();
    }
    // Loads: a 2, b 2, c 1, x 1, y 2.
    for (p, replicas) in [(0, ["b", "c"]), (1, ["a", "b"]), (2, ["a", "y"]), (3, ["y", "x"])] {
        let replicas = replicas.iter().map(|n| n.to_string()).collect();
        c.write(Request::SetReplicas { partition: p, replicas }).await.unwrap();
        let master = if p == 3 {
            "y"
        } else if p == 0 {
            "b"
        } else {
            "a"
        };
        c.write(Request::SetPartition { partition: p, master: master.into(), epoch: 1 }).await.unwrap();
    }
    c.write(Request::SetLeaving { name: "c".into(), leaving: true, url: None }).await.unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn(c.clone().run("a".into(), "http://a".into(), Vec::new, stop.clone()));
    let placed = c.clone();
    let added = wait_for("a replica added for c's", Duration::from_secs(10), || {
        placed.read(|s| {
            let rs = &s.partitions[&0].replicas;
            rs.iter().find(|n| !["b", "c"].contains(&n.as_str())).cloned()
        })
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    c.raft.shutdown().await.unwrap();
    added
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_puts_no_new_replica_on_a_node_whose_replicas_fall_behind() {
    assert_eq!(replacement_for_a_leaving_node(false).await, "x", "the least-loaded member, keeping up");
    let chosen = replacement_for_a_leaving_node(true).await;
    assert_ne!(chosen, "x", "x cannot keep up with the replica it has");
    assert_eq!(chosen, "a", "the least-loaded member that keeps up (a and y tie; by name)");
}
