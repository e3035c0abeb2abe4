//! `GET /v1/cluster`: what a node hosts, in which role, how far behind, and the coordinator's
//! replicated table as the node sees it.
//!
//! The failure detector, failover, node drain, routing and the tests all read this view from
//! other nodes; they read these types, never JSON by key, so a renamed field is a compile error
//! rather than a failover that silently finds no eligible standby.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A node's replica of a partition, as that node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reading the changelog into its store before taking a role.
    Restoring,
    /// Tailing the changelog; may be promoted.
    Standby,
    /// Consuming input and writing the changelog under its epoch.
    Master,
    /// The node hosts no replica of the partition.
    NotHosted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Restoring => "restoring",
            Role::Standby => "standby",
            Role::Master => "master",
            Role::NotHosted => "not_hosted",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionView {
    pub partition: u32,
    /// This node's replica of the partition.
    pub role: Role,
    /// The master as the newest epoch marker applied here says (empty when not hosted).
    pub master: String,
    /// The nodes hosting the partition, preferred master first (the coordinator's placement).
    pub replicas: Vec<String>,
    pub epoch: u64,
    pub ready: bool,
    /// Next input offset the partition's master will consume (as recorded in the state).
    pub input_next: u64,
    /// End of the input partition when last seen by the master here.
    pub input_end: u64,
    /// Input records not yet materialized (as of the last end-of-partition seen).
    pub input_lag: u64,
    /// Next changelog offset to apply; everything before it is in this replica's store.
    pub applied_changelog_offset: u64,
    /// End of the changelog partition when last seen by this replica.
    pub changelog_end: u64,
    /// Changelog records not yet applied here: the staleness a `max_lag` read is checked against.
    pub changelog_lag: u64,
    /// Milliseconds left of this master's read lease, renewed each time it confirms from the
    /// changelog that no newer epoch has started. A master answers reads as master only while
    /// this is above 0 (a master just resumed from a pause forwards them until it has checked);
    /// 0 in every other role.
    #[serde(default)]
    pub lease_ms: u64,
    /// Seconds this replica (never a master) has not gained on its changelog with more than
    /// 1,000 records to go — a restore or standby that cannot keep up on this node; 0 while it
    /// keeps up. Placement puts no new replica on a node while one of its replicas is behind.
    #[serde(default)]
    pub falling_behind_s: u64,
}

impl PartitionView {
    /// A partition this node does not host.
    pub fn not_hosted(partition: u32, replicas: Vec<String>) -> PartitionView {
        PartitionView {
            partition,
            role: Role::NotHosted,
            master: String::new(),
            replicas,
            epoch: 0,
            ready: false,
            input_next: 0,
            input_end: 0,
            input_lag: 0,
            applied_changelog_offset: 0,
            changelog_end: 0,
            changelog_lag: 0,
            lease_ms: 0,
            falling_behind_s: 0,
        }
    }

    /// A ready master.
    pub fn is_serving_master(&self) -> bool {
        self.role == Role::Master && self.ready
    }

    /// A ready standby: it may be promoted.
    pub fn is_ready_standby(&self) -> bool {
        self.role == Role::Standby && self.ready
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub node: String,
    /// Node id → URL of every node known (empty for a single node).
    pub nodes: BTreeMap<String, String>,
    pub partitions: Vec<PartitionView>,
    pub watched_objects: usize,
    /// Set by a node drain: the node is handing its masters off before a restart, and the
    /// coordinator moves no master onto it.
    pub draining: bool,
    /// The embedded coordinator (Raft) as this node sees it: its role, the leader, members, and
    /// the replicated node and partition tables.
    pub coordinator: Option<CoordinatorView>,
}

impl ClusterView {
    /// This node's view of `partition`.
    pub fn partition(&self, partition: u32) -> Option<&PartitionView> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// A member's role in the coordinator's Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RaftState {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// What `/v1/cluster` shows of the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoordinatorView {
    pub raft_id: u64,
    pub state: RaftState,
    pub leader: Option<String>,
    pub term: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub last_applied: Option<u64>,
    pub replicated: ClusterState,
}

/// A node in the coordinator's replicated table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub url: String,
    /// As last judged by the coordinator's leader (a node registers itself alive).
    #[serde(default = "alive")]
    pub alive: bool,
    /// Decommissioned: placement gives it no replicas, and once it hosts none it leaves the Raft
    /// group. It stays in the table (so its configured peer entry does not bring it back).
    #[serde(default)]
    pub leaving: bool,
}

fn alive() -> bool {
    true
}

/// A partition in the coordinator's replicated table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionInfo {
    /// The master of the newest epoch recorded (empty until one is).
    #[serde(default)]
    pub master: String,
    #[serde(default)]
    pub epoch: u64,
    /// The nodes that host the partition, its preferred master first (empty until placed).
    #[serde(default)]
    pub replicas: Vec<String>,
}

/// The coordinator's replicated cluster state (the Raft state machine's data; the coordinator
/// crate applies requests to it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Keyed by partition number (a JSON object's keys are strings: `"0"`, `"1"`, …).
    #[schema(value_type = BTreeMap<String, PartitionInfo>)]
    pub partitions: BTreeMap<u32, PartitionInfo>,
}

impl ClusterState {
    /// Whether the table places any replica on `name`.
    pub fn hosts_any(&self, name: &str) -> bool {
        self.partitions.values().any(|p| p.replicas.iter().any(|r| r == name))
    }

    /// A decommissioned node that hosts nothing any more: it is out of the cluster.
    pub fn has_left(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.leaving) && !self.hosts_any(name)
    }

    /// Every partition's replicas as placed (partitions not placed yet are absent).
    pub fn placement(&self) -> BTreeMap<u32, Vec<String>> {
        self.partitions.iter().filter(|(_, p)| !p.replicas.is_empty()).map(|(k, p)| (*k, p.replicas.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_serialize_as_the_api_documents() {
        for (role, s) in [
            (Role::Master, "\"master\""),
            (Role::Standby, "\"standby\""),
            (Role::Restoring, "\"restoring\""),
            (Role::NotHosted, "\"not_hosted\""),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), s);
            assert_eq!(serde_json::from_str::<Role>(s).unwrap(), role);
            assert_eq!(format!("\"{role}\""), s);
        }
    }

    #[test]
    fn a_view_round_trips() {
        let mut p = PartitionView::not_hosted(3, vec!["a".into()]);
        p.role = Role::Standby;
        p.ready = true;
        let v = ClusterView {
            node: "a".into(),
            nodes: [("a".to_owned(), "http://a".to_owned())].into(),
            partitions: vec![p.clone()],
            watched_objects: 0,
            draining: false,
            coordinator: None,
        };
        let back: ClusterView = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert!(back.partition(3).unwrap().is_ready_standby());
        assert!(back.partition(4).is_none());
    }
}
