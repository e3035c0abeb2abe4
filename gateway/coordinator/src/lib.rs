//! The Lightkeeper control plane: an openraft group embedded in every node.
//!
//! It replicates a small state machine — the nodes with their addresses, liveness and whether
//! they are leaving, and the table partition → replicas (preferred master first), master, epoch
//! — through Raft, with its log, vote and state persisted in `data_dir/raft` (`store.rs`) and its
//! RPCs carried by whatever [`openraft::RaftNetworkFactory`] the node gives it (the gateway's
//! carries them over the nodes' own HTTP servers). One node alone is a valid cluster
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

//!
//! **How it reaches other nodes**: only through [`peers::Peers`] (status, drain, promote,
//! forwarded writes) — this crate knows no HTTP framework and no route path, so failover and
//! handover logic is tested in-process.
//!
//! Layout: [`coordinator`] (the Raft member, the table, writes), `membership.rs` (voters and
//! learners follow the node table), [`placement`] (where replicas go), [`failover`] (failure
//! detection and the leader's duties), [`handover`] (the one drain-then-promote protocol),
//! [`peers`] (the trait), [`store`] (Raft log and state in RocksDB), [`types`] (Raft types and
//! the state machine's requests), [`config`] (the `[cluster]` section).

pub mod config;
pub mod coordinator;
pub mod failover;
pub mod handover;
mod membership;
pub mod peers;
pub mod placement;
pub mod store;
pub mod types;

pub use coordinator::{raft_id, Coordinator, Settings, WriteError, ELECTION};
pub use peers::{CallError, Hop, Peers};
