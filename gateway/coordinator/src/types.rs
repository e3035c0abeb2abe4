//! The coordinator's Raft types and its replicated state machine.
//!
//! The state machine is small (nodes and partitions), so it is kept whole in memory and
//! persisted whole, with the last applied log id, on every apply; a snapshot is its JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft type configuration of the Lightkeeper coordinator.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;

/// A change to the cluster's state, proposed through Raft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A node's name and address (sent by the node itself when it starts).
    RegisterNode { name: String, url: String },
    /// Who masters a partition since which epoch (recorded by the master after each promotion).
    SetPartition { partition: u32, master: String, epoch: u64 },
    /// A node found dead or alive again by the leader's failure detector.
    SetLiveness { name: String, alive: bool },
    /// The nodes that host a partition, its preferred master first (written by the leader's
    /// placement: seeded from configuration, then changed one step at a time as nodes join and
    /// leave).
    SetReplicas { partition: u32, replicas: Vec<String> },
    /// Marks a node as leaving (decommissioned by an operator; `false` cancels): placement
    /// moves its replicas to other nodes, then the leader removes it from the Raft group.
    /// `url`: for a configured peer that never registered (it is recorded as down).
    SetLeaving {
        name: String,
        leaving: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub applied: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// The replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, NodeInfo>,
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

    /// Applies one request. Deterministic: every member applies the same log to the same state.
    pub fn apply(&mut self, req: &Request) -> Response {
        match req {
            Request::RegisterNode { name, url } => {
                // A restart does not cancel a decommission.
                let leaving = self.nodes.get(name).is_some_and(|n| n.leaving);
                let new = NodeInfo { url: url.clone(), alive: true, leaving };
                let changed = self.nodes.get(name) != Some(&new);
                self.nodes.insert(name.clone(), new);
                Response { applied: changed }
            }
            Request::SetPartition { partition, master, epoch } => {
                // Epochs only move forward: a late, older record changes nothing.
                let entry = self.partitions.entry(*partition).or_default();
                if *epoch <= entry.epoch && entry.epoch != 0 {
                    return Response { applied: false };
                }
                entry.master.clone_from(master);
                entry.epoch = *epoch;
                Response { applied: true }
            }
            Request::SetReplicas { partition, replicas } => {
                let entry = self.partitions.entry(*partition).or_default();
                let changed = entry.replicas != *replicas;
                entry.replicas.clone_from(replicas);
                Response { applied: changed }
            }
            Request::SetLeaving { name, leaving, url } => match (self.nodes.get_mut(name), url) {
                (Some(n), _) if n.leaving != *leaving => {
                    n.leaving = *leaving;
                    Response { applied: true }
                }
                (None, Some(url)) => {
                    self.nodes.insert(name.clone(), NodeInfo { url: url.clone(), alive: false, leaving: *leaving });
                    Response { applied: true }
                }
                _ => Response { applied: false },
            },
            Request::SetLiveness { name, alive } => match self.nodes.get_mut(name) {
                Some(n) if n.alive != *alive => {
                    n.alive = *alive;
                    Response { applied: true }
                }
                _ => Response { applied: false },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_epochs_only_move_forward() {
        let mut s = ClusterState::default();
        let set = |m: &str, e| Request::SetPartition { partition: 0, master: m.into(), epoch: e };
        assert!(s.apply(&set("a", 1)).applied);
        assert!(s.apply(&set("b", 2)).applied);
        assert!(!s.apply(&set("a", 1)).applied, "an older epoch is ignored");
        assert_eq!(s.partitions[&0], PartitionInfo { master: "b".into(), epoch: 2, replicas: vec![] });
        // Placement is independent of the epoch record.
        let place = Request::SetReplicas { partition: 0, replicas: vec!["b".into(), "a".into()] };
        assert!(s.apply(&place).applied);
        assert!(!s.apply(&place).applied);
        assert!(s.apply(&set("a", 3)).applied);
        assert_eq!(s.partitions[&0].replicas, vec!["b", "a"], "an epoch record keeps the placement");
        let reg = Request::RegisterNode { name: "a".into(), url: "http://x".into() };
        assert!(s.apply(&reg).applied);
        assert!(!s.apply(&reg).applied);
        // Liveness: set by the leader's detector, reset when the node registers again.
        assert!(s.apply(&Request::SetLiveness { name: "a".into(), alive: false }).applied);
        assert!(!s.nodes["a"].alive);
        assert!(!s.apply(&Request::SetLiveness { name: "a".into(), alive: false }).applied);
        assert!(!s.apply(&Request::SetLiveness { name: "z".into(), alive: false }).applied, "unknown node");
        assert!(s.apply(&reg).applied);
        assert!(s.nodes["a"].alive);
        // A decommission survives the node registering again; it can be cancelled.
        assert!(s.apply(&Request::SetLeaving { name: "a".into(), leaving: true, url: None }).applied);
        assert!(!s.apply(&reg).applied);
        assert!(s.nodes["a"].leaving);
        assert!(s.apply(&Request::SetLeaving { name: "a".into(), leaving: false, url: None }).applied);
        assert!(!s.apply(&Request::SetLeaving { name: "z".into(), leaving: true, url: None }).applied, "unknown node");
        // A configured peer that never registered is recorded, down and leaving.
        let never = Request::SetLeaving { name: "z".into(), leaving: true, url: Some("http://z".into()) };
        assert!(s.apply(&never).applied);
        assert_eq!(s.nodes["z"], NodeInfo { url: "http://z".into(), alive: false, leaving: true });
    }
}
