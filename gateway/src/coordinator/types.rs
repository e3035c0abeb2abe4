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
    /// Who masters a partition since which epoch, and its other replicas (recorded by the
    /// master after each promotion).
    SetPartition {
        partition: u32,
        master: String,
        epoch: u64,
        #[serde(default)]
        standbys: Vec<String>,
    },
    /// A node found dead or alive again by the leader's failure detector.
    SetLiveness { name: String, alive: bool },
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
}

fn alive() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub master: String,
    pub epoch: u64,
    /// The partition's other replicas.
    #[serde(default)]
    pub standbys: Vec<String>,
}

/// The replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub partitions: BTreeMap<u32, PartitionInfo>,
}

impl ClusterState {
    /// Applies one request. Deterministic: every member applies the same log to the same state.
    pub fn apply(&mut self, req: &Request) -> Response {
        match req {
            Request::RegisterNode { name, url } => {
                let new = NodeInfo { url: url.clone(), alive: true };
                let changed = self.nodes.get(name) != Some(&new);
                self.nodes.insert(name.clone(), new);
                Response { applied: changed }
            }
            Request::SetPartition { partition, master, epoch, standbys } => {
                // Epochs only move forward: a late, older record changes nothing.
                let entry = self.partitions.entry(*partition).or_default();
                if *epoch <= entry.epoch && entry.epoch != 0 {
                    return Response { applied: false };
                }
                *entry = PartitionInfo { master: master.clone(), epoch: *epoch, standbys: standbys.clone() };
                Response { applied: true }
            }
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
        let set = |m: &str, e| Request::SetPartition { partition: 0, master: m.into(), epoch: e, standbys: vec![] };
        assert!(s.apply(&set("a", 1)).applied);
        assert!(s.apply(&set("b", 2)).applied);
        assert!(!s.apply(&set("a", 1)).applied, "an older epoch is ignored");
        assert_eq!(s.partitions[&0], PartitionInfo { master: "b".into(), epoch: 2, standbys: vec![] });
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
    }
}
