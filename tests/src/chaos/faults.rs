//! The faults the soak injects, one at a time, and how it decides the cluster has recovered.
//!
//! A fault is injected, healed (the node restarted, resumed or re-added; the broker started
//! again), and then the harness waits for recovery before the next one: every partition has a
//! master that holds its read lease ("masters back"), every replica the coordinator places is
//! ready, and the cluster has materialized every alert the broker had acknowledged when the
//! fault began ("recovered"). Both are timed from the injection. One fault at a time keeps the
//! contract's promise testable: with a replication factor of 2, two nodes down at once leave a
//! partition without a replica, which no system can serve through.

use super::history::History;
use super::producer::Ledger;
use crate::cluster::{Cluster, TOKEN};
use crate::kafka::DurableBroker;
use crate::NodeProcess;
use lightkeeper_clients::api::cluster::{ClusterView, RaftState, Role};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a random node; start it again after 1–5 s.
    Kill,
    /// SIGSTOP a random node for 0.5–3 s, then SIGCONT.
    Pause,
    /// SIGKILL the coordinator's Raft leader; start it again after 1–5 s.
    KillLeader,
    /// `POST /v1/admin/nodes/{id}/drain`, SIGTERM, start again: one step of a rolling upgrade.
    DrainRestart,
    /// `POST …/decommission`, wait until the node hosts nothing and has left the Raft group,
    /// stop it, start it again and re-add it (`?cancel=true`).
    DecommissionReadd,
    /// SIGKILL the broker (durable engine); start it again after 1–5 s.
    BrokerRestart,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::KillLeader,
        FaultKind::DrainRestart,
        FaultKind::DecommissionReadd,
        FaultKind::BrokerRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::KillLeader => "kill_leader",
            FaultKind::DrainRestart => "drain_restart",
            FaultKind::DecommissionReadd => "decommission_readd",
            FaultKind::BrokerRestart => "broker_restart",
        }
    }

    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One injected fault and how long the cluster took to get over it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub target: String,
    /// Seconds since the run began.
    pub at_s: f64,
    /// From injection to the end of the fault (restarted, resumed, re-added).
    pub healed_ms: u64,
    /// From injection until every partition had a master holding its lease again, after some
    /// partition was seen without one (polled every 100 ms from the injection on); `None` when
    /// no partition was ever seen without a master.
    pub masters_back_ms: Option<u64>,
    /// From injection until every placed replica was ready and everything acknowledged before
    /// the fault was materialized; `None` if that did not happen within the timeout.
    pub recovered_ms: Option<u64>,
    pub note: String,
}

/// The cluster under test, as the fault injector drives it.
pub struct Target {
    pub cluster: Cluster,
    /// Running node processes by id.
    pub nodes: BTreeMap<String, NodeProcess>,
    pub broker: DurableBroker,
    pub ledger: Arc<Mutex<Ledger>>,
    pub history: History,
    pub recovery_timeout: Duration,
    pub replication_factor: usize,
    http: reqwest::Client,
}

impl Target {
    pub fn new(
        cluster: Cluster,
        nodes: BTreeMap<String, NodeProcess>,
        broker: DurableBroker,
        ledger: Arc<Mutex<Ledger>>,
        history: History,
        recovery_timeout: Duration,
        replication_factor: usize,
    ) -> Target {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        Target { cluster, nodes, broker, ledger, history, recovery_timeout, replication_factor, http }
    }

    /// `/v1/cluster` of every running node that answers within a second.
    pub async fn views(&self) -> BTreeMap<String, ClusterView> {
        let mut out = BTreeMap::new();
        for id in self.nodes.keys() {
            let url = format!("{}/v1/cluster", self.cluster.url(id));
            if let Ok(r) = self.http.get(url).send().await {
                if let Ok(v) = r.json::<ClusterView>().await {
                    out.insert(id.clone(), v);
                }
            }
        }
        out
    }

    /// One line of the history: what every node says of itself.
    pub async fn snapshot(&self) {
        let views = self.views().await;
        let nodes: serde_json::Map<String, serde_json::Value> = self
            .nodes
            .keys()
            .map(|id| {
                let v = views.get(id).map_or(json!("no answer"), |v| {
                    let c = v.coordinator.as_ref();
                    json!({
                        "raft": c.map(|c| format!("{:?}", c.state)),
                        "leader": c.and_then(|c| c.leader.clone()),
                        "draining": v.draining,
                        // [partition, role, epoch, ready, input_next, changelog_lag, lease_ms]
                        "p": v.partitions.iter().filter(|p| p.role != Role::NotHosted).map(|p| json!([
                            p.partition, format!("{:?}", p.role), p.epoch, p.ready, p.input_next,
                            p.changelog_lag, p.lease_ms
                        ])).collect::<Vec<_>>(),
                    })
                });
                (id.clone(), v)
            })
            .collect();
        self.history.record("cluster", json!({ "broker_up": self.broker.is_running(), "nodes": nodes }));
    }

    /// The Raft leader as a node that is leader says, if any answers.
    async fn leader(&self) -> Option<String> {
        self.views()
            .await
            .into_iter()
            .find_map(|(id, v)| v.coordinator.as_ref().filter(|c| c.state == RaftState::Leader).map(|_| id))
    }

    fn restart(&mut self, id: &str) {
        let node = tokio::task::block_in_place(|| self.cluster.start(id));
        self.nodes.insert(id.to_owned(), node);
    }

    fn kill(&mut self, id: &str) {
        if let Some(mut n) = self.nodes.remove(id) {
            tokio::task::block_in_place(|| n.kill());
        }
    }

    /// Injects `kind`, heals it, and waits for recovery.
    pub async fn inject(&mut self, kind: FaultKind, rng: &mut StdRng) -> FaultRecord {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        let mut target = ids.choose(rng).expect("a running node").clone();
        let t0 = Instant::now();
        let at_s = self.history.now();
        let acked_before = self.ledger.lock().unwrap().acked_count;
        let all: Vec<String> = self.cluster.nodes.keys().map(|id| self.cluster.url(id)).collect();
        let watch_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = tokio::spawn(masters_watch(all, self.cluster.partitions, t0, watch_done.clone()));
        let mut note = String::new();
        match kind {
            FaultKind::Kill | FaultKind::KillLeader => {
                if kind == FaultKind::KillLeader {
                    match self.leader().await {
                        Some(l) => target = l,
                        None => note = "no leader answered; killed a random node".into(),
                    }
                }
                self.history.record("fault", json!({ "kind": kind, "target": target }));
                self.kill(&target);
                tokio::time::sleep(Duration::from_millis(rng.random_range(1000..5000))).await;
                self.restart(&target);
            }
            FaultKind::Pause => {
                self.history.record("fault", json!({ "kind": kind, "target": target }));
                self.nodes[&target].signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
                self.nodes[&target].signal(libc::SIGCONT);
            }
            FaultKind::DrainRestart => {
                self.history.record("fault", json!({ "kind": kind, "target": target }));
                let url = self.cluster.url(&target);
                if let Err(e) = crate::cluster::drain_node(&url, &target).await {
                    note = format!("drain incomplete: {e}");
                }
                if let Some(mut n) = self.nodes.remove(&target) {
                    let status = tokio::task::block_in_place(|| n.terminate());
                    if !status.as_ref().is_ok_and(|s| s.success()) {
                        self.history.violation(format!("{target} did not exit cleanly on SIGTERM: {status:?}"));
                    }
                }
                self.restart(&target);
            }
            FaultKind::DecommissionReadd => {
                self.history.record("fault", json!({ "kind": kind, "target": target }));
                note = self.decommission_and_readd(&target).await;
            }
            FaultKind::BrokerRestart => {
                target = "broker".into();
                self.history.record("fault", json!({ "kind": kind, "target": target }));
                tokio::task::block_in_place(|| self.broker.kill());
                tokio::time::sleep(Duration::from_millis(rng.random_range(1000..5000))).await;
                tokio::task::block_in_place(|| self.broker.restart());
            }
        }
        let healed_ms = t0.elapsed().as_millis() as u64;
        self.history.record("healed", json!({ "kind": kind, "target": target, "after_ms": healed_ms, "note": note }));
        let recovered_ms = self.wait_recovery(t0, acked_before).await;
        watch_done.store(true, std::sync::atomic::Ordering::Relaxed);
        let masters_back_ms = watcher.await.unwrap_or(None);
        let record = FaultRecord { kind, target, at_s, healed_ms, masters_back_ms, recovered_ms, note };
        self.history.record("recovered", json!(record));
        if recovered_ms.is_none() {
            self.history.violation(format!(
                "no recovery from {} of {} within {:?} of healing",
                kind.name(),
                record.target,
                self.recovery_timeout
            ));
        }
        record
    }

    async fn decommission_and_readd(&mut self, target: &str) -> String {
        let Some(via) = self.nodes.keys().find(|id| *id != target).cloned() else {
            return "no other node".into();
        };
        let via_url = self.cluster.url(&via);
        if let Err(e) = crate::cluster::decommission(&via_url, target).await {
            self.history.violation(format!("decommission of {target} refused: {e}"));
            return String::new();
        }
        // Its replicas move off it and it leaves the Raft group.
        let deadline = Instant::now() + self.recovery_timeout;
        let mut last_snapshot = Instant::now();
        loop {
            if last_snapshot.elapsed() >= Duration::from_secs(1) {
                self.snapshot().await;
                last_snapshot = Instant::now();
            }
            let left = match crate::cluster::cluster_view(&via_url).await {
                Ok(v) => v.coordinator.is_some_and(|c| {
                    !c.replicated.partitions.values().any(|p| p.replicas.iter().any(|r| r == target))
                        && !c.voters.iter().chain(&c.learners).any(|m| m == target)
                }),
                Err(_) => false,
            };
            if left {
                break;
            }
            if Instant::now() > deadline {
                self.history.violation(format!(
                    "{target} still hosts replicas {:?} after its decommission",
                    self.recovery_timeout
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.history.record("decommissioned", json!({ "target": target }));
        if let Some(mut n) = self.nodes.remove(target) {
            let _ = tokio::task::block_in_place(|| n.terminate());
        }
        self.restart(target);
        let client = lightkeeper_clients::Client::new(&via_url).expect("client");
        if let Err(e) = client.decommission(target, TOKEN, true).await {
            self.history.violation(format!("re-adding {target} refused: {e}"));
        }
        String::new()
    }

    /// Polls every 100 ms until recovery (see the module docs); the time from `t0`.
    async fn wait_recovery(&self, t0: Instant, acked_before: u64) -> Option<u64> {
        let partitions = self.cluster.partitions;
        let deadline = Instant::now() + self.recovery_timeout;
        let mut last_snapshot = Instant::now();
        loop {
            let views = self.views().await;
            let masters = (0..partitions).all(|p| views.values().any(|v| serves_as_master(v, p)));
            let placement = views.values().find_map(|v| {
                v.coordinator.as_ref().filter(|c| c.state == RaftState::Leader).map(|c| c.replicated.partitions.clone())
            });
            let replicas_ready = placement.is_some_and(|placed| {
                placed.len() == partitions as usize
                    && placed.values().all(|info| info.replicas.len() == self.replication_factor)
                    && placed.iter().all(|(p, info)| {
                        info.replicas.iter().all(|r| {
                            views
                                .get(r)
                                .and_then(|v| v.partition(*p))
                                .is_some_and(|pv| pv.ready && matches!(pv.role, Role::Master | Role::Standby))
                        })
                    })
            });
            let mut furthest: BTreeMap<u32, u64> = BTreeMap::new();
            for v in views.values() {
                for p in &v.partitions {
                    let f = furthest.entry(p.partition).or_default();
                    *f = (*f).max(p.input_next);
                }
            }
            let caught_up = furthest.values().sum::<u64>() >= acked_before;
            if masters && replicas_ready && caught_up {
                return Some(t0.elapsed().as_millis() as u64);
            }
            if Instant::now() > deadline {
                return None;
            }
            // The history shows how recovery went, a second at a time.
            if last_snapshot.elapsed() >= Duration::from_secs(1) {
                self.snapshot().await;
                last_snapshot = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether `view`'s node serves partition `p` as its master: ready, holding its read lease.
fn serves_as_master(view: &ClusterView, p: u32) -> bool {
    view.partition(p).is_some_and(|pv| pv.role == Role::Master && pv.ready && pv.lease_ms > 0)
}

/// Polls every node (`urls`, running or not) every 100 ms until `done`: once some partition is
/// seen without a master serving it, the time from `t0` until every partition has one again.
async fn masters_watch(
    urls: Vec<String>,
    partitions: u32,
    t0: Instant,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> Option<u64> {
    let http = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().expect("client");
    let mut lost = false;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let views = futures::future::join_all(urls.iter().map(|u| {
            let http = http.clone();
            async move { http.get(format!("{u}/v1/cluster")).send().await.ok()?.json::<ClusterView>().await.ok() }
        }))
        .await;
        let served = (0..partitions).all(|p| views.iter().flatten().any(|v| serves_as_master(v, p)));
        if !served {
            lost = true;
        } else if lost {
            return Some(t0.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
