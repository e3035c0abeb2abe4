//! The handover protocol, written once: the admin route, a node drain, failover, placement and
//! rebalance all move a partition's mastership through these functions.
//!
//! **Taking over** ([`take_over`], run on the node whose standby becomes master):
//! 1. ask the current master (the node the newest epoch marker applied here names) to drain: it
//!    finishes its in-flight batch, becomes a standby and answers with its last acknowledged
//!    changelog offset;
//! 2. promote the local replica, which refuses to start below that offset, reads the changelog
//!    to its true end, starts a new epoch and resumes the input from the recorded offset.
//!
//! If the master cannot be reached (it crashed, or is partitioned away), or the caller knows it
//! is dead (`skip_drain`, failover), step 2 runs without an offset to check: the new epoch
//! fences whatever the old master may still write. Nothing acknowledged is lost either way.
//!
//! **Handing off** ([`hand_off`], run on a master's node during a node drain): choose the
//! standby by [`least_lagging`] — the one rule for "which standby", shared with failover — and
//! ask it to take over.

use crate::peers::{CallError, Peers};
use futures::future::BoxFuture;
use lightkeeper_api::admin::{Drained, NodeHandover, PromoteReport, Promoted};
use std::time::{Duration, Instant};

/// How long a standby's status may take when choosing whom to hand a partition to.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A standby that could take a partition over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    /// Draining nodes are the last resort (they are about to stop).
    pub draining: bool,
    /// Changelog records behind the end it has seen.
    pub lag: u64,
    pub node: String,
}

/// The standby to give mastership to: not draining if possible, then the least changelog lag,
/// and only within `max_lag` (`cluster.max_promotion_lag`: a replica far behind would keep the
/// partition unavailable while it catches up). Ties go to the smallest node id.
pub fn least_lagging(candidates: impl IntoIterator<Item = Candidate>, max_lag: u64) -> Option<Candidate> {
    candidates.into_iter().filter(|c| c.lag <= max_lag).min()
}

/// Why the local replica did not become master.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The replica refused (it is behind the drained offset, or not a ready standby): retrying
    /// the same promotion will not help.
    #[error("{0}")]
    Refused(String),
    /// The replica could not be asked (stopped, busy, or it did not answer in time).
    #[error("{0}")]
    Unavailable(String),
}

/// The local replica of a partition, as the handover protocol needs it.
pub trait LocalReplica: Send + Sync {
    /// The master named by the newest epoch marker this replica has applied (empty if none).
    fn master(&self) -> String;
    /// This replica is the partition's ready master.
    fn is_serving_master(&self) -> bool;
    /// Become master, refusing to start below `through` (the old master's drained offset).
    fn promote(&self, through: Option<u64>) -> BoxFuture<'_, Result<Promoted, PromoteError>>;
}

/// Why a take-over failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error("{message}")]
    Refused { message: String },
    #[error("{0}")]
    Unavailable(String),
}

/// Makes `local` (on node `node_id`) the master of `partition` (see the module doc).
/// `url_of` resolves a node id to its base URL.
pub async fn take_over(
    local: &dyn LocalReplica,
    node_id: &str,
    peers: &dyn Peers,
    url_of: impl Fn(&str) -> Option<String>,
    partition: u32,
    skip_drain: bool,
) -> Result<PromoteReport, TakeOverError> {
    let started = Instant::now();
    let master = local.master();
    let (mut drained, mut drain_error): (Option<Drained>, Option<String>) = (None, None);
    let drain_started = Instant::now();
    if skip_drain {
        drain_error = Some("skipped: the caller reported the old master down".to_owned());
    } else if !local.is_serving_master() && !master.is_empty() && master != node_id {
        let result = match url_of(&master) {
            Some(url) => peers.drain(&url, partition).await.map_err(|e| format!("drain call to {master}: {e}")),
            None => Err(format!("master {master:?} is not a known node")),
        };
        match result {
            Ok(d) => drained = Some(d),
            Err(e) => {
                tracing::warn!(partition, master = %master, error = %e, "old master not drained; promoting anyway (the new epoch fences it)");
                drain_error = Some(e);
            }
        }
    }
    let drain_ms = drain_started.elapsed().as_secs_f64() * 1e3;
    let through = drained.as_ref().map(|d| d.changelog_next);
    let promoted = local.promote(through).await.map_err(|e| match e {
        PromoteError::Unavailable(m) => TakeOverError::Unavailable(m),
        PromoteError::Refused(m) => {
            let after_drain = if drained.is_some() {
                "; the old master was drained and is a standby now: promote a replica again"
            } else {
                ""
            };
            TakeOverError::Refused { message: format!("{m}{after_drain}") }
        }
    })?;
    Ok(PromoteReport { promoted, drained, drain_error, drain_ms, elapsed_ms: started.elapsed().as_millis() as u64 })
}

/// Hands `partition`, mastered on `node_id`, to its best standby among `hosts` (node id, base
/// URL; the partition's other replicas). A node drain calls this for each master it holds.
pub async fn hand_off(
    peers: &dyn Peers,
    node_id: &str,
    hosts: &[(String, String)],
    partition: u32,
    max_lag: u64,
) -> NodeHandover {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut candidates = Vec::new();
    for (node, url) in hosts.iter().filter(|(n, _)| n != node_id) {
        match peers.status(url, STATUS_TIMEOUT).await {
            Ok(view) => match view.partition(partition) {
                Some(p) if p.is_ready_standby() => {
                    seen.push(format!("{node}: lag {}", p.changelog_lag));
                    candidates.push(Candidate { draining: view.draining, lag: p.changelog_lag, node: node.clone() });
                }
                Some(p) => seen.push(format!("{node}: {} (ready {})", p.role, p.ready)),
                None => seen.push(format!("{node}: does not report partition {partition}")),
            },
            Err(e) => seen.push(format!("{node}: unreachable ({e})")),
        }
    }
    let chosen = least_lagging(candidates, max_lag).map(|c| c.node);
    let result = match &chosen {
        None => Err(format!("no caught-up standby of partition {partition}: {}", seen.join("; "))),
        Some(to) => {
            let url = hosts.iter().find(|(n, _)| n == to).map(|(_, u)| u.as_str()).unwrap_or_default();
            peers.promote(url, partition, false).await.map(drop).map_err(|e: CallError| format!("promote on {to}: {e}"))
        }
    };
    if let Err(e) = &result {
        tracing::warn!(partition, error = %e, "node drain: partition not handed over");
    }
    NodeHandover {
        partition,
        to: chosen,
        ok: result.is_ok(),
        error: result.err(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(node: &str, lag: u64, draining: bool) -> Candidate {
        Candidate { draining, lag, node: node.into() }
    }

    #[test]
    fn the_least_lagging_standby_within_the_bound_wins_and_draining_nodes_come_last() {
        let all = [c("b", 7, false), c("c", 3, false)];
        assert_eq!(least_lagging(all.clone(), 100).unwrap().node, "c");
        assert_eq!(least_lagging(all.clone(), 3).unwrap().node, "c");
        assert_eq!(least_lagging(all.clone(), 2), None, "nobody within the promotion bound");
        assert_eq!(least_lagging([c("b", 7, false), c("c", 3, true)], 100).unwrap().node, "b");
        assert_eq!(least_lagging([c("c", 3, true)], 100).unwrap().node, "c", "a draining node is the last resort");
        assert_eq!(least_lagging([c("c", 3, false), c("b", 3, false)], 100).unwrap().node, "b");
    }
}

/// The protocol against in-process peers and replicas: no sockets, every branch observable.
#[cfg(test)]
mod protocol_tests {
    use super::*;
    use crate::types::{Request, Response};
    use crate::Hop;
    use lightkeeper_api::cluster::{ClusterView, PartitionView, Role};
    use lightkeeper_api::error::ErrorBody;
    use parking_lot::Mutex;
    use std::collections::BTreeMap;

    /// Nodes by URL: each node's view, and whether its drain answers.
    #[derive(Default)]
    struct FakePeers {
        views: BTreeMap<String, ClusterView>,
        drain_ok: Mutex<BTreeMap<String, u64>>,
        calls: Mutex<Vec<String>>,
    }

    impl Peers for FakePeers {
        fn status<'a>(&'a self, url: &'a str, _: Duration) -> BoxFuture<'a, Result<ClusterView, CallError>> {
            self.calls.lock().push(format!("status {url}"));
            let v = self.views.get(url).cloned().ok_or(CallError::Refused { url: url.into() });
            Box::pin(async move { v })
        }

        fn drain<'a>(&'a self, url: &'a str, partition: u32) -> BoxFuture<'a, Result<Drained, CallError>> {
            self.calls.lock().push(format!("drain {url} {partition}"));
            let r = match self.drain_ok.lock().get(url) {
                Some(&changelog_next) => Ok(Drained { partition, epoch: 1, changelog_next, input_next: 5 }),
                None => Err(CallError::Timeout { url: url.into(), timeout: Duration::from_secs(5) }),
            };
            Box::pin(async move { r })
        }

        fn promote<'a>(
            &'a self,
            url: &'a str,
            partition: u32,
            skip: bool,
        ) -> BoxFuture<'a, Result<PromoteReport, CallError>> {
            self.calls.lock().push(format!("promote {url} {partition} skip={skip}"));
            let error = ErrorBody { code: "promotion_failed".into(), message: "test".into() };
            Box::pin(async move { Err(CallError::Rejected { url: url.into(), status: 409, error }) })
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

    /// A standby of partition 0 whose log names `master`; records the offset it was promoted through.
    struct FakeReplica {
        master: String,
        promoted_through: Mutex<Option<Option<u64>>>,
        refuse: bool,
    }

    impl LocalReplica for FakeReplica {
        fn master(&self) -> String {
            self.master.clone()
        }

        fn is_serving_master(&self) -> bool {
            false
        }

        fn promote(&self, through: Option<u64>) -> BoxFuture<'_, Result<Promoted, PromoteError>> {
            *self.promoted_through.lock() = Some(through);
            let r = if self.refuse {
                Err(PromoteError::Refused("behind the drained offset".into()))
            } else {
                Ok(Promoted {
                    partition: 0,
                    epoch: 2,
                    previous_master: self.master.clone(),
                    marker_offset: through.unwrap_or(0),
                    input_next: 5,
                    caught_up: 0,
                    catch_up_ms: 0.0,
                    marker_append_ms: 0.0,
                    marker_apply_ms: 0.0,
                    changed: true,
                })
            };
            Box::pin(async move { r })
        }
    }

    fn replica(refuse: bool) -> FakeReplica {
        FakeReplica { master: "a".into(), promoted_through: Mutex::new(None), refuse }
    }

    fn url_of(n: &str) -> Option<String> {
        Some(format!("http://{n}"))
    }

    #[tokio::test]
    async fn a_reachable_master_is_drained_and_the_standby_promoted_through_its_offset() {
        let peers = FakePeers::default();
        peers.drain_ok.lock().insert("http://a".into(), 42);
        let local = replica(false);
        let report = take_over(&local, "b", &peers, url_of, 0, false).await.unwrap();
        assert_eq!(*local.promoted_through.lock(), Some(Some(42)), "promoted through the drained offset");
        assert_eq!(report.drained.unwrap().changelog_next, 42);
        assert!(report.drain_error.is_none());
        assert_eq!(*peers.calls.lock(), vec!["drain http://a 0"]);
    }

    #[tokio::test]
    async fn an_unreachable_master_is_fenced_instead_and_a_dead_one_is_not_asked() {
        let peers = FakePeers::default();
        let local = replica(false);
        let report = take_over(&local, "b", &peers, url_of, 0, false).await.unwrap();
        assert_eq!(*local.promoted_through.lock(), Some(None), "no offset: the new epoch fences the old master");
        assert!(report.drain_error.unwrap().contains("no answer"));
        let local = replica(false);
        let report = take_over(&local, "b", &peers, url_of, 0, true).await.unwrap();
        assert!(report.drain_error.unwrap().contains("skipped"));
        assert_eq!(peers.calls.lock().len(), 1, "skip_drain makes no call");
    }

    #[tokio::test]
    async fn a_refusal_after_a_drain_says_the_old_master_is_a_standby_now() {
        let peers = FakePeers::default();
        peers.drain_ok.lock().insert("http://a".into(), 7);
        let err = take_over(&replica(true), "b", &peers, url_of, 0, false).await.unwrap_err();
        match err {
            TakeOverError::Refused { message } => assert!(message.contains("is a standby now"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_node_drain_picks_the_least_lagging_ready_standby_and_reports_failures() {
        let view = |node: &str, role: Role, lag: u64, draining: bool| ClusterView {
            node: node.into(),
            nodes: BTreeMap::new(),
            partitions: vec![PartitionView {
                role,
                ready: true,
                changelog_lag: lag,
                lease_ms: 0,
                falling_behind_s: 0,
                ..PartitionView::not_hosted(0, vec![])
            }],
            watched_objects: 0,
            draining,
            coordinator: None,
        };
        let mut peers = FakePeers::default();
        peers.views.insert("http://b".into(), view("b", Role::Standby, 9, false));
        peers.views.insert("http://c".into(), view("c", Role::Standby, 2, false));
        peers.views.insert("http://d".into(), view("d", Role::Standby, 0, true));
        let hosts: Vec<(String, String)> =
            ["a", "b", "c", "d", "e"].iter().map(|n| (n.to_string(), format!("http://{n}"))).collect();
        let h = hand_off(&peers, "a", &hosts, 0, 100).await;
        assert_eq!(h.to.as_deref(), Some("c"), "least lag among the non-draining standbys");
        assert!(!h.ok, "the fake refuses every promotion");
        assert!(h.error.unwrap().contains("promotion_failed"));
        assert!(peers.calls.lock().contains(&"promote http://c 0 skip=false".to_owned()));
        let h = hand_off(&peers, "a", &hosts, 0, 1).await;
        assert_eq!(h.to.as_deref(), Some("d"), "within the bound only the draining node is left");
        let h = hand_off(&peers, "a", &hosts[..2], 7, 100).await;
        assert_eq!(h.to, None);
        assert!(h.error.unwrap().contains("does not report partition 7"));
    }
}
