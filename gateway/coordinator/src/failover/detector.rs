//! Failure detection: what this member knows of every node from its own probes.
//!
//! Every [`super::POLL`] each member asks every node for its status (through [`Peers`], with a
//! short timeout). That is both the liveness probe and the source of each replica's role,
//! readiness and lag. A node is dead when its connection is refused (nothing listens on its
//! port: the process is gone, and the kernel says so at once; an overloaded listener drops
//! connections rather than refusing them) or when it has not answered for [`SILENCE`] (a hung
//! or paused process).

use super::REJOIN_HOLD;
use crate::handover::{least_lagging, Candidate};
use crate::peers::Peers;
use lightkeeper_api::cluster::{ClusterView, Role};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
pub(crate) const SILENCE: Duration = Duration::from_millis(1_000);

/// One replica as its node reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replica {
    role: Role,
    ready: bool,
    lag: u64,
    /// The node says this replica has not gained on its changelog for a while.
    falling_behind: bool,
}

#[derive(Debug, Default)]
pub(crate) struct NodeHealth {
    last_ok: Option<Instant>,
    /// The last probe's connection was refused.
    refused: bool,
    /// Since when the node has answered without a death in between.
    pub(crate) up_since: Option<Instant>,
    pub(crate) draining: bool,
    pub(crate) partitions: BTreeMap<u32, Replica>,
}

impl NodeHealth {
    pub(crate) fn dead(&self, watching_since: Instant, now: Instant) -> bool {
        self.refused || now.duration_since(self.last_ok.unwrap_or(watching_since)) > SILENCE
    }

    pub(crate) fn standby_within(&self, partition: u32, max_lag: u64) -> Option<u64> {
        match self.partitions.get(&partition) {
            Some(r) if r.role == Role::Standby && r.ready && r.lag <= max_lag => Some(r.lag),
            _ => None,
        }
    }

    /// Some replica on the node cannot keep up with its changelog: the node is overloaded, and
    /// placement gives it no new replica while that lasts.
    pub(crate) fn overloaded(&self) -> bool {
        self.partitions.values().any(|r| r.falling_behind)
    }

    /// The node's replica of `partition` is ready: a master, or a standby within `max_lag`.
    pub(crate) fn replica_within(&self, partition: u32, max_lag: u64) -> bool {
        self.partitions.get(&partition).is_some_and(|r| r.ready && (r.role == Role::Master || r.lag <= max_lag))
    }
}

/// The answer to one liveness probe.
pub(crate) enum Probe {
    /// Boxed: most probes of a large cluster answer, and the view is the big part.
    Ok(Box<ClusterView>),
    Refused,
    Silent,
}

pub(crate) async fn probe(peers: &dyn Peers, url: &str) -> Probe {
    match peers.status(url, PROBE_TIMEOUT).await {
        Ok(v) => Probe::Ok(Box::new(v)),
        Err(e) if e.is_refused() => Probe::Refused,
        Err(_) => Probe::Silent,
    }
}

/// What this member knows of the cluster from its own probes.
pub(crate) struct View {
    pub(crate) since: Instant,
    pub(crate) nodes: BTreeMap<String, NodeHealth>,
    /// Partition → (epoch, master): the newest epoch any replica reports, with the master that
    /// started it (replicas learn it from the changelog's epoch markers, so a master that died
    /// before anyone probed it as master is still known).
    pub(crate) masters: BTreeMap<u32, (u64, String)>,
}

impl View {
    pub(crate) fn new() -> View {
        View { since: Instant::now(), nodes: BTreeMap::new(), masters: BTreeMap::new() }
    }

    pub(crate) fn record(&mut self, name: &str, result: Probe, now: Instant) {
        let h = self.nodes.entry(name.to_owned()).or_default();
        match result {
            Probe::Ok(v) => {
                if h.up_since.is_none() || h.dead(self.since, now) {
                    h.up_since = Some(now);
                }
                h.last_ok = Some(now);
                h.refused = false;
                h.draining = v.draining;
                h.partitions.clear();
                for p in &v.partitions {
                    let replica = Replica {
                        role: p.role,
                        ready: p.ready,
                        lag: p.changelog_lag,
                        falling_behind: p.falling_behind_s > 0,
                    };
                    h.partitions.insert(p.partition, replica);
                }
                for p in &v.partitions {
                    self.learn(p.partition, p.epoch, &p.master);
                }
            }
            Probe::Refused | Probe::Silent => {
                h.refused = matches!(result, Probe::Refused);
                if h.dead(self.since, now) {
                    h.up_since = None;
                }
            }
        }
    }

    /// Learns of an (epoch, master) of `partition`, from a replica or the replicated table; the
    /// newest epoch wins.
    pub(crate) fn learn(&mut self, partition: u32, epoch: u64, master: &str) {
        if master.is_empty() || self.masters.get(&partition).is_some_and(|(e, _)| *e >= epoch) {
            return;
        }
        self.masters.insert(partition, (epoch, master.to_owned()));
    }

    pub(crate) fn dead(&self, node: &str, now: Instant) -> bool {
        self.nodes.get(node).is_some_and(|h| h.dead(self.since, now))
    }

    /// The standby to promote when `partition`'s master is dead: one of `hosts` (the partition's
    /// placed replicas), live, ready, least lag within `max_lag`, preferring nodes that are not
    /// draining.
    pub(crate) fn failover_target(
        &self,
        partition: u32,
        master: &str,
        hosts: &[String],
        max_lag: u64,
        now: Instant,
    ) -> Option<(u64, String)> {
        let candidates = self
            .nodes
            .iter()
            .filter(|(n, h)| *n != master && hosts.contains(n) && !h.dead(self.since, now))
            .filter_map(|(n, h)| {
                Some(Candidate { draining: h.draining, lag: h.standby_within(partition, max_lag)?, node: n.clone() })
            });
        least_lagging(candidates, max_lag).map(|c| (c.lag, c.node))
    }

    /// Whether some live node serves `partition` as its ready master.
    pub(crate) fn has_serving_master(&self, partition: u32, now: Instant) -> bool {
        self.nodes.values().any(|h| {
            !h.dead(self.since, now) && h.partitions.get(&partition).is_some_and(|r| r.role == Role::Master && r.ready)
        })
    }

    /// Whether `partition`, mastered by a live `master`, should move back to `preferred`.
    pub(crate) fn should_rebalance(
        &self,
        partition: u32,
        master: &str,
        preferred: &str,
        max_lag: u64,
        now: Instant,
    ) -> bool {
        // A dead master is failover's business, a draining one the drain's.
        if master == preferred || self.dead(master, now) || self.nodes.get(master).is_some_and(|h| h.draining) {
            return false;
        }
        let Some(h) = self.nodes.get(preferred) else { return false };
        !h.dead(self.since, now)
            && !h.draining
            && h.up_since.is_some_and(|t| now.duration_since(t) >= REJOIN_HOLD)
            && h.standby_within(partition, max_lag).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::POLL;
    use super::*;
    use lightkeeper_api::cluster::PartitionView;

    /// A node's answer; every replica reports epoch 1 under master "a".
    fn answer(partitions: &[(u32, Role, bool, u64)], draining: bool) -> Probe {
        let partitions = partitions
            .iter()
            .map(|&(p, role, ready, lag)| PartitionView {
                role,
                ready,
                changelog_lag: lag,
                lease_ms: 0,
                falling_behind_s: 0,
                epoch: 1,
                master: "a".into(),
                ..PartitionView::not_hosted(p, vec![])
            })
            .collect();
        Probe::Ok(Box::new(ClusterView {
            node: String::new(),
            nodes: Default::default(),
            partitions,
            watched_objects: 0,
            draining,
            coordinator: None,
        }))
    }

    #[test]
    fn a_refused_master_fails_over_to_the_least_lagging_standby_within_the_bound() {
        let mut v = View::new();
        let t = Instant::now();
        v.record("a", answer(&[(0, Role::Master, true, 0)], false), t);
        v.record("b", answer(&[(0, Role::Standby, true, 7)], false), t);
        v.record("c", answer(&[(0, Role::Standby, true, 3)], false), t);
        assert_eq!(v.masters[&0], (1, "a".to_owned()));
        // A newer epoch learned from the replicated table wins; an older one does not.
        v.learn(0, 0, "b");
        assert_eq!(v.masters[&0].1, "a");
        assert!(!v.dead("a", t));
        v.record("a", Probe::Refused, t);
        assert!(v.dead("a", t), "a refused connection: nothing listens");
        let hosts = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(v.failover_target(0, "a", &hosts, 100, t), Some((3, "c".into())));
        assert_eq!(v.failover_target(0, "a", &hosts, 5, t), Some((3, "c".into())));
        assert_eq!(v.failover_target(0, "a", &hosts, 2, t), None, "nobody within the promotion bound");
        assert_eq!(v.failover_target(0, "a", &hosts[..2], 100, t), Some((7, "b".into())), "c is not placed there");
        // A draining node is the last resort.
        v.record("c", answer(&[(0, Role::Standby, true, 3)], true), t);
        assert_eq!(v.failover_target(0, "a", &hosts, 100, t), Some((7, "b".into())));
    }

    #[test]
    fn silence_is_death_and_a_return_restarts_the_rejoin_hold() {
        let mut v = View::new();
        let t0 = Instant::now();
        v.record("a", answer(&[(0, Role::Standby, true, 0)], false), t0);
        v.record("b", answer(&[(0, Role::Master, true, 0)], false), t0);
        let t1 = t0 + SILENCE + Duration::from_millis(1);
        v.record("a", Probe::Silent, t1);
        assert!(v.dead("a", t1), "a paused process is dead after the silence limit");
        let t2 = t1 + Duration::from_millis(100);
        v.record("a", answer(&[(0, Role::Standby, true, 0)], false), t2);
        assert!(!v.dead("a", t2));
        assert!(!v.should_rebalance(0, "b", "a", 10, t2), "just back: wait");
        let mut t = t2;
        while t < t2 + REJOIN_HOLD {
            t += POLL;
            v.record("a", answer(&[(0, Role::Standby, true, 0)], false), t);
            v.record("b", answer(&[(0, Role::Master, true, 0)], false), t);
        }
        assert!(v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
        // Not onto a lagging or draining node, and never away from a dead master (failover's job).
        v.record("a", answer(&[(0, Role::Standby, true, 50)], false), t2 + REJOIN_HOLD);
        assert!(!v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
        v.record("a", answer(&[(0, Role::Standby, true, 0)], true), t2 + REJOIN_HOLD);
        assert!(!v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
    }
}
