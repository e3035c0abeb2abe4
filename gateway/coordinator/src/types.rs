//! The coordinator's Raft types and its replicated state machine's requests.
//!
//! The state's data types ([`ClusterState`]) are the wire contract's (`/v1/cluster` shows them);
//! how a request changes them is decided here, in [`apply`].
//!
//! The state machine is small (nodes and partitions), so it is kept whole in memory and
//! persisted whole, with the last applied log id, on every apply; a snapshot is its JSON.

pub use lightkeeper_api::cluster::{ClusterState, NodeInfo, PartitionInfo};
use serde::{Deserialize, Serialize};
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

/// Applies one request to the replicated state. Deterministic: every member applies the same
/// log to the same state.
pub fn apply(state: &mut ClusterState, req: &Request) -> Response {
    match req {
        Request::RegisterNode { name, url } => {
            // A restart does not cancel a decommission.
            let leaving = state.nodes.get(name).is_some_and(|n| n.leaving);
            let new = NodeInfo { url: url.clone(), alive: true, leaving };
            let changed = state.nodes.get(name) != Some(&new);
            state.nodes.insert(name.clone(), new);
            Response { applied: changed }
        }
        Request::SetPartition { partition, master, epoch } => {
            // Epochs only move forward: a late, older record changes nothing.
            let entry = state.partitions.entry(*partition).or_default();
            if *epoch <= entry.epoch && entry.epoch != 0 {
                return Response { applied: false };
            }
            entry.master.clone_from(master);
            entry.epoch = *epoch;
            Response { applied: true }
        }
        Request::SetReplicas { partition, replicas } => {
            let entry = state.partitions.entry(*partition).or_default();
            let changed = entry.replicas != *replicas;
            entry.replicas.clone_from(replicas);
            Response { applied: changed }
        }
        Request::SetLeaving { name, leaving, url } => match (state.nodes.get_mut(name), url) {
            (Some(n), _) if n.leaving != *leaving => {
                n.leaving = *leaving;
                Response { applied: true }
            }
            (None, Some(url)) => {
                state.nodes.insert(name.clone(), NodeInfo { url: url.clone(), alive: false, leaving: *leaving });
                Response { applied: true }
            }
            _ => Response { applied: false },
        },
        Request::SetLiveness { name, alive } => match state.nodes.get_mut(name) {
            Some(n) if n.alive != *alive => {
                n.alive = *alive;
                Response { applied: true }
            }
            _ => Response { applied: false },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_epochs_only_move_forward() {
        let mut s = ClusterState::default();
        let set = |m: &str, e| Request::SetPartition { partition: 0, master: m.into(), epoch: e };
        assert!(apply(&mut s, &set("a", 1)).applied);
        assert!(apply(&mut s, &set("b", 2)).applied);
        assert!(!apply(&mut s, &set("a", 1)).applied, "an older epoch is ignored");
        assert_eq!(s.partitions[&0], PartitionInfo { master: "b".into(), epoch: 2, replicas: vec![] });
        // Placement is independent of the epoch record.
        let place = Request::SetReplicas { partition: 0, replicas: vec!["b".into(), "a".into()] };
        assert!(apply(&mut s, &place).applied);
        assert!(!apply(&mut s, &place).applied);
        assert!(apply(&mut s, &set("a", 3)).applied);
        assert_eq!(s.partitions[&0].replicas, vec!["b", "a"], "an epoch record keeps the placement");
        let reg = Request::RegisterNode { name: "a".into(), url: "http://x".into() };
        assert!(apply(&mut s, &reg).applied);
        assert!(!apply(&mut s, &reg).applied);
        // Liveness: set by the leader's detector, reset when the node registers again.
        assert!(apply(&mut s, &Request::SetLiveness { name: "a".into(), alive: false }).applied);
        assert!(!s.nodes["a"].alive);
        assert!(!apply(&mut s, &Request::SetLiveness { name: "a".into(), alive: false }).applied);
        assert!(!apply(&mut s, &Request::SetLiveness { name: "z".into(), alive: false }).applied, "unknown node");
        assert!(apply(&mut s, &reg).applied);
        assert!(s.nodes["a"].alive);
        // A decommission survives the node registering again; it can be cancelled.
        assert!(apply(&mut s, &Request::SetLeaving { name: "a".into(), leaving: true, url: None }).applied);
        assert!(!apply(&mut s, &reg).applied);
        assert!(s.nodes["a"].leaving);
        assert!(apply(&mut s, &Request::SetLeaving { name: "a".into(), leaving: false, url: None }).applied);
        assert!(
            !apply(&mut s, &Request::SetLeaving { name: "z".into(), leaving: true, url: None }).applied,
            "unknown node"
        );
        // A configured peer that never registered is recorded, down and leaving.
        let never = Request::SetLeaving { name: "z".into(), leaving: true, url: Some("http://z".into()) };
        assert!(apply(&mut s, &never).applied);
        assert_eq!(s.nodes["z"], NodeInfo { url: "http://z".into(), alive: false, leaving: true });
    }
}
