//! How the coordinator reaches other nodes: the [`Peers`] trait.
//!
//! Why a trait: the control plane's decisions (who is dead, whom to promote, when to hand a
//! partition back) must not depend on how a node is reached. The gateway implements it over
//! HTTP (`lightkeeper_gateway::peers`); tests implement it in-process to drive failover and
//! handover races without sockets. Every answer is a typed message of `lightkeeper-api`.

use crate::types::{Request, Response};
use futures::future::BoxFuture;
use lightkeeper_api::admin::{Drained, PromoteReport};
use lightkeeper_api::cluster::ClusterView;
use lightkeeper_api::error::ErrorBody;
use std::time::Duration;

/// How far a forwarded coordinator write has come (carried with the write to the next node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Proposed on this node.
    Origin,
    /// Handed to a peer by a node that knew no leader: the peer may pass it to its leader.
    ViaPeer,
    /// Sent to the leader: applied there or refused.
    ToLeader,
}

impl Hop {
    pub fn as_str(self) -> &'static str {
        match self {
            Hop::Origin => "origin",
            Hop::ViaPeer => "via-peer",
            Hop::ToLeader => "to-leader",
        }
    }

    /// The hop of a write received from another node: one without a hop is treated as sent to
    /// the leader, so it is never passed on (a received write is never `Origin`).
    pub fn received(hop: Option<&str>) -> Hop {
        match hop {
            Some("via-peer") => Hop::ViaPeer,
            _ => Hop::ToLeader,
        }
    }
}

/// Why a call to another node failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens at the node's address: the process is gone (the kernel says so at once).
    #[error("{url}: connection refused")]
    Refused { url: String },
    /// No answer in time: a hung, paused or overloaded node, or a slow operation.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The node answered with an error.
    #[error("{url}: {status} {}: {}", error.code, error.message)]
    Rejected { url: String, status: u16, error: ErrorBody },
    /// Any other transport failure, or an answer that does not decode.
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
}

impl CallError {
    /// The node is certainly not running (as opposed to slow or paused).
    pub fn is_refused(&self) -> bool {
        matches!(self, CallError::Refused { .. })
    }
}

/// The calls the control plane makes to other nodes, by base URL.
pub trait Peers: Send + Sync + 'static {
    /// The node's view of itself: liveness probe, and every replica's role, readiness and lag.
    fn status<'a>(&'a self, url: &'a str, timeout: Duration) -> BoxFuture<'a, Result<ClusterView, CallError>>;

    /// Asks the master of `partition` on that node to stop after its in-flight batch and report
    /// where its acknowledged changelog ends.
    fn drain<'a>(&'a self, url: &'a str, partition: u32) -> BoxFuture<'a, Result<Drained, CallError>>;

    /// Asks that node to take `partition` over by [`crate::handover::take_over`]; `skip_drain`
    /// when the old master is known dead.
    fn promote<'a>(
        &'a self,
        url: &'a str,
        partition: u32,
        skip_drain: bool,
    ) -> BoxFuture<'a, Result<PromoteReport, CallError>>;

    /// Passes a coordinator write to another member (its leader, or a peer that may know one).
    fn forward_write<'a>(
        &'a self,
        url: &'a str,
        req: &'a Request,
        hop: Hop,
    ) -> BoxFuture<'a, Result<Result<Response, String>, CallError>>;
}
