//! The `[cluster]` section of the node configuration: the founding peers and how partitions
//! are first placed. It lives with the coordinator because the coordinator is what reads it:
//! configuration only seeds the replicated table, which says who hosts what from then on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Cluster membership and the initial partition assignment.
///
/// Configuration only seeds the cluster: the peers listed here form the coordinator group when it
/// is first created, and their replication-factor placement is the first partition table. From
/// then on the coordinator's replicated table says who hosts what (it changes as nodes join and
/// leave), and the changelog's epoch markers say who is master — a restarted node whose standby
/// was promoted comes back as a standby. A node *not* listed in `peers` joins the running
/// cluster through them and is given its share of replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// The cluster's founding nodes: node id → base URL the other nodes reach it at. Empty
    /// means a single node that masters every partition. A node listed here may create the
    /// coordinator group; a node not listed joins an existing one through these.
    pub peers: BTreeMap<String, String>,
    /// The base URL other nodes reach this node at. Default: its `peers` entry, else
    /// `http://<listen>`. Needed by a joining node that listens on an unspecified address.
    pub advertise_url: Option<String>,
    /// Replicas of listed partitions, the first being the initial (and preferred) master. A
    /// partition not listed is placed by `replication_factor`.
    pub assignment: Vec<Assignment>,
    /// Replicas of each partition not listed in `assignment`: partition `p` is hosted by the
    /// `replication_factor` peers that follow position `p mod n` in id order (wrapping), the
    /// first of them being its preferred master — so masters spread evenly over the nodes.
    /// Absent: every peer hosts every partition, the first by id being the preferred master.
    pub replication_factor: Option<usize>,
    /// A standby is given mastership (by failover, a drain or a rebalance) only while it is at
    /// most this many changelog records behind the end it has seen: promoting a replica far
    /// behind would make its partition unavailable while it catches up.
    pub max_promotion_lag: u64,
    /// Move each partition's mastership back to its preferred replica once that node is alive,
    /// ready and caught up (after a restart or a failover), so masters stay spread.
    pub rebalance: bool,
    /// Bearer token for `/v1/admin/*` (promotion, drain) and the calls nodes make to each other
    /// for a handover. Required when peers are configured; admin calls are refused without one.
    pub admin_token: Option<String>,
    /// How long a read routed to a partition's master keeps retrying while the partition has no
    /// reachable master (a handover or failover), before answering 503.
    pub route_deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub partition: u32,
    /// Node ids; the first is the initial master, the others standbys.
    pub replicas: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            peers: BTreeMap::new(),
            advertise_url: None,
            assignment: Vec::new(),
            replication_factor: None,
            max_promotion_lag: 10_000,
            rebalance: true,
            admin_token: None,
            route_deadline_ms: 5_000,
        }
    }
}

impl Cluster {
    pub fn is_single_node(&self) -> bool {
        self.peers.is_empty()
    }

    /// This node's base URL for the other nodes (see `advertise_url`); `listen` is the bound
    /// address, `tls` whether it serves HTTPS (the scheme of a URL made from it).
    pub fn own_url(&self, node_id: &str, listen: SocketAddr, tls: bool) -> String {
        self.advertise_url.clone().or_else(|| self.peers.get(node_id).cloned()).unwrap_or_else(|| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{listen}")
        })
    }

    /// The configured replicas of `partition`, preferred master first (empty for a single node):
    /// the seed of the coordinator's partition table.
    pub fn replicas(&self, partition: u32) -> Vec<String> {
        if let Some(a) = self.assignment.iter().find(|a| a.partition == partition) {
            return a.replicas.clone();
        }
        let ids: Vec<&String> = self.peers.keys().collect();
        match self.replication_factor {
            Some(rf) if !ids.is_empty() => {
                let first = partition as usize % ids.len();
                (0..rf.min(ids.len())).map(|i| ids[(first + i) % ids.len()].clone()).collect()
            }
            _ => ids.into_iter().cloned().collect(),
        }
    }
}
